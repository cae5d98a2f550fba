package storm

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
)

// arrivals records the API's arrivals: the most retries and the most
// requests it saw in any 100 ms slice.
type arrivals struct {
	mu      sync.Mutex
	retries map[int64]int
	all     map[int64]int
}

func newArrivals() *arrivals { return &arrivals{retries: map[int64]int{}, all: map[int64]int{}} }

func (a *arrivals) Arrive(x Arrival) {
	a.mu.Lock()
	defer a.mu.Unlock()
	slice := x.At.UnixNano() / int64(100*time.Millisecond)
	a.all[slice]++
	if x.Attempt >= 2 {
		a.retries[slice]++
	}
}

func (a *arrivals) maxRetries() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := 0
	for _, n := range a.retries {
		m = max(m, n)
	}
	return m
}

// Independent clients never give up on a server that is only rate-limiting
// them, with or without hints: the storm in virtual time loses nothing,
// and no client's breaker opens. Before, hint-less 429s counted for the
// breaker once the pacer was at its slowest, a client's breaker opened on a
// server that was only rate-limiting, and its later requests failed with
// "circuit breaker open after 0 attempts"; and a call refused six times in
// a row gave up ("attempts exhausted").
func TestStormIndependentClientsLoseNothing(t *testing.T) {
	runs := 3
	if testing.Short() {
		runs = 1
	}
	for _, v := range []struct {
		name string
		cfg  ServerConfig
	}{
		{"seconds", DefaultServer},
		{"bare", ServerConfig{Rate: 100, Burst: 10, RetryAfter: RetryAfterNone, NoRateLimitHeaders: true}},
		{"epoch reset", ServerConfig{Rate: 100, Burst: 10, RetryAfter: RetryAfterNone, Reset: ResetEpoch}},
	} {
		t.Run(v.name, func(t *testing.T) {
			for range runs {
				synctest.Test(t, func(t *testing.T) {
					var opens atomic.Int64
					hook := heed.HookFunc(func(_ context.Context, e heed.Event) {
						if e.Kind == heed.EventBreaker {
							opens.Add(1)
						}
					})
					sc := Scenario{Server: v.cfg, Clients: 50, PerClient: 10}
					r, err := RunInMemory(context.Background(), sc, Heed("heed", false, heed.WithHook(hook)))
					if err != nil {
						t.Fatal(err)
					}
					if r.Failed != 0 || opens.Load() != 0 {
						t.Errorf("%d of 500 lost, %d breaker changes", r.Failed, opens.Load())
					}
					t.Logf("%.3f attempts/success, %.2fx optimal", r.AttemptsPerSuccess(), r.OverOptimal())
				})
			}
		})
	}
}

// Clients refused together start their paces out of step, and their
// retries spread: no 100 ms slice holds anything like the whole wave (the
// server admits 10 in a slice; 50 clients spread at random over a second or
// two put up to about 15 in the busiest one). Before, every client's pace
// took its first slot one interval after the refusal, so fifty clients
// refused at once retried at once, 50 in one slice, second after second.
func TestStormClientsRefusedTogetherDoNotRetryTogether(t *testing.T) {
	for _, v := range []struct {
		name string
		cfg  ServerConfig
	}{
		{"bare", ServerConfig{Rate: 100, Burst: 10, RetryAfter: RetryAfterNone, NoRateLimitHeaders: true}},
		{"epoch reset", ServerConfig{Rate: 100, Burst: 10, RetryAfter: RetryAfterNone, Reset: ResetEpoch}},
	} {
		t.Run(v.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				arr := newArrivals()
				cfg := v.cfg
				cfg.Recorder = arr
				sc := Scenario{Server: cfg, Clients: 50, PerClient: 10}
				if _, err := RunInMemory(context.Background(), sc, Heed("heed", false)); err != nil {
					t.Fatal(err)
				}
				m := arr.maxRetries()
				if m > 20 {
					t.Errorf("%d retries in one 100 ms slice; the server admits 10", m)
				}
				t.Logf("at most %d retries in a 100 ms slice", m)
			})
		})
	}
}

// A shared client whose pace fell to one request a second while callers
// queue does not hold them to it: once the server answers, the pace climbs
// and the queue drains, and no call is refused locally while the server
// sits idle. Before, each queued call reserved a slot at the slow pace,
// the ones past 60 s were refused at once ("throttled after 0 attempts"),
// and a faster pace did not move the slots already reserved.
func TestQueuedCallsFollowARisingPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// One 429 with Retry-After: 1, then a server with room for all.
		base := heedtest.NewTransport([]heedtest.Step{heedtest.RetryAfter(429, 1), heedtest.OK("")})
		c, err := heed.NewClient(heed.WithBase(base), heed.WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Get("http://api.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		start := time.Now()
		var wg sync.WaitGroup
		var failed atomic.Int64
		var refused atomic.Int64
		for range 200 {
			wg.Go(func() {
				resp, err := c.Get("http://api.test/")
				if err != nil {
					failed.Add(1)
					if strings.Contains(err.Error(), "after 0 attempts") {
						refused.Add(1)
					}
					return
				}
				resp.Body.Close()
			})
		}
		wg.Wait()
		took := time.Since(start)
		if failed.Load() != 0 || took > 15*time.Second {
			t.Errorf("%d of 200 calls failed (%d refused locally); the queue took %v to drain at a server with room", failed.Load(), refused.Load(), took)
		}
		t.Logf("200 queued calls done in %v", took)
	})
}

// The auto-advance clock runs the storm with every sleeper jumping the
// time at once, so the clients race for each refill: a caricature of a
// herd, in which a client may be refused many times in a row. heed still
// loses nothing: a 429 it retries as the server says does not use up an
// attempt. Before, a call refused six times in a row gave up ("attempts
// exhausted"), in about one run of three.
func TestStormAutoAdvanceLosesNothing(t *testing.T) {
	runs := 50
	if testing.Short() {
		runs = 10
	}
	for range runs {
		clk := heedtest.NewClock(time.Now()).AutoAdvance()
		sc := Scenario{Server: ServerConfig{Rate: 20, Burst: 5, Clock: clk}, Clients: 10, PerClient: 5}
		r, err := Run(context.Background(), sc, Heed("independent", false, heed.WithClock(clk)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Failed != 0 {
			t.Fatalf("%+v", r)
		}
	}
}
