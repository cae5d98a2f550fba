package audit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/audit"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/heedtest"
)

// The package starts no goroutine; the loopback tests start servers and
// clients, which must all be gone at the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// request returns a request carrying the headers kv (name, value, ...).
func request(kv ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for i := 0; i < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

// only returns the snapshot's one class, failing unless there is exactly
// that one.
func only(t *testing.T, s audit.Snapshot, name string) audit.ClassStats {
	t.Helper()
	if len(s.Classes) != 1 || s.Classes[0].Class != name {
		t.Fatalf("classes %+v, want only %q", s.Classes, name)
	}
	return s.Classes[0]
}

func layerOf(t *testing.T, c audit.Counts, name string) audit.LayerCounts {
	t.Helper()
	l, ok := c.Layer(name)
	if !ok {
		t.Fatalf("no layer %q in %+v", name, c.Layers)
	}
	return l
}

// Every marker alone, valid, malformed and absurd: what each request counts
// as, and where.
func TestEachMarker(t *testing.T) {
	type want struct {
		first, retry          bool
		marked, malformed     bool
		attempt, declared     int64
		position, retriesOfIt int64
	}
	first := func(attempt, declared int64) want {
		return want{first: true, marked: true, attempt: attempt, declared: declared, position: attempt}
	}
	retry := func(attempt, declared int64) want {
		return want{retry: true, marked: true, attempt: attempt, declared: declared, position: attempt, retriesOfIt: 1}
	}
	ignored := want{first: true, malformed: true}
	for _, c := range []struct {
		layer, header string
		values        []string
		want          want
	}{
		{audit.LayerHeed, "Heed-Attempt", []string{"2"}, retry(2, 0)},
		{audit.LayerHeed, "heed-attempt", []string{"6"}, retry(6, 0)},
		{audit.LayerHeed, "Heed-Attempt", []string{"1"}, first(1, 0)},
		{audit.LayerHeed, "Heed-Attempt", []string{"0"}, ignored},
		{audit.LayerHeed, "Heed-Attempt", []string{"-2"}, ignored},
		{audit.LayerHeed, "Heed-Attempt", []string{"1000000000000"}, ignored},
		{audit.LayerHeed, "Heed-Attempt", []string{"2", "3"}, ignored},
		{audit.LayerHeed, "Heed-Attempt", []string{"lots"}, ignored},
		{audit.LayerEnvoy, "x-envoy-attempt-count", []string{"1"}, first(1, 0)},
		{audit.LayerEnvoy, "x-envoy-attempt-count", []string{"3"}, retry(3, 0)},
		{audit.LayerEnvoy, "x-envoy-attempt-count", []string{"0"}, ignored},
		{audit.LayerEnvoy, "x-envoy-attempt-count", []string{"-1"}, ignored},
		{audit.LayerEnvoy, "x-envoy-attempt-count", []string{"1000000000000"}, ignored},
		{audit.LayerGRPC, "grpc-previous-rpc-attempts", []string{"0"}, first(1, 0)},
		{audit.LayerGRPC, "grpc-previous-rpc-attempts", []string{"2"}, retry(3, 0)},
		{audit.LayerGRPC, "grpc-previous-rpc-attempts", []string{"-1"}, ignored},
		{audit.LayerGRPC, "grpc-previous-rpc-attempts", []string{"1000000000000"}, ignored},
		{audit.LayerAWS, "amz-sdk-request", []string{"attempt=1; max=3"}, first(1, 3)},
		{audit.LayerAWS, "amz-sdk-request", []string{"attempt=3; max=3"}, retry(3, 3)},
		{audit.LayerAWS, "amz-sdk-request", []string{"ttl=20260101T120000Z; attempt=2; max=5"}, retry(2, 5)},
		{audit.LayerAWS, "amz-sdk-request", []string{"attempt=1000000000000; max=3"}, ignored},
		{audit.LayerAWS, "amz-sdk-request", []string{"attempt=-1; max=3"}, ignored},
		{audit.LayerAWS, "amz-sdk-request", []string{"attempt=5; max=3"}, ignored},
		{audit.LayerAWS, "amz-sdk-request", []string{"max=3"}, ignored},
	} {
		t.Run(c.layer+"="+strings.Join(c.values, ","), func(t *testing.T) {
			a := audit.New(audit.Config{Clock: heedtest.NewClock(t0)})
			r := request()
			for _, v := range c.values {
				r.Header.Add(c.header, v)
			}
			a.Record(r)
			w := only(t, a.Snapshot(), audit.DefaultClass).Window
			if w.Requests != 1 || (w.First == 1) != c.want.first || (w.Retries == 1) != c.want.retry || w.Compound != 0 {
				t.Errorf("requests %d, first %d, retries %d, compound %d; want first %v, retry %v", w.Requests, w.First, w.Retries, w.Compound, c.want.first, c.want.retry)
			}
			if w.MaxPosition != c.want.position {
				t.Errorf("max position %d, want %d", w.MaxPosition, c.want.position)
			}
			for _, l := range w.Layers {
				if l.Layer != c.layer {
					if l != (audit.LayerCounts{Layer: l.Layer, Factor: l.Factor}) || l.Factor != 1 {
						t.Errorf("layer %s counted %+v", l.Layer, l)
					}
					continue
				}
				if (l.Marked == 1) != c.want.marked || (l.Malformed == 1) != c.want.malformed ||
					l.MaxAttempt != c.want.attempt || l.MaxDeclared != c.want.declared || l.Retries != c.want.retriesOfIt {
					t.Errorf("layer %+v, want %+v", l, c.want)
				}
			}
		})
	}
}

// A request through several retrying layers counts once, in each layer
// that marked it, and its position is the product of its attempts.
func TestSeveralMarkers(t *testing.T) {
	a := audit.New(audit.Config{Clock: heedtest.NewClock(t0)})
	for _, kv := range [][]string{
		{"X-Envoy-Attempt-Count", "1"},                          // heed 1, Envoy 1: the call's first request
		{"X-Envoy-Attempt-Count", "2"},                          // Envoy retries
		{"Heed-Attempt", "2", "X-Envoy-Attempt-Count", "1"},     // heed retries; Envoy counts from 1 again
		{"Heed-Attempt", "2", "X-Envoy-Attempt-Count", "2"},     // a retry of a retry
		{"Heed-Attempt", "3", "X-Envoy-Attempt-Count", "bogus"}, // heed's marker counts, Envoy's is ignored
	} {
		a.Record(request(kv...))
	}
	w := only(t, a.Snapshot(), audit.DefaultClass).Window
	if w.Requests != 5 || w.First != 1 || w.Retries != 4 || w.Compound != 1 || w.FanOut != 5 || w.MaxPosition != 4 {
		t.Errorf("counts %+v", w)
	}
	h, e := layerOf(t, w, audit.LayerHeed), layerOf(t, w, audit.LayerEnvoy)
	if h.Marked != 3 || h.Retries != 3 || h.MaxAttempt != 3 || h.Malformed != 0 {
		t.Errorf("heed %+v", h)
	}
	if e.Marked != 4 || e.Retries != 2 || e.MaxAttempt != 2 || e.Malformed != 1 {
		t.Errorf("envoy %+v", e)
	}
	if h.Factor != 2.5 || e.Factor != 5.0/3 {
		t.Errorf("factors: heed %v, envoy %v", h.Factor, e.Factor)
	}

	// All four layers at once, at their highest: the product is exact.
	a = audit.New(audit.Config{Clock: heedtest.NewClock(t0)})
	a.Record(request("Heed-Attempt", "1000", "X-Envoy-Attempt-Count", "1000",
		"Grpc-Previous-Rpc-Attempts", "999", "Amz-Sdk-Request", "attempt=1000; max=1000"))
	w = only(t, a.Snapshot(), audit.DefaultClass).Window
	if w.Retries != 1 || w.Compound != 1 || w.MaxPosition != 1_000_000_000_000 {
		t.Errorf("four layers at 1000: %+v", w)
	}
	for _, l := range w.Layers {
		if l.MaxAttempt != 1000 || l.Retries != 1 {
			t.Errorf("layer %+v", l)
		}
	}
}

// Layers of one's own are read as the built-in ones; eight layers at the
// highest attempt saturate the position instead of wrapping.
func TestCustomMarkers(t *testing.T) {
	a := audit.New(audit.Config{Clock: heedtest.NewClock(t0), Markers: []audit.Marker{
		{Layer: "own_loop", Header: "X-Own-Attempt"},
		{Layer: "gateway", Header: "X-Gateway-Retries", Previous: true},
		{Layer: "c", Header: "X-C"},
		{Layer: "d", Header: "X-D"},
	}})
	a.Record(request("X-Own-Attempt", "1", "X-Gateway-Retries", "0"))
	a.Record(request("X-Own-Attempt", "2", "X-Gateway-Retries", "1"))
	s := a.Snapshot()
	if got := strings.Join(s.Layers, ","); got != "heed,envoy,grpc,aws,own_loop,gateway,c,d" {
		t.Errorf("layers %s", got)
	}
	w := only(t, s, audit.DefaultClass).Window
	own, gw := layerOf(t, w, "own_loop"), layerOf(t, w, "gateway")
	if w.First != 1 || w.Retries != 1 || w.Compound != 1 || w.MaxPosition != 4 ||
		own.Marked != 2 || own.Retries != 1 || own.MaxAttempt != 2 || gw.Marked != 2 || gw.Retries != 1 || gw.MaxAttempt != 2 {
		t.Errorf("counts %+v", w)
	}
	a.Record(request("Heed-Attempt", "1000", "X-Envoy-Attempt-Count", "1000", "Grpc-Previous-Rpc-Attempts", "999",
		"Amz-Sdk-Request", "attempt=1000", "X-Own-Attempt", "1000", "X-Gateway-Retries", "999", "X-C", "1000", "X-D", "1000"))
	if w := only(t, a.Snapshot(), audit.DefaultClass).Window; w.MaxPosition != 1<<62 {
		t.Errorf("eight layers at 1000: position %d, want the saturation 2^62", w.MaxPosition)
	}
}

func TestNewPanicsOnBadMarkers(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "taken") {
			t.Errorf("recovered %v", r)
		}
	}()
	audit.New(audit.Config{Markers: []audit.Marker{{Layer: "envoy", Header: "X-Mine"}}})
}

