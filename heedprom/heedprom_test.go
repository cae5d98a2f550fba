package heedprom_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/heedprom"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/outbox/outboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 16, 15, 0, 0, 0, time.UTC)

// script is an in-memory server answering each request with the next of
// its answers, the last one repeated.
type script struct {
	mu      sync.Mutex
	answers []func(*http.Request) (*http.Response, error)
	n       int
}

func (s *script) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	a := s.answers[min(s.n, len(s.answers)-1)]
	s.n++
	s.mu.Unlock()
	return a(req)
}

func status(code int, fields ...string) func(*http.Request) (*http.Response, error) {
	return func(req *http.Request) (*http.Response, error) {
		h := http.Header{}
		for i := 0; i+1 < len(fields); i += 2 {
			h.Set(fields[i], fields[i+1])
		}
		return &http.Response{StatusCode: code, Header: h, Body: http.NoBody, Request: req}, nil
	}
}

func refused(*http.Request) (*http.Response, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// setup returns a client through heed on a fake clock that jumps over
// every wait, counted by a fresh collector watching its policy.
func setup(t *testing.T, answers []func(*http.Request) (*http.Response, error), opts ...heed.Option) (*http.Client, *heedprom.Collector) {
	t.Helper()
	m := heedprom.New()
	clk := heedtest.NewClock(t0).AutoAdvance()
	base := []heed.Option{heed.WithBase(&script{answers: answers}), heed.WithClock(clk), heed.WithLogger(nil), heed.WithHook(m)}
	tr, err := heed.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.Watch(tr.Policy())
	return &http.Client{Transport: tr}, m
}

func call(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// want compares the collector's metrics of the given names with the text
// exposition in exp (HELP and TYPE lines are taken from the collector).
func want(t *testing.T, m *heedprom.Collector, exp string, names ...string) {
	t.Helper()
	var b strings.Builder
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, n := range names {
			if mf.GetName() == n {
				fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", n, mf.GetHelp(), n, strings.ToLower(mf.GetType().String()))
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(exp), "\n") {
		b.WriteString(strings.TrimSpace(line) + "\n")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(b.String()), names...); err != nil {
		t.Error(err)
	}
}

func TestRetriesThenSuccess(t *testing.T) {
	c, m := setup(t, []func(*http.Request) (*http.Response, error){
		status(503), status(429, "Retry-After", "2"), refused, status(200),
	})
	call(t, c, "http://api.test/items?page=1")
	want(t, m, `
		heed_requests_total{key="api.test",method="GET",outcome="success"} 1
		heed_attempts_total{key="api.test",method="GET",result="2xx"} 1
		heed_attempts_total{key="api.test",method="GET",result="4xx"} 1
		heed_attempts_total{key="api.test",method="GET",result="5xx"} 1
		heed_attempts_total{key="api.test",method="GET",result="refused"} 1
		heed_retries_total{key="api.test",method="GET",reason="4xx"} 1
		heed_retries_total{key="api.test",method="GET",reason="5xx"} 1
		heed_retries_total{key="api.test",method="GET",reason="refused"} 1
	`, "heed_requests_total", "heed_attempts_total", "heed_retries_total")

	waits := histogram(t, m, "heed_retry_wait_seconds")
	if n := waits[`key="api.test",source="backoff"`].count; n != 2 {
		t.Errorf("%d backoff waits, want 2", n)
	}
	ra := waits[`key="api.test",source="retry_after"`]
	if ra.count != 1 || ra.sum < 2 || ra.sum > 4 {
		t.Errorf("retry_after waits: %d summing %vs, want 1 of 2-4s (the hint plus jitter)", ra.count, ra.sum)
	}
	calls := histogram(t, m, "heed_request_duration_seconds")
	if d := calls[`key="api.test",method="GET",outcome="success"`]; d.count != 1 || d.sum < 2 {
		t.Errorf("call durations %+v, want one of at least the 2s waited", d)
	}
}

func TestGiveUps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []func(*http.Request) (*http.Response, error)
		opts    []heed.Option
		calls   int
		exp     string
		names   []string
	}{
		{
			name:    "attempts exhausted",
			answers: []func(*http.Request) (*http.Response, error){status(503)},
			opts:    []heed.Option{heed.WithMaxAttempts(2)},
			calls:   1,
			exp: `
				heed_give_ups_total{key="api.test",method="GET",reason="attempts_exhausted"} 1
				heed_requests_total{key="api.test",method="GET",outcome="server_error"} 1
			`,
			names: []string{"heed_give_ups_total", "heed_requests_total"},
		},
		{
			name:    "wait too long",
			answers: []func(*http.Request) (*http.Response, error){status(429, "Retry-After", "3600")},
			calls:   1,
			exp: `
				heed_give_ups_total{key="api.test",method="GET",reason="wait_too_long"} 1
				heed_requests_total{key="api.test",method="GET",outcome="failure"} 1
			`,
			names: []string{"heed_give_ups_total", "heed_requests_total"},
		},
		{
			name:    "budget",
			answers: []func(*http.Request) (*http.Response, error){status(503)},
			opts:    []heed.Option{heed.WithRetryBudget(budget.TokenBucketConfig{Max: 1, Ratio: 0.1}), heed.WithoutBreaker()},
			calls:   1,
			exp: `
				heed_budget_refusals_total{key="api.test"} 1
				heed_give_ups_total{key="api.test",method="GET",reason="budget_exhausted"} 1
			`,
			names: []string{"heed_budget_refusals_total", "heed_give_ups_total"},
		},
		{
			name:    "breaker",
			answers: []func(*http.Request) (*http.Response, error){refused},
			opts:    []heed.Option{heed.WithMaxAttempts(1), heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Minute})},
			calls:   3,
			exp: `
				heed_breaker_transitions_total{from="closed",key="api.test",to="open"} 1
				heed_breaker_state{key="api.test",state="closed"} 0
				heed_breaker_state{key="api.test",state="half_open"} 0
				heed_breaker_state{key="api.test",state="open"} 1
				heed_give_ups_total{key="api.test",method="GET",reason="breaker_open"} 1
				heed_give_ups_total{key="api.test",method="GET",reason="attempts_exhausted"} 2
				heed_requests_total{key="api.test",method="GET",outcome="failure"} 3
			`,
			names: []string{"heed_breaker_transitions_total", "heed_breaker_state", "heed_give_ups_total", "heed_requests_total"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, m := setup(t, tc.answers, tc.opts...)
			for range tc.calls {
				call(t, c, "http://api.test/")
			}
			want(t, m, tc.exp, tc.names...)
		})
	}
}

