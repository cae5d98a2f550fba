package heedtest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/heedtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noLeaks checks, after every other cleanup of t (servers included) has
// run, that no goroutine started by the test is left.
func noLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// eventually polls cond every millisecond, failing after a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// freshClient returns a client that opens a new connection for every
// request, so net/http never retries a request on its own.
func freshClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

type answer struct {
	status int
	header http.Header
	body   string
	cl     int64
	te     []string
}

// do sends req with c and reads the whole answer.
func do(t *testing.T, c *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return answer{resp.StatusCode, resp.Header, string(b), resp.ContentLength, resp.TransferEncoding}
}

func get(t *testing.T, c *http.Client, u string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

var retryAt = time.Date(2030, time.January, 2, 4, 4, 5, 0, time.FixedZone("CET", 3600))

const retryAtHTTP = "Wed, 02 Jan 2030 03:04:05 GMT"

// answerCases are steps answered normally, shared by the Server and
// Transport tests.
var answerCases = []struct {
	name       string
	step       heedtest.Step
	wantStatus int
	wantHeader map[string]string
	wantBody   string
	wantCL     int64
}{
	{name: "zero step", step: heedtest.Step{}, wantStatus: 200, wantCL: 0},
	{name: "OK", step: heedtest.OK("hello"), wantStatus: 200, wantBody: "hello", wantCL: 5},
	{name: "Status", step: heedtest.Status(502), wantStatus: 502, wantCL: 0},
	{name: "no content", step: heedtest.Status(204), wantStatus: 204, wantCL: 0},
	{
		name: "status header body",
		step: heedtest.Step{
			Status: 201,
			Header: http.Header{"x-request-id": {"abc"}, "Content-Type": {"application/json"}},
			Body:   `{"id":1}`,
		},
		wantStatus: 201,
		wantHeader: map[string]string{"X-Request-Id": "abc", "Content-Type": "application/json", "Content-Length": "8"},
		wantBody:   `{"id":1}`,
		wantCL:     8,
	},
	{
		name:       "header cannot lie about length",
		step:       heedtest.Step{Header: http.Header{"Content-Length": {"99"}}, Body: "abc"},
		wantStatus: 200,
		wantHeader: map[string]string{"Content-Length": "3"},
		wantBody:   "abc",
		wantCL:     3,
	},
	{
		name:       "RetryAfter",
		step:       heedtest.RetryAfter(503, 7),
		wantStatus: 503,
		wantHeader: map[string]string{"Retry-After": "7"},
		wantCL:     0,
	},
	{
		name:       "RetryAfterDate",
		step:       heedtest.RetryAfterDate(429, retryAt),
		wantStatus: 429,
		wantHeader: map[string]string{"Retry-After": retryAtHTTP},
		wantCL:     0,
	},
	{
		name:       "large body",
		step:       heedtest.OK(strings.Repeat("x", 100_000)),
		wantStatus: 200,
		wantBody:   strings.Repeat("x", 100_000),
		wantCL:     100_000,
	},
}

func checkAnswer(t *testing.T, got answer, wantStatus int, wantHeader map[string]string, wantBody string, wantCL int64) {
	t.Helper()
	if got.status != wantStatus {
		t.Errorf("status = %d, want %d", got.status, wantStatus)
	}
	for k, v := range wantHeader {
		if g := got.header.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}
	if got.body != wantBody {
		t.Errorf("body = %.40q (%d bytes), want %.40q (%d bytes)", got.body, len(got.body), wantBody, len(wantBody))
	}
	if got.cl != wantCL {
		t.Errorf("ContentLength = %d, want %d", got.cl, wantCL)
	}
}

func TestServerAnswers(t *testing.T) {
	for _, tc := range answerCases {
		t.Run(tc.name, func(t *testing.T) {
			s := heedtest.NewServer(t, []heedtest.Step{tc.step})
			got := get(t, s.Client(), s.URL+"/x")
			checkAnswer(t, got, tc.wantStatus, tc.wantHeader, tc.wantBody, tc.wantCL)
			if got.te != nil {
				t.Errorf("TransferEncoding = %q, want none", got.te)
			}
		})
	}
}

func TestRetryAfterDateParses(t *testing.T) {
	v := heedtest.RetryAfterDate(503, retryAt).Header.Get("Retry-After")
	at, err := http.ParseTime(v)
	if err != nil {
		t.Fatalf("ParseTime(%q): %v", v, err)
	}
	if !at.Equal(retryAt) {
		t.Errorf("Retry-After %q = %v, want %v", v, at, retryAt)
	}
}

func TestServerListensOnLoopback(t *testing.T) {
	s := heedtest.NewServer(t, nil)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "http" || u.Hostname() != "127.0.0.1" {
		t.Errorf("URL = %q, want http://127.0.0.1:port", s.URL)
	}
}

func TestServerChunked(t *testing.T) {
	for _, body := range []string{"", "a", "hello, chunked world", strings.Repeat("y", 70_000)} {
		t.Run(fmt.Sprintf("%d bytes", len(body)), func(t *testing.T) {
			s := heedtest.NewServer(t, []heedtest.Step{{
				Status: 202, Body: body, Chunked: true,
				Header: http.Header{"X-Kind": {"chunked"}},
			}})
			got := get(t, s.Client(), s.URL)
			checkAnswer(t, got, 202, map[string]string{"X-Kind": "chunked", "Content-Length": ""}, body, -1)
			if !slices.Equal(got.te, []string{"chunked"}) {
				t.Errorf("TransferEncoding = %q, want [chunked]", got.te)
			}
		})
	}
}

var truncateCases = []struct {
	name     string
	step     heedtest.Step
	wantRead string
	wantCL   int64
}{
	{
		name:     "content-length",
		step:     heedtest.Step{Status: 200, Body: "0123456789", Truncate: true, Header: http.Header{"X-Kind": {"cut"}}},
		wantRead: "01234",
		wantCL:   10,
	},
	{
		name:     "content-length one byte",
		step:     heedtest.Step{Body: "z", Truncate: true, Header: http.Header{"X-Kind": {"cut"}}},
		wantRead: "",
		wantCL:   1,
	},
	{
		name:     "chunked",
		step:     heedtest.Step{Status: 200, Body: "0123456789", Truncate: true, Chunked: true, Header: http.Header{"X-Kind": {"cut"}}},
		wantRead: "01234",
		wantCL:   -1,
	},
	{
		name:     "chunked one byte",
		step:     heedtest.Step{Body: "z", Truncate: true, Chunked: true, Header: http.Header{"X-Kind": {"cut"}}},
		wantRead: "",
		wantCL:   -1,
	},
}

// checkTruncated reads resp's body and checks that it breaks off with
// io.ErrUnexpectedEOF after wantRead.
func checkTruncated(t *testing.T, resp *http.Response, wantRead string, wantCL int64) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Kind"); got != "cut" {
		t.Errorf("header X-Kind = %q, want %q", got, "cut")
	}
	if resp.ContentLength != wantCL {
		t.Errorf("ContentLength = %d, want %d", resp.ContentLength, wantCL)
	}
	b, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading body: err = %v, want io.ErrUnexpectedEOF", err)
	}
	if string(b) != wantRead {
		t.Errorf("read %q before the error, want %q", b, wantRead)
	}
}

