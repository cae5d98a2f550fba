package breaker_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed/breaker"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func must(t testing.TB, s breaker.Settings) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call makes one call at now with outcome o and reports whether it was
// allowed.
func call(b *breaker.Breaker, now time.Time, o breaker.Outcome) bool {
	tk, err := b.Allow(now)
	if err != nil {
		return false
	}
	b.Record(tk, now, o)
	return true
}

func TestConsecutiveTrip(t *testing.T) {
	b := must(t, breaker.Settings{ConsecutiveFailures: 5})
	for i := range 4 {
		call(b, t0, breaker.Failure)
		if b.State() != breaker.Closed {
			t.Fatalf("open after %d failures", i+1)
		}
	}
	call(b, t0, breaker.Success) // a success resets the run
	for range 4 {
		call(b, t0, breaker.Failure)
	}
	if b.State() != breaker.Closed {
		t.Fatal("a success did not reset the count")
	}
	call(b, t0, breaker.Failure)
	if b.State() != breaker.Open {
		t.Fatal("not open after 5 consecutive failures")
	}
	_, err := b.Allow(t0.Add(29 * time.Second))
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || !errors.Is(err, breaker.ErrOpen) || !oe.Until.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("Allow while open: %v", err)
	}
	if until, ok := b.OpenUntil(); !ok || !until.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("OpenUntil = %v %v", until, ok)
	}
}

func TestIgnoredOutcomesNeverTrip(t *testing.T) {
	b := must(t, breaker.Settings{})
	for range 100 {
		call(b, t0, breaker.Ignore)
	}
	if b.State() != breaker.Closed {
		t.Fatal("ignored outcomes tripped the breaker")
	}
	// Nor do they break a run of failures.
	b = must(t, breaker.Settings{ConsecutiveFailures: 5})
	for range 4 {
		call(b, t0, breaker.Failure)
		call(b, t0, breaker.Ignore)
	}
	call(b, t0, breaker.Failure)
	if b.State() != breaker.Open {
		t.Fatal("ignored outcomes reset the failure run")
	}
}

func TestRatioTrip(t *testing.T) {
	b := must(t, breaker.Settings{FailureRatio: 0.5, MinCalls: 20, Window: 30 * time.Second, Buckets: 10})
	if b.NeedsTime() {
		t.Fatal("a closed breaker without a fleet needs no time: successes are counted lock-free")
	}
	// 19 calls, all failures: below the minimum throughput.
	for i := range 19 {
		call(b, t0.Add(time.Duration(i)*time.Second), breaker.Failure)
	}
	if b.State() != breaker.Closed {
		t.Fatal("tripped below MinCalls")
	}
	// At t0+31s the bucket holding t0..t0+3s has left the window: 16
	// failures remain. Four successes make 20 calls, but only a failure
	// can trip the breaker.
	now := t0.Add(31 * time.Second)
	for range 4 {
		call(b, now, breaker.Success)
	}
	if b.State() != breaker.Closed {
		t.Fatal("a success tripped the breaker")
	}
	call(b, now, breaker.Failure) // 17 failures of 21 calls
	if b.State() != breaker.Open {
		t.Fatalf("not open with 17 failures of 21 calls")
	}
}

// The default rule tells a dependency that is down from one that is
// degraded: random failures of 50%, or of 70% in a dependency that was
// healthy when they began, never trip it however long they last, while a
// dependency that fails everything is cut off after MinCalls calls.
// Seeded, so each run sees the same sequences. (From a cold start, a 70%
// failure rate trips it in about 4% of starts: the first 20 calls are a
// small sample.)
func TestDefaultTellsDownFromDegraded(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		for _, tc := range []struct {
			fail    float64
			every   time.Duration
			healthy int // calls that succeed before the failures begin
		}{
			{0.5, 10 * time.Millisecond, 0}, // 100 calls a second for 10 minutes
			{0.7, 10 * time.Millisecond, 100},
			{0.5, time.Second, 0}, // one call a second, 20 to 30 in the window
		} {
			b := must(t, breaker.Settings{})
			for i := range 60_000 {
				now := t0.Add(time.Duration(i) * tc.every)
				o := breaker.Success
				if i >= tc.healthy && rng.Float64() < tc.fail {
					o = breaker.Failure
				}
				if !call(b, now, o) {
					t.Fatalf("seed %d, %.0f%% failing, a call every %v: tripped after %d calls", seed, tc.fail*100, tc.every, i)
				}
			}
		}
	}
	b := must(t, breaker.Settings{})
	for i := range 19 {
		call(b, t0.Add(time.Duration(i)*time.Millisecond), breaker.Failure)
	}
	if b.State() != breaker.Closed {
		t.Fatal("tripped below MinCalls")
	}
	call(b, t0.Add(19*time.Millisecond), breaker.Failure)
	if b.State() != breaker.Open {
		t.Fatal("a dependency failing every call was not cut off after 20 calls")
	}
}

