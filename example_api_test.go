package heed_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
)

// NewClient is the shortest way in: an http.Client with heed's defaults.
// Set the client's own fields (a Timeout, a Jar) as for any client.
func ExampleNewClient() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.RetryAfter(503, 0), heedtest.OK("ready")})
	defer srv.Close()

	client, err := heed.NewClient(heed.WithLogger(nil))
	if err != nil {
		panic(err)
	}
	client.Timeout = 10 * time.Second // bounds the whole call, retries included
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", srv.Count(), "requests")
	// Output: 200 ready after 2 requests
}

// One Policy, several clients: they share its breakers, budgets and
// pacing per key, while each keeps its own client settings.
func ExamplePolicy_Transport() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.Status(503)})
	defer srv.Close()

	p, err := heed.NewPolicy(heed.WithLogger(nil), heed.WithMaxAttempts(1))
	if err != nil {
		panic(err)
	}
	api := &http.Client{Transport: p.Transport(), Timeout: 5 * time.Second}
	uploads := &http.Client{Transport: p.Transport(), Timeout: time.Minute}
	for range 10 {
		if resp, err := api.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
		if resp, err := uploads.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
	}
	for _, s := range p.Stats() {
		fmt.Println("one key, shared:", s.Breaker)
	}
	// Output: one key, shared: open
}

// A classifier sees every outcome before the decision table: here a 409
// Conflict, which this API uses for "try again", is retried, and a 503
// whose body says the account is suspended is not.
func ExampleWithClassifier() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.Status(409), heedtest.OK("done")})
	defer srv.Close()

	classify := func(o heed.Outcome) heed.Verdict {
		switch {
		case o.Response == nil:
			return heed.VerdictDefault
		case o.Response.StatusCode == http.StatusConflict:
			return heed.VerdictRetry
		case o.Response.Header.Get("X-Account") == "suspended":
			return heed.VerdictStop
		}
		return heed.VerdictDefault
	}
	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	client, _ := heed.NewClient(heed.WithClassifier(classify), heed.WithClock(clk), heed.WithLogger(nil))
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", srv.Count(), "requests")
	// Output: 200 after 2 requests
}

// A 401 is retried once, at once, with the credentials f puts on the copy
// of the request heed sends next.
func ExampleWithCredentialRefresh() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.Status(401), heedtest.OK("secret data")})
	defer srv.Close()

	token := "expired"
	refresh := func(ctx context.Context, next *http.Request) error {
		token = "fresh" // a real refresh asks the identity provider
		next.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
	client, _ := heed.NewClient(heed.WithCredentialRefresh(refresh), heed.WithLogger(nil))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	for _, r := range srv.Requests() {
		fmt.Println(r.Header.Get("Authorization"))
	}
	fmt.Println(resp.StatusCode)
	// Output:
	// Bearer expired
	// Bearer fresh
	// 200
}

// Limits keep a client under an API's documented limit before the server
// has to push back: here 80% of 100 requests a minute, and at most 4 in
// flight. A request that would have to wait past its deadline fails at
// once with ErrThrottled.
func ExampleWithLimits() {
	srv := heedtest.NewServer(nil, nil)
	defer srv.Close()

	clk := heedtest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)).AutoAdvance()
	client, _ := heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil),
		heed.WithLimits(heed.Limits{Rate: 80.0 / 60, Burst: 2, Concurrency: 4}))
	start := clk.Now()
	for range 4 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
	}
	fmt.Println("4 requests took", clk.Now().Sub(start).Round(time.Millisecond))
	// Output: 4 requests took 1.5s
}

// CheckStatus turns an error response into a *StatusError carrying its
// status and headers, so Do retries it by the decision table and waits as
// its Retry-After asks. (A plain error would not be retried: Do retries
// only what it can classify.)
func ExampleCheckStatus() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.RetryAfter(429, 2), heedtest.OK(`{"id":7}`)})
	defer srv.Close()

	clk := heedtest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)).AutoAdvance()
	p, _ := heed.NewPolicy(heed.WithClock(clk), heed.WithLogger(nil))
	start := clk.Now()
	body, err := heed.Do(context.Background(), p, func(ctx context.Context) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		if err := heed.CheckStatus(resp); err != nil {
			return "", err // drained and closed; the status and Retry-After are kept
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	})
	fmt.Println(body, err, "waited at least 2s:", clk.Now().Sub(start) >= 2*time.Second)
	// Output: {"id":7} <nil> waited at least 2s: true
}

// Attempts tells what happened behind a response: each attempt's status,
// error and wait.
func ExampleAttempts() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.Status(502), heedtest.RetryAfter(503, 1), heedtest.OK("")})
	defer srv.Close()

	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	client, _ := heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil))
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	for _, a := range heed.Attempts(resp) {
		fmt.Printf("attempt %d: %d, then a wait from %s\n", a.Number, a.Status, a.Source)
	}
	// Output:
	// attempt 1: 502, then a wait from backoff
	// attempt 2: 503, then a wait from retry_after
	// attempt 3: 200, then a wait from none
}

// Override changes the settings of the calls made with one context: this
// call makes at most 2 attempts of at most 50 ms each, and its POST, which
// the server deduplicates by other means, may be retried.
func ExampleOverride() {
	srv := heedtest.NewServer(nil, []heedtest.Step{heedtest.Status(503)})
	defer srv.Close()

	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	client, _ := heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil), heed.WithErrorOnExhausted())
	ctx := heed.Override(context.Background(), heed.Overrides{
		MaxAttempts:    2,
		AttemptTimeout: 50 * time.Millisecond,
		Idempotent:     true,
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(`{"sku":"A1"}`))
	_, err := client.Do(req)
	fmt.Println(errors.Is(err, heed.ErrAttemptsExhausted), "after", srv.Count(), "requests")
	// Output: true after 2 requests
}

// Some APIs answer 200 with an error in the body. A classifier reads the
// body through Outcome.Body to decide, and the caller still reads it whole.
func ExampleOutcome_Body() {
	srv := heedtest.NewServer(nil, []heedtest.Step{
		heedtest.OK(`{"status":"busy"}`),
		heedtest.OK(`{"status":"ok","items":[1,2,3]}`),
	})
	defer srv.Close()

	classify := func(o heed.Outcome) heed.Verdict {
		body, _, err := o.Body()
		if err == nil && strings.Contains(string(body), `"status":"busy"`) {
			return heed.VerdictRetry
		}
		return heed.VerdictDefault
	}
	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	client, _ := heed.NewClient(heed.WithClassifier(classify), heed.WithClock(clk), heed.WithLogger(nil))
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body), "after", srv.Count(), "requests")
	// Output: {"status":"ok","items":[1,2,3]} after 2 requests
}
