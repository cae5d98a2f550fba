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
	"testing/synctest"
	"time"

	"github.com/heed-go/heed/heedtest"
)

const base = "http://api.example/"

func TestTransportAnswers(t *testing.T) {
	for _, tc := range answerCases {
		t.Run(tc.name, func(t *testing.T) {
			tr := heedtest.NewTransport([]heedtest.Step{tc.step})
			got := get(t, &http.Client{Transport: tr}, base+"x")
			checkAnswer(t, got, tc.wantStatus, tc.wantHeader, tc.wantBody, tc.wantCL)
			if got.te != nil {
				t.Errorf("TransferEncoding = %q, want none", got.te)
			}
		})
	}
}

func TestTransportResponseFields(t *testing.T) {
	tr := heedtest.NewTransport([]heedtest.Step{heedtest.OK("abc")})
	req := must(http.NewRequest(http.MethodGet, base+"r", nil))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Proto != "HTTP/1.1" || resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
		t.Errorf("Proto = %q %d.%d, want HTTP/1.1", resp.Proto, resp.ProtoMajor, resp.ProtoMinor)
	}
	if resp.Status != "200 OK" {
		t.Errorf("Status = %q, want %q", resp.Status, "200 OK")
	}
	if resp.Request != req {
		t.Error("Request is not the request sent")
	}
	if resp.ContentLength != 3 || resp.Header.Get("Content-Length") != "3" {
		t.Errorf("ContentLength %d, header %q, want 3", resp.ContentLength, resp.Header.Get("Content-Length"))
	}
}

func TestTransportHead(t *testing.T) {
	tr := heedtest.NewTransport([]heedtest.Step{heedtest.OK("abc")})
	got := do(t, &http.Client{Transport: tr}, must(http.NewRequest(http.MethodHead, base, nil)))
	checkAnswer(t, got, 200, map[string]string{"Content-Length": "3"}, "", 3)
}

func TestTransportChunked(t *testing.T) {
	for _, body := range []string{"", "a", "hello, chunked world"} {
		t.Run(fmt.Sprintf("%d bytes", len(body)), func(t *testing.T) {
			tr := heedtest.NewTransport([]heedtest.Step{{
				Status: 202, Body: body, Chunked: true,
				Header: http.Header{"X-Kind": {"chunked"}},
			}})
			got := get(t, &http.Client{Transport: tr}, base)
			checkAnswer(t, got, 202, map[string]string{"X-Kind": "chunked", "Content-Length": ""}, body, -1)
			if !slices.Equal(got.te, []string{"chunked"}) {
				t.Errorf("TransferEncoding = %q, want [chunked]", got.te)
			}
		})
	}
}

func TestTransportTruncate(t *testing.T) {
	for _, tc := range truncateCases {
		t.Run(tc.name, func(t *testing.T) {
			tr := heedtest.NewTransport([]heedtest.Step{tc.step})
			resp, err := (&http.Client{Transport: tr}).Get(base)
			if err != nil {
				t.Fatal(err)
			}
			checkTruncated(t, resp, tc.wantRead, tc.wantCL)
		})
	}
}

func TestTransportReset(t *testing.T) {
	tr := heedtest.NewTransport([]heedtest.Step{{Reset: true}, heedtest.OK("after")})
	_, err := (&http.Client{Transport: tr}).Get(base)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err = %v, want ECONNRESET", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "read" || opErr.Net != "tcp" {
		t.Errorf("err = %v, want a tcp read *net.OpError", err)
	}
	var uerr *url.Error
	if !errors.As(err, &uerr) {
		t.Errorf("err = %T, want the client's *url.Error", err)
	}
	if got := tr.Count(); got != 1 {
		t.Errorf("Count = %d, want 1: an in-memory reset is never retried by net/http", got)
	}
}

func TestTransportDelay(t *testing.T) {
	clk := heedtest.NewClock(time.Unix(0, 0))
	tr := heedtest.NewTransport([]heedtest.Step{{Delay: 2 * time.Minute, Body: "late"}}, heedtest.DelayOn(clk))

	done := make(chan string, 1)
	go func() {
		resp, err := tr.RoundTrip(must(http.NewRequest(http.MethodGet, base, nil)))
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- string(b)
	}()
	clk.BlockUntil(1)
	clk.Advance(time.Minute)
	select {
	case got := <-done:
		t.Fatalf("answered %q after 1m of a 2m delay", got)
	default:
	}
	clk.Advance(time.Minute)
	if got := <-done; got != "late" {
		t.Errorf("got %q, want %q", got, "late")
	}
}

func TestTransportDelayEndsWhenClientGivesUp(t *testing.T) {
	clk := heedtest.NewClock(time.Unix(0, 0))
	tr := heedtest.NewTransport([]heedtest.Step{{Delay: time.Hour}}, heedtest.DelayOn(clk))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(must(http.NewRequestWithContext(ctx, http.MethodGet, base, nil)))
		errc <- err
	}()
	clk.BlockUntil(1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers pending, want the delay's stopped", n)
	}
}

