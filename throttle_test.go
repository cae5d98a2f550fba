package heed_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/throttle"
)

// A static rate limit spaces requests before they leave.
func TestRateLimitSpacesRequests(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("")})
	c, clk := client(t, heed.WithLimits(heed.Limits{Rate: 2})) // 2/s
	rec := &recorder{}
	c2, _ := client(t, heed.WithLimits(heed.Limits{Rate: 2}), heed.WithHook(rec))
	for range 5 {
		resp, _, err := get(t, c, srv.URL)
		if err != nil || resp.StatusCode != 200 {
			t.Fatal(err)
		}
	}
	if waited := clk.Now().Sub(t0); waited != 2*time.Second {
		t.Fatalf("5 requests at 2/s took %v of the clock, want 2s", waited)
	}
	for range 2 {
		if _, _, err := get(t, c2, srv.URL); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(rec.kinds(), "throttle") {
		t.Fatalf("no throttle event: %q", rec.kinds())
	}
}

// A request that would wait past its deadline fails at once.
func TestRateLimitRefusesPastDeadline(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("")})
	clk := heedtest.NewClock(time.Now())
	c, err := heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil), heed.WithLimits(heed.Limits{Rate: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	resp, err := c.Get(srv.URL) // takes the only slot of this second
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(500*time.Millisecond))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	start := clk.Now()
	_, err = c.Do(req)
	var he *heed.Error
	if !errors.As(err, &he) || !errors.Is(err, heed.ErrThrottled) || he.RetryAt.Sub(start) != time.Second {
		t.Fatalf("err = %v (RetryAt %v after the start)", err, he.RetryAt.Sub(start))
	}
	if clk.Now() != start || srv.Count() != 1 {
		t.Fatalf("waited %v, %d requests", clk.Now().Sub(start), srv.Count())
	}
}

// A concurrency limit with a bounded queue: past it, requests fail at once.
func TestConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	var inFlight, peak atomic.Int32
	srv := heedtest.NewServer(t, []heedtest.Step{{Handler: func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		inFlight.Add(-1)
	}}})
	c, err := heed.NewClient(heed.WithLogger(nil), heed.WithLimits(heed.Limits{Concurrency: 2, Queue: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			resp, err := c.Get(srv.URL)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		})
	}
	// Two run, one queues, one is refused at once.
	var refused error
	select {
	case refused = <-errs:
	case <-time.After(5 * time.Second):
		t.Fatal("no request was refused")
	}
	if !errors.Is(refused, heed.ErrThrottled) || !errors.Is(refused, throttle.ErrQueueFull) {
		t.Fatalf("refusal: %v", refused)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if peak.Load() > 2 || srv.Count() != 3 {
		t.Fatalf("peak %d in flight, %d served", peak.Load(), srv.Count())
	}
}

func TestKeyLimits(t *testing.T) {
	slow := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("")})
	fast := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("")})
	slowKey := strings.TrimPrefix(slow.URL, "http://")
	c, clk := client(t, heed.WithKeyLimits(func(key string) heed.Limits {
		if key == slowKey {
			return heed.Limits{Rate: 1}
		}
		return heed.Limits{}
	}))
	for range 3 {
		get(t, c, fast.URL)
	}
	if clk.Now() != t0 {
		t.Fatal("an unlimited key was paced")
	}
	for range 3 {
		get(t, c, slow.URL)
	}
	if clk.Now().Sub(t0) != 2*time.Second {
		t.Fatalf("3 requests at 1/s took %v", clk.Now().Sub(t0))
	}

	// Limits that cannot work fail that key's requests with an error saying
	// so.
	bad, _ := client(t, heed.WithKeyLimits(func(string) heed.Limits { return heed.Limits{Queue: 3} }))
	if _, err := bad.Get(fast.URL); err == nil || !strings.Contains(err.Error(), "needs a concurrency limit") {
		t.Fatalf("err = %v", err)
	}
}

