package heed_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/heedtest"
)

// upstream is an in-memory server that is up or down, as the test says.
type upstream struct {
	mu      sync.Mutex
	answer  func(req *http.Request) (*http.Response, error)
	request int
}

func (u *upstream) set(f func(req *http.Request) (*http.Response, error)) {
	u.mu.Lock()
	u.answer = f
	u.mu.Unlock()
}

func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	u.mu.Lock()
	f := u.answer
	u.request++
	u.mu.Unlock()
	return f(req)
}

func (u *upstream) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.request
}

// serving answers 200 with body and the header fields given as pairs.
func serving(body string, fields ...string) func(*http.Request) (*http.Response, error) {
	return func(req *http.Request) (*http.Response, error) {
		h := http.Header{}
		for i := 0; i+1 < len(fields); i += 2 {
			h.Add(fields[i], fields[i+1])
		}
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
	}
}

func failing(status int) func(*http.Request) (*http.Response, error) {
	return func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: status, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	}
}

func refusing(req *http.Request) (*http.Response, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

func staleClient(t *testing.T, u *upstream, opts ...heed.Option) (*http.Client, *heedtest.Clock) {
	t.Helper()
	return client(t, append([]heed.Option{heed.WithBase(u)}, opts...)...)
}

// read fetches url (with the header fields given as pairs) and returns the
// response, with its body read and closed, and the body.
func read(t *testing.T, c *http.Client, url string, fields ...string) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Add(fields[i], fields[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b), nil
}

func TestStaleServedWhileDownFreshWhileUp(t *testing.T) {
	u := &upstream{}
	var ev events
	c, clk := staleClient(t, u, heed.WithStaleIfError(heed.StaleConfig{}), heed.WithHook(&ev), heed.WithoutBreaker())
	const url = "http://api.test/items?page=1"

	u.set(serving("v1", "Cache-Control", "max-age=60", "Content-Type", "application/json"))
	resp, body, err := read(t, c, url)
	if err != nil || body != "v1" || resp.Header.Get("Cache-Status") != "" || heed.Degraded(resp) != nil {
		t.Fatalf("live: %q %v %v", body, err, resp.Header)
	}

	// Down: every attempt answers 503, and the stored response is served.
	u.set(failing(503))
	start := clk.Now()
	resp, body, err = read(t, c, url)
	if err != nil {
		t.Fatal(err)
	}
	if body != "v1" || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("down: got %d %q, want the stored 200 v1", resp.StatusCode, body)
	}
	age := int(clk.Now().Sub(start) / time.Second)
	if got := resp.Header.Get("Age"); got != strconv.Itoa(age) {
		t.Errorf("Age %q, want %d (the retries' waits)", got, age)
	}
	wantStatus := `heed; fwd=stale; fwd-status=503; ttl=` + strconv.Itoa(60-age) + `; detail="stale-if-error: attempts exhausted"`
	if got := resp.Header.Get("Cache-Status"); got != wantStatus {
		t.Errorf("Cache-Status %q, want %q", got, wantStatus)
	}
	fe := heed.Degraded(resp)
	if fe == nil || !errors.Is(fe, heed.ErrAttemptsExhausted) || len(fe.Attempts) != heed.DefaultMaxAttempts {
		t.Errorf("Degraded = %v, want the exhausted attempts", fe)
	}
	if st := ev.of(heed.EventStale); len(st) != 1 || st[0].Status != 200 || st[0].Age/time.Second != time.Duration(age) || st[0].Reason != heed.ErrAttemptsExhausted {
		t.Errorf("stale events %+v", st)
	}

	// A transport error, with no status: served too, without fwd-status.
	u.set(refusing)
	resp, body, err = read(t, c, url)
	if err != nil || body != "v1" || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "heed; fwd=stale; ttl=") {
		t.Errorf("refused: %q %v %q", body, err, resp.Header.Get("Cache-Status"))
	}

	// Up again: the live answer, and it replaces the stored one.
	u.set(serving("v2", "Cache-Control", "max-age=60"))
	resp, body, err = read(t, c, url)
	if err != nil || body != "v2" || resp.Header.Get("Cache-Status") != "" || heed.Degraded(resp) != nil {
		t.Errorf("up again: %q %v %v", body, err, resp.Header)
	}
	u.set(failing(500))
	if _, body, _ := read(t, c, url); body != "v2" {
		t.Errorf("down again: %q, want the newer v2", body)
	}
	// Another URL has nothing stored: the failure stands.
	if resp, _, err := read(t, c, "http://api.test/items?page=2"); err != nil || resp.StatusCode != 500 {
		t.Errorf("unstored URL: %v %v, want the 500", resp, err)
	}
}