func TestThrottle(t *testing.T) {
	c, m := setup(t, []func(*http.Request) (*http.Response, error){status(200)},
		heed.WithLimits(heed.Limits{Rate: 1, Burst: 1}), heed.WithMaxWait(5*time.Second))
	call(t, c, "http://api.test/")
	call(t, c, "http://api.test/") // waits a second for a token
	w := histogram(t, m, "heed_throttle_wait_seconds")[`key="api.test"`]
	if w.count != 1 || w.sum != 1 {
		t.Errorf("throttle waits %+v, want one of 1s", w)
	}
	want(t, m, `
		heed_pacer_active{key="api.test"} 0
		heed_throttle_in_flight{key="api.test"} 0
		heed_throttle_queue_depth{key="api.test"} 0
	`, "heed_pacer_active", "heed_throttle_in_flight", "heed_throttle_queue_depth")
}

// The queue depth and the slots in use are read from the policy at
// scrape time.
func TestQueueDepth(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	slow := func(req *http.Request) (*http.Response, error) {
		arrived <- struct{}{}
		<-release
		return status(200)(req)
	}
	m := heedprom.New()
	tr, err := heed.New(heed.WithBase(&script{answers: []func(*http.Request) (*http.Response, error){slow}}), heed.WithLogger(nil), heed.WithHook(m),
		heed.WithLimits(heed.Limits{Concurrency: 1, Queue: 2}))
	if err != nil {
		t.Fatal(err)
	}
	m.Watch(tr.Policy())
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { call(t, c, "http://api.test/") })
	}
	<-arrived
	deadline := time.Now().Add(5 * time.Second)
	for tr.Policy().Stats()[0].Queued != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the other two requests never queued")
		}
		time.Sleep(time.Millisecond)
	}
	want(t, m, `
		heed_throttle_in_flight{key="api.test"} 1
		heed_throttle_queue_depth{key="api.test"} 2
	`, "heed_throttle_in_flight", "heed_throttle_queue_depth")
	close(release)
	wg.Wait()
	want(t, m, `
		heed_throttle_in_flight{key="api.test"} 0
		heed_throttle_queue_depth{key="api.test"} 0
		heed_requests_total{key="api.test",method="GET",outcome="success"} 3
	`, "heed_throttle_in_flight", "heed_throttle_queue_depth", "heed_requests_total")
}

func TestHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		n := 0
		base := roundTrip(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			n++
			first := n == 1
			mu.Unlock()
			d := 10 * time.Millisecond
			if first {
				d = time.Second
			}
			select {
			case <-time.After(d):
				return status(200)(req)
			case <-req.Context().Done():
				return nil, context.Cause(req.Context())
			}
		})
		m := heedprom.New()
		c, err := heed.NewClient(heed.WithBase(base), heed.WithLogger(nil), heed.WithHook(m), heed.WithHedging(heed.HedgeConfig{Delay: 50 * time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		call(t, c, "http://api.test/")
		synctest.Wait()
		want(t, m, `
			heed_hedges_total{key="api.test"} 1
			heed_hedges_won_total{key="api.test"} 1
		`, "heed_hedges_total", "heed_hedges_won_total")
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDegradation(t *testing.T) {
	ok := func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("kept")), ContentLength: 4, Request: req}, nil
	}
	fallback := func(ctx context.Context, req *http.Request, failure *heed.Error) (*http.Response, error) {
		return &http.Response{StatusCode: 200}, nil
	}
	c, m := setup(t, []func(*http.Request) (*http.Response, error){ok, status(503)},
		heed.WithMaxAttempts(1), heed.WithStaleIfError(heed.StaleConfig{}), heed.WithFallback(fallback))
	call(t, c, "http://api.test/a") // stored
	call(t, c, "http://api.test/a") // stale
	call(t, c, "http://api.test/b") // nothing stored: fallback
	want(t, m, `
		heed_stale_responses_total{key="api.test"} 1
		heed_fallbacks_total{key="api.test"} 1
	`, "heed_stale_responses_total", "heed_fallbacks_total")
}

// 10,000 distinct URLs on one host make one series per label set; 10,000
// keys (a key function returning the path) stop at the key cap.
func TestCardinality(t *testing.T) {
	c, m := setup(t, []func(*http.Request) (*http.Response, error){status(200)})
	for i := range 10_000 {
		call(t, c, fmt.Sprintf("http://api.test/items/%d?session=%d", i, i))
	}
	if n := testutil.CollectAndCount(m, "heed_requests_total"); n != 1 {
		t.Errorf("%d request series for 10,000 URLs on one host, want 1", n)
	}
	if n := testutil.CollectAndCount(m); n > 10 {
		t.Errorf("%d series in all, want a handful", n)
	}

	c, m = setup(t, []func(*http.Request) (*http.Response, error){status(200)},
		heed.WithKeyFunc(func(r *http.Request) string { return r.URL.Path }))
	for i := range 10_000 {
		call(t, c, fmt.Sprintf("http://api.test/items/%d", i))
	}
	if n := testutil.CollectAndCount(m, "heed_requests_total"); n != heedprom.DefaultMaxKeys+1 {
		t.Errorf("%d request series for 10,000 keys, want %d (the cap and other)", n, heedprom.DefaultMaxKeys+1)
	}
}