func TestServerTruncate(t *testing.T) {
	for _, tc := range truncateCases {
		t.Run(tc.name, func(t *testing.T) {
			s := heedtest.NewServer(t, []heedtest.Step{tc.step})
			resp, err := s.Client().Get(s.URL)
			if err != nil {
				t.Fatal(err)
			}
			checkTruncated(t, resp, tc.wantRead, tc.wantCL)
		})
	}
}

// On Linux a reset reliably surfaces from a plain client as ECONNRESET
// ("read: connection reset by peer"), never as io.EOF: the server reads the
// whole request before resetting, so the client is already waiting for the
// response when the RST arrives.
func TestServerReset(t *testing.T) {
	noLeaks(t)
	s := heedtest.NewServer(t, []heedtest.Step{{Reset: true}})
	c := freshClient(t)
	for i := range 10 {
		resp, err := c.Get(s.URL)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("request %d: got a %d answer, want an error", i, resp.StatusCode)
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("request %d: err = %v, want ECONNRESET", i, err)
		}
		var opErr *net.OpError
		if !errors.As(err, &opErr) || opErr.Op != "read" {
			t.Errorf("request %d: err = %v, want a *net.OpError from read", i, err)
		}
	}
	if got := s.Count(); got != 10 {
		t.Errorf("Count = %d, want 10", got)
	}
}

