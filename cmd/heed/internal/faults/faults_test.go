package faults

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/hint"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newFaults starts the fault server on loopback.
func newFaults(t *testing.T) (*Server, string) {
	t.Helper()
	s := NewServer(7)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); ts.Close() })
	return s, ts.URL
}

// fresh is a client that opens a new connection for every request, so that
// net/http never re-sends a request on its own after a reset, and follows
// no redirect unless told.
func fresh(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func mustGet(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", u, err)
	}
	return resp, string(b)
}

func TestStatusAndHints(t *testing.T) {
	_, base := newFaults(t)
	c := fresh(t)

	resp, _ := mustGet(t, c, base+"/status/418")
	if resp.StatusCode != 418 || resp.Header.Get("Retry-After") != "" {
		t.Errorf("/status/418: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, _ = mustGet(t, c, base+"/status/429?retry-after=2")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("retry-after=2: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, _ = mustGet(t, c, base+"/status/503?retry-after=date&in=2")
	at, err := http.ParseTime(resp.Header.Get("Retry-After"))
	if err != nil {
		t.Fatalf("retry-after=date: %q: %v", resp.Header.Get("Retry-After"), err)
	}
	if d := time.Until(at); d < 0 || d > 3*time.Second {
		t.Errorf("retry-after=date&in=2: %v ahead, want about 2 s", d)
	}
	resp, _ = mustGet(t, c, base+"/status/429?ratelimit=100,0,3")
	q, ok := hint.RateLimit(resp.Header, time.Now())
	if !ok || q.Remaining != 0 || q.Limit != 100 {
		t.Errorf("ratelimit=100,0,3: parsed %+v %v from %v", q, ok, resp.Header)
	}
	for _, f := range []string{"RateLimit", "RateLimit-Policy", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"} {
		if resp.Header.Get(f) == "" {
			t.Errorf("ratelimit: no %s field", f)
		}
	}
	for _, bad := range []string{"/status/99", "/status/x", "/status/503?retry-after=soon", "/status/429?ratelimit=1,2", "/status/503?times=x"} {
		if resp, _ := mustGet(t, c, base+bad); resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestTimesThenPerKey(t *testing.T) {
	s, base := newFaults(t)
	c := fresh(t)
	want := func(u string, code int) {
		t.Helper()
		if resp, _ := mustGet(t, c, base+u); resp.StatusCode != code {
			t.Errorf("%s: %d, want %d", u, resp.StatusCode, code)
		}
	}
	want("/status/503?times=2&key=a", 503)
	want("/status/503?times=2&key=b", 503) // another key, its own count
	want("/status/503?times=2&key=a", 503)
	want("/status/503?times=2&key=a", 200)
	want("/status/503?times=2&key=a", 200)
	want("/status/503?times=2&key=b", 503)
	want("/status/503?times=2&key=b", 200)
	// Without a key, the path is the key; then= picks the later status.
	want("/status/429?times=1&then=204", 429)
	want("/status/429?times=1&then=204", 204)
	// Resetting the counters starts every key again.
	s.ResetCounters()
	want("/status/503?times=1&key=a", 503)
}

func TestLimitedBurst(t *testing.T) {
	_, base := newFaults(t)
	c := fresh(t)
	// A slow refill: the burst of 3 passes, the fourth is refused.
	for i := range 4 {
		resp, _ := mustGet(t, c, base+"/limited?rate=0.01&burst=3&key=t")
		want := 200
		if i == 3 {
			want = 429
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i+1, resp.StatusCode, want)
		}
		if i == 3 {
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 {
				t.Errorf("429 with Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
			}
		}
	}
	if resp, _ := mustGet(t, c, base+"/limited?rate=0&burst=3"); resp.StatusCode != 400 {
		t.Errorf("rate=0: %d, want 400", resp.StatusCode)
	}
}

func TestResets(t *testing.T) {
	s, base := newFaults(t)
	c := fresh(t)
	_, err := c.Get(base + "/reset/before-headers")
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("/reset/before-headers: %v, want connection reset", err)
	}
	resp, err := c.Get(base + "/reset/after-headers?bytes=100")
	if err != nil {
		t.Fatalf("/reset/after-headers: %v, want the header", err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 100 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("/reset/after-headers: %d, length %d, body read %v; want 200, 100 and a reset", resp.StatusCode, resp.ContentLength, err)
	}
	// times=1: the first request of the key is reset, the next answered.
	if _, err := c.Get(base + "/reset/before-headers?times=1&key=r"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("times=1, first: %v, want a reset", err)
	}
	if resp, _ := mustGet(t, c, base+"/reset/before-headers?times=1&key=r"); resp.StatusCode != 200 {
		t.Errorf("times=1, second: %d", resp.StatusCode)
	}
	if got := s.Stats.Path("/reset/before-headers"); got.Requests != 3 || got.Resets != 2 {
		t.Errorf("stats of /reset/before-headers: %+v", got)
	}
}

func TestTruncated(t *testing.T) {
	_, base := newFaults(t)
	resp, err := fresh(t).Get(base + "/truncated?bytes=1000")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ContentLength != 1000 || len(b) != 500 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("/truncated: length %d, read %d bytes, %v; want 1000, 500, unexpected EOF", resp.ContentLength, len(b), err)
	}
}

func TestTrickleAndDelays(t *testing.T) {
	_, base := newFaults(t)
	c := fresh(t)
	start := time.Now()
	resp, body := mustGet(t, c, base+"/trickle?bytes=5&every=20ms")
	took := time.Since(start)
	if resp.StatusCode != 200 || len(body) != 5 {
		t.Errorf("/trickle: %d, %d bytes", resp.StatusCode, len(body))
	}
	if took < 80*time.Millisecond || took > 5*time.Second {
		t.Errorf("/trickle of 5 bytes every 20ms took %v, want about 80ms", took)
	}
	start = time.Now()
	mustGet(t, c, base+"/slow-headers?delay=50ms")
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("/slow-headers?delay=50ms answered after %v", took)
	}
	// A client that gives up first sees a timeout.
	tc := &http.Client{Transport: c.Transport, Timeout: 50 * time.Millisecond}
	if _, err := tc.Get(base + "/slow-headers?delay=10s"); err == nil {
		t.Error("/slow-headers?delay=10s answered within 50ms")
	}
	start = time.Now()
	_, body = mustGet(t, c, base+"/delay?d=30ms")
	var e Echo
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Path != "/delay" || time.Since(start) < 30*time.Millisecond {
		t.Errorf("/delay: %v %+v after %v", err, e, time.Since(start))
	}
}

func TestRedirectLoop(t *testing.T) {
	_, base := newFaults(t)
	_, err := fresh(t).Get(base + "/redirect-loop")
	if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Errorf("/redirect-loop: %v, want the client to stop", err)
	}
}

func TestBytesAndEcho(t *testing.T) {
	_, base := newFaults(t)
	c := fresh(t)
	resp, a := mustGet(t, c, base+"/bytes/100000")
	_, b := mustGet(t, c, base+"/bytes/100000")
	if resp.ContentLength != 100000 || len(a) != 100000 || a != b {
		t.Errorf("/bytes/100000: length %d, %d bytes, same twice %v", resp.ContentLength, len(a), a == b)
	}
	req, _ := http.NewRequest("POST", base+"/echo?x=1", strings.NewReader("hello"))
	req.Header.Set("X-Test", "yes")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e Echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if e.Method != "POST" || e.Body != "hello" || e.Header["X-Test"][0] != "yes" || e.Query["x"][0] != "1" {
		t.Errorf("/echo: %+v", e)
	}
}

func TestRawConnReset(t *testing.T) {
	_, base := newFaults(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /reset/before-headers HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = bufio.NewReader(conn).ReadByte()
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("raw read after /reset/before-headers: %v, want ECONNRESET", err)
	}
}

func TestStatsJSON(t *testing.T) {
	s, base := newFaults(t)
	c := fresh(t)
	mustGet(t, c, base+"/status/503?times=1&key=s")
	mustGet(t, c, base+"/status/503?times=1&key=s")
	mustGet(t, c, base+"/bytes/10")
	admin := httptest.NewServer(Admin(s, nil))
	defer admin.Close()
	_, body := mustGet(t, c, admin.URL+"/stats")
	var snap Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatal(err)
	}
	st := snap.Paths["/status/503"]
	if snap.Requests != 3 || st == nil || st.Requests != 2 || st.Statuses["503"] != 1 || st.Statuses["200"] != 1 || snap.Paths["/bytes/10"].BytesOut != 10 {
		t.Errorf("stats: %s", body)
	}
	req, _ := http.NewRequest("DELETE", admin.URL+"/stats", nil)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("DELETE /stats: %v", err)
	}
	if s.Stats.Snapshot().Requests != 0 {
		t.Error("DELETE /stats left counts")
	}
}

func TestAdminLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.1.2.3:0", ":0", "example.com:0"} {
		if ln, err := ListenLoopback(t.Context(), addr); err == nil {
			ln.Close()
			t.Errorf("ListenLoopback(%q) listened", addr)
		}
	}
	ln, err := ListenLoopback(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	// A request from elsewhere is refused, should one arrive.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/stats", nil)
	req.RemoteAddr = "192.0.2.1:1234"
	Admin(NewServer(1), nil).ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("/stats from 192.0.2.1: %d, want 403", rec.Code)
	}
}

// newProxy starts the fault proxy in front of an upstream that answers
// "upstream" and its admin API.
func newProxy(t *testing.T, r Rates) (p *Proxy, base, admin string) {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "upstream "+r.URL.Path)
	}))
	u, _ := url.Parse(up.URL)
	p, err := NewProxy(u, r, 42)
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(p)
	as := httptest.NewServer(Admin(nil, p))
	t.Cleanup(func() { p.Close(); ps.Close(); as.Close(); up.Close() })
	return p, ps.URL, as.URL
}

func TestProxyPassesThrough(t *testing.T) {
	p, base, _ := newProxy(t, Rates{})
	c := fresh(t)
	for range 20 {
		resp, body := mustGet(t, c, base+"/x")
		if resp.StatusCode != 200 || body != "upstream /x" {
			t.Fatalf("rates 0: %d %q", resp.StatusCode, body)
		}
	}
	if st := p.Stats.Path("/x"); st.Requests != 20 || st.Statuses["200"] != 20 || st.Injected != 0 || st.BytesOut != 20*11 {
		t.Errorf("stats: %+v", st)
	}
}

