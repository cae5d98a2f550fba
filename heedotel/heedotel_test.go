package heedotel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/heedotel"
	"github.com/heed-go/heed/heedtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder returns an in-memory exporter fed synchronously by tp, so spans
// are there as soon as they end.
func recorder(t *testing.T) (*tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return exp, tp
}

// statusServer answers its requests with codes in turn, repeating the last.
// retryAfter adds "Retry-After: 0" to failures.
func statusServer(t *testing.T, retryAfter bool, codes ...int) *httptest.Server {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := min(int(n.Add(1))-1, len(codes)-1)
		if retryAfter && codes[i] >= 400 {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(codes[i])
	}))
	t.Cleanup(srv.Close)
	return srv
}

// client is an http.Client sending through tr's Transport around a heed
// Transport hooked to tr. The backoff is constant, so waits are exact, and
// pacing is off, so a 503 does not space the calls that follow.
func client(t *testing.T, tr *heedotel.Tracing, opts ...heed.Option) *http.Client {
	t.Helper()
	opts = append([]heed.Option{
		heed.WithHook(tr), heed.WithLogger(nil), heed.WithBackoff(backoff.Constant(time.Millisecond)), heed.WithLimits(heed.Limits{NoPacing: true}),
	}, opts...)
	ht, err := heed.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr.Transport(ht)}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// spanView is what a test asserts of a span: its parent by name, and its
// attributes and events as plain values (ints are int64).
type spanView struct {
	Name   string
	Kind   trace.SpanKind
	Parent string // "" for a root, "?" for a parent not recorded
	Status codes.Code
	Attrs  map[string]any
	Events []eventView
}

type eventView struct {
	Name  string
	Attrs map[string]any
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func views(spans tracetest.SpanStubs) []spanView {
	names := make(map[trace.SpanID]string)
	for _, s := range spans {
		names[s.SpanContext.SpanID()] = s.Name
	}
	out := make([]spanView, 0, len(spans))
	for _, s := range spans {
		v := spanView{Name: s.Name, Kind: s.SpanKind, Status: s.Status.Code, Attrs: attrMap(s.Attributes)}
		if s.Parent.IsValid() {
			v.Parent = "?"
			if n, ok := names[s.Parent.SpanID()]; ok {
				v.Parent = n
			}
		}
		for _, e := range s.Events {
			v.Events = append(v.Events, eventView{Name: e.Name, Attrs: attrMap(e.Attributes)})
		}
		out = append(out, v)
	}
	return out
}

func assertViews(t *testing.T, got, want []spanView) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("spans differ\n got: %+v\nwant: %+v", got, want)
	}
}

// server returns the server attributes of a test server's URL.
func server(t *testing.T, raw string) (string, int64) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var port int64
	fmt.Sscan(u.Port(), &port)
	return u.Hostname(), port
}

// reqAttrs are the HTTP client attributes of a GET to u, plus extra.
func reqAttrs(t *testing.T, u string, extra map[string]any) map[string]any {
	host, port := server(t, u)
	m := map[string]any{
		"http.request.method": "GET", "url.full": u, "server.address": host, "server.port": port,
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestRetriesAreAttemptSpans(t *testing.T) {
	exp, tp := recorder(t)
	srv := statusServer(t, false, 503, 503, 200)
	c := client(t, heedotel.New(heedotel.WithTracerProvider(tp)))
	resp, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v, %v", resp, err)
	}
	spans := exp.GetSpans()
	retry := func(n int) eventView {
		return eventView{"heed.retry", map[string]any{"heed.attempt": int64(n), "heed.wait": 0.001, "heed.wait.source": "backoff"}}
	}
	assertViews(t, views(spans), []spanView{
		{Name: "GET", Kind: trace.SpanKindClient, Parent: "HTTP GET", Status: codes.Error,
			Attrs: reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(503), "error.type": "503"})},
		{Name: "GET", Kind: trace.SpanKindClient, Parent: "HTTP GET", Status: codes.Error,
			Attrs: reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(503), "error.type": "503", "http.request.resend_count": int64(1)})},
		{Name: "GET", Kind: trace.SpanKindClient, Parent: "HTTP GET",
			Attrs: reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(200), "http.request.resend_count": int64(2)})},
		{Name: "HTTP GET", Kind: trace.SpanKindInternal,
			Attrs:  reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(200)}),
			Events: []eventView{retry(1), retry(2)}},
	})
	// Attempt spans are recorded after the fact: they must still sit, in
	// order, inside the logical span, and share its trace.
	logical := spans[3]
	prevEnd := logical.StartTime
	for _, s := range spans[:3] {
		if s.SpanContext.TraceID() != logical.SpanContext.TraceID() {
			t.Errorf("%s: trace %s, want %s", s.Name, s.SpanContext.TraceID(), logical.SpanContext.TraceID())
		}
		if s.StartTime.Before(prevEnd) || s.EndTime.Before(s.StartTime) || s.EndTime.After(logical.EndTime) {
			t.Errorf("attempt %v..%v outside %v..%v or overlapping the one before", s.StartTime, s.EndTime, prevEnd, logical.EndTime)
		}
		prevEnd = s.EndTime
	}
}

