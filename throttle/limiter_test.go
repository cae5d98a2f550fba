package throttle_test

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heed-go/heed/throttle"
)

// t0 is the fixed origin of every virtual time in these tests.
var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// at returns t0 plus d: the times of the step tables are offsets from t0.
func at(d time.Duration) time.Time { return t0.Add(d) }

const ms = time.Millisecond

func newLimiter(t testing.TB, rate float64, burst int) *throttle.Limiter {
	t.Helper()
	l, err := throttle.NewLimiter(rate, burst)
	if err != nil {
		t.Fatalf("NewLimiter(%v, %d): %v", rate, burst, err)
	}
	return l
}

// step is one call to a limiter at a fixed time, in the manner of the
// tables of golang.org/x/time/rate's tests.
type step struct {
	op       string        // "reserve", "before" (ReserveBefore) or "allow"
	now      time.Duration // offset from t0
	deadline time.Duration // for "before": offset from t0; -1 for none (zero time)
	want     time.Duration // for "reserve" and "before": the slot, offset from t0
	ok       bool          // for "before" and "allow"
}

func reserve(now, want time.Duration) step {
	return step{op: "reserve", now: now, want: want, ok: true}
}
func before(now, deadline, want time.Duration, ok bool) step {
	return step{op: "before", now: now, deadline: deadline, want: want, ok: ok}
}
func allow(now time.Duration, ok bool) step { return step{op: "allow", now: now, ok: ok} }

// run plays steps on l and reports the index of any step that went wrong.
func run(t *testing.T, l *throttle.Limiter, steps []step) {
	t.Helper()
	for i, s := range steps {
		switch s.op {
		case "reserve":
			if got := l.Reserve(at(s.now)); !got.Equal(at(s.want)) {
				t.Errorf("step %d: Reserve(t0+%v) = t0+%v, want t0+%v", i, s.now, got.Sub(t0), s.want)
			}
		case "before":
			var dl time.Time
			if s.deadline >= 0 {
				dl = at(s.deadline)
			}
			got, ok := l.ReserveBefore(at(s.now), dl)
			if !got.Equal(at(s.want)) || ok != s.ok {
				t.Errorf("step %d: ReserveBefore(t0+%v, deadline %v) = t0+%v, %v; want t0+%v, %v",
					i, s.now, s.deadline, got.Sub(t0), ok, s.want, s.ok)
			}
		case "allow":
			if got := l.Allow(at(s.now)); got != s.ok {
				t.Errorf("step %d: Allow(t0+%v) = %v, want %v", i, s.now, got, s.ok)
			}
		default:
			t.Fatalf("step %d: unknown op %q", i, s.op)
		}
	}
}

func TestLimiterSteps(t *testing.T) {
	const none = -1
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst 1 allow", 10, 1, []step{
			allow(0, true),
			allow(0, false),
			allow(50*ms, false),
			allow(100*ms, true),
			allow(150*ms, false),
			allow(250*ms, true), // idle past the slot: no credit beyond one
			allow(300*ms, false),
			allow(350*ms, true),
		}},
		{"burst 3 allow", 10, 3, []step{
			allow(0, true),
			allow(0, true),
			allow(0, true),
			allow(0, false), // burst spent
			allow(50*ms, false),
			allow(100*ms, true), // then one per 100 ms
			allow(100*ms, false),
			allow(200*ms, true),
			allow(250*ms, false),
			allow(time.Second, true), // idle: the burst is back
			allow(time.Second, true),
			allow(time.Second, true),
			allow(time.Second, false),
			allow(1100*ms, true),
		}},
		{"burst 1 reserve future", 10, 1, []step{
			reserve(0, 0),
			reserve(0, 100*ms),
			reserve(0, 200*ms),
			reserve(50*ms, 300*ms),
			allow(300*ms, false), // every slot up to 400 ms is taken
			reserve(time.Second, time.Second),
			reserve(time.Second, 1100*ms),
		}},
		{"burst 3 reserve future", 10, 3, []step{
			reserve(0, 0),
			reserve(0, 0),
			reserve(0, 0),
			reserve(0, 100*ms),
			reserve(0, 200*ms),
			reserve(150*ms, 300*ms),
			reserve(500*ms, 500*ms), // tat 600 ms minus a tolerance of 200 ms is in the past
			reserve(500*ms, 500*ms),
			reserve(500*ms, 600*ms),
		}},
		{"reserve before", 10, 1, []step{
			before(0, none, 0, true),
			before(0, 50*ms, 100*ms, false), // refused: reserves nothing
			before(0, 99*ms, 100*ms, false),
			before(0, 100*ms, 100*ms, true), // a slot at the deadline is in time
			before(0, 150*ms, 200*ms, false),
			before(0, 200*ms, 200*ms, true),
			before(0, none, 300*ms, true),
			before(time.Second, 900*ms, time.Second, false), // a deadline already past refuses even a free slot
			before(time.Second, time.Second, time.Second, true),
		}},
		{"reserve before burst 3", 10, 3, []step{
			before(0, 0, 0, true),
			before(0, 0, 0, true),
			before(0, 0, 0, true),
			before(0, 0, 100*ms, false),
			before(0, 0, 100*ms, false), // still 100 ms: nothing was consumed
			before(0, 100*ms, 100*ms, true),
			allow(100*ms, false),
			allow(200*ms, true),
		}},
		{"reserve then allow", 2, 1, []step{
			reserve(0, 0),
			reserve(0, 500*ms),
			allow(500*ms, false), // 500 ms is reserved
			allow(999*ms, false),
			allow(time.Second, true),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, newLimiter(t, tt.rate, tt.burst), tt.steps)
		})
	}
}

