package heed_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/internal/chain"
	"github.com/heed-go/heed/tier"
)

// partialRun is one partial-failure run: K tiers in memory, in virtual time,
// each calling the next through heed (plus opts) and tier.Middleware, the
// bottom failing a random share of its requests with 503.
type partialRun struct {
	ok, sent     int
	top, bottom  int64
	slowest      time.Duration
	breakerOpens int
}

func (r partialRun) success() float64 { return float64(r.ok) / float64(r.sent) }
func (r partialRun) load() float64    { return float64(r.bottom) / float64(r.top) }

// runPartial sends requests from workers goroutines into the top of a
// chain of tiers, each with the given deadline (0: none), inside a
// synctest bubble.
func runPartial(t *testing.T, seed uint64, tiers int, fail float64, requests, workers int, deadline time.Duration, opts ...heed.Option) partialRun {
	t.Helper()
	var r partialRun
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		rng := rand.New(rand.NewPCG(seed, 1))
		bottom := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			mu.Lock()
			failed := rng.Float64() < fail
			mu.Unlock()
			if failed {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		})
		var opens atomic.Int64
		hook := heed.HookFunc(func(_ context.Context, e heed.Event) {
			if e.Kind == heed.EventBreaker && e.To.String() == "open" {
				opens.Add(1)
			}
		})
		top, hits := chain.StartMemory(chain.MemoryConfig{Tiers: tiers, Bottom: bottom, Latency: time.Millisecond, Wrap: tier.Middleware,
			Client: func(tier int, base http.RoundTripper) *http.Client {
				o := append([]heed.Option{heed.WithBase(base), heed.WithLogger(nil), heed.WithHook(hook),
					heed.WithRand(rand.NewPCG(seed, uint64(tier)+2))}, opts...)
				c, err := heed.NewClient(o...)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}})
		client := &http.Client{Transport: chain.Memory{Handler: top, Latency: time.Millisecond}}
		var next, ok atomic.Int64
		var slowest time.Duration
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for next.Add(1) <= int64(requests) {
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					if deadline > 0 {
						ctx, cancel = context.WithTimeout(ctx, deadline)
					}
					start := time.Now()
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://tier0.test/", nil)
					resp, err := client.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							ok.Add(1)
						}
					}
					cancel()
					took := time.Since(start)
					mu.Lock()
					slowest = max(slowest, took)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		h := hits()
		r = partialRun{ok: int(ok.Load()), sent: requests, top: h[0], bottom: h[len(h)-1], slowest: slowest, breakerOpens: int(opens.Load())}
	})
	return r
}

// A dependency that fails half its requests is degraded, not dead: heed's
// defaults keep calling it, within the retry budget, and deliver what the
// budget allows; the breaker never opens, so they deliver as many as with
// the breaker off. Before, the breaker opened after 5 failures in a row,
// which a 50% failure rate produces every few dozen attempts, and refused
// everything for 30 s: 8-28% of the top's requests succeeded.
func TestPartialFailureIsNotDeath(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		for _, tiers := range []int{2, 4} {
			r20 := runPartial(t, seed, tiers, 0.2, 2000, 20, 0)
			if r20.success() < 0.995 || r20.load() > 1.3 || r20.breakerOpens != 0 {
				t.Errorf("seed %d, %d tiers, 20%% failing: success %.1f%%, load %.3f, %d breaker openings", seed, tiers, 100*r20.success(), r20.load(), r20.breakerOpens)
			}
			r50 := runPartial(t, seed, tiers, 0.5, 2000, 20, 0)
			if r50.success() < 0.6 || r50.load() > 1.4 || r50.breakerOpens != 0 {
				t.Errorf("seed %d, %d tiers, 50%% failing: success %.1f%%, load %.3f, %d breaker openings",
					seed, tiers, 100*r50.success(), r50.load(), r50.breakerOpens)
			}
			t.Logf("seed %d, %d tiers: 20%%: %.1f%% at load %.3f; 50%%: %.1f%% at load %.3f",
				seed, tiers, 100*r20.success(), r20.load(), 100*r50.success(), r50.load())
		}
	}
}

// A dependency that fails everything is cut off, and fast: every top-level
// call, none with a deadline, returns within a second, and the bottom sees
// a few calls, not a multiple of the top's. Before, a call in flight when
// the breaker opened waited the open period out (30 s, 60 s after a failed
// probe).
func TestDeadDependencyFailsFast(t *testing.T) {
	for _, tiers := range []int{2, 4} {
		r := runPartial(t, 1, tiers, 1, 2000, 20, 0)
		if r.ok != 0 || r.load() > 0.05 || r.slowest > time.Second {
			t.Errorf("%d tiers: %d succeeded, load %.3f, slowest call %v", tiers, r.ok, r.load(), r.slowest)
		}
		t.Logf("%d tiers: load %.4f, slowest call %v", tiers, r.load(), r.slowest)
	}
}
