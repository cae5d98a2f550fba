package heed_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/budget"
)

// answer is how a hedgeServer answers one request.
type answer struct {
	after  time.Duration // how long the server takes
	status int           // 0: 200
	deaf   bool          // answers after `after` even when the request was cancelled
}

// hedgeServer is an in-memory RoundTripper for hedging tests, run inside a
// synctest bubble so that `after` passes in fake time. Request i (from 0,
// in arrival order) is answered by plan(i). It records how each request's
// context ended and every body it handed out, to check that losers are
// cancelled and nothing is left open.
type hedgeServer struct {
	plan func(i int) answer

	mu     sync.Mutex
	n      int
	causes map[int]error // i -> the cause of a request cancelled before it answered
	bodies []*trackedBody
}

func newHedgeServer(plan func(i int) answer) *hedgeServer {
	return &hedgeServer{plan: plan, causes: make(map[int]error)}
}

type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

func (s *hedgeServer) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	i := s.n
	s.n++
	s.mu.Unlock()
	a := s.plan(i)
	timer := time.NewTimer(a.after)
	defer timer.Stop()
	if a.deaf {
		<-timer.C
	} else {
		select {
		case <-timer.C:
		case <-req.Context().Done():
			cause := context.Cause(req.Context())
			s.mu.Lock()
			s.causes[i] = cause
			s.mu.Unlock()
			return nil, cause
		}
	}
	body := &trackedBody{Reader: strings.NewReader(fmt.Sprintf("copy %d", i))}
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	s.mu.Unlock()
	return &http.Response{StatusCode: cmpOr(a.status, 200), Header: http.Header{}, Body: body, ContentLength: -1, Request: req}, nil
}

func cmpOr(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func (s *hedgeServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *hedgeServer) cause(i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.causes[i]
}

// allClosed fails t if a body the server handed out was left open.
func (s *hedgeServer) allClosed(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.bodies {
		if !b.closed.Load() {
			t.Errorf("a response body was left open (%d bodies in all)", len(s.bodies))
			return
		}
	}
}

// events records the events of a policy.
type events struct {
	mu   sync.Mutex
	list []heed.Event
}

func (r *events) OnEvent(_ context.Context, e heed.Event) {
	r.mu.Lock()
	r.list = append(r.list, e)
	r.mu.Unlock()
}

func (r *events) of(kind heed.EventKind) []heed.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []heed.Event
	for _, e := range r.list {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func hedgedClient(t *testing.T, s *hedgeServer, hc heed.HedgeConfig, opts ...heed.Option) *http.Client {
	t.Helper()
	c, err := heed.NewClient(append([]heed.Option{heed.WithBase(s), heed.WithLogger(nil), heed.WithHedging(hc)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fetch fetches url and returns the body and how long the call took.
func fetch(t *testing.T, c *http.Client, method, url string, header http.Header) (string, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), time.Since(start)
}

func TestHedgeTakesTheFirstAnswerAndCancelsTheOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newHedgeServer(func(i int) answer {
			if i == 0 {
				return answer{after: time.Second}
			}
			return answer{after: 10 * time.Millisecond}
		})
		var ev events
		c := hedgedClient(t, s, heed.HedgeConfig{Delay: 50 * time.Millisecond}, heed.WithHook(&ev))
		body, took := fetch(t, c, "GET", "http://api.test/items", nil)
		if body != "copy 1" || took != 60*time.Millisecond {
			t.Errorf("got %q after %v, want the hedge's answer after 60ms", body, took)
		}
		synctest.Wait()
		if s.count() != 2 {
			t.Errorf("server saw %d requests, want 2", s.count())
		}
		if err := s.cause(0); !errors.Is(err, heed.ErrHedgeLost) {
			t.Errorf("the first copy ended with %v, want ErrHedgeLost", err)
		}
		s.allClosed(t)
		hedges := ev.of(heed.EventHedge)
		if len(hedges) != 1 || hedges[0].Hedge != 1 || hedges[0].Wait != 50*time.Millisecond || hedges[0].Attempt != 1 {
			t.Errorf("hedge events %+v, want one for copy 1 after 50ms", hedges)
		}
		if a := ev.of(heed.EventAttempt); len(a) != 1 || a[0].Hedge != 1 || a[0].Status != 200 {
			t.Errorf("attempt events %+v, want one answered by copy 1", a)
		}
	})
}

func TestHedgeFirstCopyMayStillWin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newHedgeServer(func(i int) answer {
			if i == 0 {
				return answer{after: 70 * time.Millisecond}
			}
			return answer{after: time.Second}
		})
		c := hedgedClient(t, s, heed.HedgeConfig{Delay: 50 * time.Millisecond})
		if body, took := fetch(t, c, "GET", "http://api.test/", nil); body != "copy 0" || took != 70*time.Millisecond {
			t.Errorf("got %q after %v, want the first copy's answer after 70ms", body, took)
		}
		synctest.Wait()
		if err := s.cause(1); !errors.Is(err, heed.ErrHedgeLost) {
			t.Errorf("the hedge ended with %v, want ErrHedgeLost", err)
		}
		s.allClosed(t)
	})
}