func TestRetryAfterSource(t *testing.T) {
	exp, tp := recorder(t)
	srv := statusServer(t, true, 503, 200)
	// heed jitters a server's hint; drawing zeros keeps Retry-After: 0 exact.
	c := client(t, heedotel.New(heedotel.WithTracerProvider(tp)), heed.WithRand(zeroSource{}))
	if _, err := get(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("got %d spans, want 3", len(spans))
	}
	got := views(spans)[2].Events
	want := []eventView{{"heed.retry", map[string]any{"heed.attempt": int64(1), "heed.wait": 0.0, "heed.wait.source": "retry_after"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events %+v, want %+v", got, want)
	}
}

type zeroSource struct{}

func (zeroSource) Uint64() uint64 { return 0 }

func TestGiveUp(t *testing.T) {
	exp, tp := recorder(t)
	srv := statusServer(t, false, 503)
	c := client(t, heedotel.New(heedotel.WithTracerProvider(tp)), heed.WithMaxAttempts(2))
	resp, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("got %v, %v", resp, err)
	}
	assertViews(t, views(exp.GetSpans()), []spanView{
		{Name: "GET", Kind: trace.SpanKindClient, Parent: "HTTP GET", Status: codes.Error,
			Attrs: reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(503), "error.type": "503"})},
		{Name: "GET", Kind: trace.SpanKindClient, Parent: "HTTP GET", Status: codes.Error,
			Attrs: reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(503), "error.type": "503", "http.request.resend_count": int64(1)})},
		{Name: "HTTP GET", Kind: trace.SpanKindInternal, Status: codes.Error,
			Attrs: reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(503), "error.type": "503"}),
			Events: []eventView{
				{"heed.retry", map[string]any{"heed.attempt": int64(1), "heed.wait": 0.001, "heed.wait.source": "backoff"}},
				{"heed.give_up", map[string]any{"heed.attempt": int64(2), "heed.reason": "attempts_exhausted"}},
			}},
	})
}

func TestBreakerRefusal(t *testing.T) {
	exp, tp := recorder(t)
	srv := statusServer(t, false, 503)
	c := client(t, heedotel.New(heedotel.WithTracerProvider(tp)),
		heed.WithMaxAttempts(1), heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Minute}))
	if _, err := get(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	exp.Reset()
	before := time.Now()
	_, err := get(t, c, srv.URL)
	if !errors.Is(err, heed.ErrBreakerOpen) {
		t.Fatalf("second call: %v, want the breaker's refusal", err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want the logical span alone: %+v", len(spans), views(spans))
	}
	v := views(spans)[0]
	// The breaker's open time is not ours to pin: check it, then drop it.
	var retryAt time.Time
	if len(v.Events) == 1 {
		s, _ := v.Events[0].Attrs["heed.retry_at"].(string)
		retryAt, _ = time.Parse(time.RFC3339Nano, s)
		delete(v.Events[0].Attrs, "heed.retry_at")
	}
	if retryAt.Before(before.Add(59*time.Second)) || retryAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("heed.retry_at %v, want a minute from %v", retryAt, before)
	}
	assertViews(t, []spanView{v}, []spanView{{
		Name: "HTTP GET", Kind: trace.SpanKindInternal, Status: codes.Error,
		Attrs: reqAttrs(t, srv.URL, map[string]any{"error.type": "breaker_open"}),
		Events: []eventView{
			{"heed.give_up", map[string]any{"heed.attempt": int64(0), "heed.reason": "breaker_open"}},
		},
	}})
	if breaker.ErrOpen.Error() != "circuit breaker open" {
		t.Errorf("breaker.ErrOpen says %q", breaker.ErrOpen)
	}
	if !strings.Contains(spans[0].Status.Description, "circuit breaker open") {
		t.Errorf("status description %q does not give the reason", spans[0].Status.Description)
	}
}