// net/http retries a replayable request by itself when a reused connection
// fails before the answer starts, so a Reset step can cost two steps.
func TestServerResetOnReusedConnection(t *testing.T) {
	noLeaks(t)
	t.Run("GET is retried by net/http", func(t *testing.T) {
		s := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("first"), {Reset: true}, heedtest.OK("again")})
		c := s.Client()
		get(t, c, s.URL)
		if got := get(t, c, s.URL); got.body != "again" {
			t.Errorf("second GET body = %q, want %q", got.body, "again")
		}
		if got := s.Count(); got != 3 {
			t.Errorf("Count = %d, want 3", got)
		}
	})
	t.Run("POST is not", func(t *testing.T) {
		s := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("first"), {Reset: true}, heedtest.OK("again")})
		c := s.Client()
		get(t, c, s.URL)
		resp, err := c.Post(s.URL, "text/plain", strings.NewReader("data"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("POST got a %d answer, want ECONNRESET", resp.StatusCode)
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("POST err = %v, want ECONNRESET", err)
		}
		if got := s.Count(); got != 2 {
			t.Errorf("Count = %d, want 2", got)
		}
	})
}

func TestServerDelay(t *testing.T) {
	noLeaks(t)
	clk := heedtest.NewClock(time.Unix(0, 0))
	s := heedtest.NewServer(t, []heedtest.Step{{Delay: 2 * time.Minute, Body: "late"}}, heedtest.DelayOn(clk))
	c := s.Client()

	done := make(chan answer, 1)
	go func() {
		resp, err := c.Get(s.URL)
		if err != nil {
			done <- answer{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{status: resp.StatusCode, body: string(b)}
	}()

	clk.BlockUntil(1)
	clk.Advance(time.Minute)
	select {
	case got := <-done:
		t.Fatalf("answered %q after 1m of a 2m delay", got.body)
	default:
	}
	clk.Advance(time.Minute)
	if got := <-done; got.status != 200 || got.body != "late" {
		t.Errorf("got %d %q, want 200 %q", got.status, got.body, "late")
	}
}

func TestServerDelayEndsWhenClientGivesUp(t *testing.T) {
	noLeaks(t)
	clk := heedtest.NewClock(time.Unix(0, 0))
	s := heedtest.NewServer(t, []heedtest.Step{{Delay: time.Hour}}, heedtest.DelayOn(clk))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
		resp, err := s.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	clk.BlockUntil(1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	// The server notices that the client went away and stops waiting.
	eventually(t, "the delay timer to stop", func() bool { return clk.Pending() == 0 })
}

func TestServerHang(t *testing.T) {
	noLeaks(t)
	s := heedtest.NewServer(t, []heedtest.Step{{Hang: true}, heedtest.OK("after")})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
		resp, err := s.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	eventually(t, "the request to arrive", func() bool { return s.Count() == 1 })
	select {
	case err := <-errc:
		t.Fatalf("hanging request returned: %v", err)
	default:
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if got := get(t, s.Client(), s.URL); got.body != "after" {
		t.Errorf("next request got %q, want %q", got.body, "after")
	}
}

func TestServerCloseUnblocksEverything(t *testing.T) {
	noLeaks(t)
	clk := heedtest.NewClock(time.Unix(0, 0))
	steps := []heedtest.Step{{Hang: true}, {Hang: true}, {Hang: true}, {Delay: time.Hour}}
	s := heedtest.NewServer(t, steps, heedtest.DelayOn(clk))

	var wg sync.WaitGroup
	errs := make(chan error, len(steps))
	for range steps {
		wg.Go(func() {
			resp, err := s.Client().Get(s.URL)
			if err == nil {
				resp.Body.Close()
				errs <- fmt.Errorf("got a %d answer", resp.StatusCode)
			}
		})
	}
	eventually(t, "all requests to arrive", func() bool { return s.Count() == len(steps) })
	clk.BlockUntil(1)

	start := time.Now()
	s.Close()
	s.Close() // idempotent
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("request during Close: %v, want a connection error", err)
		}
	}
	if clk.Pending() != 0 {
		t.Errorf("%d delay timers still pending after Close", clk.Pending())
	}
	if _, err := freshClient(t).Get(s.URL); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("request after Close: err = %v, want ECONNREFUSED", err)
	}
}

func TestServerCloseClosesHijackedConnections(t *testing.T) {
	noLeaks(t)
	// A truncated body larger than the socket buffers blocks the server's
	// write while the client reads nothing; Close must still return.
	s := heedtest.NewServer(t, []heedtest.Step{{Body: strings.Repeat("x", 16<<20), Truncate: true}})
	resp, err := s.Client().Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("reading the body after Close: err = nil, want an error")
	}
}

