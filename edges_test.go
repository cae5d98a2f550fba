package heed_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/heedtest"
)

// streamServer answers every GET with a chunked body of head+tail bytes
// (no Content-Length), sending the tail only once release is closed: the
// caller has its response by then, so the tail is read on the caller's
// time, after heed handed the response over.
func streamServer(t *testing.T, head, tail int, release <-chan struct{}) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		w.Write(bytes.Repeat([]byte{'h'}, head))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(bytes.Repeat([]byte{'t'}, tail))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A body larger than the read-ahead is handed over as its head in memory
// followed by the live rest; releasing the attempt at hand-over cancelled
// the context the rest was streaming on.
func TestStreamedBodyPastReadAheadIsReadWhole(t *testing.T) {
	const head, tail = 2 << 20, 1 << 20 // past the default 1 MiB read-ahead
	for _, tc := range []struct {
		name string
		opt  heed.Option
	}{
		{"attempt timeout", heed.WithAttemptTimeout(30 * time.Second)},
		{"max total", heed.WithMaxTotal(30 * time.Second)},
		{"hedging", heed.WithHedging(heed.HedgeConfig{Delay: 20 * time.Second})},
		{"defaults", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := streamServer(t, head, tail, release)
			opts := []heed.Option{heed.WithLimits(heed.Limits{NoPacing: true}), heed.WithBase(srv.Client().Transport)}
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			tr := mustNew(t, opts...)
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			close(release)
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != head+tail {
				t.Fatalf("read %d of %d bytes: %v", n, head+tail, err)
			}
		})
	}
}

// The attempt timeout bounds an attempt until heed hands the response
// over; the caller's read of a streamed body is then on the caller's time.
func TestAttemptTimeoutDoesNotCutTheCallersRead(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: late\n\n")
	}))
	defer srv.Close()
	// The attempt timer is armed on an injected clock that the test moves
	// past the timeout while the caller waits for the stream.
	clk := heedtest.NewClock(time.Now())
	tr := mustNew(t, heed.WithAttemptTimeout(time.Second), heed.WithClock(clk), heed.WithLimits(heed.Limits{NoPacing: true}), heed.WithBase(srv.Client().Transport))
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	close(release)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "data: late\n\n" {
		t.Fatalf("read %q: %v", b, err)
	}
}

// A caller who cancels while heed reads a body ahead is told it canceled,
// whether or not its context has a deadline.
func TestCancelDuringReadAheadIsCanceled(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		name := "no deadline"
		if deadline {
			name = "deadline"
		}
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "1000")
				w.WriteHeader(http.StatusOK)
				io.WriteString(w, strings.Repeat("x", 10))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}))
			defer srv.Close()
			// The caller cancels once heed has begun reading the body.
			reading := make(chan struct{})
			base := srv.Client().Transport
			tr := mustNew(t, heed.WithLimits(heed.Limits{NoPacing: true}), heed.WithBase(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := base.RoundTrip(r)
				if err == nil {
					resp.Body = &firstReadSignal{ReadCloser: resp.Body, c: reading}
				}
				return resp, err
			})))
			ctx, cancel := context.WithCancel(context.Background())
			if deadline {
				ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
			}
			defer cancel()
			go func() { <-reading; cancel() }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			resp, err := tr.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			if !errors.Is(err, heed.ErrCanceled) || !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want heed.ErrCanceled and context.Canceled", err)
			}
		})
	}
}

func mustNew(t *testing.T, opts ...heed.Option) *heed.Transport {
	t.Helper()
	tr, err := heed.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// firstReadSignal closes c when its body is first read.
type firstReadSignal struct {
	io.ReadCloser
	c    chan struct{}
	once sync.Once
}

func (b *firstReadSignal) Read(p []byte) (int, error) {
	b.once.Do(func() { close(b.c) })
	return b.ReadCloser.Read(p)
}

// An attempt timeout that fires while heed reads a body ahead is the
// attempt's failure, retried like any timeout, not the caller's cancel.
func TestAttemptTimeoutDuringReadAheadRetries(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		if hits.Add(1) == 1 {
			io.WriteString(w, strings.Repeat("x", 10))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, strings.Repeat("y", 1000))
	}))
	defer srv.Close()
	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	reading := make(chan struct{})
	base := srv.Client().Transport
	tr := mustNew(t, heed.WithLimits(heed.Limits{NoPacing: true}), heed.WithClock(clk), heed.WithAttemptTimeout(time.Second),
		heed.WithBase(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := base.RoundTrip(r)
			if err == nil && hits.Load() == 1 {
				resp.Body = &firstReadSignal{ReadCloser: resp.Body, c: reading}
			}
			return resp, err
		})))
	go func() { <-reading; clk.Advance(time.Second) }()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(b) != 1000 || b[0] != 'y' {
		t.Fatalf("read %d bytes (%q...): %v", len(b), b[:min(len(b), 3)], err)
	}
	if a := heed.Attempts(resp); len(a) != 2 || a[0].Kind != heed.KindTimeout {
		t.Fatalf("attempts %+v, want a timed-out first attempt and a second", a)
	}
}

// closingListener closes the first n connections it accepts before the
// server reads a byte from them, then serves the rest.
type closingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *closingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.n.Add(-1) < 0 {
			return c, err
		}
		c.Close()
	}
}

