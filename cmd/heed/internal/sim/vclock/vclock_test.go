package vclock

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Actors take turns in virtual time: the trace is the same on every run,
// and an hour of sleeping takes no real time.
func TestTurns(t *testing.T) {
	trace := func() string {
		c := New()
		var b strings.Builder
		for i := range 3 {
			c.Go(func() {
				for j := range 3 {
					fmt.Fprintf(&b, "%v:a%d.%d ", c.Elapsed(), i, j)
					clock.Sleep(c, time.Duration(3-i)*time.Hour, nil)
				}
			})
		}
		if err := c.Run(context.Background(), 0, nil); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	start := time.Now()
	first := trace()
	want := "0s:a0.0 0s:a1.0 0s:a2.0 1h0m0s:a2.1 2h0m0s:a1.1 2h0m0s:a2.2 3h0m0s:a0.1 4h0m0s:a1.2 6h0m0s:a0.2 "
	if first != want {
		t.Fatalf("trace\n%s\nwant\n%s", first, want)
	}
	for range 20 {
		if got := trace(); got != first {
			t.Fatalf("a run differs:\n%s\n%s", got, first)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("21 runs took %v of real time", time.Since(start))
	}
}

func TestAfterFuncAndStop(t *testing.T) {
	c := New()
	var fired []time.Duration
	c.AfterFunc(time.Minute, func() { fired = append(fired, c.Elapsed()) })
	stopped := c.AfterFunc(2*time.Minute, func() { fired = append(fired, -1) })
	c.Go(func() {
		clock.Sleep(c, 90*time.Second, nil)
		if !stopped.Stop() || stopped.Stop() {
			t.Error("Stop: want true once, then false")
		}
		clock.Sleep(c, time.Hour, nil)
	})
	if err := c.Run(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	if len(fired) != 1 || fired[0] != time.Minute {
		t.Errorf("fired %v, want one at 1m", fired)
	}
	if c.Elapsed() != 90*time.Second+time.Hour {
		t.Errorf("ended at %v", c.Elapsed())
	}
}

func TestLimitThenResume(t *testing.T) {
	c := New()
	var stop atomic.Bool
	c.Go(func() {
		for !stop.Load() {
			clock.Sleep(c, time.Hour, nil)
		}
	})
	if err := c.Run(context.Background(), 10*time.Hour, nil); err != ErrLimit {
		t.Fatalf("Run past the limit: %v, want ErrLimit", err)
	}
	if c.Elapsed() != 10*time.Hour {
		t.Errorf("stopped at %v, want 10h", c.Elapsed())
	}
	stop.Store(true)
	if err := c.Run(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	if c.Elapsed() != 11*time.Hour {
		t.Errorf("ended at %v, want 11h", c.Elapsed())
	}
}

func TestRunWaitsForABusyActor(t *testing.T) {
	c := New()
	block := make(chan struct{})
	c.Go(func() {
		c.AfterFunc(time.Second, func() {})
		<-block // not the clock's
	})
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background(), 0, nil) }()
	// The actor never yields: Run waits for it. Release it to end the test.
	close(block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The streams of one seed are not correlated: the second draws of 50
// nearby streams spread over [0, 1) as independent uniforms would (with
// math/rand/v2's PCG(seed, stream) many of them fall within 0.05 of each
// other).
func TestRandStreamsIndependent(t *testing.T) {
	for seed := range uint64(5) {
		var draws []float64
		for stream := range uint64(50) {
			r := Rand(seed, stream)
			r.Float64()
			draws = append(draws, r.Float64())
		}
		// In any window of width 0.1, 50 uniforms put about 5; more than
		// 14 has a chance below one in a million.
		for lo := 0.0; lo < 0.9; lo += 0.05 {
			n := 0
			for _, d := range draws {
				if d >= lo && d < lo+0.1 {
					n++
				}
			}
			if n > 14 {
				t.Fatalf("seed %d: %d of 50 second draws in [%.2f, %.2f)", seed, n, lo, lo+0.1)
			}
		}
	}
}
