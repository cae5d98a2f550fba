package heed_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/throttle"
)

// Settings that contradict each other, or cannot work, are refused at
// construction with an error naming both sides.
func TestConflictingOptionsAreRefused(t *testing.T) {
	fleet := func(string) breaker.Fleet { return nil }
	counter := func(o heed.Outcome, v breaker.Outcome) breaker.Outcome { return v }
	limits := func(string) heed.Limits { return heed.Limits{} }
	cases := []struct {
		name string
		opts []heed.Option
		want []string // every one must appear in the error
	}{
		{"breaker off and on", []heed.Option{heed.WithoutBreaker(), heed.WithBreaker(breaker.Settings{})}, []string{"WithoutBreaker", "WithBreaker"}},
		{"breaker on and off", []heed.Option{heed.WithBreaker(breaker.Settings{}), heed.WithoutBreaker()}, []string{"WithoutBreaker", "WithBreaker"}},
		{"breaker off with a fleet", []heed.Option{heed.WithoutBreaker(), heed.WithBreakerFleet(fleet)}, []string{"WithoutBreaker", "WithBreakerFleet"}},
		{"breaker off with a counter", []heed.Option{heed.WithBreakerCounter(counter), heed.WithoutBreaker()}, []string{"WithoutBreaker", "WithBreakerCounter"}},
		{"a fleet in the settings", []heed.Option{heed.WithBreaker(breaker.Settings{Fleet: stubFleet{}})}, []string{"Settings.Fleet", "WithBreakerFleet"}},
		{"budget off then on", []heed.Option{heed.WithoutRetryBudget(), heed.WithRetryBudget(budget.RatioConfig{})}, []string{"WithoutRetryBudget", "WithRetryBudget"}},
		{"budget on then off", []heed.Option{heed.WithRetryBudget(budget.TokenBucketConfig{}), heed.WithoutRetryBudget()}, []string{"WithoutRetryBudget", "WithRetryBudget"}},
		{"budget off with a retry cap", []heed.Option{heed.WithoutRetryBudget(), heed.WithMaxConcurrentRetries(3)}, []string{"WithoutRetryBudget", "WithMaxConcurrentRetries(3)"}},
		{"limits and key limits", []heed.Option{heed.WithLimits(heed.Limits{Rate: 5}), heed.WithKeyLimits(limits)}, []string{"WithLimits", "WithKeyLimits"}},
		{"a limiter for every key", []heed.Option{heed.WithLimits(heed.Limits{Limiter: stubLimiter{}})}, []string{"WithLimits", "Limiter", "WithKeyLimits"}},
		{"a shared pace for every key", []heed.Option{heed.WithLimits(heed.Limits{Pacing: throttle.PacerConfig{Shared: stubPace{}}})}, []string{"WithLimits", "Pacing.Shared"}},
		{"pacing off yet tuned", []heed.Option{heed.WithLimits(heed.Limits{NoPacing: true, Pacing: throttle.PacerConfig{MinRate: 2}})}, []string{"NoPacing", "Pacing"}},
		{"pacing that cannot work", []heed.Option{heed.WithLimits(heed.Limits{Pacing: throttle.PacerConfig{Safety: -1, Decrease: 5, Increase: .5, Probe: -time.Second}})},
			[]string{"WithLimits", "Safety", "Decrease", "Increase", "Probe"}},
		{"a bad ratio budget", []heed.Option{heed.WithRetryBudget(budget.RatioConfig{Percent: 3})}, []string{"WithRetryBudget", "Percent"}},
		{"a bad token bucket", []heed.Option{heed.WithRetryBudget(budget.TokenBucketConfig{Max: 0, Ratio: 1})}, []string{"WithRetryBudget", "Max"}},
		{"a nil budget maker", []heed.Option{heed.WithRetryBudget(nil)}, []string{"WithRetryBudget(nil)"}},
		{"a negative retry cap", []heed.Option{heed.WithMaxConcurrentRetries(-1)}, []string{"WithMaxConcurrentRetries(-1)"}},
		{"a nil base", []heed.Option{heed.WithBase(nil)}, []string{"WithBase(nil)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := heed.NewPolicy(c.opts...)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	// What is not a contradiction is accepted: a later option of the same
	// name replaces an earlier one.
	if _, err := heed.NewPolicy(heed.WithRetryBudget(budget.RatioConfig{}), heed.WithRetryBudget(budget.TokenBucketConfig{}),
		heed.WithMaxConcurrentRetries(4), heed.WithBreaker(breaker.Settings{}), heed.WithBreakerFleet(fleet)); err != nil {
		t.Errorf("compatible options refused: %v", err)
	}
}

type stubFleet struct{ breaker.Fleet }
type stubLimiter struct{ throttle.RateLimiter }
type stubPace struct{ throttle.SharedPace }

// A budget the Maker cannot make fails that key's requests with an error
// naming it; other keys are served.
func TestBudgetMakerErrorFailsItsKey(t *testing.T) {
	maker := budget.MakerFunc(func(key string) (budget.Budget, error) {
		if key == "bad.test" {
			return nil, errors.New("no budget for bad.test")
		}
		return budget.RatioConfig{}.NewBudget(key)
	})
	c, _ := client(t, heed.WithBase(heedtest.NewTransport(nil)), heed.WithRetryBudget(maker))
	if _, _, err := get(t, c, "http://bad.test/"); err == nil || !strings.Contains(err.Error(), "no budget for bad.test") {
		t.Errorf("bad key: %v", err)
	}
	if resp, _, err := get(t, c, "http://good.test/"); err != nil || resp.StatusCode != 200 {
		t.Errorf("good key: %v %v", resp, err)
	}
}

// The zero Transport works, under the default policy; a zero Policy
// refuses with an error saying so, and so do its transports and Do.
func TestZeroValues(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.OK("ok")})
	var zt heed.Transport
	c := &http.Client{Transport: &zt}
	resp, body, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 200 || string(body) != "ok" || srv.Count() != 2 {
		t.Fatalf("zero Transport: %v %q %v after %d requests; want 200 ok after a retry", resp, body, err, srv.Count())
	}
	if zt.Policy() == nil || zt.Policy().MaxAttempts() != heed.DefaultMaxAttempts {
		t.Errorf("zero Transport's policy: %+v", zt.Policy())
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	var zp heed.Policy
	if _, err := heed.Do(context.Background(), &zp, func(context.Context) (int, error) { return 1, nil }); err == nil || !strings.Contains(err.Error(), "NewPolicy") {
		t.Errorf("Do under a zero Policy: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("x"))
	body2 := &closeCounter{Reader: strings.NewReader("x")}
	req.Body = body2
	if _, err := zp.Transport().RoundTrip(req); err == nil || !strings.Contains(err.Error(), "NewPolicy") {
		t.Errorf("a zero Policy's transport: %v", err)
	}
	if !body2.closed {
		t.Error("the request body was not closed")
	}
	if s := zp.Stats(); s != nil {
		t.Errorf("a zero Policy's stats: %v", s)
	}
}

type closeCounter struct {
	*strings.Reader
	closed bool
}

func (c *closeCounter) Close() error { c.closed = true; return nil }

// A call's Overrides change its settings and share its key's state.
func TestOverrides(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
	c, _ := client(t, heed.WithMaxAttempts(5))
	ctx := heed.Override(context.Background(), heed.Overrides{MaxAttempts: 2})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if srv.Count() != 2 || len(heed.Attempts(resp)) != 2 {
		t.Errorf("MaxAttempts 2: %d requests, %d attempts", srv.Count(), len(heed.Attempts(resp)))
	}

	// RetryStatus replaces the table: a 409 is retried, a 503 is not.
	srv2 := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(409), heedtest.Status(503)})
	ctx = heed.Override(context.Background(), heed.Overrides{RetryStatus: map[int]int{409: 0}})
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv2.URL, nil)
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || srv2.Count() != 2 {
		t.Errorf("RetryStatus {409}: ended with %d after %d requests, want 503 after 2", resp.StatusCode, srv2.Count())
	}

	// Idempotent lets a POST without a key be retried.
	srv3 := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.Status(201)})
	ctx = heed.Override(context.Background(), heed.Overrides{Idempotent: true})
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv3.URL, strings.NewReader("order"))
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || srv3.Count() != 2 {
		t.Errorf("Idempotent POST: %d after %d requests, want 201 after 2", resp.StatusCode, srv3.Count())
	}

	// Bad values fail the call, naming them.
	ctx = heed.Override(context.Background(), heed.Overrides{MaxAttempts: -1, RetryStatus: map[int]int{42: 0}, AttemptTimeout: 2 * time.Second, MaxTotal: time.Second})
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if _, err := c.Do(req); err == nil || !strings.Contains(err.Error(), "Overrides.MaxAttempts") ||
		!strings.Contains(err.Error(), "RetryStatus[42]") || !strings.Contains(err.Error(), "AttemptTimeout") {
		t.Errorf("bad overrides: %v", err)
	}
}