// Both rules may be set: either trips.
func TestBothRules(t *testing.T) {
	b := must(t, breaker.Settings{ConsecutiveFailures: 3, FailureRatio: 0.5, MinCalls: 10})
	for range 3 {
		call(b, t0, breaker.Failure)
	}
	if b.State() != breaker.Open {
		t.Fatal("three failures in a row did not trip it")
	}
	b = must(t, breaker.Settings{ConsecutiveFailures: 3, FailureRatio: 0.5, MinCalls: 10})
	for i := range 20 { // failure, failure, success, ...: never 3 in a row
		o := breaker.Failure
		if i%3 == 2 {
			o = breaker.Success
		}
		call(b, t0, o)
	}
	if b.State() != breaker.Open {
		t.Fatal("two thirds failing did not trip the 50% rule")
	}
}

// Successes counted over a quiet spell longer than the window are taken as
// spread over it: a dependency that was healthy an hour ago and fails now
// trips as soon as the window holds enough failures. (Successes are placed
// in the window at the next failure, timed from the last failure or change
// of state.)
func TestOldSuccessesLeaveTheWindow(t *testing.T) {
	b := must(t, breaker.Settings{})
	call(b, t0, breaker.Failure)
	for range 1000 {
		call(b, t0, breaker.Success)
	}
	// Spread over the hour, about 8 of the 1,000 fell in the last 30 s: 72
	// failures make 90%. Counted whole, they would take 9,000.
	now := t0.Add(time.Hour)
	for i := 0; b.State() == breaker.Closed; i++ {
		if i == 100 {
			t.Fatal("successes from an hour ago kept the breaker closed")
		}
		call(b, now, breaker.Failure)
	}
}

func TestRatioBelowThreshold(t *testing.T) {
	b := must(t, breaker.Settings{FailureRatio: 0.5, MinCalls: 10})
	for i := range 100 {
		o := breaker.Success
		if i%3 == 0 {
			o = breaker.Failure // a third fail
		}
		call(b, t0.Add(time.Duration(i)*100*time.Millisecond), o)
	}
	if b.State() != breaker.Closed {
		t.Fatal("tripped at a 33% failure ratio with threshold 50%")
	}
}

func trip(b *breaker.Breaker, now time.Time) {
	for b.State() != breaker.Open {
		call(b, now, breaker.Failure)
	}
}

func TestHalfOpen(t *testing.T) {
	b := must(t, breaker.Settings{HalfOpenProbes: 2})
	trip(b, t0)
	at := t0.Add(30 * time.Second)
	p1, err := b.Allow(at)
	if err != nil || b.State() != breaker.HalfOpen {
		t.Fatalf("first probe: %v, state %v", err, b.State())
	}
	p2, err := b.Allow(at)
	if err != nil {
		t.Fatal("second probe refused")
	}
	if _, err := b.Allow(at); !errors.Is(err, breaker.ErrOpen) {
		t.Fatal("third call admitted while two probes are in flight")
	}
	b.Record(p1, at, breaker.Success)
	if b.State() != breaker.HalfOpen {
		t.Fatal("closed after one of two probes")
	}
	b.Record(p2, at, breaker.Success)
	if b.State() != breaker.Closed {
		t.Fatal("not closed after two successful probes")
	}
}

func TestFailedProbeReopensLonger(t *testing.T) {
	b := must(t, breaker.Settings{OpenTimeout: 10 * time.Second, MaxOpenTimeout: 35 * time.Second})
	trip(b, t0)
	now := t0
	for _, want := range []time.Duration{20, 35, 35} { // doubled, then capped
		now = now.Add(40 * time.Second)
		p, err := b.Allow(now)
		if err != nil {
			t.Fatal(err)
		}
		b.Record(p, now, breaker.Failure)
		until, ok := b.OpenUntil()
		if !ok || until.Sub(now) != want*time.Second {
			t.Fatalf("open for %v, want %v", until.Sub(now), want*time.Second)
		}
	}
	// A successful probe closes it and resets the open time.
	now = now.Add(time.Minute)
	p, _ := b.Allow(now)
	b.Record(p, now, breaker.Success)
	trip(b, now)
	if until, _ := b.OpenUntil(); until.Sub(now) != 10*time.Second {
		t.Fatalf("open time after closing = %v, want the base 10s", until.Sub(now))
	}
}