func TestTransportHang(t *testing.T) {
	tr := heedtest.NewTransport([]heedtest.Step{{Hang: true}, heedtest.OK("after")})
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(must(http.NewRequestWithContext(ctx, http.MethodGet, base, nil)))
		errc <- err
	}()
	eventually(t, "the request to arrive", func() bool { return tr.Count() == 1 })
	select {
	case err := <-errc:
		t.Fatalf("hanging request returned: %v", err)
	default:
	}
	cause := errors.New("client gave up")
	cancel(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Errorf("err = %v, want the context's cause", err)
	}
	if got := get(t, &http.Client{Transport: tr}, base); got.body != "after" {
		t.Errorf("next request got %q, want %q", got.body, "after")
	}
}

// In a synctest bubble time is fake, so a Transport on the real clock
// answers an hour's Delay, or gives up on a Hang after the client's
// Timeout, at once.
func TestTransportInSynctestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := heedtest.NewTransport([]heedtest.Step{{Delay: time.Hour, Body: "late"}, {Hang: true}})
		c := &http.Client{Transport: tr, Timeout: 2 * time.Hour}

		start := time.Now()
		if got := get(t, c, base); got.body != "late" {
			t.Errorf("got %q, want %q", got.body, "late")
		}
		if d := time.Since(start); d != time.Hour {
			t.Errorf("Delay took %v of bubble time, want 1h", d)
		}

		start = time.Now()
		_, err := c.Get(base)
		var uerr *url.Error
		if !errors.As(err, &uerr) || !uerr.Timeout() {
			t.Errorf("Hang: err = %v, want a client timeout", err)
		}
		if d := time.Since(start); d != 2*time.Hour {
			t.Errorf("Hang lasted %v of bubble time, want the 2h Timeout", d)
		}
	})
}

func TestTransportHandler(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Host", r.Host)
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, "echo %s %s", r.RequestURI, b)
	}
	tr := heedtest.NewTransport([]heedtest.Step{
		{Status: 500, Hang: true, Reset: true, Body: "ignored", Handler: echo},
	})
	req := must(http.NewRequest(http.MethodPut, base+"pot?x=1", strings.NewReader("tea")))
	got := do(t, &http.Client{Transport: tr}, req)
	checkAnswer(t, got, http.StatusTeapot,
		map[string]string{"X-Method": "PUT", "X-Host": "api.example", "Content-Length": "17"},
		"echo /pot?x=1 tea", 17)
	if reqs := tr.Requests(); len(reqs) != 1 || string(reqs[0].Body) != "tea" {
		t.Errorf("recorded %+v, want one request with body %q", reqs, "tea")
	}
}

// closeTracker is a request body that notes whether it was closed.
type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestTransportRecordsRequests(t *testing.T) {
	tr := heedtest.NewTransport([]heedtest.Step{heedtest.Status(201), {Reset: true}, heedtest.OK("x")})

	body := &closeTracker{Reader: strings.NewReader(`{"a":1}`)}
	req := must(http.NewRequest(http.MethodPost, base+"items?id=7&x=%20y", body))
	req.Header.Set("X-Trace", "abc")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !body.closed {
		t.Error("request body not closed")
	}
	req.Header.Set("X-Trace", "changed after the request")

	tr.RoundTrip(must(http.NewRequest(http.MethodGet, base+"reset", nil)))
	get(t, &http.Client{Transport: tr}, base+"other")

	reqs := tr.Requests()
	if len(reqs) != 3 || tr.Count() != 3 {
		t.Fatalf("recorded %d requests, Count %d, want 3", len(reqs), tr.Count())
	}
	want := []struct {
		method, url, body string
		step              int
	}{
		{"POST", "/items?id=7&x=%20y", `{"a":1}`, 0},
		{"GET", "/reset", "", 1},
		{"GET", "/other", "", 2},
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

	reqs[0].Body[0] = '!'
	reqs[0].Header.Set("X-Trace", "changed")
	if again := tr.Requests(); string(again[0].Body) != `{"a":1}` || again[0].Header.Get("X-Trace") != "abc" {
		t.Errorf("changing the result of Requests changed the record: %+v", again[0])
	}
}

func TestTransportScriptExhaustion(t *testing.T) {
	for _, tc := range exhaustionCases {
		t.Run(tc.name, func(t *testing.T) {
			tr := heedtest.NewTransport(tc.steps)
			c := &http.Client{Transport: tr}
			var got []int
			for range tc.wantStatus {
				got = append(got, get(t, c, base).status)
			}
			if !slices.Equal(got, tc.wantStatus) {
				t.Errorf("statuses = %v, want %v", got, tc.wantStatus)
			}
			var steps []int
			for _, r := range tr.Requests() {
				steps = append(steps, r.Step)
			}
			if !slices.Equal(steps, tc.wantStep) {
				t.Errorf("steps = %v, want %v", steps, tc.wantStep)
			}
		})
	}
}

func TestTransportConcurrent(t *testing.T) {
	const n = 64
	steps := make([]heedtest.Step, n)
	for i := range steps {
		steps[i] = heedtest.OK(fmt.Sprint(i))
	}
	tr := heedtest.NewTransport(steps)
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Go(func() {
			resp, err := c.Post(base, "text/plain", strings.NewReader(fmt.Sprint("req", i)))
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
	slices.Sort(bodies)
	if got := slices.Compact(bodies); len(got) != n {
		t.Errorf("%d distinct answers, want %d", len(got), n)
	}
	reqs := tr.Requests()
	if len(reqs) != n {
		t.Fatalf("recorded %d requests, want %d", len(reqs), n)
	}
	for i, r := range reqs {
		if r.Step != i {
			t.Errorf("request %d answered by step %d", i, r.Step)
		}
	}
}