// Counting a request's events allocates nothing once its label sets are
// known: the collector costs at most one allocation per request.
func TestCollectorAllocs(t *testing.T) {
	base := roundTrip(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), ContentLength: 2, Request: req}, nil
	})
	allocs := func(opts ...heed.Option) float64 {
		tr, err := heed.New(append([]heed.Option{heed.WithBase(base), heed.WithLogger(nil)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", "http://api.test/items/42", nil)
		return testing.AllocsPerRun(500, func() {
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	without, with := allocs(), allocs(heed.WithHook(heedprom.New()))
	t.Logf("%v allocations per request with the collector, %v without", with, without)
	if with > without+1 {
		t.Errorf("%v allocations per request with the collector, %v without: want at most one more", with, without)
	}
}

type hist struct {
	count uint64
	sum   float64
}

// histogram returns the count and sum of every series of the histogram
// name, by its labels as `k="v",...`.
func histogram(t *testing.T, m *heedprom.Collector, name string) map[string]hist {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]hist{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, lp := range mt.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			out[strings.Join(ls, ",")] = hist{mt.GetHistogram().GetSampleCount(), mt.GetHistogram().GetSampleSum()}
		}
	}
	return out
}

// Calls through heed.Do are counted too, with the method "none".
func TestDoCalls(t *testing.T) {
	m := heedprom.New()
	p, err := heed.NewPolicy(heed.WithHook(m), heed.WithLogger(nil), heed.WithClock(heedtest.NewClock(t0).AutoAdvance()))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		heed.Do(heed.Override(context.Background(), heed.Overrides{Key: "db"}), p, func(ctx context.Context) (int, error) { return 1, nil })
	}
	want(t, m, `
		heed_requests_total{key="db",method="none",outcome="success"} 2
		heed_attempts_total{key="db",method="none",result="ok"} 2
	`, "heed_requests_total", "heed_attempts_total")
}

func TestOutboxEvents(t *testing.T) {
	down := true
	var mu sync.Mutex
	base := roundTrip(func(req *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		status := http.StatusCreated
		if down {
			status = http.StatusServiceUnavailable
		}
		if req.Header.Get("Idempotency-Key") == "refused" && !down {
			status = http.StatusUnprocessableEntity
		}
		return &http.Response{StatusCode: status, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	m := heedprom.New()
	store := new(outboxtest.Memory)
	clk := heedtest.NewClock(time.Unix(1_800_000_000, 0))
	p, err := heed.NewPolicy(heed.WithBase(base), heed.WithLogger(nil), heed.WithHook(m), heed.WithMaxAttempts(1),
		heed.WithClock(clk), heed.WithoutBreaker(), heed.WithOutbox(heed.Outbox{Store: store}))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a", "b", "refused"} {
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/orders", strings.NewReader("{}"))
		req.Header.Set("Idempotency-Key", key)
		if _, err := p.Transport().RoundTrip(req); !errors.Is(err, heed.ErrQueued) {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Hour)
	p.ReplayDue(context.Background()) // still down: three replayed
	mu.Lock()
	down = false
	mu.Unlock()
	clk.Advance(time.Hour)
	p.ReplayDue(context.Background()) // two delivered, one dead
	want(t, m, `
		heed_outbox_total{event="queued",key="api.test"} 3
		heed_outbox_total{event="replayed",key="api.test"} 3
		heed_outbox_total{event="delivered",key="api.test"} 2
		heed_outbox_total{event="dead",key="api.test"} 1
	`, "heed_outbox_total")
}

func TestServerEvents(t *testing.T) {
	m := heedprom.New()
	for _, e := range []heed.Event{
		{Kind: heed.EventAdmitted, Key: "paid"}, {Kind: heed.EventAdmitted, Key: "free"},
		{Kind: heed.EventLimited, Key: "free", Wait: 2 * time.Second}, {Kind: heed.EventShed, Key: "free", Wait: time.Second},
		{Kind: heed.EventShed, Key: "free", Wait: 3 * time.Second},
		{Kind: heed.EventAdmitted, Key: "paid", Wait: 30 * time.Millisecond},
	} {
		m.OnEvent(context.Background(), e)
	}
	want(t, m, `
		heed_server_requests_total{class="free",decision="admitted"} 1
		heed_server_requests_total{class="free",decision="limited"} 1
		heed_server_requests_total{class="free",decision="shed"} 2
		heed_server_requests_total{class="paid",decision="admitted"} 2
	`, "heed_server_requests_total")
	// Admissions without a wait are not observed: only paid's delayed one.
	got := histogram(t, m, "heed_server_wait_seconds")
	wantWait := map[string]hist{
		`class="paid",decision="admitted"`: {1, 0.03},
		`class="free",decision="limited"`:  {1, 2},
		`class="free",decision="shed"`:     {2, 4},
	}
	if len(got) != len(wantWait) {
		t.Errorf("heed_server_wait_seconds series %v, want %v", got, wantWait)
	}
	for series, w := range wantWait {
		if g := got[series]; g.count != w.count || math.Abs(g.sum-w.sum) > 1e-9 {
			t.Errorf("heed_server_wait_seconds{%s}: count %d sum %v, want %d and %v", series, g.count, g.sum, w.count, w.sum)
		}
	}
}