// The window slides on the clock; the totals keep everything, and never go
// down.
func TestWindowSlides(t *testing.T) {
	clk := heedtest.NewClock(t0)
	a := audit.New(audit.Config{Clock: clk, Window: 100 * time.Second}) // slides by 5 s
	for range 10 {
		a.Record(request())
	}
	a.Record(request("Heed-Attempt", "4"))
	clk.Advance(50 * time.Second)
	for range 5 {
		a.Record(request("X-Envoy-Attempt-Count", "2"))
	}
	c := only(t, a.Snapshot(), audit.DefaultClass)
	if c.Window.Requests != 16 || c.Window.First != 10 || c.Window.FanOut != 1.6 || c.Total.Requests != 16 {
		t.Errorf("at 50 s: window %+v, total %+v", c.Window, c.Total)
	}

	clk.Advance(60 * time.Second) // 110 s: the first 11 are out of the window
	c = only(t, a.Snapshot(), audit.DefaultClass)
	if c.Window.Requests != 5 || c.Window.First != 0 || c.Window.FanOut != 0 || c.Window.MaxPosition != 2 {
		t.Errorf("at 110 s: window %+v", c.Window)
	}
	if h := layerOf(t, c.Window, audit.LayerHeed); h.MaxAttempt != 0 || h.Marked != 0 {
		t.Errorf("at 110 s: heed's attempt 4 still in the window: %+v", h)
	}
	if h := layerOf(t, c.Total, audit.LayerHeed); h.MaxAttempt != 4 || c.Total.Requests != 16 || c.Total.First != 10 || c.Total.MaxPosition != 4 {
		t.Errorf("at 110 s: total %+v", c.Total)
	}

	clk.Advance(time.Hour) // every bucket stale, then reused
	c = only(t, a.Snapshot(), audit.DefaultClass)
	if c.Window.Requests != 0 || c.Window.FanOut != 0 || c.Total.Requests != 16 {
		t.Errorf("an hour later: window %+v, total %+v", c.Window, c.Total)
	}
	a.Record(request())
	c = only(t, a.Snapshot(), audit.DefaultClass)
	if c.Window.Requests != 1 || c.Window.FanOut != 1 || c.Total.Requests != 17 || c.Total.Retries != 6 {
		t.Errorf("after reuse: window %+v, total %+v", c.Window, c.Total)
	}

	// Many windows, a request every 7 s: the window holds the last 100 s
	// (give or take a bucket), the totals all of them.
	prev := c.Total.Requests
	for i := range 1000 {
		clk.Advance(7 * time.Second)
		a.Record(request("X-Envoy-Attempt-Count", fmt.Sprint(1+i%2)))
		c = only(t, a.Snapshot(), audit.DefaultClass)
		if c.Total.Requests != prev+1 {
			t.Fatalf("step %d: total %d after %d", i, c.Total.Requests, prev)
		}
		prev = c.Total.Requests
		if n := c.Window.Requests; i >= 20 && (n < 13 || n > 15) {
			t.Fatalf("step %d: %d requests in a 100 s window of one per 7 s", i, n)
		}
	}
	if e := layerOf(t, c.Total, audit.LayerEnvoy); e.Marked != 1005 || e.Retries != 505 {
		t.Errorf("envoy total %+v", e)
	}
}

