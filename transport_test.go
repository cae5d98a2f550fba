package heed_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
)

// client returns an http.Client through heed on a fake clock that jumps
// over every wait, so retries take no real time.
func client(t *testing.T, opts ...heed.Option) (*http.Client, *heedtest.Clock) {
	t.Helper()
	clk := heedtest.NewClock(t0).AutoAdvance()
	opts = append([]heed.Option{heed.WithClock(clk), heed.WithLogger(nil)}, opts...)
	c, err := heed.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, clk
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, []byte, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, b, nil
}

func TestRetriesUntilSuccess(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.Status(502), heedtest.OK("done")})
	c, clk := client(t)
	resp, body, err := get(t, c, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || string(body) != "done" || srv.Count() != 3 {
		t.Fatalf("status %d body %q after %d requests", resp.StatusCode, body, srv.Count())
	}
	as := heed.Attempts(resp)
	if len(as) != 3 || as[0].Status != 503 || as[1].Status != 502 || as[2].Status != 200 {
		t.Fatalf("attempts %+v", as)
	}
	for _, a := range as[:2] {
		if a.Source != heed.SourceBackoff || a.Wait <= 0 || a.Wait > heed.DefaultBackoff.Cap() {
			t.Fatalf("attempt %d waited %v from %v", a.Number, a.Wait, a.Source)
		}
	}
	if waited := clk.Now().Sub(t0); waited != as[0].Wait+as[1].Wait {
		t.Fatalf("clock moved %v, waits were %v and %v", waited, as[0].Wait, as[1].Wait)
	}
}

func TestFinalStatusIsAResponse(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{{Status: 503, Body: "busy"}})
	c, _ := client(t)
	resp, body, err := get(t, c, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || string(body) != "busy" || srv.Count() != heed.DefaultMaxAttempts {
		t.Fatalf("status %d body %q after %d requests", resp.StatusCode, body, srv.Count())
	}
	if n := len(heed.Attempts(resp)); n != heed.DefaultMaxAttempts {
		t.Fatalf("%d attempts recorded", n)
	}

	// Opting in turns it into an error that says so.
	c2, _ := client(t, heed.WithErrorOnExhausted())
	_, err = c2.Get(srv.URL)
	var he *heed.Error
	var se *heed.StatusError
	if !errors.As(err, &he) || !errors.Is(err, heed.ErrAttemptsExhausted) || !errors.As(err, &se) || se.StatusCode != 503 {
		t.Fatalf("err = %v", err)
	}
	if len(he.Attempts) != heed.DefaultMaxAttempts || he.Method != "GET" {
		t.Fatalf("Error %+v", he)
	}
}

func TestNeverRetried(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 422} {
		srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(code), heedtest.OK("")})
		c, _ := client(t)
		resp, _, err := get(t, c, srv.URL)
		if err != nil || resp.StatusCode != code || srv.Count() != 1 {
			t.Errorf("%d: status %v err %v after %d requests", code, resp.StatusCode, err, srv.Count())
		}
	}
}

func TestRetryAfterTooLongReturnsAtOnce(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(429, 36000), heedtest.OK("")})
	c, clk := client(t)
	_, err := c.Get(srv.URL)
	var he *heed.Error
	if !errors.As(err, &he) || !errors.Is(err, heed.ErrWaitTooLong) {
		t.Fatalf("err = %v", err)
	}
	if want := t0.Add(10 * time.Hour); !he.RetryAt.Equal(want) {
		t.Fatalf("RetryAt = %v, want %v", he.RetryAt, want)
	}
	if d := he.RetryAt.Sub(t0); he.RetryAt.IsZero() || d != 10*time.Hour {
		t.Fatalf("RetryAt is %v after the start, want 10h", d)
	}
	if clk.Now() != t0 || srv.Count() != 1 {
		t.Fatalf("waited %v, %d requests", clk.Now().Sub(t0), srv.Count())
	}
	var se *heed.StatusError
	if !errors.As(err, &se) || se.StatusCode != 429 || se.Header.Get("Retry-After") != "36000" {
		t.Fatalf("cause %v", err)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	at := t0.Add(42 * time.Second)
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(503, 7), heedtest.RetryAfterDate(429, at), heedtest.OK("")})
	c, clk := client(t)
	resp, _, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(resp, err)
	}
	as := heed.Attempts(resp)
	// The 503 with a Retry-After starts pacing: retries told the same wait
	// spread over as long again.
	if as[0].Source != heed.SourceRetryAfter || as[0].Wait < 7*time.Second || as[0].Wait > 14*time.Second {
		t.Fatalf("first wait %v from %v", as[0].Wait, as[0].Source)
	}
	// The date is absolute: heed never retries before it.
	if as[1].Source != heed.SourceRetryAfter || clk.Now().Before(at) {
		t.Fatalf("second wait %v from %v; now %v, date %v", as[1].Wait, as[1].Source, clk.Now(), at)
	}
}

