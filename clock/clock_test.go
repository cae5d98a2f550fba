package clock_test

import (
	"testing"
	"time"

	"github.com/heed-go/heed/clock"
)

func TestSleepZeroReturnsAtOnce(t *testing.T) {
	if !clock.Sleep(clock.Real(), 0, nil) {
		t.Fatal("Sleep(0) = false, want true")
	}
	if !clock.Sleep(clock.Real(), -time.Hour, nil) {
		t.Fatal("Sleep(-1h) = false, want true")
	}
}

func TestSleepInterrupted(t *testing.T) {
	done := make(chan struct{})
	close(done)
	start := time.Now()
	if clock.Sleep(clock.Real(), time.Hour, done) {
		t.Fatal("Sleep with closed done = true, want false")
	}
	if time.Since(start) > time.Minute {
		t.Fatal("Sleep did not return when done was closed")
	}
}

func TestRealAfterFunc(t *testing.T) {
	fired := make(chan struct{})
	tm := clock.Real().AfterFunc(time.Millisecond, func() { close(fired) })
	<-fired
	if tm.C() != nil {
		t.Fatal("AfterFunc timer has a channel")
	}
	if tm.Stop() {
		t.Fatal("Stop after firing = true")
	}
}
