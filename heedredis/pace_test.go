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
	a := patient(t, srv, heedredis.Config{}).Pace("api")
	b := patient(t, srv, heedredis.Config{}).Pace("api")
	if _, active := b.Rate(); active {
		t.Fatal("a fleet pace before anyone paced")
	}
	a.Publish(50)
	waitFor(t, "b to see a's pace", func() bool { r, active := b.Rate(); return active && r == 50 })
	// b's slots follow the fleet's pace: 20 ms apart in the schedule in
	// Redis. A slot comes back as the caller's now plus its offset from
	// Redis's now, read somewhere within the call: each slot's place in
	// the schedule is known to within its call's duration, and the check
	// allows exactly that, whatever a loaded machine makes of the calls.
	reserve := func() (at, asked time.Time, took time.Duration) {
		asked = time.Now()
		at, ok := b.Reserve(asked, time.Time{})
		if !ok {
			t.Fatal("b refused a slot with no deadline")
		}
		return at, asked, time.Since(asked)
	}
	first, _, took1 := reserve()
	second, asked2, took2 := reserve()
	lo, hi := second.Sub(first.Add(took1)), second.Add(took2).Sub(first)
	const pace, µs = 20 * time.Millisecond, time.Microsecond // Redis's clock counts µs
	// At least the pace apart; and no more, unless the second was asked
	// after the first's slot plus the pace (then it comes at once).
	if hi < pace-µs || lo > pace+µs && !second.Equal(asked2) {
		t.Errorf("slots %v to %v apart, want 20ms", lo, hi)
	}
	// A 429 in b lowers the pace for a.
	b.Publish(10)
	waitFor(t, "a to see b's lower pace", func() bool { r, _ := a.Rate(); return r == 10 })
	a.Publish(0)
	b.Publish(0)
	waitFor(t, "the fleet to stop pacing", func() bool { _, active := a.Rate(); return !active })
}

// While Redis is down an instance paces at its own pace, each Redis call
// bounded by the timeout (checked on the calls: deadlines).
func TestPaceFault(t *testing.T) {
	srv := redistest.Start(t)
	var fs faults
	cfg := fs.config(heedredis.Config{Timeout: 50 * time.Millisecond})
	rdb := srv.Client(t)
	calls := watch(rdb, cfg.Timeout)
	p := store(t, rdb, cfg).Pace("api")
	srv.Stop()
	p.Publish(7)
	time.Sleep(heedredis.BreakerRefresh + 50*time.Millisecond)
	if r, active := p.Rate(); !active || r != 7 {
		t.Errorf("with Redis down: %v %v, want this instance's 7", r, active)
	}
	waitFor(t, "the fault to be reported", func() bool { down, _ := fs.counts(); return down > 0 })
	calls.check(t)
}