// A clock that goes back does not wipe newer counts.
func TestClockGoesBack(t *testing.T) {
	var now atomic.Int64
	now.Store(t0.Add(time.Hour).UnixNano())
	a := audit.New(audit.Config{Clock: clockFunc(func() time.Time { return time.Unix(0, now.Load()) }), Window: 100 * time.Second})
	a.Record(request("Heed-Attempt", "2"))
	now.Add(int64(30 * time.Second))
	a.Record(request())
	now.Add(-int64(2 * time.Hour)) // before the Auditor was made
	a.Record(request())
	c := only(t, a.Snapshot(), audit.DefaultClass)
	if c.Total.Requests != 3 || c.Total.Retries != 1 {
		t.Errorf("total %+v", c.Total)
	}
}

type clockFunc func() time.Time

func (f clockFunc) Now() time.Time                            { return f() }
func (clockFunc) NewTimer(time.Duration) clock.Timer          { panic("not used") }
func (clockFunc) AfterFunc(time.Duration, func()) clock.Timer { panic("not used") }

// The number of class names is capped; the rest, and names unfit for a
// label, count as "other".
func TestClassCap(t *testing.T) {
	a := audit.New(audit.Config{Clock: heedtest.NewClock(t0), MaxClasses: 3, Class: func(r *http.Request) string {
		return r.Header.Get("X-Caller")
	}})
	for i, caller := range []string{"checkout", "search", "", "billing", "ads", "search", strings.Repeat("x", 65), "bad\xff", "other", "checkout"} {
		kv := []string{"X-Caller", caller}
		if i%2 == 1 {
			kv = append(kv, "Heed-Attempt", "2")
		}
		a.Record(request(kv...))
	}
	s := a.Snapshot()
	got := map[string]int64{}
	var names []string
	for _, c := range s.Classes {
		got[c.Class] = c.Total.Requests
		names = append(names, c.Class)
	}
	want := map[string]int64{"checkout": 2, "search": 2, audit.DefaultClass: 1, audit.OtherClass: 5}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("classes %v, want %v", got, want)
	}
	if strings.Join(names, ",") != "checkout,default,other,search" {
		t.Errorf("order %v", names)
	}
	if c, _ := s.Class("search"); c.Total.Retries != 2 || c.Total.FanOut != 0 {
		t.Errorf("search %+v", c.Total)
	}

	// Beyond the cap, no name is kept, however many callers invent.
	for i := range 10_000 {
		a.Record(request("X-Caller", fmt.Sprint("caller-", i)))
	}
	if s := a.Snapshot(); len(s.Classes) != 4 {
		t.Errorf("%d classes after 10,000 names", len(s.Classes))
	}
	if c, _ := a.Snapshot().Class(audit.OtherClass); c.Total.Requests != 10_005 {
		t.Errorf("other: %d requests", c.Total.Requests)
	}
}