func TestStalePastItsAllowanceIsNotServed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []string
		cfg    heed.StaleConfig
		ok     time.Duration // served after this long
		late   time.Duration // not served after this long
	}{
		{"stale-if-error", []string{"Cache-Control", "max-age=10, stale-if-error=60"}, heed.StaleConfig{MaxStale: time.Hour}, 30 * time.Second, 100 * time.Second},
		{"MaxStale", []string{"Cache-Control", "max-age=10"}, heed.StaleConfig{MaxStale: 2 * time.Minute}, time.Minute, 3 * time.Minute},
		{"default MaxStale, no freshness", nil, heed.StaleConfig{}, 50 * time.Minute, 70 * time.Minute},
		{"Expires", []string{"Date", "Mon, 16 Mar 2026 15:00:00 GMT", "Expires", "Mon, 16 Mar 2026 15:10:00 GMT"}, heed.StaleConfig{MaxStale: time.Minute}, 10 * time.Minute, 12 * time.Minute},
		{"Age counts", []string{"Cache-Control", "max-age=60, stale-if-error=60", "Age", "100"}, heed.StaleConfig{}, 0, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &upstream{}
			c, clk := staleClient(t, u, heed.WithStaleIfError(tc.cfg), heed.WithMaxAttempts(1))
			u.set(serving("kept", tc.header...))
			read(t, c, "http://api.test/")
			u.set(failing(503))
			clk.Advance(tc.ok)
			if _, body, _ := read(t, c, "http://api.test/"); body != "kept" {
				t.Errorf("after %v: %q, want the stored response", tc.ok, body)
			}
			clk.Advance(tc.late - tc.ok)
			if resp, body, err := read(t, c, "http://api.test/"); err != nil || resp.StatusCode != 503 || body == "kept" {
				t.Errorf("after %v: %v %q %v, want the 503", tc.late, resp.StatusCode, body, err)
			}
		})
	}
}

func TestStaleNeverStores(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resp   []string
		req    []string
		method string
	}{
		{"no-store", []string{"Cache-Control", "no-store"}, nil, "GET"},
		{"no-cache", []string{"Cache-Control", "max-age=60, no-cache"}, nil, "GET"},
		{"must-revalidate", []string{"Cache-Control", "must-revalidate"}, nil, "GET"},
		{"Vary *", []string{"Vary", "*"}, nil, "GET"},
		{"request no-store", nil, []string{"Cache-Control", "no-store"}, "GET"},
		{"Range", nil, []string{"Range", "bytes=0-1"}, "GET"},
		{"PUT", nil, nil, "PUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &upstream{}
			c, _ := staleClient(t, u, heed.WithStaleIfError(heed.StaleConfig{}), heed.WithMaxAttempts(1))
			u.set(serving("kept", tc.resp...))
			req, _ := http.NewRequest(tc.method, "http://api.test/", nil)
			for i := 0; i+1 < len(tc.req); i += 2 {
				req.Header.Set(tc.req[i], tc.req[i+1])
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			u.set(failing(503))
			if resp, body, _ := read(t, c, "http://api.test/", tc.req...); resp.StatusCode != 503 {
				t.Errorf("got %d %q, want the 503: nothing stored", resp.StatusCode, body)
			}
		})
	}
}

func TestStaleVarySeparatesEntries(t *testing.T) {
	u := &upstream{}
	c, _ := staleClient(t, u, heed.WithStaleIfError(heed.StaleConfig{}), heed.WithMaxAttempts(1))
	u.set(func(req *http.Request) (*http.Response, error) {
		body := map[string]string{"en": "hello", "fr": "bonjour"}[req.Header.Get("Accept-Language")]
		return serving(body, "Vary", "accept-language, Accept-Encoding")(req)
	})
	read(t, c, "http://api.test/greeting", "Accept-Language", "en")
	read(t, c, "http://api.test/greeting", "Accept-Language", "fr")
	u.set(failing(503))
	for lang, want := range map[string]string{"en": "hello", "fr": "bonjour"} {
		if _, body, _ := read(t, c, "http://api.test/greeting", "Accept-Language", lang); body != want {
			t.Errorf("%s: %q, want %q", lang, body, want)
		}
	}
	if resp, _, _ := read(t, c, "http://api.test/greeting", "Accept-Language", "de"); resp.StatusCode != 503 {
		t.Errorf("de: got %d, want the 503: no variant stored", resp.StatusCode)
	}
	if resp, _, _ := read(t, c, "http://api.test/greeting", "Accept-Language", "en", "Accept-Encoding", "gzip"); resp.StatusCode != 503 {
		t.Errorf("en with gzip: got %d, want the 503: a different variant", resp.StatusCode)
	}
}