func TestFallback(t *testing.T) {
	exp, tp := recorder(t)
	srv := statusServer(t, false, 503)
	fallback := func(ctx context.Context, req *http.Request, failure *heed.Error) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("cached"))}, nil
	}
	c := client(t, heedotel.New(heedotel.WithTracerProvider(tp)), heed.WithMaxAttempts(1), heed.WithFallback(fallback))
	resp, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v, %v", resp, err)
	}
	assertViews(t, views(exp.GetSpans()), []spanView{
		{Name: "GET", Kind: trace.SpanKindClient, Parent: "HTTP GET", Status: codes.Error,
			Attrs: reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(503), "error.type": "503"})},
		{Name: "HTTP GET", Kind: trace.SpanKindInternal,
			Attrs: reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(200)}),
			Events: []eventView{
				{"heed.give_up", map[string]any{"heed.attempt": int64(1), "heed.reason": "attempts_exhausted"}},
				{"heed.fallback", map[string]any{"heed.reason": "attempts_exhausted", "http.response.status_code": int64(200)}},
			}},
	})
}

func TestTransportError(t *testing.T) {
	exp, tp := recorder(t)
	u := "http://" + heedtest.DeadAddr(t) + "/x"
	c := client(t, heedotel.New(heedotel.WithTracerProvider(tp)), heed.WithMaxAttempts(2))
	if _, err := get(t, c, u); !errors.Is(err, heed.ErrAttemptsExhausted) {
		t.Fatalf("got %v, want attempts exhausted", err)
	}
	assertViews(t, views(exp.GetSpans()), []spanView{
		{Name: "GET", Kind: trace.SpanKindClient, Parent: "HTTP GET", Status: codes.Error,
			Attrs: reqAttrs(t, u, map[string]any{"error.type": "refused"})},
		{Name: "GET", Kind: trace.SpanKindClient, Parent: "HTTP GET", Status: codes.Error,
			Attrs: reqAttrs(t, u, map[string]any{"error.type": "refused", "http.request.resend_count": int64(1)})},
		{Name: "HTTP GET", Kind: trace.SpanKindInternal, Status: codes.Error,
			Attrs: reqAttrs(t, u, map[string]any{"error.type": "refused"}),
			Events: []eventView{
				{"heed.retry", map[string]any{"heed.attempt": int64(1), "heed.wait": 0.001, "heed.wait.source": "backoff"}},
				{"heed.give_up", map[string]any{"heed.attempt": int64(2), "heed.reason": "attempts_exhausted"}},
			}},
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Secrets in a URL's userinfo and query reach no attribute, event or
// status, even when an error quotes the URL.
func TestRedactsURL(t *testing.T) {
	exp, tp := recorder(t)
	srv := statusServer(t, false, 503, 200)
	u, _ := url.Parse(srv.URL + "/path")
	u.User = url.UserPassword("user", "hunter2")
	u.RawQuery = "token=secret%2B42&page=3"
	tr := heedotel.New(heedotel.WithTracerProvider(tp))
	if _, err := get(t, client(t, tr), u.String()); err != nil {
		t.Fatal(err)
	}
	quoting := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return nil, fmt.Errorf("cannot reach %s (query %v, user %v)", r.URL, r.URL.Query(), r.URL.User)
	})
	if _, err := get(t, client(t, tr, heed.WithBase(quoting)), u.String()); err == nil {
		t.Fatal("the quoting base did not fail")
	}

	spans := exp.GetSpans()
	if len(spans) != 5 {
		t.Fatalf("got %d spans, want 5", len(spans))
	}
	var seen []string
	check := func(where string, kvs []attribute.KeyValue) {
		for _, kv := range kvs {
			s := kv.Value.String()
			seen = append(seen, s)
			if strings.Contains(s, "hunter2") || strings.Contains(s, "secret") {
				t.Errorf("%s: %s = %q leaks a secret", where, kv.Key, s)
			}
		}
	}
	for _, s := range spans {
		check(s.Name, s.Attributes)
		for _, e := range s.Events {
			check(s.Name+"/"+e.Name, e.Attributes)
		}
		check(s.Name+" status", []attribute.KeyValue{attribute.String("description", s.Status.Description)})
	}
	want := "http://REDACTED@" + u.Host + "/path?token=REDACTED&page=REDACTED"
	wantErr := "cannot reach " + want + " (query map[page:[3] token:[REDACTED]], user REDACTED)"
	if got := attrMap(spans[0].Attributes)["url.full"]; got != want {
		t.Errorf("url.full = %v, want %v", got, want)
	}
	// The call's description is heed.Error's text, redacted by heed.
	if d := spans[3].Status.Description; d != wantErr {
		t.Errorf("attempt's status description %q, want %q", d, wantErr)
	}
}

// With otelhttp as heed's base, otelhttp's client spans are the attempts:
// children of the logical span, which carries heed.attempt events, and
// the trace context reaches the server.
func TestComposesWithOtelhttp(t *testing.T) {
	exp, tp := recorder(t)
	var mu sync.Mutex
	var parents []string
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parents = append(parents, r.Header.Get("Traceparent"))
		mu.Unlock()
		if n.Add(1) == 1 {
			w.WriteHeader(503)
		}
	}))
	t.Cleanup(srv.Close)

	tr := heedotel.New(heedotel.WithTracerProvider(tp), heedotel.WithAttemptEvents())
	// The propagator is given to otelhttp rather than set globally, so the
	// test leaves no global state behind.
	base := otelhttp.NewTransport(http.DefaultTransport,
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{}))
	c := client(t, tr, heed.WithBase(base))
	if _, err := get(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}

	spans := exp.GetSpans()
	var logical tracetest.SpanStub
	var physical []tracetest.SpanStub
	for _, s := range spans {
		switch s.Name {
		case "HTTP GET":
			if s.SpanKind == trace.SpanKindInternal {
				logical = s
			} else {
				physical = append(physical, s)
			}
		default:
			t.Errorf("unexpected span %q", s.Name)
		}
	}
	if len(physical) != 2 || !logical.SpanContext.IsValid() {
		t.Fatalf("got %+v, want the logical span and 2 otelhttp spans", views(spans))
	}
	if len(parents) != 2 {
		t.Fatalf("server saw %d requests, want 2", len(parents))
	}
	for i, s := range physical {
		if s.SpanKind != trace.SpanKindClient || s.Parent.SpanID() != logical.SpanContext.SpanID() ||
			s.SpanContext.TraceID() != logical.SpanContext.TraceID() {
			t.Errorf("otelhttp span %d: kind %v, parent %v in trace %v; want a client child of %v",
				i, s.SpanKind, s.Parent.SpanID(), s.SpanContext.TraceID(), logical.SpanContext.SpanID())
		}
		want := fmt.Sprintf("00-%s-%s-01", s.SpanContext.TraceID(), s.SpanContext.SpanID())
		if parents[i] != want {
			t.Errorf("request %d: traceparent %q, want %q", i, parents[i], want)
		}
	}
	want := []eventView{
		{"heed.attempt", reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(503), "error.type": "503"})},
		{"heed.retry", map[string]any{"heed.attempt": int64(1), "heed.wait": 0.001, "heed.wait.source": "backoff"}},
		{"heed.attempt", reqAttrs(t, srv.URL, map[string]any{"http.response.status_code": int64(200), "http.request.resend_count": int64(1)})},
	}
	got := views([]tracetest.SpanStub{logical})[0].Events
	for _, e := range got {
		if e.Name == "heed.attempt" { // durations vary: check, then drop
			if d, ok := e.Attrs["heed.duration"].(float64); !ok || d < 0 || d > 5 {
				t.Errorf("heed.attempt: heed.duration = %v", e.Attrs["heed.duration"])
			}
			delete(e.Attrs, "heed.duration")
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("logical span's events\n got: %+v\nwant: %+v", got, want)
	}
}