// Requests recorded while snapshots are taken and the window slides: every
// request counted once, totals never decreasing.
func TestConcurrent(t *testing.T) {
	clk := heedtest.NewClock(t0)
	a := audit.New(audit.Config{Clock: clk, Window: time.Second, Class: func(r *http.Request) string {
		return r.Header.Get("X-Caller")
	}})
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		var last int64
		for {
			select {
			case <-stop:
				return
			default:
			}
			clk.Advance(30 * time.Millisecond)
			var n int64
			for _, c := range a.Snapshot().Classes {
				n += c.Total.Requests
			}
			if n < last {
				t.Errorf("total went down: %d after %d", n, last)
				return
			}
			last = n
		}
	}()
	reqs := []*http.Request{
		request("X-Caller", "a"),
		request("X-Caller", "b", "Heed-Attempt", "2", "X-Envoy-Attempt-Count", "2"),
		request("X-Caller", "a", "X-Envoy-Attempt-Count", "1"),
		request("X-Caller", "c", "Amz-Sdk-Request", "attempt=2; max=3"),
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				a.Record(reqs[(w+i)%len(reqs)])
			}
		}()
	}
	wg.Wait()
	close(stop)
	watcher.Wait()
	var total, retries, compound int64
	for _, c := range a.Snapshot().Classes {
		total += c.Total.Requests
		retries += c.Total.Retries
		compound += c.Total.Compound
	}
	if total != workers*each || retries != workers*each/2 || compound != workers*each/4 {
		t.Errorf("total %d, retries %d, compound %d", total, retries, compound)
	}
}