func TestProxyInjects(t *testing.T) {
	p, base, _ := newProxy(t, Rates{StatusRates: map[int]float64{503: 1}, RetryAfter: 2})
	c := fresh(t)
	for range 5 {
		resp, _ := mustGet(t, c, base+"/y")
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "2" {
			t.Fatalf("status-rate 503:1: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if err := p.SetRates(Rates{ResetRate: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(base + "/y"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reset-rate 1: %v, want a reset", err)
	}
	if st := p.Stats.Path("/y"); st.Requests != 6 || st.Statuses["503"] != 5 || st.Resets != 1 || st.Injected != 6 {
		t.Errorf("stats: %+v", st)
	}
}

func TestProxyAdmin(t *testing.T) {
	_, base, admin := newProxy(t, Rates{StatusRates: map[int]float64{429: 1}})
	c := fresh(t)
	if resp, _ := mustGet(t, c, base+"/z"); resp.StatusCode != 429 {
		t.Fatalf("before PUT: %d", resp.StatusCode)
	}
	put := func(body string) (*http.Response, string) {
		req, _ := http.NewRequest("PUT", admin+"/faults", strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := put(`{"status_rates":{},"latency":"1ms","bandwidth":"1MB/s"}`); resp.StatusCode != 200 {
		t.Fatalf("PUT /faults: %d %s", resp.StatusCode, body)
	}
	if resp, body := mustGet(t, c, base+"/z"); resp.StatusCode != 200 || body != "upstream /z" {
		t.Errorf("after PUT: %d %q", resp.StatusCode, body)
	}
	_, body := mustGet(t, c, admin+"/faults")
	var j struct {
		Latency     string             `json:"latency"`
		Bandwidth   string             `json:"bandwidth"`
		StatusRates map[string]float64 `json:"status_rates"`
	}
	if err := json.Unmarshal([]byte(body), &j); err != nil || j.Latency != "1ms" || j.Bandwidth != "1MB/s" || len(j.StatusRates) != 0 {
		t.Errorf("GET /faults: %s (%v)", body, err)
	}
	for _, bad := range []string{`{"reset_rate":2}`, `{"status_rates":{"503":0.7},"reset_rate":0.5}`, `{"latency":"soon"}`, `{"nope":1}`} {
		if resp, body := put(bad); resp.StatusCode != 400 {
			t.Errorf("PUT %s: %d %s, want 400", bad, resp.StatusCode, body)
		}
	}
	_, body = mustGet(t, c, admin+"/stats")
	var snap Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil || snap.Paths["/z"].Requests != 2 || snap.Paths["/z"].Injected != 1 {
		t.Errorf("GET /stats: %s", body)
	}
}

func TestProxyBandwidth(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 20000))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	p, err := NewProxy(u, Rates{Bandwidth: 100000}, 1)
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(p)
	defer func() { p.Close(); ps.Close() }()
	start := time.Now()
	_, body := mustGet(t, fresh(t), ps.URL)
	// 20 kB at 100 kB/s: about 0.2 s (the first tenth goes at once).
	if took := time.Since(start); len(body) != 20000 || took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("20 kB at 100 kB/s: %d bytes in %v", len(body), took)
	}
}