func TestLimitsChecked(t *testing.T) {
	for _, l := range []heed.Limits{{Rate: -1}, {Burst: -1}, {Concurrency: -2}, {Queue: 2}, {Rate: 1e-12}} {
		if _, err := heed.New(heed.WithLimits(l)); err == nil || !strings.Contains(err.Error(), "WithLimits") {
			t.Errorf("WithLimits(%+v): err = %v", l, err)
		}
	}
}

// Adaptive pacing wakes on push-back and spaces what follows; switched
// off, it does not.
func TestPacingLearnsFromPushBack(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(429, 1), heedtest.OK("")})
	rec := &recorder{}
	c, _ := client(t, heed.WithHook(rec))
	for range 3 {
		if _, _, err := get(t, c, srv.URL); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(rec.kinds(), "throttle") {
		t.Fatalf("no request was paced after a 429: %q", rec.kinds())
	}

	srv2 := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(429, 1), heedtest.OK("")})
	rec2 := &recorder{}
	c2, _ := client(t, heed.WithHook(rec2), heed.WithLimits(heed.Limits{NoPacing: true}))
	for range 3 {
		get(t, c2, srv2.URL)
	}
	if strings.Contains(rec2.kinds(), "throttle") {
		t.Fatalf("paced with pacing off: %q", rec2.kinds())
	}
}

// A success that shows the quota running low starts pacing before any 429.
func TestPacingFromQuotaFields(t *testing.T) {
	h := http.Header{"X-Ratelimit-Limit": {"10"}, "X-Ratelimit-Remaining": {"1"}, "X-Ratelimit-Reset": {"1"}}
	srv := heedtest.NewServer(t, []heedtest.Step{{Status: 200, Header: h}})
	rec := &recorder{}
	c, _ := client(t, heed.WithHook(rec))
	for range 4 {
		get(t, c, srv.URL)
	}
	if !strings.Contains(rec.kinds(), "throttle") {
		t.Fatalf("a low quota did not start pacing: %q", rec.kinds())
	}
}

// Limits per key may turn pacing off for one server.
func TestKeyLimitsPacingOff(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(429, 1), heedtest.OK("")})
	rec := &recorder{}
	c, _ := client(t, heed.WithHook(rec), heed.WithKeyLimits(func(string) heed.Limits { return heed.Limits{NoPacing: true} }))
	for range 3 {
		get(t, c, srv.URL)
	}
	if strings.Contains(rec.kinds(), "throttle") {
		t.Fatalf("paced with pacing off for the key: %q", rec.kinds())
	}
}

// countingLimiter is a rate limit kept elsewhere: it lets every event go
// at once and counts them.
type countingLimiter struct{ n atomic.Int32 }

func (c *countingLimiter) ReserveBefore(now, deadline time.Time) (time.Time, bool) {
	c.n.Add(1)
	return now, true
}
func (c *countingLimiter) Allow(now time.Time) bool { c.n.Add(1); return true }

// A Limiter in a key's Limits replaces the in-memory rate limit: every
// attempt reserves a slot from it. Given to every key at once, through
// WithLimits, it is refused: it would be shared by all.
func TestSharedLimiterInLimits(t *testing.T) {
	lim := &countingLimiter{}
	c, _ := client(t, heed.WithBase(heedtest.NewTransport([]heedtest.Step{heedtest.Status(503), heedtest.OK("ok")})),
		heed.WithKeyLimits(func(string) heed.Limits { return heed.Limits{Limiter: lim} }))
	resp, _, err := get(t, c, "http://api.test/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if lim.n.Load() != 2 {
		t.Errorf("limiter asked %d times, want once per attempt (2)", lim.n.Load())
	}
	if _, err := heed.New(heed.WithLimits(heed.Limits{Limiter: lim})); err == nil || !strings.Contains(err.Error(), "WithKeyLimits") {
		t.Errorf("a Limiter for every key: %v, want a refusal pointing at WithKeyLimits", err)
	}
}