// A copy that ignores its cancellation and answers after the race is over
// has its body closed by heed, and its goroutine ends.
func TestHedgeClosesALateLosersBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newHedgeServer(func(i int) answer {
			if i == 0 {
				return answer{after: 300 * time.Millisecond, deaf: true}
			}
			return answer{after: 10 * time.Millisecond}
		})
		c := hedgedClient(t, s, heed.HedgeConfig{Delay: 50 * time.Millisecond})
		if body, _ := fetch(t, c, "GET", "http://api.test/", nil); body != "copy 1" {
			t.Fatalf("got %q, want copy 1", body)
		}
		time.Sleep(time.Second) // virtual time: the bubble jumps past the late answer at once
		synctest.Wait()
		if s.count() != 2 {
			t.Fatalf("server saw %d requests, want 2", s.count())
		}
		s.allClosed(t)
	})
}

func TestHedgeOnlyWhatIsSafeToRepeat(t *testing.T) {
	key := http.Header{"Idempotency-Key": {"k1"}}
	for _, tc := range []struct {
		name   string
		method string
		header http.Header
		keyed  bool
		want   int // requests the server sees
	}{
		{"GET", "GET", nil, false, 2},
		{"PUT", "PUT", nil, false, 2},
		{"DELETE", "DELETE", nil, false, 2},
		{"POST", "POST", nil, true, 1},
		{"PATCH", "PATCH", nil, true, 1},
		{"POST with a key, not keyed", "POST", key, false, 1},
		{"POST with a key, keyed", "POST", key, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newHedgeServer(func(i int) answer { return answer{after: 100 * time.Millisecond} })
				c := hedgedClient(t, s, heed.HedgeConfig{Delay: 10 * time.Millisecond, Keyed: tc.keyed})
				fetch(t, c, tc.method, "http://api.test/", tc.header)
				synctest.Wait()
				if got := s.count(); got != tc.want {
					t.Errorf("server saw %d requests, want %d", got, tc.want)
				}
				s.allClosed(t)
			})
		})
	}
}

