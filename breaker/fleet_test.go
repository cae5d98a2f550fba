package breaker_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/heed-go/heed/breaker"
)

// memFleet is the shared state of one key's breakers, in memory.
type memFleet struct {
	mu       sync.Mutex
	until    time.Time
	claimed  time.Time // when the probe claim lapses
	opened   int
	closed   int
	claimers int
}

func (f *memFleet) OpenUntil(now time.Time) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.until, now.Before(f.until)
}

func (f *memFleet) Opened(now, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened++
	f.until, f.claimed = until, time.Time{}
}

func (f *memFleet) Closed(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	f.until, f.claimed = time.Time{}, time.Time{}
}

func (f *memFleet) ClaimProbe(now time.Time, hold time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Before(f.claimed) {
		return false
	}
	f.claimers++
	f.claimed = now.Add(hold)
	return true
}

// A trip in one instance opens the others at their next call; after the
// open time one instance probes for the fleet, and its success closes
// every breaker.
func TestFleet(t *testing.T) {
	f := &memFleet{}
	s := breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Minute, Fleet: f}
	a, _ := breaker.New(s)
	b, _ := breaker.New(s)
	now := t0
	for range 2 {
		tk, err := a.Allow(now)
		if err != nil {
			t.Fatal(err)
		}
		a.Record(tk, now, breaker.Failure)
	}
	if a.State() != breaker.Open || f.opened != 1 {
		t.Fatalf("a: %v, fleet opened %d times", a.State(), f.opened)
	}
	// b has seen no failure, yet refuses: the fleet is open.
	_, err := b.Allow(now.Add(time.Second))
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || !oe.Until.Equal(now.Add(time.Minute)) || b.State() != breaker.Open {
		t.Fatalf("b: %v %v, want open until the fleet's time", err, b.State())
	}
	if f.opened != 1 {
		t.Errorf("b told the fleet of a trip it learnt from the fleet (%d)", f.opened)
	}
	// After the open time, one probe for the fleet.
	later := now.Add(time.Minute + time.Second)
	tk, errA := a.Allow(later)
	_, errB := b.Allow(later)
	if errA != nil || !errors.Is(errB, breaker.ErrOpen) || f.claimers != 1 {
		t.Fatalf("probes: a %v, b %v, claims %d; want a single probe", errA, errB, f.claimers)
	}
	a.Record(tk, later, breaker.Success)
	if a.State() != breaker.Closed || f.closed != 1 {
		t.Fatalf("a: %v after its probe succeeded, fleet closed %d", a.State(), f.closed)
	}
	// b, half-open, takes the next probe (the claim went with the close).
	tk, err = b.Allow(later.Add(time.Second))
	if err != nil {
		t.Fatalf("b after the fleet closed: %v", err)
	}
	b.Record(tk, later.Add(time.Second), breaker.Success)
	if b.State() != breaker.Closed {
		t.Errorf("b: %v", b.State())
	}
}

// A failed probe reopens the fleet for longer; the instance that did not
// probe stays open with it.
func TestFleetFailedProbe(t *testing.T) {
	f := &memFleet{}
	s := breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Minute, Fleet: f}
	a, _ := breaker.New(s)
	b, _ := breaker.New(s)
	now := t0
	tk, _ := a.Allow(now)
	a.Record(tk, now, breaker.Failure)
	b.Allow(now) // learns
	later := now.Add(time.Minute)
	tk, err := a.Allow(later)
	if err != nil {
		t.Fatal(err)
	}
	a.Record(tk, later, breaker.Failure)
	until, open := f.OpenUntil(later)
	if !open || !until.Equal(later.Add(2*time.Minute)) {
		t.Fatalf("fleet open until %v (%v), want two minutes on", until, open)
	}
	if _, err := b.Allow(later.Add(time.Second)); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("b after the failed probe: %v", err)
	}
	if !b.NeedsTime() {
		t.Error("a breaker with a fleet must be given the time")
	}
}
