package heedredis_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/internal/storm"
	"github.com/heed-go/heed/throttle"
)

// instance is one member of a fleet's heed client; its Store, built by the
// caller, holds the state it shares.
func instance(t *testing.T, opts ...heed.Option) *http.Client {
	t.Helper()
	c, err := heed.NewClient(append([]heed.Option{heed.WithLogger(nil)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// Eight instances, each with its own Redis connection, share one key
// limited to 200 req/s for 5 s: the server never sees more than the limit
// allows, counted from the start (see TestFleetStorm for the bound).
//
// How close to the limit the fleet comes (1,005 to 1,009 of 1,010 in the
// 5 s on an idle machine) is logged, not checked: a pause of this machine
// longer than MaxStale costs the fleet the slots that came due in it (they
// are dropped, as documented, and Redis's bucket holds only the burst), so
// the count measures the machine as much as the fleet. bench's fleet lab
// measures it.
func TestFleetAdmission(t *testing.T) {
	if testing.Short() {
		t.Skip("5 s of traffic")
	}
	srv := redistest.Start(t)
	var arrivals arrivalLog
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrivals.Arrive(storm.Arrival{At: time.Now()})
	}))
	defer api.Close()

	const instances, workers, rate, burst = 8, 6, 200, 10
	start := time.Now()
	end := start.Add(5 * time.Second)
	var wg sync.WaitGroup
	for range instances {
		limits, err := patient(t, srv, heedredis.Config{}).KeyLimits(rate, burst)
		if err != nil {
			t.Fatal(err)
		}
		c := instance(t, heed.WithKeyLimits(func(key string) heed.Limits { l := limits(key); l.NoPacing = true; return l }))
		for range workers {
			wg.Go(func() {
				for time.Now().Before(end) {
					resp, err := c.Get(api.URL)
					if err != nil {
						t.Error(err)
						return
					}
					drain(resp)
				}
			})
		}
	}
	wg.Wait()
	admitted := arrivals.before(end)
	want := rate*5 + burst
	t.Logf("admitted %d in 5 s (the limit allows %d), %d in all", admitted, want, arrivals.len())
	if n, at, over := arrivals.worst(start, rate, burst+1); over > 0 {
		t.Errorf("request %d arrived %v in: the fleet sent %.1f more than the limit allows (%d + %d/s)",
			n, at.Round(time.Millisecond), over, burst, rate)
	}
}

// The storm server at 200 req/s against a fleet of 8 instances x 8 callers:
// with the limit the API documents configured on the fleet, or with the
// adaptive pace alone, shared by the fleet, nothing fails and the fleet
// never sends more than the API's limit allows.
//
// That is checked on the API's arrivals, in order: the n-th may not come
// before the limit allows n requests since the storm began, n <= burst +
// rate x elapsed (a GCRA limit, such as the fleet's in Redis, never grants
// more; each slot is used at its time or later, and callers refused and
// retried take slots too), plus one request for the wall clock the API
// reads against Redis's (both this machine's, apart from NTP's slewing).
// A fleet that lost track of its shared limit, or whose instances paced
// alone, would soon break the bound. Load cannot: a pause only leaves
// slots unused. With the pace alone the fleet cannot know the limit before
// the API first refuses it, so each caller may also have one request in
// flight then, beyond the bound.
//
// The attempts per success are logged, not checked. With the limit
// configured they come to 1.001 or 1.002 on an idle machine and to 1.02 or
// more under load, and the difference is the machine's: a pause of the
// whole process longer than the API's burst takes to refill (50 ms) fills
// its bucket while the fleet's slots come due; the fleet then sends those
// together, up to MaxStale late as documented, and the API refuses what
// its bucket cannot hold. How often that happens no test can bound. With
// the pace alone nearly all the 429s fall in the first moment, before the
// fleet has heard of the limit: the requests in flight allowed above.
func TestFleetStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("two storms of 5 s")
	}
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name       string
		configured bool
	}{
		{"configured limit", true},
		{"adaptive pacing alone", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const rate, burst = 200, 10
			var arrivals arrivalLog
			api, err := storm.NewServer(storm.ServerConfig{Rate: rate, Burst: burst, Recorder: &arrivals})
			if err != nil {
				t.Fatal(err)
			}
			defer api.Close()
			const instances, workers, each = 8, 8, 16
			var ok, failed atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range instances {
				s := patient(t, srv, heedredis.Config{})
				limits := s.KeyPacing()
				if tc.configured {
					if limits, err = s.KeyLimits(rate, burst); err != nil {
						t.Fatal(err)
					}
				}
				c := instance(t, heed.WithKeyLimits(limits))
				for range workers {
					wg.Go(func() {
						for range each {
							resp, err := c.Get(api.URL)
							if err == nil && resp.StatusCode == 200 {
								ok.Add(1)
							} else {
								failed.Add(1)
							}
							if err == nil {
								drain(resp)
							}
						}
					})
				}
			}
			wg.Wait()
			attempts := api.Served() + api.Throttled()
			t.Logf("%d ok, %d failed, %d attempts (%d 429s): %.3f attempts per success in %v",
				ok.Load(), failed.Load(), attempts, api.Throttled(), float64(attempts)/float64(ok.Load()),
				time.Since(start).Round(time.Millisecond))
			if failed.Load() != 0 {
				t.Errorf("%d requests failed", failed.Load())
			}
			inFlight := 0
			if !tc.configured {
				inFlight = instances * workers
			}
			n, at, over := arrivals.worst(start, rate, burst+1+inFlight)
			t.Logf("closest to the bound (%d + %d/s, %d beyond): request %d, %v in, %.1f from it",
				burst, rate, 1+inFlight, n, at.Round(time.Millisecond), -over)
			if over > 0 {
				t.Errorf("request %d arrived %v in: the fleet sent %.1f more than the limit allows (%d + %d/s, %d beyond)",
					n, at.Round(time.Millisecond), over, burst, rate, 1+inFlight)
			}
		})
	}
}