// Without the Transport, attempts hang off whatever span the caller's
// context holds, and off none at all without one.
func TestHookWithoutTransport(t *testing.T) {
	exp, tp := recorder(t)
	srv := statusServer(t, false, 503, 200)
	tr := heedotel.New(heedotel.WithTracerProvider(tp))
	ht, err := heed.New(heed.WithHook(tr), heed.WithLogger(nil), heed.WithBackoff(backoff.Constant(time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: ht}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	got := views(exp.GetSpans())
	if len(got) != 3 || got[0].Parent != "caller" || got[1].Parent != "caller" || len(got[2].Events) != 1 {
		t.Errorf("with a caller's span: %+v", got)
	}

	exp.Reset()
	if _, err := get(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	got = views(exp.GetSpans())
	if len(got) != 1 || got[0].Name != "GET" || got[0].Parent != "" {
		t.Errorf("with no span: %+v", got)
	}
}

// Concurrent calls each get their own logical span with their own
// attempts.
func TestConcurrentCalls(t *testing.T) {
	exp, tp := recorder(t)
	var mu sync.Mutex
	seen := make(map[string]bool)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := !seen[r.URL.Path]
		seen[r.URL.Path] = true
		mu.Unlock()
		if first {
			w.WriteHeader(503)
		}
	}))
	t.Cleanup(srv.Close)
	// Twenty 503s at once would trip the breaker and spend the budget.
	c := client(t, heedotel.New(heedotel.WithTracerProvider(tp)), heed.WithoutBreaker(), heed.WithoutRetryBudget())

	const calls = 20
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			if _, err := get(t, c, fmt.Sprintf("%s/%d", srv.URL, i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	spans := exp.GetSpans()
	children := make(map[trace.SpanID][]tracetest.SpanStub)
	var logical []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindInternal {
			logical = append(logical, s)
		} else {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		}
	}
	if len(logical) != calls || len(spans) != 3*calls {
		t.Fatalf("got %d spans, %d logical; want %d and %d", len(spans), len(logical), 3*calls, calls)
	}
	for _, l := range logical {
		u := attrMap(l.Attributes)["url.full"]
		kids := children[l.SpanContext.SpanID()]
		if len(kids) != 2 {
			t.Errorf("%v: %d attempts, want 2", u, len(kids))
			continue
		}
		for _, k := range kids {
			if got := attrMap(k.Attributes)["url.full"]; got != u {
				t.Errorf("attempt of %v is of %v", u, got)
			}
		}
	}
}

// Events heed emits rarely in tests over a network (throttling, hedges,
// stale answers, breaker changes), and attempts' less common attributes,
// fed to the hook directly.
func TestEvents(t *testing.T) {
	u, _ := url.Parse("https://api.example.com/v1?key=k")
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		e    heed.Event
		want spanView
	}{
		{heed.Event{Kind: heed.EventThrottle, Attempt: 2, Wait: 1500 * time.Millisecond},
			spanView{Events: []eventView{{"heed.throttle", map[string]any{"heed.attempt": int64(2), "heed.wait": 1.5}}}}},
		{heed.Event{Kind: heed.EventThrottle, Attempt: 1, Err: heed.ErrThrottled},
			spanView{Events: []eventView{{"heed.throttle", map[string]any{"heed.attempt": int64(1), "heed.wait": 0.0, "heed.error": heed.ErrThrottled.Error()}}}}},
		{heed.Event{Kind: heed.EventGiveUp, Attempt: 3, Reason: heed.ErrWaitTooLong, RetryAt: at},
			spanView{Events: []eventView{{"heed.give_up", map[string]any{"heed.attempt": int64(3), "heed.reason": "wait_too_long", "heed.retry_at": "2025-01-02T03:04:05Z"}}}}},
		{heed.Event{Kind: heed.EventHedge, Attempt: 1, Hedge: 2, Wait: 20 * time.Millisecond},
			spanView{Events: []eventView{{"heed.hedge", map[string]any{"heed.attempt": int64(1), "heed.hedge": int64(2), "heed.wait": 0.02}}}}},
		{heed.Event{Kind: heed.EventStale, Reason: heed.ErrAttemptsExhausted, Age: time.Minute, Status: 200},
			spanView{Events: []eventView{{"heed.stale", map[string]any{"heed.reason": "attempts_exhausted", "heed.age": 60.0, "http.response.status_code": int64(200)}}}}},
		{heed.Event{Kind: heed.EventFallback, Reason: heed.ErrAttemptsExhausted},
			spanView{Events: []eventView{{"heed.fallback", map[string]any{"heed.reason": "attempts_exhausted"}}}}},
		{heed.Event{Kind: heed.EventBreaker, Key: "api.example.com", From: breaker.Closed, To: breaker.Open, RetryAt: at},
			spanView{Events: []eventView{{"heed.breaker", map[string]any{"heed.key": "api.example.com", "heed.breaker.from": "closed", "heed.breaker.to": "open", "heed.retry_at": "2025-01-02T03:04:05Z"}}}}},
		{heed.Event{Kind: heed.EventDone, Status: 200}, spanView{}},
		// A hedged copy's answer over TLS, a transport error, a method
		// semconv does not know.
		{heed.Event{Kind: heed.EventAttempt, Method: "PURGE", URL: u, Attempt: 2, Hedge: 1, Err: io.ErrUnexpectedEOF, ErrorKind: heed.KindEOF, Duration: time.Second},
			spanView{Events: []eventView{{"heed.attempt", map[string]any{
				"http.request.method": "_OTHER", "http.request.method_original": "PURGE", "url.full": "https://api.example.com/v1?key=REDACTED",
				"server.address": "api.example.com", "server.port": int64(443), "error.type": "eof",
				"http.request.resend_count": int64(1), "heed.hedge": int64(1), "heed.duration": 1.0,
			}}}}},
	}
	for _, tc := range cases {
		t.Run(tc.e.Kind.String(), func(t *testing.T) {
			exp, tp := recorder(t)
			tr := heedotel.New(heedotel.WithTracerProvider(tp), heedotel.WithAttemptEvents())
			ctx, span := tp.Tracer("test").Start(context.Background(), "call")
			tc.e.Time = at
			tr.OnEvent(ctx, tc.e)
			tr.OnEvent(context.Background(), tc.e) // no span: nothing to record on
			span.End()
			tc.want.Name, tc.want.Kind, tc.want.Attrs = "call", trace.SpanKindInternal, map[string]any{}
			assertViews(t, views(exp.GetSpans()), []spanView{tc.want})
			for _, e := range exp.GetSpans()[0].Events {
				if !e.Time.Equal(at) {
					t.Errorf("%s at %v, want %v", e.Name, e.Time, at)
				}
			}
		})
	}
}

// A call made through heed.Do has no request: its attempts are internal
// spans named heed.attempt, with no HTTP attributes.
func TestDo(t *testing.T) {
	exp, tp := recorder(t)
	tr := heedotel.New(heedotel.WithTracerProvider(tp))
	p, err := heed.NewPolicy(heed.WithHook(tr), heed.WithLogger(nil), heed.WithBackoff(backoff.Constant(time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_, err = heed.Do(context.Background(), p, func(context.Context) (int, error) {
		if n++; n == 1 {
			return 0, heed.Retryable(errors.New("busy"))
		}
		return n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	assertViews(t, views(exp.GetSpans()), []spanView{
		{Name: "heed.attempt", Kind: trace.SpanKindInternal, Status: codes.Error, Attrs: map[string]any{"error.type": "retryable"}},
		{Name: "heed.attempt", Kind: trace.SpanKindInternal, Status: codes.Unset, Attrs: map[string]any{"http.request.resend_count": int64(1)}},
	})
}