// An overridden key shares its state with every other call of the key:
// calls filed under one key trip one breaker, whatever their host.
func TestOverridesKeySharesState(t *testing.T) {
	p, err := heed.NewPolicy(heed.WithLogger(nil), heed.WithMaxAttempts(1), heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 2}),
		heed.WithBase(heedtest.NewTransport([]heedtest.Step{heedtest.Status(503)})))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport()}
	ctx := heed.Override(context.Background(), heed.Overrides{Key: "payments"})
	for _, host := range []string{"a.test", "b.test"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	_, err = heed.Do(ctx, p, func(context.Context) (int, error) { return 1, nil })
	if !errors.Is(err, heed.ErrBreakerOpen) {
		t.Errorf("Do under the key two requests tripped: %v, want ErrBreakerOpen", err)
	}
	if s := p.Stats(); len(s) != 1 || s[0].Key != "payments" || s[0].Breaker != breaker.Open {
		t.Errorf("stats: %+v, want the one key payments, open", s)
	}
}

// No more retries of a key are in flight at once than the cap; a retry
// past it ends its call with ErrBudgetExhausted, and the places are given
// back when the retries end.
func TestMaxConcurrentRetries(t *testing.T) {
	const callers, limit = 8, 2
	var mu sync.Mutex
	inFlight, most := 0, 0
	release := make(chan struct{})
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("Heed-Attempt") == "" {
			return &http.Response{StatusCode: 503, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		}
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
	p, err := heed.NewPolicy(heed.WithLogger(nil), heed.WithBase(base), heed.WithMaxConcurrentRetries(limit),
		heed.WithBackoff(backoff.Constant(0)), heed.WithoutBreaker())
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport()}
	errs := make(chan error, callers)
	for range callers {
		go func() {
			resp, err := c.Get("http://api.test/")
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	// The callers past the cap end at once; the others hold their places
	// until released.
	var refused int
	for range callers - limit {
		if err := <-errs; errors.Is(err, heed.ErrBudgetExhausted) {
			refused++
		} else {
			t.Errorf("a call past the cap ended with %v, want ErrBudgetExhausted", err)
		}
	}
	close(release)
	for range limit {
		if err := <-errs; err != nil {
			t.Errorf("a retry within the cap: %v", err)
		}
	}
	if most > limit || refused != callers-limit {
		t.Errorf("%d retries in flight at most, %d refused; want at most %d and %d refused", most, refused, limit, callers-limit)
	}
	// The places came back: a later call retries.
	if resp, err := c.Get("http://api.test/"); err != nil {
		t.Errorf("after the burst: %v", err)
	} else {
		resp.Body.Close()
	}
}

// Do bounds each attempt by WithAttemptTimeout: fn's context ends, and
// the attempt counts as a timeout, retried.
func TestDoAttemptTimeout(t *testing.T) {
	p, err := heed.NewPolicy(heed.WithLogger(nil), heed.WithAttemptTimeout(20*time.Millisecond), heed.WithMaxAttempts(2),
		heed.WithBackoff(backoff.Constant(0)))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	v, err := heed.Do(context.Background(), p, func(ctx context.Context) (string, error) {
		calls++
		if calls == 1 {
			<-ctx.Done() // a slow first attempt, cut by the timeout
			return "", ctx.Err()
		}
		return "ok", nil
	})
	if err != nil || v != "ok" || calls != 2 {
		t.Fatalf("Do = %q, %v after %d calls; want ok after 2", v, err, calls)
	}
	// Both attempts time out: the error says so.
	_, err = heed.Do(context.Background(), p, func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	var he *heed.Error
	if !errors.As(err, &he) || !errors.Is(err, heed.ErrAttemptsExhausted) || he.Attempts[0].Kind != heed.KindTimeout {
		t.Errorf("timed-out attempts: %v", err)
	}
}

// Do's log lines name the status a StatusError carries, not an error kind
// of "other", and leave out the empty key.
func TestDoLogsStatus(t *testing.T) {
	var buf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, nil))
	clk := heedtest.NewClock(t0).AutoAdvance()
	p, err := heed.NewPolicy(heed.WithLogger(lg), heed.WithClock(clk), heed.WithMaxAttempts(2))
	if err != nil {
		t.Fatal(err)
	}
	heed.Do(context.Background(), p, func(context.Context) (int, error) {
		return 0, &heed.StatusError{StatusCode: 429}
	})
	out := buf.String()
	for _, want := range []string{"status=429", "reason=4xx"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	for _, bad := range []string{"error_kind=", `key=""`, "reason=ok"} {
		if strings.Contains(out, bad) {
			t.Errorf("log has %s:\n%s", bad, out)
		}
	}
}

// A classifier reads the body through Outcome.Body; the caller still gets
// the whole body, past the part read too.
func TestClassifierReadsBody(t *testing.T) {
	long := strings.Repeat("x", 100) + "tail"
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.OK(`{"error":"try_again"}`), heedtest.OK(long)})
	var seen []string
	var completes []bool
	classify := func(o heed.Outcome) heed.Verdict {
		b, complete, err := o.Body()
		if err != nil {
			t.Errorf("Body: %v", err)
		}
		again, _, _ := o.Body()
		if string(again) != string(b) {
			t.Errorf("a second Body read %q, the first %q", again, b)
		}
		seen, completes = append(seen, string(b)), append(completes, complete)
		if strings.Contains(string(b), "try_again") {
			return heed.VerdictRetry
		}
		return heed.VerdictDefault
	}
	c, _ := client(t, heed.WithClassifier(classify), heed.WithResponseBuffer(64))
	resp, body, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 200 || string(body) != long {
		t.Fatalf("got %v %q %v, want the whole long body", resp, body, err)
	}
	if len(seen) != 2 || seen[0] != `{"error":"try_again"}` || !completes[0] || seen[1] != long[:64] || completes[1] {
		t.Errorf("the classifier saw %q (complete %v)", seen, completes)
	}
}