func TestLimiterRate(t *testing.T) {
	for _, rate := range []float64{0.5, 1, 3, 10, 1000, 1e6} {
		l := newLimiter(t, rate, 1)
		if got := l.Rate(); math.Abs(got-rate) > rate*1e-6 {
			t.Errorf("NewLimiter(%v, 1).Rate() = %v", rate, got)
		}
	}
}

func TestLimiterSetRateKeepsReserved(t *testing.T) {
	l := newLimiter(t, 1, 1)
	run(t, l, []step{
		reserve(0, 0),
		reserve(0, time.Second),
		reserve(0, 2*time.Second),
	})
	if err := l.SetRate(10, 1); err != nil {
		t.Fatalf("SetRate(10, 1): %v", err)
	}
	if got := l.Rate(); got != 10 {
		t.Errorf("Rate after SetRate(10, 1) = %v, want 10", got)
	}
	// The slots given out at 1/s stand; the next one is the first free one
	// (3 s), and from there the new pace holds.
	run(t, l, []step{
		reserve(0, 3*time.Second),
		reserve(0, 3100*ms),
		reserve(0, 3200*ms),
	})

	// Slower: the reserved slots still stand, the spacing grows after them.
	if err := l.SetRate(1, 1); err != nil {
		t.Fatalf("SetRate(1, 1): %v", err)
	}
	run(t, l, []step{
		reserve(0, 3300*ms),
		reserve(0, 4300*ms),
	})
}

func TestLimiterSetRateInvalidKeepsState(t *testing.T) {
	l := newLimiter(t, 10, 1)
	l.Reserve(t0)
	for _, c := range []struct {
		rate  float64
		burst int
	}{{0, 1}, {-1, 1}, {math.NaN(), 1}, {math.Inf(1), 1}, {10, 0}} {
		if err := l.SetRate(c.rate, c.burst); err == nil {
			t.Errorf("SetRate(%v, %d) = nil, want an error", c.rate, c.burst)
		}
	}
	if got := l.Rate(); got != 10 {
		t.Errorf("Rate after refused SetRates = %v, want 10", got)
	}
	if got := l.Reserve(t0); !got.Equal(at(100 * ms)) {
		t.Errorf("Reserve after refused SetRates = t0+%v, want t0+100ms", got.Sub(t0))
	}
}

func TestNewLimiterValidation(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		ok    bool
	}{
		{"zero rate", 0, 1, false},
		{"negative rate", -1, 1, false},
		{"NaN rate", math.NaN(), 1, false},
		{"+Inf rate", math.Inf(1), 1, false},
		{"-Inf rate", math.Inf(-1), 1, false},
		{"burst 0", 10, 0, false},
		{"negative burst", 10, -1, false},
		{"smallest valid", 1e-3, 1, true},
		{"fast", 1e9, 1, true},
		{"faster than a nanosecond", 1e12, 100, true}, // clamped to 1 ns per event
	}
	for _, tt := range tests {
		l, err := throttle.NewLimiter(tt.rate, tt.burst)
		if tt.ok != (err == nil) {
			t.Errorf("%s: NewLimiter(%v, %d) error = %v, want ok=%v", tt.name, tt.rate, tt.burst, err, tt.ok)
		}
		if !tt.ok && l != nil {
			t.Errorf("%s: NewLimiter returned a limiter with an error", tt.name)
		}
	}
}

// TestNewLimiterTinyRate: a rate so slow that one interval does not fit in a
// time.Duration (below about 1.1e-10 events a second) is accepted, and the
// float-to-int conversion that overflows makes it the fastest limiter there is.
func TestNewLimiterTinyRate(t *testing.T) {
	l, err := throttle.NewLimiter(1e-10, 1)
	if err != nil {
		return // refusing the rate would be fine too
	}
	if got := l.Rate(); got > 1e-9 {
		t.Errorf("NewLimiter(1e-10, 1).Rate() = %v, want about 1e-10", got)
	}
	l.Reserve(t0)
	if got := l.Reserve(t0); got.Sub(t0) < time.Hour {
		t.Errorf("second Reserve at a rate of 1e-10/s came %v after the first, want far later", got.Sub(t0))
	}
}

func TestLimiterConcurrentReserve(t *testing.T) {
	const (
		goroutines = 8
		each       = 200
		rate       = 1000 // one slot a millisecond
	)
	l := newLimiter(t, rate, 1)
	var (
		mu    sync.Mutex
		slots []time.Time
		wg    sync.WaitGroup
	)
	for range goroutines {
		wg.Go(func() {
			got := make([]time.Time, 0, each)
			for range each {
				got = append(got, l.Reserve(t0))
			}
			mu.Lock()
			slots = append(slots, got...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(slots, time.Time.Compare)
	if len(slots) != goroutines*each {
		t.Fatalf("%d slots, want %d", len(slots), goroutines*each)
	}
	for i, s := range slots {
		if want := at(time.Duration(i) * ms); !s.Equal(want) {
			t.Fatalf("slot %d = t0+%v, want t0+%v (slots must be distinct and exactly 1/rate apart)", i, s.Sub(t0), want.Sub(t0))
		}
	}
}

func TestLimiterReserveAllocs(t *testing.T) {
	l := newLimiter(t, 1e6, 4)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		l.Reserve(now)
	}); n != 0 {
		t.Errorf("Reserve allocates %v times a call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		l.ReserveBefore(now, now)
		l.Allow(now)
	}); n != 0 {
		t.Errorf("ReserveBefore and Allow allocate %v times a call, want 0", n)
	}
}

func BenchmarkLimiterReserve(b *testing.B) {
	l := newLimiter(b, 1e9, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Reserve(t0)
		}
	})
}