// The caller's cancellation ends a wait at once, on the real clock.
func TestCancelStopsWait(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(503, 30)})
	c, err := heed.NewClient(heed.WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	go func() {
		for srv.Count() == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond) // let heed start waiting
		cancel()
	}()
	start := time.Now()
	_, err = c.Do(req)
	took := time.Since(start)
	if !errors.Is(err, heed.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if took > 2*time.Second {
		t.Fatalf("cancel took %v to end a 30 s wait", took)
	}
	t.Logf("cancelled wait returned after %v", took)
}

func TestDeadlineShorterThanHint(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(503, 30), heedtest.OK("")})
	c, err := heed.NewClient(heed.WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	start := time.Now()
	_, err = c.Do(req)
	if !errors.Is(err, heed.ErrDeadline) || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

func TestIdenticalBodyOnEveryAttempt(t *testing.T) {
	payload := strings.Repeat("heed-", 1000)
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{"with GetBody", func() io.Reader { return strings.NewReader(payload) }},
		{"buffered", func() io.Reader { return io.MultiReader(strings.NewReader(payload)) }}, // no GetBody
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.Status(503), heedtest.OK("")})
			c, _ := client(t)
			req, _ := http.NewRequest("PUT", srv.URL, tc.body())
			resp, err := c.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatal(resp, err)
			}
			resp.Body.Close()
			reqs := srv.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests", len(reqs))
			}
			for i, r := range reqs {
				if string(r.Body) != payload {
					t.Fatalf("attempt %d sent %d bytes, want the same %d", i+1, len(r.Body), len(payload))
				}
			}
		})
	}
}

func TestBodyTooLargeIsSentOnce(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.OK("")})
	c, _ := client(t, heed.WithMaxBodyBuffer(100), heed.WithErrorOnExhausted())
	payload := strings.Repeat("x", 1000)
	req, _ := http.NewRequest("PUT", srv.URL, io.MultiReader(strings.NewReader(payload)))
	_, err := c.Do(req)
	if !errors.Is(err, heed.ErrBodyNotReplayable) || !strings.Contains(err.Error(), "cannot be sent again") {
		t.Fatalf("err = %v", err)
	}
	if reqs := srv.Requests(); len(reqs) != 1 || string(reqs[0].Body) != payload {
		t.Fatalf("%d requests, first body %d bytes", len(reqs), len(reqs[0].Body))
	}
}

func TestIdempotencyKeys(t *testing.T) {
	t.Run("POST without a key is sent once", func(t *testing.T) {
		srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.OK("")})
		c, _ := client(t)
		resp, err := c.Post(srv.URL, "text/plain", strings.NewReader("charge"))
		if err != nil || resp.StatusCode != 503 || srv.Count() != 1 {
			t.Fatalf("status %v err %v after %d requests", resp.StatusCode, err, srv.Count())
		}
		resp.Body.Close()
	})
	t.Run("POST with the caller's key is retried with it", func(t *testing.T) {
		srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.Status(429), heedtest.OK("")})
		c, _ := client(t)
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("charge"))
		req.Header.Set("Idempotency-Key", "order-17")
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatal(resp, err)
		}
		resp.Body.Close()
		for i, r := range srv.Requests() {
			if r.Header.Get("Idempotency-Key") != "order-17" || string(r.Body) != "charge" {
				t.Fatalf("attempt %d: key %q body %q", i+1, r.Header.Get("Idempotency-Key"), r.Body)
			}
		}
	})
	t.Run("automatic keys: one per request, same on every attempt", func(t *testing.T) {
		srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.Status(503), heedtest.OK(""), heedtest.Status(503), heedtest.OK("")})
		c, _ := client(t, heed.WithAutoIdempotencyKey())
		req, _ := http.NewRequest("PATCH", srv.URL, strings.NewReader("x"))
		for range 2 {
			resp, err := c.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatal(resp, err)
			}
			resp.Body.Close()
		}
		if req.Header.Get("Idempotency-Key") != "" {
			t.Fatal("the caller's request was given a key")
		}
		reqs := srv.Requests()
		if len(reqs) != 5 {
			t.Fatalf("%d requests", len(reqs))
		}
		first, second := reqs[0].Header.Get("Idempotency-Key"), reqs[3].Header.Get("Idempotency-Key")
		if len(first) != 36 || first[14] != '4' || first == second {
			t.Fatalf("keys %q and %q", first, second)
		}
		for i, r := range reqs {
			want := first
			if i >= 3 {
				want = second
			}
			if got := r.Header.Get("Idempotency-Key"); got != want {
				t.Fatalf("attempt %d: key %q, want %q", i+1, got, want)
			}
		}
	})
}

