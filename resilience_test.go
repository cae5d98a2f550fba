package heed_test

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/heedtest"
)

// requests makes n GETs to url and returns the errors.
func requests(t *testing.T, c *http.Client, url string, n int) []error {
	t.Helper()
	var errs []error
	for range n {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		errs = append(errs, err)
	}
	return errs
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(500)}) // 500: 2 attempts per request
	rec := &recorder{}
	c, _ := client(t, heed.WithHook(rec))
	requests(t, c, srv.URL, 9) // 18 failures: below the 20 calls the default needs
	if n := srv.Count(); n != 18 {
		t.Fatalf("%d requests", n)
	}
	if got := rec.kinds(); strings.Contains(got, "breaker") {
		t.Fatalf("opened after 18 calls: %q", got)
	}
	// The twentieth failure (90% of at least 20 calls) opens the breaker.
	requests(t, c, srv.URL, 1)
	if got := rec.kinds(); !strings.Contains(got, "breaker") {
		t.Fatalf("no breaker event in %q", got)
	}
	var opened *heed.Event
	for i := range rec.events {
		if e := rec.events[i]; e.Kind == heed.EventBreaker && e.To == breaker.Open {
			opened = &e
			break
		}
	}
	if opened == nil || opened.Key != strings.TrimPrefix(srv.URL, "http://") || opened.RetryAt.IsZero() {
		t.Fatalf("open event %+v", opened)
	}

	// Trip it again and call while it is open: no network, a typed error.
	c2, clk2 := client(t, heed.WithMaxAttempts(1))
	requests(t, c2, srv.URL, 20)
	before := srv.Count()
	_, err := c2.Get(srv.URL)
	var he *heed.Error
	var oe *breaker.OpenError
	if !errors.As(err, &he) || !errors.Is(err, heed.ErrBreakerOpen) || !errors.As(err, &oe) {
		t.Fatalf("err = %v", err)
	}
	if srv.Count() != before || len(he.Attempts) != 0 || !he.RetryAt.Equal(clk2.Now().Add(30*time.Second)) {
		t.Fatalf("refused call: %d new requests, %d attempts, RetryAt %v", srv.Count()-before, len(he.Attempts), he.RetryAt)
	}
}

func TestRefusalAllocatesOnlyTheError(t *testing.T) {
	base := &canned{body: []byte("x")}
	tr, err := heed.New(heed.WithBase(base), heed.WithLogger(nil), heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 1}),
		heed.WithBreakerCounter(func(heed.Outcome, breaker.Outcome) breaker.Outcome { return breaker.Failure }))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://api.example/", nil)
	resp, err := tr.RoundTrip(req) // trips it
	if err == nil {
		resp.Body.Close()
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := tr.RoundTrip(req); !errors.Is(err, heed.ErrBreakerOpen) {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Fatalf("a refused call allocates %v objects, want 1 (the error)", allocs)
	}
}

func TestBreakerCountsWhatMatters(t *testing.T) {
	cases := []struct {
		name  string
		step  heedtest.Step
		opts  []heed.Option
		trips bool
		sent  int // requests that reach the server, 0: all 25
	}{
		{"404 never", heedtest.Status(404), nil, false, 0},
		{"400 never", heedtest.Status(400), nil, false, 0},
		{"429 with Retry-After: 1 does not", heedtest.RetryAfter(429, 1), nil, false, 0},
		{"429 without Retry-After does not (the pacer slows down)", heedtest.Status(429), nil, false, 0},
		// The pacer holds every later request until the time named: none
		// is sent, and there is nothing for the breaker to do.
		{"429 asking past the cap is held by the pacer", heedtest.RetryAfter(429, 3600), nil, false, 1},
		{"429 asking past the cap does without pacing", heedtest.RetryAfter(429, 3600), []heed.Option{heed.WithLimits(heed.Limits{NoPacing: true})}, true, 20},
		{"429 without Retry-After does without pacing", heedtest.Status(429), []heed.Option{heed.WithLimits(heed.Limits{NoPacing: true})}, true, 20},
		{"503 does", heedtest.Status(503), nil, true, 20},
		{"408 does", heedtest.Status(408), nil, true, 20},
		{"reset does", heedtest.Step{Reset: true}, nil, true, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := heedtest.NewServer(t, []heedtest.Step{tc.step})
			rec := &recorder{}
			opts := append([]heed.Option{heed.WithMaxAttempts(1), heed.WithHook(rec),
				heed.WithBase(&http.Transport{DisableKeepAlives: true})}, tc.opts...)
			c, _ := client(t, opts...)
			requests(t, c, srv.URL, 25)
			opened := strings.Contains(rec.kinds(), "breaker")
			if opened != tc.trips {
				t.Fatalf("breaker opened: %v, want %v", opened, tc.trips)
			}
			if want := cmp.Or(tc.sent, 25); srv.Count() != want {
				t.Fatalf("%d requests reached the server, want %d", srv.Count(), want)
			}
		})
	}
}