// heed's own client, on loopback, through the middleware: a handler failing
// twice with 503 then answering 200 receives 3 requests for 1 call, the
// last two marked as heed's attempts 2 and 3.
func TestLoopbackHeedClient(t *testing.T) {
	a := audit.New(audit.Config{Clock: heedtest.NewClock(t0)})
	var n atomic.Int32
	srv := httptest.NewServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server at %s, want loopback", srv.URL)
	}
	client, err := heed.NewClient(heed.WithLogger(nil), heed.WithBase(srv.Client().Transport),
		heed.WithClock(heedtest.NewClock(t0).AutoAdvance())) // the backoffs take no real time
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(srv.URL + "/items")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	w := only(t, a.Snapshot(), audit.DefaultClass).Window
	h := layerOf(t, w, audit.LayerHeed)
	if w.Requests != 3 || w.First != 1 || w.Retries != 2 || w.FanOut != 3 || w.MaxPosition != 3 {
		t.Errorf("counts %+v", w)
	}
	if h.Marked != 2 || h.Retries != 2 || h.MaxAttempt != 3 || h.Malformed != 0 || h.Factor != 3 {
		t.Errorf("heed %+v", h)
	}
}

// The worked example of the documentation, run: a heed client making up
// to 3 attempts, through a proxy retrying as Envoy does (2 attempts,
// x-envoy-attempt-count), to a service failing half its requests. Each
// call starts exactly one tree, and on average makes
// (1 + 1/4 + 1/16) x 1.5 = 1.97 requests.
func TestWorkedExampleChain(t *testing.T) {
	a := audit.New(audit.Config{Clock: heedtest.NewClock(t0)})
	var mu sync.Mutex
	state := uint64(42)
	fail := func() bool { // a fixed sequence of coin flips (xorshift)
		mu.Lock()
		defer mu.Unlock()
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return state&1 == 0
	}
	service := httptest.NewServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})))
	defer service.Close()
	envoy := httptest.NewServer(envoyLike(t, service, 2))
	defer envoy.Close()
	client, err := heed.NewClient(heed.WithLogger(nil), heed.WithMaxAttempts(3), heed.WithoutRetryBudget(),
		heed.WithBase(envoy.Client().Transport), heed.WithClock(heedtest.NewClock(t0).AutoAdvance()))
	if err != nil {
		t.Fatal(err)
	}
	const calls = 1000
	failed := 0
	for range calls {
		resp, err := client.Get(envoy.URL + "/items")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed++
		}
	}
	w := only(t, a.Snapshot(), audit.DefaultClass).Window
	h, e := layerOf(t, w, audit.LayerHeed), layerOf(t, w, audit.LayerEnvoy)
	t.Logf("%d calls, %d failed: requests %d, first %d, fan-out %.3f, compound %d, max position %d; heed: retries %d, max %d, factor %.3f; envoy: retries %d, max %d, factor %.3f",
		calls, failed, w.Requests, w.First, w.FanOut, w.Compound, w.MaxPosition, h.Retries, h.MaxAttempt, h.Factor, e.Retries, e.MaxAttempt, e.Factor)
	if w.First != calls {
		t.Errorf("%d first attempts for %d calls: each call starts one tree", w.First, calls)
	}
	if w.FanOut < 1.8 || w.FanOut > 2.15 {
		t.Errorf("fan-out %.3f, want about 1.97", w.FanOut)
	}
	if h.Factor < 1.2 || h.Factor > 1.45 || e.Factor < 1.4 || e.Factor > 1.6 {
		t.Errorf("factors: heed %.3f (want about 1.31), envoy %.3f (about 1.5)", h.Factor, e.Factor)
	}
	if h.MaxAttempt != 3 || e.MaxAttempt != 2 || w.MaxPosition != 6 || w.Compound == 0 {
		t.Errorf("maxima: heed %d, envoy %d, position %d, compound %d; want 3, 2, 6, > 0", h.MaxAttempt, e.MaxAttempt, w.MaxPosition, w.Compound)
	}
	if e.Marked != w.Requests || h.Marked != h.Retries {
		t.Errorf("envoy marked %d of %d; heed marked %d, retries %d", e.Marked, w.Requests, h.Marked, h.Retries)
	}
}