// A server that accepts a connection and closes it before reading never
// saw the request: an idempotent one is retried, whatever its body.
func TestAcceptThenCloseIsRetried(t *testing.T) {
	for _, method := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			var got atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if len(b) == 4<<10 || r.Method != http.MethodPut {
					got.Add(1)
				}
			}))
			ln := &closingListener{Listener: srv.Listener}
			ln.n.Store(1)
			srv.Listener = ln
			srv.Start()
			defer srv.Close()
			tr := mustNew(t, heed.WithLimits(heed.Limits{NoPacing: true}), heed.WithBase(srv.Client().Transport),
				heed.WithBackoff(backoff.Constant(time.Millisecond)))
			var body io.Reader
			if method == http.MethodPut {
				body = bytes.NewReader(bytes.Repeat([]byte{'b'}, 4<<10))
			}
			req, _ := http.NewRequest(method, srv.URL, body)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || got.Load() != 1 {
				t.Fatalf("status %d, server handled %d requests, want 200 and 1", resp.StatusCode, got.Load())
			}
		})
	}
}

// onlyReader hides a body's type, so net/http gives the request no GetBody.
type onlyReader struct {
	io.Reader
	closed atomic.Bool
}

func (r *onlyReader) Close() error { r.closed.Store(true); return nil }

// A body too large to buffer, without GetBody, cannot be replayed once
// sent; but when its connection could not even be made, no byte of it
// left, and it goes out whole on the next attempt.
func TestUnreplayableBodyRetriedWhenNeverSent(t *testing.T) {
	const size = 2 << 20 // above the default 1 MiB body buffer
	want := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !bytes.Equal(b, want) {
			t.Errorf("server got %d bytes, not the body sent", len(b))
		}
		got.Add(1)
	}))
	defer srv.Close()
	dead := heedtest.DeadAddr(t)
	base := srv.Client().Transport
	var calls atomic.Int32
	tr := mustNew(t, heed.WithLimits(heed.Limits{NoPacing: true}), heed.WithBackoff(backoff.Constant(time.Millisecond)),
		heed.WithBase(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if calls.Add(1) == 1 { // the first attempt meets a port where nothing listens
				r = r.Clone(r.Context())
				r.URL.Host = dead
			}
			return base.RoundTrip(r)
		})))
	body := &onlyReader{Reader: bytes.NewReader(want)}
	req, _ := http.NewRequest(http.MethodPut, srv.URL, body)
	req.ContentLength = size
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Load() != 1 || calls.Load() != 2 || !body.closed.Load() {
		t.Fatalf("server handled %d, attempts %d, body closed %v; want 1, 2, true", got.Load(), calls.Load(), body.closed.Load())
	}
}

// A response heed would have retried but for a body it cannot send again
// ends the call with an error that says so, the response's status in it.
func TestUnreplayableBodyStatusIsAnError(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tr := mustNew(t, heed.WithLimits(heed.Limits{NoPacing: true}), heed.WithBase(srv.Client().Transport))
	body := &onlyReader{Reader: bytes.NewReader(make([]byte, 2<<20))}
	req, _ := http.NewRequest(http.MethodPut, srv.URL, body)
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	var se *heed.StatusError
	if !errors.Is(err, heed.ErrBodyNotReplayable) || !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want ErrBodyNotReplayable with status 503", err)
	}
	if got.Load() != 1 || !body.closed.Load() {
		t.Fatalf("server handled %d, body closed %v; want 1, true", got.Load(), body.closed.Load())
	}
}

// Many POSTs at once, each with its own body and no GetBody, to a real
// server on loopback that answers the first attempt of each 503 before
// reading a byte of it (net/http may still be writing that body when the
// retry starts): every body reaches the server whole and unmixed, though
// heed lends the buffers it keeps them in from one call to the next.
func TestPooledBodiesNeverMix(t *testing.T) {
	var seen sync.Map // body -> attempts seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Id")
		if r.Header.Get("Heed-Attempt") == "" {
			w.WriteHeader(http.StatusServiceUnavailable) // the body unread
			return
		}
		b, _ := io.ReadAll(r.Body)
		if want := strings.Repeat(id, 300); string(b) != want {
			t.Errorf("body of %s: got %d bytes starting %.20q", id, len(b), b)
		}
		seen.Store(id, true)
	}))
	defer srv.Close()
	tr := mustNew(t, heed.WithBase(srv.Client().Transport), heed.WithLimits(heed.Limits{NoPacing: true}),
		heed.WithBackoff(backoff.Constant(time.Millisecond)), heed.WithoutBreaker(), heed.WithoutRetryBudget(), heed.WithLogger(nil))
	var wg sync.WaitGroup
	const calls = 200
	for i := range calls {
		wg.Go(func() {
			id := string(rune('A'+i%26)) + strings.Repeat("x", i%7) + string(rune('a'+i/26))
			req, _ := http.NewRequest(http.MethodPost, srv.URL, &onlyReader{Reader: strings.NewReader(strings.Repeat(id, 300))})
			req.Header.Set("X-Id", id)
			req.Header.Set("Idempotency-Key", id)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Errorf("%s: %v", id, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %d", id, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	if n != calls {
		t.Errorf("the server took %d distinct bodies, want %d", n, calls)
	}
}
