package heed_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/heedtest"
)

// A server that is busy twice, then answers. heed retries and the caller
// sees only the answer, with the attempts behind it on record.
func ExampleNew() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer srv.Close()

	t, err := heed.New(heed.WithLogger(nil))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: t}
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	for _, a := range heed.Attempts(resp) {
		fmt.Println("attempt", a.Number, "status", a.Status, "wait from", a.Source)
	}
	// Output:
	// 200 hello
	// attempt 1 status 503 wait from retry_after
	// attempt 2 status 503 wait from retry_after
	// attempt 3 status 200 wait from none
}

// A server asking for more than the cap is not waited for: the error says
// when to come back.
func ExampleError() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.RetryAfter(429, 3600)})
	defer srv.Close()

	t, _ := heed.New(heed.WithLogger(nil))
	_, err := (&http.Client{Transport: t}).Get(srv.URL)

	var he *heed.Error
	if errors.As(err, &he) && errors.Is(err, heed.ErrWaitTooLong) {
		d := time.Until(he.RetryAt)
		fmt.Println("gave up after", len(he.Attempts), "attempt; retry in about", d.Round(time.Hour))
	}
	// Output: gave up after 1 attempt; retry in about 1h0m0s
}

// Do runs any call under the policy. CheckStatus turns a response into an
// error Do can classify, honouring its Retry-After.
func ExampleDo() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, `{"name":"heed"}`)
	}))
	defer srv.Close()

	clk := heedtest.NewClock(time.Now()).AutoAdvance() // skip the waits
	p, _ := heed.NewPolicy(heed.WithClock(clk), heed.WithLogger(nil))
	name, err := heed.Do(context.Background(), p, func(ctx context.Context) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		if err := heed.CheckStatus(resp); err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	})
	fmt.Println(name, err, calls.Load())
	// Output: {"name":"heed"} <nil> 2
}

// POST is retried only with an Idempotency-Key; heed can add one, the same
// on every attempt.
func ExampleWithAutoIdempotencyKey() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.Status(503), heedtest.Status(201)})
	defer srv.Close()
	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	c, _ := heed.NewClient(heed.WithAutoIdempotencyKey(), heed.WithClock(clk), heed.WithLogger(nil))
	resp, err := c.Post(srv.URL, "application/json", nil)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	reqs := srv.Requests()
	fmt.Println(resp.StatusCode, len(reqs), reqs[0].Header.Get("Idempotency-Key") == reqs[1].Header.Get("Idempotency-Key"))
	// Output: 201 2 true
}

// Hooks see every decision: the seam for metrics and tracing.
func ExampleWithHook() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.RetryAfter(503, 1), heedtest.OK("")})
	defer srv.Close()
	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	hook := heed.HookFunc(func(ctx context.Context, e heed.Event) {
		fmt.Println(e.Kind, e.Attempt, e.Status, e.Source)
	})
	c, _ := heed.NewClient(heed.WithHook(hook), heed.WithClock(clk), heed.WithLogger(nil),
		heed.WithRand(rand.NewPCG(1, 2))) // a seeded source: the same waits every run
	resp, _ := c.Get(srv.URL)
	resp.Body.Close()
	// The retry waits the server's second and its jitter, then its turn
	// at the pace heed now keeps for the host: one request a second.
	// Output:
	// attempt 1 503 none
	// retry 1 503 retry_after
	// throttle 2 0 throttle
	// attempt 2 200 none
	// done 2 200 none
}

// The URL of an event is safe to record: its userinfo and query values are
// REDACTED, and so are the path segments WithSecretPath marks.
func ExampleEvent_uRL() {
	srv := heedtest.NewServer(nil, nil)
	defer srv.Close()
	hook := heed.HookFunc(func(ctx context.Context, e heed.Event) {
		if e.Kind == heed.EventDone {
			fmt.Println(strings.Replace(e.URL.String(), srv.URL, "http://api", 1))
		}
	})
	c, _ := heed.NewClient(heed.WithHook(hook), heed.WithLogger(nil), heed.WithSecretPath("/v1/keys/*"))
	resp, err := c.Get(srv.URL + "/v1/keys/sk_live_42/search?q=secret&api_key=k")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	// Output: http://api/v1/keys/REDACTED/search?q=REDACTED&api_key=REDACTED
}

// A call's Overrides give it a key of its own: Do keeps a breaker and a
// budget per dependency for calls that are not HTTP requests.
func ExampleOverride_key() {
	p, _ := heed.NewPolicy(heed.WithMaxAttempts(1), heed.WithLogger(nil))
	inventory := heed.Override(context.Background(), heed.Overrides{Key: "inventory"})
	pricing := heed.Override(context.Background(), heed.Overrides{Key: "pricing"})
	fail := func(context.Context) (string, error) { return "", heed.Retryable(errors.New("unavailable")) }
	for range 20 { // the default breaker opens when 90% of at least 20 calls failed
		heed.Do(inventory, p, fail)
	}
	_, err := heed.Do(inventory, p, fail)
	fmt.Println(errors.Is(err, heed.ErrBreakerOpen))
	_, err = heed.Do(pricing, p, func(context.Context) (string, error) { return "ok", nil })
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}

// Stats reads the state heed keeps per key, for a status page or a
// metrics exporter.
func ExamplePolicy_Stats() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.Status(503)})
	defer srv.Close()

	t, _ := heed.New(heed.WithLogger(nil), heed.WithMaxAttempts(1),
		heed.WithKeyFunc(func(*http.Request) string { return "payments" }),
		heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Minute}),
		heed.WithLimits(heed.Limits{Concurrency: 8}))
	client := &http.Client{Transport: t}
	for range 2 {
		if resp, err := client.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
	}
	for _, s := range t.Policy().Stats() {
		fmt.Println(s.Key, "breaker", s.Breaker, "in flight", s.InFlight, "queued", s.Queued)
	}
	// Output: payments breaker open in flight 0 queued 0
}