// A request body is sent in full by every copy.
func TestHedgeSendsTheBodyWithEveryCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []string
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			b, _ := io.ReadAll(req.Body)
			mu.Lock()
			got = append(got, string(b))
			first := len(got) == 1
			mu.Unlock()
			if first {
				<-req.Context().Done()
				return nil, context.Cause(req.Context())
			}
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
		})
		c, err := heed.NewClient(heed.WithBase(base), heed.WithLogger(nil), heed.WithHedging(heed.HedgeConfig{Delay: 10 * time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("PUT", "http://api.test/doc", io.NopCloser(strings.NewReader("the document"))) // no GetBody: heed buffers it
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		synctest.Wait()
		if len(got) != 2 || got[0] != "the document" || got[1] != "the document" {
			t.Errorf("bodies received %q, want the document twice", got)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Hedging composes with retrying: a copy that fails retryably does not
// cancel a sibling still in flight, and no further copy follows a failure.
func TestHedgeRetryableFailureKeepsTheSibling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newHedgeServer(func(i int) answer {
			if i == 0 {
				return answer{after: 200 * time.Millisecond}
			}
			return answer{status: 503}
		})
		c := hedgedClient(t, s, heed.HedgeConfig{Delay: 50 * time.Millisecond, MaxHedges: 3})
		if body, took := fetch(t, c, "GET", "http://api.test/", nil); body != "copy 0" || took != 200*time.Millisecond {
			t.Errorf("got %q after %v, want the first copy's answer after 200ms", body, took)
		}
		synctest.Wait()
		if s.count() != 2 {
			t.Errorf("server saw %d requests, want 2: no hedge after a failed one", s.count())
		}
		s.allClosed(t)
	})
}

// When every copy fails retryably, the attempt fails and the retry loop
// carries on.
func TestHedgeAllCopiesFailThenRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newHedgeServer(func(i int) answer {
			switch i {
			case 0:
				return answer{after: 100 * time.Millisecond, status: 503}
			case 1:
				return answer{after: 80 * time.Millisecond, status: 502}
			}
			return answer{}
		})
		var ev events
		c := hedgedClient(t, s, heed.HedgeConfig{Delay: 50 * time.Millisecond}, heed.WithHook(&ev))
		if body, _ := fetch(t, c, "GET", "http://api.test/", nil); body != "copy 2" {
			t.Errorf("got %q, want the retry's answer", body)
		}
		synctest.Wait()
		a := ev.of(heed.EventAttempt)
		if len(a) != 2 || a[0].Status != 502 || a[0].Hedge != 1 || a[1].Status != 200 {
			t.Errorf("attempts %+v, want the hedge's 502 (the last failure) then 200", a)
		}
		s.allClosed(t)
	})
}

func TestHedgeAtMostMaxHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newHedgeServer(func(i int) answer { return answer{after: time.Second} })
		c := hedgedClient(t, s, heed.HedgeConfig{Delay: 10 * time.Millisecond, MaxHedges: 3, Share: 1})
		if body, took := fetch(t, c, "GET", "http://api.test/", nil); body != "copy 0" || took != time.Second {
			t.Errorf("got %q after %v, want the first copy after 1s", body, took)
		}
		synctest.Wait()
		if s.count() != 4 {
			t.Errorf("server saw %d requests, want 4", s.count())
		}
		for i := 1; i < 4; i++ {
			if !errors.Is(s.cause(i), heed.ErrHedgeLost) {
				t.Errorf("copy %d ended with %v, want ErrHedgeLost", i, s.cause(i))
			}
		}
	})
}

// Under a sustained failure, hedges draw from the retry budget with the
// retries, so together they stay within it.
func TestHedgeBudgetStopsHedgesUnderFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newHedgeServer(func(i int) answer { return answer{after: 30 * time.Millisecond, status: 503} })
		var ev events
		c := hedgedClient(t, s, heed.HedgeConfig{Delay: 10 * time.Millisecond, Share: 1},
			heed.WithHook(&ev), heed.WithoutBreaker(),
			heed.WithRetryBudget(budget.RatioConfig{Percent: 0.2, MinPerSecond: 0.1, Window: 10 * time.Second}))
		const callers, each = 10, 10
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for range each {
					resp, err := c.Get("http://api.test/")
					if err == nil {
						resp.Body.Close()
					}
				}
			})
		}
		wg.Wait()
		synctest.Wait()
		logical := callers * each
		hedges, retries := len(ev.of(heed.EventHedge)), len(ev.of(heed.EventRetry))
		if extra := s.count() - logical; extra != hedges+retries {
			t.Errorf("%d extra requests, but %d hedges and %d retries", extra, hedges, retries)
		}
		// 20% of 100 requests plus a floor of 1 over the window.
		if hedges == 0 || hedges+retries > 21 {
			t.Errorf("%d hedges and %d retries for %d requests, want some hedges and at most 21 in all", hedges, retries, logical)
		}
		s.allClosed(t)
	})
}