// A body heed does not read ahead is stored once the caller has read it to
// the end, and not when the caller stops early.
func TestStaleStoresStreamedBodiesReadToTheEnd(t *testing.T) {
	u := &upstream{}
	c, _ := staleClient(t, u, heed.WithStaleIfError(heed.StaleConfig{}), heed.WithMaxAttempts(1), heed.WithResponseBuffer(4))
	u.set(serving("a body longer than the read-ahead"))
	read(t, c, "http://api.test/full")
	resp, err := c.Get("http://api.test/partial")
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, resp.Body, 3)
	resp.Body.Close()
	u.set(failing(502))
	if _, body, _ := read(t, c, "http://api.test/full"); body != "a body longer than the read-ahead" {
		t.Errorf("full: %q", body)
	}
	if resp, _, _ := read(t, c, "http://api.test/partial"); resp.StatusCode != 502 {
		t.Errorf("partial: got %d, want the 502", resp.StatusCode)
	}
}

// With the breaker open nothing is sent: the stored response is a hit.
func TestStaleServedWhenTheBreakerIsOpen(t *testing.T) {
	u := &upstream{}
	c, _ := staleClient(t, u, heed.WithStaleIfError(heed.StaleConfig{}), heed.WithMaxAttempts(1),
		heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Minute}))
	u.set(serving("kept", "Cache-Control", "max-age=0"))
	read(t, c, "http://api.test/")
	u.set(refusing)
	read(t, c, "http://api.test/")
	read(t, c, "http://api.test/") // opens the breaker
	before := u.requests()
	resp, body, err := read(t, c, "http://api.test/")
	if err != nil || body != "kept" {
		t.Fatalf("%q %v", body, err)
	}
	if u.requests() != before {
		t.Error("a request went out through an open breaker")
	}
	if got := resp.Header.Get("Cache-Status"); !strings.HasPrefix(got, "heed; hit; ttl=") || !strings.Contains(got, "circuit breaker") {
		t.Errorf("Cache-Status %q", got)
	}
	if fe := heed.Degraded(resp); fe == nil || !errors.Is(fe, heed.ErrBreakerOpen) || fe.RetryAt.IsZero() {
		t.Errorf("Degraded = %v, want the open breaker and when it closes", fe)
	}
}

func TestStaleNotServedToACallerWhoLeft(t *testing.T) {
	u := &upstream{}
	c, _ := staleClient(t, u, heed.WithStaleIfError(heed.StaleConfig{}))
	u.set(serving("kept"))
	read(t, c, "http://api.test/")
	u.set(func(req *http.Request) (*http.Response, error) {
		<-req.Context().Done()
		return nil, req.Context().Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.test/", nil)
	if resp, err := c.Do(req); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: got %v %v, want the cancellation", resp, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://api.test/", nil)
	if resp, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("past its deadline: got %v %v, want the deadline", resp, err)
	}
}

func TestStaleConfigErrors(t *testing.T) {
	for _, sc := range []heed.StaleConfig{
		{MaxBytes: -1},
		{MaxEntryBytes: -1},
		{MaxBytes: 100, MaxEntryBytes: 200},
		{MaxStale: -time.Second},
	} {
		if _, err := heed.New(heed.WithStaleIfError(sc)); err == nil || !strings.Contains(err.Error(), "WithStaleIfError") {
			t.Errorf("%+v: %v, want an error naming WithStaleIfError", sc, err)
		}
	}
}