// envoyLike is a proxy retrying a 503 as Envoy does: up to attempts
// attempts, each sent with x-envoy-attempt-count, the count set anew on
// every request it receives, other headers (Heed-Attempt) passed on.
func envoyLike(t *testing.T, upstream *httptest.Server, attempts int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for n := 1; ; n++ {
			out, err := http.NewRequestWithContext(r.Context(), r.Method, upstream.URL+r.URL.RequestURI(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			out.Header = r.Header.Clone()
			out.Header.Set(audit.HeaderEnvoy, fmt.Sprint(n))
			resp, err := upstream.Client().Do(out)
			if err != nil {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			if resp.StatusCode == http.StatusServiceUnavailable && n < attempts {
				resp.Body.Close()
				continue
			}
			defer resp.Body.Close()
			w.WriteHeader(resp.StatusCode)
			var buf [512]byte
			k, _ := resp.Body.Read(buf[:])
			w.Write(buf[:k])
			return
		}
	})
}

// nopWriter is a ResponseWriter that keeps nothing.
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header       { return w.h }
func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (nopWriter) WriteHeader(int)             {}

var nop = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// Recording allocates nothing: not for a request without markers, the
// common one, nor for one with markers, nor with a class function.
func TestRecordAllocs(t *testing.T) {
	byCaller := audit.New(audit.Config{Clock: heedtest.NewClock(t0), Class: func(r *http.Request) string {
		if v := r.Header["X-Caller"]; len(v) > 0 {
			return v[0]
		}
		return ""
	}})
	plain := audit.New(audit.Config{})
	w := nopWriter{http.Header{}}
	for _, c := range []struct {
		name string
		a    *audit.Auditor
		r    *http.Request
	}{
		{"none", plain, request()},
		{"envoy-first", plain, request("X-Envoy-Attempt-Count", "1")},
		{"heed-envoy-retry", plain, request("Heed-Attempt", "2", "X-Envoy-Attempt-Count", "2")},
		{"aws", plain, request("Amz-Sdk-Request", "ttl=20260101T120000Z; attempt=2; max=3")},
		{"malformed", plain, request("Heed-Attempt", "1000000000000")},
		{"class", byCaller, request("X-Caller", "checkout", "Heed-Attempt", "2")},
		{"class-other", audit.New(audit.Config{MaxClasses: 1, Class: func(*http.Request) string { return "over-the-cap" }}), request()},
	} {
		h := c.a.Middleware(nop)
		if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, c.r) }); n != 0 {
			t.Errorf("%s: %.1f allocations per request", c.name, n)
		}
	}
}