// maxSlew is the most the kernel slews the wall clock for NTP, 500 ppm.
const maxSlew = 500e-6

// arrivalLog records the times of a storm API's arrivals.
type arrivalLog struct {
	mu sync.Mutex
	at []time.Time
}

func (l *arrivalLog) Arrive(a storm.Arrival) {
	l.mu.Lock()
	l.at = append(l.at, a.At)
	l.mu.Unlock()
}

func (l *arrivalLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.at)
}

// before counts the arrivals before end.
func (l *arrivalLog) before(end time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.at {
		if a.Before(end) {
			n++
		}
	}
	return n
}

// worst finds, of the arrivals in order, the one that came furthest ahead
// of a limit allowing allowed + rate x (its time - start) requests by its
// time: its number (from 1), when it came, and by how many requests it
// exceeded that allowance (over > 0 breaks it).
func (l *arrivalLog) worst(start time.Time, rate float64, allowed int) (n int, at time.Duration, over float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.SortFunc(l.at, func(a, b time.Time) int { return a.Compare(b) })
	over = math.Inf(-1)
	// The limit runs on Redis's clock, the wall clock, which NTP may slew
	// by up to 500 ppm against the monotonic clock the arrivals are timed
	// on (tens of ppm measured on test machines): over 5 s at 200/s, half
	// a request. The allowance grows by that much, never more.
	rate *= 1 + maxSlew
	for i, a := range l.at {
		if o := float64(i+1) - float64(allowed) - rate*a.Sub(start).Seconds(); o > over {
			n, at, over = i+1, a.Sub(start), o
		}
	}
	return n, at, over
}

// timed records the longest decision of a limiter.
type timed struct {
	throttle.RateLimiter
	longest atomic.Int64
}

func (l *timed) ReserveBefore(now, deadline time.Time) (time.Time, bool) {
	start := time.Now()
	at, ok := l.RateLimiter.ReserveBefore(now, deadline)
	if d := int64(time.Since(start)); d > l.longest.Load() {
		l.longest.Store(d)
	}
	return at, ok
}

// Redis paused (SIGSTOP) and resumed, then killed and restarted, while
// traffic flows: no request waits on Redis longer than the timeout, no
// request fails, and the fleet is back on the shared limit after each.
//
// The timeout is checked on the Redis calls themselves (deadlines): each
// carries a deadline within it. The longest decision is logged, not
// checked: on a loaded machine it is the timeout plus however long the
// machine takes to run the caller again (50 to 230 ms seen under -race
// beside other tests), which says nothing of the code.
func TestFleetSurvivesRedisKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("4 s of traffic")
	}
	srv := redistest.Start(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer api.Close()
	const instances, workers = 4, 4
	var fs faults
	cfg := fs.config(heedredis.Config{Timeout: 50 * time.Millisecond, Retry: 200 * time.Millisecond, FallbackShare: 1.0 / instances})
	var lims []*timed
	var failed, ok atomic.Int64
	end := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	var calls []*deadlines
	for range instances {
		rdb := srv.Client(t)
		calls = append(calls, watch(rdb, cfg.Timeout))
		s := store(t, rdb, cfg)
		l, err := s.Limiter("api", 400, 10)
		if err != nil {
			t.Fatal(err)
		}
		tl := &timed{RateLimiter: l}
		lims = append(lims, tl)
		c := instance(t, heed.WithKeyLimits(func(string) heed.Limits { return heed.Limits{Limiter: tl, NoPacing: true} }))
		for range workers {
			wg.Go(func() {
				for time.Now().Before(end) {
					resp, err := c.Get(api.URL)
					if err != nil || resp.StatusCode != 200 {
						failed.Add(1)
						continue
					}
					ok.Add(1)
					drain(resp)
				}
			})
		}
	}
	time.Sleep(800 * time.Millisecond)
	srv.Pause()
	time.Sleep(600 * time.Millisecond)
	srv.Resume()
	time.Sleep(800 * time.Millisecond)
	srv.Stop()
	time.Sleep(600 * time.Millisecond)
	srv.Restart()
	wg.Wait()
	down, back := fs.counts()
	t.Logf("%d requests, %d failed; %d faults, %d recoveries", ok.Load(), failed.Load(), down, back)
	if failed.Load() != 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
	var longest time.Duration
	for _, l := range lims {
		longest = max(longest, time.Duration(l.longest.Load()))
	}
	t.Logf("longest limit decision %v (timeout %v)", longest.Round(time.Millisecond), cfg.Timeout)
	for _, d := range calls {
		d.check(t)
	}
	if down < 2*instances || back < 2*instances {
		t.Errorf("%d faults and %d recoveries for %d instances and two outages", down, back, instances)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if n, err := patientClient(t, srv).Exists(ctx, "heed:{api}:rate").Result(); err != nil || n != 1 {
		t.Errorf("the shared limit is not back in Redis: %v %v", n, err)
	}
}