func TestFallback(t *testing.T) {
	u := &upstream{}
	var (
		ev     events
		got    *heed.Error
		answer func() (*http.Response, error)
	)
	fallback := func(ctx context.Context, req *http.Request, failure *heed.Error) (*http.Response, error) {
		got = failure
		return answer()
	}
	c, _ := staleClient(t, u, heed.WithFallback(fallback), heed.WithHook(&ev), heed.WithoutBreaker())
	u.set(failing(503))

	answer = func() (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("degraded"))}, nil
	}
	resp, body, err := read(t, c, "http://api.test/")
	if err != nil || body != "degraded" || resp.Header == nil {
		t.Fatalf("%q %v", body, err)
	}
	if got == nil || !errors.Is(got, heed.ErrAttemptsExhausted) || len(got.Attempts) != heed.DefaultMaxAttempts {
		t.Errorf("the fallback got %v, want the exhausted attempts", got)
	}
	var se *heed.StatusError
	if !errors.As(got, &se) || se.StatusCode != 503 {
		t.Errorf("the failure's cause %v, want the 503", got.Err)
	}
	if heed.Degraded(resp) != got {
		t.Error("Degraded does not return the failure")
	}
	if fb := ev.of(heed.EventFallback); len(fb) != 1 || fb[0].Status != 200 {
		t.Errorf("fallback events %+v", fb)
	}

	// Declining keeps the call's own outcome.
	answer = func() (*http.Response, error) { return nil, nil }
	if resp, _, err := read(t, c, "http://api.test/"); err != nil || resp.StatusCode != 503 {
		t.Errorf("declined: %v %v, want the 503", resp, err)
	}
	// An error replaces the outcome.
	errDown := errors.New("the catalogue is down; showing nothing")
	answer = func() (*http.Response, error) { return nil, errDown }
	if _, err := c.Get("http://api.test/"); !errors.Is(err, errDown) {
		t.Errorf("got %v, want the fallback's error", err)
	}
	// A transport failure reaches it too.
	u.set(refusing)
	answer = func() (*http.Response, error) { return &http.Response{StatusCode: 204}, nil }
	if resp, _, err := read(t, c, "http://api.test/"); err != nil || resp.StatusCode != 204 || got.Err == nil {
		t.Errorf("refused: %v %v", resp, err)
	}
	// An answer about the request is no failure: no fallback.
	got = nil
	u.set(failing(404))
	if resp, _, _ := read(t, c, "http://api.test/"); resp.StatusCode != 404 || got != nil {
		t.Errorf("404: got %d, fallback called with %v", resp.StatusCode, got)
	}
}

// The stored response is preferred; the fallback answers when there is
// none.
func TestFallbackAfterStale(t *testing.T) {
	u := &upstream{}
	calls := 0
	fallback := func(ctx context.Context, req *http.Request, failure *heed.Error) (*http.Response, error) {
		calls++
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("fallback"))}, nil
	}
	c, _ := staleClient(t, u, heed.WithFallback(fallback), heed.WithStaleIfError(heed.StaleConfig{}), heed.WithMaxAttempts(1))
	u.set(serving("stored"))
	read(t, c, "http://api.test/a")
	u.set(failing(503))
	if _, body, _ := read(t, c, "http://api.test/a"); body != "stored" || calls != 0 {
		t.Errorf("a: %q after %d fallback calls", body, calls)
	}
	if _, body, _ := read(t, c, "http://api.test/b"); body != "fallback" || calls != 1 {
		t.Errorf("b: %q after %d fallback calls", body, calls)
	}
	if _, err := heed.New(heed.WithFallback(nil)); err == nil {
		t.Error("WithFallback(nil) accepted")
	}
}

// The store follows the server: a newer answer with the same header and
// another body replaces the stored body, one that differs only in its
// Date is served with the newest Date, and an answer whose caller closed
// it without reading it is stored too (heed had read it whole).
func TestStaleKeepsTheNewestAnswer(t *testing.T) {
	u := &upstream{}
	c, _ := staleClient(t, u, heed.WithStaleIfError(heed.StaleConfig{}), heed.WithoutBreaker())
	const url = "http://api.test/items/1"
	dated := func(body, date string) func(*http.Request) (*http.Response, error) {
		return serving(body, "Cache-Control", "max-age=60", "Date", date)
	}
	stale := func() (string, string) {
		t.Helper()
		u.set(failing(503))
		resp, body, err := read(t, c, url)
		if err != nil || heed.Degraded(resp) == nil {
			t.Fatalf("not served from the store: %v %v", resp, err)
		}
		return body, resp.Header.Get("Date")
	}
	const d1, d2 = "Wed, 02 Dec 2026 20:00:00 GMT", "Wed, 02 Dec 2026 20:00:01 GMT"
	for _, step := range []struct{ body, date string }{{"v1", d1}, {"v2", d1}, {"v2", d2}, {"v1", d2}} {
		u.set(dated(step.body, step.date))
		if _, body, err := read(t, c, url); err != nil || body != step.body {
			t.Fatalf("live: %q %v", body, err)
		}
		if body, date := stale(); body != step.body || date != step.date {
			t.Errorf("served %q dated %q, want %q dated %q", body, date, step.body, step.date)
		}
	}
	// Closed unread: heed read the body ahead, so it is stored whole.
	u.set(dated("v3", d2))
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if body, _ := stale(); body != "v3" {
		t.Errorf("after a body closed unread, served %q, want v3", body)
	}
}