func TestProxySeeded(t *testing.T) {
	draw := func() []int {
		p, err := NewProxy(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}, Rates{ResetRate: 0.2, StatusRates: map[int]float64{429: 0.3, 503: 0.1}}, 99)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for range 50 {
			c := p.choose()
			if c.reset {
				got = append(got, -1)
			} else {
				got = append(got, c.status)
			}
		}
		return got
	}
	a, b := draw(), draw()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same seed, different choices:\n%v\n%v", a, b)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1MB/s": 1e6, "64KiB/s": 65536, "100": 100, "2.5KB": 2500} {
		if got, err := ParseBandwidth(in); err != nil || got != want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, b := range []int64{0, 1e6, 65536, 1500, 7} {
		if got, err := ParseBandwidth(FormatBandwidth(b)); err != nil || got != b {
			t.Errorf("ParseBandwidth(FormatBandwidth(%d)) = %d, %v", b, got, err)
		}
	}
	if _, err := ParseBandwidth("fast"); err == nil {
		t.Error("ParseBandwidth(fast) passed")
	}
	m, err := ParseStatusRates("429:0.1, 503:0.05")
	if err != nil || m[429] != 0.1 || m[503] != 0.05 {
		t.Errorf("ParseStatusRates: %v %v", m, err)
	}
	if _, err := ParseStatusRates("429"); err == nil {
		t.Error("ParseStatusRates(429) passed")
	}
}

// What the fault server refuses, so that no request can hold it for long
// or grow its memory without bound, and a full key table says so.
func TestBounds(t *testing.T) {
	s := NewServer(1)
	do := func(target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		return rec
	}
	if rec := do("/status/429?retry-after=2"); rec.Code != 429 || rec.Header().Get("Retry-After") != "2" {
		t.Errorf("retry-after=2: %d %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	for _, target := range []string{
		"/status/429?retry-after=2s",
		"/status/429?retry-after=0.5",
		"/status/503?times=1&key=" + strings.Repeat("k", maxKeyLen+1),
		"/trickle?bytes=1000&every=1s",
	} {
		if rec := do(target); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", target[:min(len(target), 60)], rec.Code)
		}
	}
	for i := range maxKeys {
		do(fmt.Sprintf("/status/503?times=1&key=k%d", i))
	}
	if rec := do("/status/503?times=1&key=one-too-many"); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "too many keys") {
		t.Errorf("a key past the table: %d %q, want 503 saying so", rec.Code, rec.Body.String())
	}
	if rec := do("/status/503?times=1&key=k0"); rec.Code != 200 {
		t.Errorf("a key already counted: %d, want its then (200)", rec.Code)
	}
}