// A truncated body and a reset connection are retried for GET, not for a
// POST without a key. New connections each time, so net/http's own retry of
// stale pooled connections does not muddle the count.
func TestTransportFailures(t *testing.T) {
	steps := map[string]heedtest.Step{
		"truncated":         {Status: 200, Body: "0123456789", Truncate: true},
		"truncated chunked": {Status: 200, Body: "0123456789", Truncate: true, Chunked: true},
		"reset":             {Reset: true},
	}
	for name, step := range steps {
		t.Run(name+" GET", func(t *testing.T) {
			srv := heedtest.NewServer(t, []heedtest.Step{step, heedtest.OK("whole")})
			c, _ := client(t, heed.WithBase(&http.Transport{DisableKeepAlives: true}))
			resp, body, err := get(t, c, srv.URL)
			if err != nil || string(body) != "whole" || srv.Count() != 2 {
				t.Fatalf("body %q err %v after %d requests", body, err, srv.Count())
			}
			as := heed.Attempts(resp)
			if len(as) != 2 || as[0].Err == nil {
				t.Fatalf("attempts %+v", as)
			}
		})
		t.Run(name+" POST", func(t *testing.T) {
			srv := heedtest.NewServer(t, []heedtest.Step{step, heedtest.OK("whole")})
			c, _ := client(t, heed.WithBase(&http.Transport{DisableKeepAlives: true}))
			resp, err := c.Post(srv.URL, "text/plain", strings.NewReader("once"))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil || srv.Count() != 1 {
				t.Fatalf("err %v after %d requests", err, srv.Count())
			}
		})
	}
}

func TestRefusedIsRetriedEvenForPOST(t *testing.T) {
	addr := heedtest.DeadAddr(t)
	c, _ := client(t, heed.WithMaxAttempts(3))
	_, err := c.Post("http://"+addr+"/charge", "text/plain", strings.NewReader("x"))
	var he *heed.Error
	if !errors.As(err, &he) || !errors.Is(err, heed.ErrAttemptsExhausted) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v", err)
	}
	if len(he.Attempts) != 3 || he.Attempts[0].Kind != heed.KindRefused {
		t.Fatalf("attempts %+v", he.Attempts)
	}
}

func TestNotRetryableTransportErrors(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsSrv.Close()
	loop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	}))
	defer loop.Close()
	c, _ := client(t)
	for name, url := range map[string]string{
		"unknown authority":  tlsSrv.URL,
		"unsupported scheme": "ftp://127.0.0.1/x",
		"too many redirects": loop.URL + "/again",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Get(url)
			var he *heed.Error
			if err == nil {
				t.Fatal("no error")
			}
			if errors.As(err, &he) && len(he.Attempts) != 1 {
				t.Fatalf("%d attempts: %v", len(he.Attempts), err)
			}
			if name != "too many redirects" && !errors.Is(err, heed.ErrNotRetryable) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestCallerRequestUnchanged(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.OK("")})
	c, _ := client(t, heed.WithAutoIdempotencyKey(), heed.WithAttemptTimeout(time.Minute))
	req, _ := http.NewRequest("POST", srv.URL+"/a?b=c", strings.NewReader("body"))
	req.Header.Set("X-Trace", "1")
	before := *req
	hdr := req.Header.Clone()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	after := *req
	if before.URL != after.URL || before.Method != after.Method || before.GetBody == nil || after.Context() != before.Context() {
		t.Fatal("request fields changed")
	}
	if len(req.Header) != len(hdr) || req.Header.Get("X-Trace") != "1" {
		t.Fatalf("header changed: %v", req.Header)
	}
}