// Do bounds the whole call by WithMaxTotal, fn's context included.
func TestDoMaxTotalEndsFn(t *testing.T) {
	p, err := heed.NewPolicy(heed.WithLogger(nil), heed.WithMaxTotal(30*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = heed.Do(context.Background(), p, func(ctx context.Context) (int, error) {
		<-ctx.Done() // would block for ever without the bound
		return 0, ctx.Err()
	})
	if !errors.Is(err, heed.ErrDeadline) {
		t.Errorf("Do past its total: %v, want ErrDeadline", err)
	}
}

// Overrides.NoHedging keeps a slow request from being hedged.
func TestOverridesNoHedging(t *testing.T) {
	var mu sync.Mutex
	sent := 0
	var hedged chan struct{} // closed when a second copy arrives
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		sent++
		n, h := sent, hedged
		mu.Unlock()
		if n > 1 {
			close(h)
			return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		}
		// The first copy is slow: it answers once a hedge has come, or
		// after a while without one.
		select {
		case <-h:
		case <-time.After(200 * time.Millisecond):
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
	c, err := heed.NewClient(heed.WithLogger(nil), heed.WithBase(base), heed.WithHedging(heed.HedgeConfig{Delay: 5 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	for _, noHedging := range []bool{false, true} {
		mu.Lock()
		sent, hedged = 0, make(chan struct{})
		mu.Unlock()
		ctx := heed.Override(context.Background(), heed.Overrides{NoHedging: noHedging})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		got := sent
		mu.Unlock()
		if want := map[bool]int{false: 2, true: 1}[noHedging]; got != want {
			t.Errorf("NoHedging %v: %d copies sent, want %d", noHedging, got, want)
		}
	}
}

// A first answer the decision table does not retry (a 404) is logged at
// Debug, not as a give-up at Warn; a status heed gave up retrying is.
func TestFinalFirstAnswerIsNotAGiveUp(t *testing.T) {
	var buf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(404), heedtest.Status(503)})
	c, _ := client(t, heed.WithLogger(lg), heed.WithMaxAttempts(2))
	resp, _, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("%v %v", resp, err)
	}
	if buf.Len() != 0 {
		t.Errorf("a plain 404 logged at Info or above:\n%s", buf.String())
	}
	resp, _, err = get(t, c, srv.URL) // 503, then 503: two attempts, then heed gives up
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("%v %v", resp, err)
	}
	if !strings.Contains(buf.String(), "level=WARN msg=\"heed: giving up\"") {
		t.Errorf("no give-up at Warn after retries:\n%s", buf.String())
	}
}
