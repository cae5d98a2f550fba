package heedredis_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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

// instance is one member of a fleet: its own Redis connection, Store and
// heed client.
func instance(t *testing.T, srv *redistest.Server, cfg heedredis.Config, opts ...heed.Option) (*http.Client, *heedredis.Store) {
	t.Helper()
	s := store(t, srv.Client(t), cfg)
	c, err := heed.NewClient(append([]heed.Option{heed.WithLogger(nil)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, s
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// Eight instances, each with its own Redis connection, share one key
// limited to 200 req/s for 5 s: the server admits 200 a second and the
// burst, within 5%.
func TestFleetAdmission(t *testing.T) {
	if testing.Short() {
		t.Skip("5 s of traffic")
	}
	srv := redistest.Start(t)
	var (
		mu       sync.Mutex
		arrivals []time.Time
	)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
	}))
	defer api.Close()

	const instances, workers, rate, burst = 8, 6, 200, 10
	start := time.Now()
	end := start.Add(5 * time.Second)
	var wg sync.WaitGroup
	for range instances {
		s := store(t, srv.Client(t), heedredis.Config{})
		limits, err := s.KeyLimits(rate, burst)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := instance(t, srv, heedredis.Config{}, heed.WithKeyLimits(limits), heed.WithoutPacing())
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
	mu.Lock()
	defer mu.Unlock()
	admitted := 0
	for _, a := range arrivals {
		if a.Before(end) {
			admitted++
		}
	}
	want := rate*5 + burst
	t.Logf("admitted %d in 5 s (want %d), %d in all", admitted, want, len(arrivals))
	if d := float64(admitted-want) / float64(want); d > 0.05 || d < -0.05 {
		t.Errorf("admitted %d in 5 s, want %d within 5%%", admitted, want)
	}
}

// The storm server at 200 req/s against a fleet of 8: with the limit the
// API documents configured on the fleet, nothing fails and almost nothing
// is refused; with the adaptive pace alone, shared by the fleet, nothing
// fails and few requests are refused.
func TestFleetStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("two storms of 5 s")
	}
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name       string
		configured bool
		maxRatio   float64
	}{
		{"configured limit", true, 1.02},
		{"adaptive pacing alone", false, 1.10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, err := storm.NewServer(storm.ServerConfig{Rate: 200, Burst: 10})
			if err != nil {
				t.Fatal(err)
			}
			defer api.Close()
			const instances, workers, each = 8, 8, 16
			var ok, failed atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range instances {
				s := store(t, srv.Client(t), heedredis.Config{})
				limits := s.KeyPacing()
				if tc.configured {
					if limits, err = s.KeyLimits(200, 10); err != nil {
						t.Fatal(err)
					}
				}
				opts := []heed.Option{heed.WithKeyLimits(limits)}
				c, _ := instance(t, srv, heedredis.Config{}, opts...)
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
			ratio := float64(attempts) / float64(ok.Load())
			t.Logf("%d ok, %d failed, %d attempts (%d 429s): %.3f attempts per success in %v",
				ok.Load(), failed.Load(), attempts, api.Throttled(), ratio, time.Since(start).Round(time.Millisecond))
			if failed.Load() != 0 {
				t.Errorf("%d requests failed", failed.Load())
			}
			if tc.maxRatio > 0 && ratio > tc.maxRatio {
				t.Errorf("%.3f attempts per success, want at most %v", ratio, tc.maxRatio)
			}
		})
	}
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
// traffic flows: no decision waits longer than the Redis timeout, no
// request fails, and the fleet is back on the shared limit after each.
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
	for range instances {
		s := store(t, srv.Client(t), cfg)
		l, err := s.Limiter("api", 400, 10)
		if err != nil {
			t.Fatal(err)
		}
		tl := &timed{RateLimiter: l}
		lims = append(lims, tl)
		c, _ := instance(t, srv, cfg, heed.WithLimits(heed.Limits{Limiter: tl}), heed.WithoutPacing())
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
	for i, l := range lims {
		if d := time.Duration(l.longest.Load()); d > cfg.Timeout+50*time.Millisecond { // the timeout, and the decision's own work under -race
			t.Errorf("instance %d: a decision took %v, want at most the 50ms timeout", i, d)
		}
	}
	if down < 2*instances || back < 2*instances {
		t.Errorf("%d faults and %d recoveries for %d instances and two outages", down, back, instances)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if n, err := srv.Client(t).Exists(ctx, "heed:{api}:rate").Result(); err != nil || n != 1 {
		t.Errorf("the shared limit is not back in Redis: %v %v", n, err)
	}
}
