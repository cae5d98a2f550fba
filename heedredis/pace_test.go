package heedredis_test

import (
	"testing"
	"time"

	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
)

// waitFor polls cond for up to two seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// One instance's pace is the fleet's: another instance sees it, paces at
// it, and stops when the first stops.
func TestPaceShared(t *testing.T) {
	srv := redistest.Start(t)
	a := store(t, srv.Client(t), heedredis.Config{}).Pace("api")
	b := store(t, srv.Client(t), heedredis.Config{}).Pace("api")
	if _, active := b.Rate(); active {
		t.Fatal("a fleet pace before anyone paced")
	}
	a.Publish(50)
	waitFor(t, "b to see a's pace", func() bool { r, active := b.Rate(); return active && r == 50 })
	// b's slots follow the fleet's pace: 20 ms apart.
	now := time.Now()
	first, ok1 := b.Reserve(now, time.Time{})
	second, ok2 := b.Reserve(now, time.Time{})
	if !ok1 || !ok2 || second.Sub(first) < 15*time.Millisecond || second.Sub(first) > 25*time.Millisecond {
		t.Errorf("slots %v apart (%v %v), want 20ms", second.Sub(first), ok1, ok2)
	}
	// A 429 in b lowers the pace for a.
	b.Publish(10)
	waitFor(t, "a to see b's lower pace", func() bool { r, _ := a.Rate(); return r == 10 })
	a.Publish(0)
	b.Publish(0)
	waitFor(t, "the fleet to stop pacing", func() bool { _, active := a.Rate(); return !active })
}

// While Redis is down an instance paces at its own pace.
func TestPaceFault(t *testing.T) {
	srv := redistest.Start(t)
	var fs faults
	p := store(t, srv.Client(t), fs.config(heedredis.Config{Timeout: 50 * time.Millisecond})).Pace("api")
	srv.Stop()
	p.Publish(7)
	time.Sleep(heedredis.BreakerRefresh + 50*time.Millisecond)
	start := time.Now()
	r, active := p.Rate()
	if !active || r != 7 || time.Since(start) > 150*time.Millisecond {
		t.Errorf("with Redis down: %v %v after %v, want this instance's 7 within the timeout", r, active, time.Since(start))
	}
	waitFor(t, "the fault to be reported", func() bool { down, _ := fs.counts(); return down > 0 })
}