func TestServerHandler(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, "echo %s %s", r.URL.Path, b)
	}
	s := heedtest.NewServer(t, []heedtest.Step{
		// Handler wins over every other field.
		{Status: 500, Hang: true, Reset: true, Body: "ignored", Handler: echo},
	})
	req, _ := http.NewRequest(http.MethodPut, s.URL+"/pot", strings.NewReader("tea"))
	got := do(t, s.Client(), req)
	checkAnswer(t, got, http.StatusTeapot, map[string]string{"X-Method": "PUT"}, "echo /pot tea", 13)
	if reqs := s.Requests(); len(reqs) != 1 || string(reqs[0].Body) != "tea" {
		t.Errorf("recorded %+v, want one request with body %q", reqs, "tea")
	}
}

func TestServerRecordsRequests(t *testing.T) {
	s := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(201), heedtest.OK("x")})
	c := s.Client()

	req, _ := http.NewRequest(http.MethodPost, s.URL+"/items?id=7&x=%20y", strings.NewReader(`{"a":1}`))
	req.Header.Set("X-Trace", "abc")
	req.Header.Set("Content-Type", "application/json")
	do(t, c, req)
	get(t, c, s.URL+"/other")
	do(t, c, must(http.NewRequest(http.MethodDelete, s.URL+"/items/7", nil)))

	reqs := s.Requests()
	if len(reqs) != 3 || s.Count() != 3 {
		t.Fatalf("recorded %d requests, Count %d, want 3", len(reqs), s.Count())
	}
	want := []struct {
		method, url, body string
		step              int
	}{
		{"POST", "/items?id=7&x=%20y", `{"a":1}`, 0},
		{"GET", "/other", "", 1},
		{"DELETE", "/items/7", "", 1},
	}
	for i, w := range want {
		r := reqs[i]
		if r.Method != w.method || r.URL != w.url || string(r.Body) != w.body || r.Step != w.step {
			t.Errorf("request %d = %s %s body %q step %d, want %s %s body %q step %d",
				i, r.Method, r.URL, r.Body, r.Step, w.method, w.url, w.body, w.step)
		}
	}
	if got := reqs[0].Header.Get("X-Trace"); got != "abc" {
		t.Errorf("recorded X-Trace = %q, want %q", got, "abc")
	}
	if got := reqs[0].Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("recorded Content-Type = %q, want application/json", got)
	}

	// Requests returns a copy.
	reqs[0].Header.Set("X-Trace", "changed")
	reqs[0].Body[0] = '!'
	reqs[1].Method = "PATCH"
	again := s.Requests()
	if again[0].Header.Get("X-Trace") != "abc" || string(again[0].Body) != `{"a":1}` || again[1].Method != "GET" {
		t.Errorf("changing the result of Requests changed the record: %+v", again)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var exhaustionCases = []struct {
	name       string
	steps      []heedtest.Step
	wantStatus []int
	wantStep   []int
}{
	{"last step repeats", []heedtest.Step{heedtest.Status(503), heedtest.OK("done")}, []int{503, 200, 200, 200}, []int{0, 1, 1, 1}},
	{"single step repeats", []heedtest.Step{heedtest.Status(429)}, []int{429, 429, 429}, []int{0, 0, 0}},
	{"nil script answers 200", nil, []int{200, 200}, []int{0, 0}},
	{"empty script answers 200", []heedtest.Step{}, []int{200}, []int{0}},
}

func TestServerScriptExhaustion(t *testing.T) {
	for _, tc := range exhaustionCases {
		t.Run(tc.name, func(t *testing.T) {
			s := heedtest.NewServer(t, tc.steps)
			var got []int
			for range tc.wantStatus {
				got = append(got, get(t, s.Client(), s.URL).status)
			}
			if !slices.Equal(got, tc.wantStatus) {
				t.Errorf("statuses = %v, want %v", got, tc.wantStatus)
			}
			var steps []int
			for _, r := range s.Requests() {
				steps = append(steps, r.Step)
			}
			if !slices.Equal(steps, tc.wantStep) {
				t.Errorf("steps = %v, want %v", steps, tc.wantStep)
			}
		})
	}
}

func TestServerStepsAreCopied(t *testing.T) {
	steps := []heedtest.Step{heedtest.RetryAfter(503, 1)}
	s := heedtest.NewServer(t, steps)
	steps[0].Status = 200
	steps[0].Header.Set("Retry-After", "99")
	got := get(t, s.Client(), s.URL)
	if got.status != 503 || got.header.Get("Retry-After") != "1" {
		t.Errorf("got %d Retry-After %q, want 503 Retry-After 1", got.status, got.header.Get("Retry-After"))
	}
}

func TestServerConcurrent(t *testing.T) {
	const n = 32
	steps := make([]heedtest.Step, n)
	for i := range steps {
		steps[i] = heedtest.OK(fmt.Sprint(i))
	}
	s := heedtest.NewServer(t, steps)
	c := s.Client()
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Go(func() {
			resp, err := c.Get(s.URL)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			bodies[i] = string(b)
		})
	}
	wg.Wait()
	if s.Count() != n {
		t.Errorf("Count = %d, want %d", s.Count(), n)
	}
	// Every step answered exactly once, in the order requests arrived.
	slices.Sort(bodies)
	seen := map[string]bool{}
	for _, b := range bodies {
		seen[b] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct answers, want %d: %v", len(seen), n, bodies)
	}
	for i, r := range s.Requests() {
		if r.Step != i {
			t.Errorf("request %d answered by step %d", i, r.Step)
		}
	}
}

func TestDeadAddr(t *testing.T) {
	noLeaks(t)
	addr := heedtest.DeadAddr(t)
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Errorf("DeadAddr = %q, want 127.0.0.1:port", addr)
	}
	_, err = freshClient(t).Get("http://" + addr + "/")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET: err = %v, want ECONNREFUSED", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "dial" {
		t.Errorf("GET: err = %v, want a dial *net.OpError", err)
	}
}