// With the retry budget plentiful, the hedge share alone caps hedges: by
// default at a tenth of the requests plus a floor of 5 per 10 s.
func TestHedgeShareCapsHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newHedgeServer(func(i int) answer { return answer{after: 20 * time.Millisecond} })
		var ev events
		c := hedgedClient(t, s, heed.HedgeConfig{Delay: 10 * time.Millisecond}, heed.WithHook(&ev))
		const n = 200 // 4 s of requests, within one window
		for range n {
			fetch(t, c, "GET", "http://api.test/", nil)
		}
		synctest.Wait()
		hedges := len(ev.of(heed.EventHedge))
		if hedges < 20 || hedges > 25 {
			t.Errorf("%d hedges for %d slow requests, want 20 to 25", hedges, n)
		}
		s.allClosed(t)
	})
}

// The adaptive delay learns the key's p95: the first requests are not
// hedged, later ones are hedged after about the p95 of what was seen.
func TestHedgeAdaptiveDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var slow atomic.Bool
		s := newHedgeServer(func(i int) answer {
			if slow.Swap(false) {
				return answer{after: 200 * time.Millisecond}
			}
			return answer{after: 5 * time.Millisecond}
		})
		var ev events
		c := hedgedClient(t, s, heed.HedgeConfig{}, heed.WithHook(&ev))
		// While warming up, a slow request is not hedged.
		slow.Store(true)
		if _, took := fetch(t, c, "GET", "http://api.test/", nil); took != 200*time.Millisecond {
			t.Errorf("first request took %v, want 200ms unhedged", took)
		}
		for range 40 {
			fetch(t, c, "GET", "http://api.test/", nil)
		}
		if n := len(ev.of(heed.EventHedge)); n != 0 {
			t.Fatalf("%d hedges for requests no slower than usual", n)
		}
		slow.Store(true)
		_, took := fetch(t, c, "GET", "http://api.test/", nil)
		hedges := ev.of(heed.EventHedge)
		if len(hedges) != 1 {
			t.Fatalf("%d hedges for a slow request, want 1", len(hedges))
		}
		// 5 ms falls in the histogram bucket ending at 5.48 ms.
		if d := hedges[0].Wait; d < 5*time.Millisecond || d > 5500*time.Microsecond {
			t.Errorf("hedged after %v, want the p95 of 5ms requests", d)
		}
		if took > 11*time.Millisecond {
			t.Errorf("slow request took %v with its hedge, want about 10.5ms", took)
		}
		synctest.Wait()
		s.allClosed(t)
	})
}

func TestHedgeConfigErrors(t *testing.T) {
	for _, hc := range []heed.HedgeConfig{
		{Delay: -time.Millisecond},
		{MinDelay: -time.Millisecond},
		{Percentile: 1},
		{Percentile: -0.5},
		{MaxHedges: -1},
		{MaxHedges: 11},
		{Share: 1.5},
		{Share: -0.1},
	} {
		if _, err := heed.New(heed.WithHedging(hc)); err == nil || !strings.Contains(err.Error(), "WithHedging") {
			t.Errorf("WithHedging(%+v): error %v, want one naming WithHedging", hc, err)
		}
	}
}

// On a real server over loopback, the losing copy's connection is closed
// and the server sees its request cancelled: nothing is left open.
func TestHedgeLoopbackLeavesNothingOpen(t *testing.T) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]http.ConnState{}
		n     atomic.Int32
	)
	loserDone := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select {
			case <-r.Context().Done():
				close(loserDone)
			case <-time.After(5 * time.Second):
			}
			return
		}
		io.WriteString(w, "fast")
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		conns[c] = s
		mu.Unlock()
	}
	srv.Start()
	defer srv.Close()

	base := &http.Transport{}
	c, err := heed.NewClient(heed.WithBase(base), heed.WithLogger(nil), heed.WithHedging(heed.HedgeConfig{Delay: 20 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "fast" {
		t.Fatalf("got %q, want the hedge's answer", b)
	}
	select {
	case <-loserDone:
	case <-time.After(3 * time.Second):
		t.Fatal("the server never saw the losing copy cancelled")
	}
	base.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		open := 0
		for _, s := range conns {
			if s != http.StateClosed && s != http.StateHijacked {
				open++
			}
		}
		mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", open)
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.Close()
	goleak.VerifyNone(t)
}