func BenchmarkMiddleware(b *testing.B) {
	w := nopWriter{http.Header{}}
	for _, c := range []struct {
		name string
		cfg  audit.Config
		r    *http.Request
	}{
		{"none", audit.Config{}, request()},
		{"envoy-first", audit.Config{}, request("X-Envoy-Attempt-Count", "1")},
		{"heed-envoy-retry", audit.Config{}, request("Heed-Attempt", "2", "X-Envoy-Attempt-Count", "2")},
		{"aws-retry", audit.Config{}, request("Amz-Sdk-Request", "attempt=2; max=3")},
		{"class-none", audit.Config{Class: func(r *http.Request) string {
			if v := r.Header["X-Caller"]; len(v) > 0 {
				return v[0]
			}
			return ""
		}}, request("X-Caller", "checkout")},
	} {
		h := audit.New(c.cfg).Middleware(nop)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, c.r)
			}
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := nopWriter{http.Header{}}
				for pb.Next() {
					h.ServeHTTP(w, c.r)
				}
			})
		})
	}
	b.Run("baseline", func(b *testing.B) { // the handler without the middleware
		b.ReportAllocs()
		r := request()
		for b.Loop() {
			nop.ServeHTTP(w, r)
		}
	})
}

// Attempt reads the highest valid marker; malformed ones count for nothing.
func TestAttempt(t *testing.T) {
	for _, c := range []struct {
		header http.Header
		want   int
	}{
		{http.Header{}, 1},
		{http.Header{audit.HeaderHeed: {"3"}}, 3},
		{http.Header{audit.HeaderGRPC: {"2"}, audit.HeaderEnvoy: {"2"}}, 3},
		{http.Header{audit.HeaderAWS: {"attempt=4; max=5"}}, 4},
		{http.Header{audit.HeaderHeed: {"2", "3"}}, 1},          // repeated: malformed
		{http.Header{audit.HeaderEnvoy: {"1001"}}, 1},           // past MaxAttempt
		{http.Header{audit.HeaderAWS: {"attempt=5; max=3"}}, 1}, // beyond its own max
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header = c.header
		if got := audit.Attempt(r); got != c.want {
			t.Errorf("Attempt(%v) = %d, want %d", c.header, got, c.want)
		}
	}
}