// Retried responses are drained and closed, so every attempt reuses one
// connection.
func TestConnectionReuse(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{{Status: 503, Body: strings.Repeat("b", 4000)}, {Status: 503, Body: "busy"}, heedtest.OK("ok")})
	c, _ := client(t)
	var conns, reused atomic.Int32
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		conns.Add(1)
		if i.Reused {
			reused.Add(1)
		}
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if conns.Load() != 3 || reused.Load() != 2 {
		t.Fatalf("%d connections got, %d reused; want 3 and 2", conns.Load(), reused.Load())
	}
}

func TestAttemptTimeout(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{{Hang: true}, heedtest.OK("late")})
	clk := heedtest.NewClock(t0)
	c, err := heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil), heed.WithAttemptTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	done := make(chan struct{})
	var resp *http.Response
	go func() {
		defer close(done)
		resp, err = c.Get(srv.URL)
	}()
	clk.BlockUntil(1) // the attempt's timer
	for srv.Count() == 0 {
		time.Sleep(time.Millisecond) // until the server holds the request
	}
	clk.Advance(2 * time.Second) // the attempt times out...
	clk.BlockUntil(1)            // ...and heed sleeps its backoff
	clk.AdvanceToNext()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	as := heed.Attempts(resp)
	if len(as) != 2 || as[0].Kind != heed.KindTimeout || resp.StatusCode != 200 {
		t.Fatalf("attempts %+v", as)
	}
}

func TestMaxTotal(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(503, 8)})
	c, clk := client(t, heed.WithMaxTotal(20*time.Second))
	_, err := c.Get(srv.URL)
	if !errors.Is(err, heed.ErrDeadline) {
		t.Fatalf("err = %v", err)
	}
	if waited := clk.Now().Sub(t0); waited > 20*time.Second || srv.Count() < 2 {
		t.Fatalf("waited %v over %d requests", waited, srv.Count())
	}
}

func TestCredentialRefresh(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{{Handler: func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer fresh" {
			w.WriteHeader(401)
			return
		}
		io.WriteString(w, "welcome")
	}}})
	var refreshes int
	c, _ := client(t, heed.WithCredentialRefresh(func(ctx context.Context, next *http.Request) error {
		refreshes++
		next.Header.Set("Authorization", "Bearer fresh")
		return nil
	}))
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Authorization", "Bearer stale")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "welcome" || refreshes != 1 || srv.Count() != 2 {
		t.Fatalf("status %d body %q, %d refreshes, %d requests", resp.StatusCode, body, refreshes, srv.Count())
	}
	if req.Header.Get("Authorization") != "Bearer stale" {
		t.Fatal("refresh changed the caller's request")
	}

	// Still 401 after refreshing: final, and refreshed only once.
	srv2 := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(401)})
	resp, err = c.Get(srv2.URL)
	if err != nil || resp.StatusCode != 401 || srv2.Count() != 2 || refreshes != 2 {
		t.Fatalf("status %v err %v, %d requests, %d refreshes", resp.StatusCode, err, srv2.Count(), refreshes)
	}
	resp.Body.Close()

	// A failing refresh ends the call with its error.
	boom := errors.New("token endpoint down")
	c3, _ := client(t, heed.WithCredentialRefresh(func(context.Context, *http.Request) error { return boom }))
	_, err = c3.Get(srv2.URL)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

func TestLargeResponsesStream(t *testing.T) {
	big := strings.Repeat("z", 5000)
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.OK(big), {Status: 200, Body: big, Chunked: true}, {Status: 200, Body: "data: 1\n\n", Header: http.Header{"Content-Type": {"text/event-stream"}}}})
	c, _ := client(t, heed.WithResponseBuffer(1000))
	for i := range 3 {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || (i < 2 && string(b) != big) {
			t.Fatalf("response %d: %d bytes, %v", i, len(b), err)
		}
	}
}

// The read-ahead body behaves like a net/http body.
func TestReadAheadBody(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("hello, world")})
	c, _ := client(t)
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	n, _ := resp.Body.Read(buf)
	var rest bytes.Buffer
	io.Copy(&rest, resp.Body)
	if string(buf[:n])+rest.String() != "hello, world" {
		t.Fatalf("read %q + %q", buf[:n], rest.String())
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(buf); err == nil {
		t.Fatal("read after close succeeded")
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal("second close:", err)
	}
}
