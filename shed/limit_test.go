package shed_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/shed"
)

// model is a handler whose capacity and latency a test changes: each
// request takes latency, and with slots set at most slots run at once,
// the others waiting inside the handler (as for CPUs or a pool).
type model struct {
	mu      sync.Mutex
	slots   chan struct{} // nil: no bound
	latency time.Duration
}

func (m *model) set(slots int, latency time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.slots, m.latency = nil, latency
	if slots > 0 {
		m.slots = make(chan struct{}, slots)
	}
}

func (m *model) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	slots, latency := m.slots, m.latency
	m.mu.Unlock()
	if slots != nil {
		slots <- struct{}{}
		defer func() { <-slots }()
	}
	time.Sleep(latency)
}

// clients runs n clients that send requests to h one after another until
// stop is closed, waiting 10 ms after a refusal.
func clients(h http.Handler, n int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if serve(h, request()).Code == http.StatusServiceUnavailable {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	return &wg
}

// span is what Stats said over a while.
type span struct {
	minLimit, maxLimit int
	maxLatency         time.Duration
	last               shed.Stats
}

// watch samples s's Stats every 10 ms for d.
func watch(s *shed.Shedder, d time.Duration) span {
	sp := span{minLimit: 1 << 30}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		st := s.Stats()
		sp.minLimit, sp.maxLimit = min(sp.minLimit, st.Limit), max(sp.maxLimit, st.Limit)
		sp.maxLatency = max(sp.maxLatency, st.Latency)
		sp.last = st
	}
	return sp
}

// countShed counts the requests shed.
type countShed struct{ n atomic.Int64 }

func (c *countShed) OnEvent(_ context.Context, e heed.Event) {
	if e.Kind == heed.EventShed {
		c.n.Add(1)
	}
}

// TestLimitAdapts: the limit grows while the handler keeps its latency,
// falls when the handler's capacity falls and requests queue inside it,
// and grows back when the capacity returns.
func TestLimitAdapts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		m := &model{}
		m.set(0, 20*time.Millisecond)
		s := mustNew(t, shed.Config{})
		stop := make(chan struct{})
		wg := clients(s.Handler(m), 40, stop)

		// 40 clients and room for all: from 10, the limit grows past 40.
		time.Sleep(2 * time.Second)
		sp := watch(s, time.Second)
		t.Logf("room for all: %+v", sp)
		if sp.minLimit < 40 || sp.last.Baseline < 19*time.Millisecond || sp.last.Baseline > 25*time.Millisecond {
			t.Errorf("with room for all 40 clients: limit %d-%d, baseline %v; want at least 40, about 20 ms",
				sp.minLimit, sp.maxLimit, sp.last.Baseline)
		}

		// The handler can serve 8 at once now; the others queue inside it
		// and its latency grows with their number. The limit falls to
		// about 8, where the handler keeps its latency.
		m.set(8, 20*time.Millisecond)
		time.Sleep(2 * time.Second)
		sp = watch(s, time.Second)
		t.Logf("8 slots: %+v", sp)
		if sp.maxLimit > 16 || sp.minLimit < 2 || sp.maxLatency > 40*time.Millisecond {
			t.Errorf("with 8 slots: limit %d-%d, latency up to %v; want at most 16, and at most twice the 20 ms",
				sp.minLimit, sp.maxLimit, sp.maxLatency)
		}

		// Capacity back: the limit climbs back.
		m.set(0, 20*time.Millisecond)
		time.Sleep(2 * time.Second)
		sp = watch(s, time.Second)
		t.Logf("room again: %+v", sp)
		if sp.minLimit < 40 {
			t.Errorf("with room again: limit %d-%d, want at least 40 again", sp.minLimit, sp.maxLimit)
		}
		close(stop)
		wg.Wait()
	})
}

// TestSlowerDependency: when the handler's latency rises for a reason its
// concurrency does not cause (a dependency got slower), cutting the limit
// does not help; the shedder learns the new latency as its baseline and
// stops shedding instead of starving the handler.
func TestSlowerDependency(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		m := &model{}
		m.set(0, 10*time.Millisecond)
		sheds := &countShed{}
		s := mustNew(t, shed.Config{Hooks: []heed.Hook{sheds}})
		stop := make(chan struct{})
		wg := clients(s.Handler(m), 40, stop)
		time.Sleep(2 * time.Second)

		m.set(0, 30*time.Millisecond)
		time.Sleep(2 * time.Second)
		before := sheds.n.Load()
		sp := watch(s, time.Second)
		t.Logf("dependency 3x slower: %+v, %d shed in the last second", sp, sheds.n.Load()-before)
		if sp.minLimit < 40 || sp.last.Baseline < 25*time.Millisecond || sheds.n.Load() != before {
			t.Errorf("limit %d-%d, baseline %v, %d shed in the last second: want room for the 40 clients, a baseline near 30 ms, none shed",
				sp.minLimit, sp.maxLimit, sp.last.Baseline, sheds.n.Load()-before)
		}
		close(stop)
		wg.Wait()
	})
}

// TestBaselineAtLightLoad: at light load a window holds few requests with
// few in flight, and its latency by Little's law errs by the requests at
// its edges; the least of such windows must not become a baseline well
// below the handler's latency (a 50 ms handler was once learned at 42 ms,
// and a low baseline sheds too much when an overload follows).
func TestBaselineAtLightLoad(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		latency time.Duration
		rate    float64 // requests a second, Poisson
	}{
		{50 * time.Millisecond, 96}, // about 5 in flight
		{20 * time.Millisecond, 120},
		{200 * time.Millisecond, 30},
	} {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%v/seed%d", c.latency, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					m := &model{}
					m.set(0, c.latency)
					s := mustNew(t, shed.Config{})
					h := s.Handler(m)
					rng := rand.New(rand.NewPCG(seed, 7))
					var wg sync.WaitGroup
					lowest := time.Duration(1 << 62)
					for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
						time.Sleep(time.Duration(rng.ExpFloat64() / c.rate * float64(time.Second)))
						wg.Go(func() { serve(h, request()) })
						if b := s.Stats().Baseline; b > 0 && time.Since(end.Add(-20*time.Second)) > 5*time.Second {
							lowest = min(lowest, b)
						}
					}
					wg.Wait()
					t.Logf("%v at %v/s, seed %d: lowest baseline after 5 s %v", c.latency, c.rate, seed, lowest)
					if lowest < c.latency*95/100 || lowest > c.latency*13/10 {
						t.Errorf("%v handler at %v/s (seed %d): baseline fell to %v, want within -5%%..+30%% of the handler's latency",
							c.latency, c.rate, seed, lowest)
					}
				})
			})
		}
	}
}