func TestCancellationNeverCounts(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{{Hang: true}})
	rec := &recorder{}
	c, err := heed.NewClient(heed.WithLogger(nil), heed.WithHook(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	for i := range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		go func() {
			for srv.Count() <= i {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		if _, err := c.Do(req); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		cancel()
	}
	if strings.Contains(rec.kinds(), "breaker") {
		t.Fatal("cancellations tripped the breaker")
	}
}

// A call whose next attempt would meet an open breaker fails fast: it does
// not sleep through the open period, however long, but returns at once with
// ErrBreakerOpen and RetryAt. Before the fix the call that tripped the
// breaker waited its 30 s out.
func TestRetryMeetingOpenBreakerFailsFast(t *testing.T) {
	for _, open := range []time.Duration{20 * time.Second, 30 * time.Second, 5 * time.Minute} {
		srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.Status(503), heedtest.OK("up")})
		c, clk := client(t, heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: open, MaxOpenTimeout: open}))
		start := clk.Now()
		_, err := c.Get(srv.URL)
		var he *heed.Error
		if !errors.As(err, &he) || !errors.Is(err, heed.ErrBreakerOpen) || srv.Count() != 2 {
			t.Fatalf("open %v: err = %v after %d requests", open, err, srv.Count())
		}
		// The first retry's backoff (at most 500 ms) was waited; not the
		// open period.
		if waited := clk.Now().Sub(start); waited > time.Second {
			t.Fatalf("open %v: the call waited %v", open, waited)
		}
		if !he.RetryAt.Equal(he.Attempts[1].Start.Add(he.Attempts[1].Duration).Add(open)) || len(he.Attempts) != 2 {
			t.Fatalf("open %v: RetryAt %v, attempts %+v", open, he.RetryAt, he.Attempts)
		}
	}
}

func TestBreakerPerKey(t *testing.T) {
	bad := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
	good := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("")})
	c, _ := client(t, heed.WithMaxAttempts(1))
	requests(t, c, bad.URL, 20)
	if _, err := c.Get(bad.URL); !errors.Is(err, heed.ErrBreakerOpen) {
		t.Fatalf("bad host: %v", err)
	}
	if errs := requests(t, c, good.URL, 3); errs[0] != nil || good.Count() != 3 {
		t.Fatal("another host was refused:", errs)
	}

	// A key function may group differently: here per path.
	srv := heedtest.NewServer(t, []heedtest.Step{{Handler: func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/down") {
			w.WriteHeader(503)
		}
	}}})
	c2, _ := client(t, heed.WithMaxAttempts(1), heed.WithKeyFunc(func(r *http.Request) string { return r.URL.Path }))
	requests(t, c2, srv.URL+"/down", 20)
	if _, err := c2.Get(srv.URL + "/down"); !errors.Is(err, heed.ErrBreakerOpen) {
		t.Fatalf("/down: %v", err)
	}
	if errs := requests(t, c2, srv.URL+"/up", 1); errs[0] != nil {
		t.Fatal("/up refused:", errs[0])
	}
}

