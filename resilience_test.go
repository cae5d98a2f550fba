package heed_test

import (
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
	c, clk := client(t, heed.WithHook(rec))
	requests(t, c, srv.URL, 2) // 4 failures
	if n := srv.Count(); n != 4 {
		t.Fatalf("%d requests", n)
	}
	// The fifth failure opens the breaker; the retry that follows would
	// wait for its 30 s, within the cap, and probe.
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
	requests(t, c2, srv.URL, 5)
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
	_ = clk
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
		trips bool
	}{
		{"404 never", heedtest.Status(404), false},
		{"400 never", heedtest.Status(400), false},
		{"429 with Retry-After: 1 does not", heedtest.RetryAfter(429, 1), false},
		{"429 without Retry-After does", heedtest.Status(429), true},
		{"429 asking past the cap does", heedtest.RetryAfter(429, 3600), true},
		{"503 does", heedtest.Status(503), true},
		{"408 does", heedtest.Status(408), true},
		{"reset does", heedtest.Step{Reset: true}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := heedtest.NewServer(t, []heedtest.Step{tc.step})
			rec := &recorder{}
			c, _ := client(t, heed.WithMaxAttempts(1), heed.WithHook(rec),
				heed.WithBase(&http.Transport{DisableKeepAlives: true}))
			requests(t, c, srv.URL, 10)
			opened := strings.Contains(rec.kinds(), "breaker")
			if opened != tc.trips {
				t.Fatalf("breaker opened: %v, want %v", opened, tc.trips)
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

// An open breaker met while retrying stretches the wait to its end, under
// the cap and the deadline: then the probe goes out.
func TestRetryWaitsForTheBreaker(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.Status(503), heedtest.OK("up")})
	c, clk := client(t, heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: 20 * time.Second}))
	resp, body, err := get(t, c, srv.URL)
	if err != nil || string(body) != "up" {
		t.Fatal(resp, err)
	}
	as := heed.Attempts(resp)
	if as[1].Source != heed.SourceBreaker || as[1].Wait != 20*time.Second {
		t.Fatalf("second wait %v from %v", as[1].Wait, as[1].Source)
	}
	if clk.Now().Sub(t0) < 20*time.Second {
		t.Fatalf("probe went out %v after the start", clk.Now().Sub(t0))
	}

	// The same with a deadline before the breaker's end: give up at once.
	srv2 := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
	c2, clk2 := client(t, heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: 20 * time.Second}), heed.WithMaxTotal(10*time.Second))
	_, err = c2.Get(srv2.URL)
	var he *heed.Error
	if !errors.As(err, &he) || !errors.Is(err, heed.ErrBreakerOpen) || srv2.Count() != 2 || he.RetryAt.IsZero() {
		t.Fatalf("err = %v after %d requests", err, srv2.Count())
	}
	if clk2.Now().Sub(t0) > 10*time.Second {
		t.Fatal("waited past the deadline")
	}
}

func TestBreakerPerKey(t *testing.T) {
	bad := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
	good := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("")})
	c, _ := client(t, heed.WithMaxAttempts(1))
	requests(t, c, bad.URL, 5)
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
	requests(t, c2, srv.URL+"/down", 5)
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
	c, _ := client(t, heed.WithoutBreaker(), heed.WithTokenBucketBudget(4, 0.1))
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
	for range 5 {
		heed.DoKey(context.Background(), p, "payments", fail)
	}
	_, err := heed.DoKey(context.Background(), p, "payments", fail)
	if !errors.Is(err, heed.ErrBreakerOpen) || calls.Load() != 5 {
		t.Fatalf("err = %v after %d calls", err, calls.Load())
	}
	// Another key is unaffected.
	if _, err := heed.DoKey(context.Background(), p, "search", func(context.Context) (int, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
}

func TestBreakerSettingsChecked(t *testing.T) {
	if _, err := heed.New(heed.WithBreaker(breaker.Settings{FailureRatio: 2})); err == nil || !strings.Contains(err.Error(), "WithBreaker") {
		t.Fatalf("err = %v", err)
	}
	if _, err := heed.New(heed.WithTokenBucketBudget(0, 1)); err == nil {
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