func TestIgnoredProbeFreesItsSlot(t *testing.T) {
	b := must(t, breaker.Settings{})
	trip(b, t0)
	at := t0.Add(time.Minute)
	p, _ := b.Allow(at)
	b.Record(p, at, breaker.Ignore)
	if b.State() != breaker.HalfOpen {
		t.Fatalf("state %v", b.State())
	}
	if _, err := b.Allow(at); err != nil {
		t.Fatal("slot not given back:", err)
	}
}

// Outcomes of calls admitted before a change of state are ignored.
func TestStaleOutcomes(t *testing.T) {
	b := must(t, breaker.Settings{})
	var stale []breaker.Ticket
	for range 10 {
		tk, _ := b.Allow(t0)
		stale = append(stale, tk)
	}
	trip(b, t0)
	at := t0.Add(time.Minute)
	p, _ := b.Allow(at)
	b.Record(p, at, breaker.Success) // closed again
	for _, tk := range stale {
		b.Record(tk, at, breaker.Failure) // ten slow failures from before
	}
	if b.State() != breaker.Closed {
		t.Fatal("stale failures reopened a fresh breaker")
	}
}

func TestExactlyNProbes(t *testing.T) {
	for _, n := range []int{1, 3} {
		b := must(t, breaker.Settings{HalfOpenProbes: n})
		trip(b, t0)
		at := t0.Add(time.Minute)
		var admitted atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 1000 {
			wg.Go(func() {
				<-start
				if _, err := b.Allow(at); err == nil {
					admitted.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if got := admitted.Load(); got != int32(n) {
			t.Fatalf("%d probes admitted, want %d", got, n)
		}
	}
}

// A listener may call back into the breaker from inside a state change.
func TestListenerMayCallBack(t *testing.T) {
	var b *breaker.Breaker
	var seen []string
	b = must(t, breaker.Settings{OnStateChange: func(c breaker.Change) {
		seen = append(seen, c.From.String()+">"+c.To.String()+":"+b.State().String())
		b.OpenUntil()
		if _, err := b.Allow(c.At); err == nil && c.To == breaker.Closed {
			seen = append(seen, "allowed")
		}
	}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		trip(b, t0)
		at := t0.Add(time.Minute)
		p, _ := b.Allow(at)
		b.Record(p, at, breaker.Success)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("deadlock: listener calling the breaker")
	}
	want := []string{"closed>open:open", "open>half_open:half_open", "half_open>closed:closed", "allowed"}
	if len(seen) != len(want) {
		t.Fatalf("changes %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("changes %v, want %v", seen, want)
		}
	}
}

// A refused call allocates nothing: every refusal in an open period shares
// one error.
func TestOpenPathAllocatesNothing(t *testing.T) {
	b := must(t, breaker.Settings{})
	trip(b, t0)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := b.Allow(t0.Add(time.Second)); err == nil {
			t.Fatal("allowed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per refused call", allocs)
	}
}

func TestSettingsValidation(t *testing.T) {
	bad := []breaker.Settings{
		{ConsecutiveFailures: -1},
		{FailureRatio: 1.5},
		{FailureRatio: -0.1},
		{MinCalls: -3},
		{Window: time.Second, Buckets: 5000},
		{OpenTimeout: -time.Second},
		{OpenTimeout: time.Minute, MaxOpenTimeout: time.Second},
		{HalfOpenProbes: -1},
	}
	for _, s := range bad {
		if _, err := breaker.New(s); err == nil {
			t.Errorf("New(%+v) accepted", s)
		}
	}
	b := must(t, breaker.Settings{})
	s := b.Settings()
	if s.FailureRatio != breaker.DefaultFailureRatio || s.MinCalls != 20 || s.Window != 30*time.Second || s.ConsecutiveFailures != 0 ||
		s.OpenTimeout != 30*time.Second || s.HalfOpenProbes != 1 || s.MaxOpenTimeout != 5*time.Minute {
		t.Fatalf("defaults %+v", s)
	}
	// The consecutive rule alone leaves the ratio rule off.
	if s := must(t, breaker.Settings{ConsecutiveFailures: 5}).Settings(); s.FailureRatio != 0 {
		t.Fatalf("consecutive rule: %+v", s)
	}
}

func BenchmarkClosedPath(b *testing.B) {
	br := must(b, breaker.Settings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, _ := br.Allow(time.Time{})
			br.Record(tk, time.Time{}, breaker.Success)
		}
	})
}

func BenchmarkOpenPath(b *testing.B) {
	br := must(b, breaker.Settings{})
	trip(br, t0)
	now := t0.Add(time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			br.Allow(now)
		}
	})
}