func TestBudgetRefusesRetries(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
	c, _ := client(t, heed.WithoutBreaker(), heed.WithRetryBudget(budget.RatioConfig{Percent: 0.5, Window: 10 * time.Second}))
	var refused int
	for range 20 {
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
			continue
		}
		var he *heed.Error
		if !errors.As(err, &he) || !errors.Is(err, heed.ErrBudgetExhausted) {
			t.Fatalf("err = %v", err)
		}
		refused++
	}
	// 20 requests at 50%: 10 retries in all, so the requests together made
	// at most 30 attempts, against 120 without the budget.
	if n := srv.Count(); n > 30 || refused == 0 {
		t.Fatalf("%d attempts, %d calls refused a retry", n, refused)
	}
	t.Logf("%d attempts for 20 requests; %d ended by the budget", srv.Count(), refused)
}

func TestFirstAttemptNeverRefusedByBudget(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("")})
	c, _ := client(t, heed.WithRetryBudget(budget.RatioConfig{Percent: 0, MinPerSecond: 0, Window: time.Second}))
	if errs := requests(t, c, srv.URL, 5); errs[4] != nil || srv.Count() != 5 {
		t.Fatal(errs)
	}
}

func TestTokenBucketBudget(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
	c, _ := client(t, heed.WithoutBreaker(), heed.WithRetryBudget(budget.TokenBucketConfig{Max: 4, Ratio: 0.1}))
	_, err := c.Get(srv.URL)
	// 4 tokens: failures take 1, 2 (still above half: retry), then at 2
	// retries stop.
	if !errors.Is(err, heed.ErrBudgetExhausted) || srv.Count() != 2 {
		t.Fatalf("err = %v after %d requests", err, srv.Count())
	}
}

func TestDoKeyUsesBreakerAndBudget(t *testing.T) {
	p, _ := autoPolicy(t, heed.WithMaxAttempts(1))
	var calls atomic.Int32
	fail := func(context.Context) (int, error) {
		calls.Add(1)
		return 0, &heed.StatusError{StatusCode: 503}
	}
	for range 20 {
		heed.Do(heed.Override(context.Background(), heed.Overrides{Key: "payments"}), p, fail)
	}
	_, err := heed.Do(heed.Override(context.Background(), heed.Overrides{Key: "payments"}), p, fail)
	if !errors.Is(err, heed.ErrBreakerOpen) || calls.Load() != 20 {
		t.Fatalf("err = %v after %d calls", err, calls.Load())
	}
	// Another key is unaffected.
	if _, err := heed.Do(heed.Override(context.Background(), heed.Overrides{Key: "search"}), p, func(context.Context) (int, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
}

func TestBreakerSettingsChecked(t *testing.T) {
	if _, err := heed.New(heed.WithBreaker(breaker.Settings{FailureRatio: 2})); err == nil || !strings.Contains(err.Error(), "WithBreaker") {
		t.Fatalf("err = %v", err)
	}
	if _, err := heed.New(heed.WithRetryBudget(budget.TokenBucketConfig{Max: 0, Ratio: 1})); err == nil {
		t.Fatal("bad token bucket accepted")
	}
	if _, err := heed.New(heed.WithRetryBudget(budget.RatioConfig{Percent: 3, Window: time.Second})); err == nil {
		t.Fatal("bad ratio accepted")
	}
}

// A 429 retried after the server's own Retry-After is not charged to the
// budget: the server is healthy and paces the retries itself. A 503 is.
func TestServerPacedRetriesAreFree(t *testing.T) {
	spent := heed.WithRetryBudget(budget.RatioConfig{Percent: 0, MinPerSecond: 0, Window: 10 * time.Second})
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(429, 1), heedtest.RetryAfter(429, 2), heedtest.OK("")})
	c, _ := client(t, spent)
	resp, _, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 200 || srv.Count() != 3 {
		t.Fatalf("status %v err %v after %d requests", resp, err, srv.Count())
	}
	srv2 := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(503, 1), heedtest.OK("")})
	c2, _ := client(t, spent)
	if _, err := c2.Get(srv2.URL); !errors.Is(err, heed.ErrBudgetExhausted) {
		t.Fatalf("503 retry: err = %v", err)
	}
}
