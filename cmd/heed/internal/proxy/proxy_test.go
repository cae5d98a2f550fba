package proxy

// Integration tests: the heed binary, built once, runs as "heed proxy" in a
// subprocess in front of httptest upstreams on loopback.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// heedBin is the heed binary TestMain builds.
var heedBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "heed-proxy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	heedBin = filepath.Join(dir, "heed")
	build := exec.Command("go", "build", "-o", heedBin, "github.com/heed-go/heed/cmd/heed")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building heed:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address no one listens on (for a moment).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// proc is a running "heed proxy".
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	config string // the configuration file
	admin  string
	stderr *syncBuffer
	done   chan error
	client *http.Client
}

// startProxy writes cfg (YAML, with ADMIN replaced by a free loopback
// address) to a file, starts heed proxy on it and waits for /readyz.
func startProxy(t *testing.T, cfg string, args ...string) *proc {
	t.Helper()
	admin := freeAddr(t)
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	cfg = "admin: " + admin + "\n" + cfg
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &proc{
		t: t, config: path, admin: admin, stderr: &syncBuffer{}, done: make(chan error, 1),
		client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second},
	}
	p.cmd = exec.Command(heedBin, append([]string{"proxy", "-config", path}, args...)...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.client.CloseIdleConnections()
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("heed proxy's stderr:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := p.client.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("heed proxy exited: %v\n%s", err, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("heed proxy not ready after 10 s:\n%s", p.stderr.String())
		}
	}
}

func (p *proc) do(req *http.Request) (*http.Response, string) {
	p.t.Helper()
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp, string(b)
}

func (p *proc) get(url string) (*http.Response, string) {
	p.t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.do(req)
}

func (p *proc) signal(s os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(d time.Duration) error {
	p.t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		p.t.Fatalf("heed proxy still running after %v", d)
		return nil
	}
}

// eventually polls f every 10 ms for up to 5 s.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counter counts an upstream's requests by path.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) inc(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[path]++
	return c.n[path]
}

func (c *counter) get(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

func upstream(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func routeYAML(listen, up string, extra ...string) string {
	s := fmt.Sprintf("  - listen: %s\n    upstream: %s\n", listen, up)
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

func TestRetriesThroughProxy(t *testing.T) {
	var hits counter
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.inc(r.URL.Path)
		switch {
		case r.URL.Path == "/flaky" && n == 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/limited" && n == 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case r.URL.Path == "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "down")
			return
		}
		w.Header().Set("X-Upstream", "yes")
		fmt.Fprintf(w, "hello %s %s", r.Method, r.URL.Path)
	}))
	listen := freeAddr(t)
	// Without pacing, which would space the retries out after the 503s and
	// the 429 (heed's default, right for a real API, slow for a test).
	p := startProxy(t, "routes:\n"+routeYAML(listen, up.URL, "attempts: 3", "pacing: false"))
	base := "http://" + listen

	for _, path := range []string{"/flaky", "/limited"} {
		resp, body := p.get(base + path)
		if resp.StatusCode != 200 || body != "hello GET "+path {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Heed-Attempts"); got != "2" {
			t.Errorf("%s: Heed-Attempts %q, want 2", path, got)
		}
		if resp.Header.Get("X-Upstream") != "yes" {
			t.Errorf("%s: the upstream's header was not kept: %v", path, resp.Header)
		}
		if hits.get(path) != 2 {
			t.Errorf("%s: upstream saw %d requests, want 2", path, hits.get(path))
		}
	}

	// Exhausted: the upstream's last answer, marked by the tier protocol.
	resp, body := p.get(base + "/down")
	if resp.StatusCode != 503 || body != "down" || resp.Header.Get("Heed-Attempts") != "3" || hits.get("/down") != 3 {
		t.Errorf("/down: %d %q attempts %q, upstream saw %d", resp.StatusCode, body, resp.Header.Get("Heed-Attempts"), hits.get("/down"))
	}
	if got := resp.Header.Get("Heed-Retried"); got != "exhausted" {
		t.Errorf("/down: Heed-Retried %q, want exhausted", got)
	}

	// The access log.
	eventually(t, "access log line", func() bool {
		return strings.Contains(p.stderr.String(), `"path":"/flaky","status":200,"attempts":2`)
	})
}

func TestPostWithoutKeyNotRepeated(t *testing.T) {
	var hits counter
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := hits.inc(r.URL.Path)
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "got %s", body)
	}))
	listen := freeAddr(t)
	p := startProxy(t, "routes:\n"+routeYAML(listen, up.URL, "pacing: false"))

	req, _ := http.NewRequest("POST", "http://"+listen+"/charge", strings.NewReader("amount=5"))
	resp, _ := p.do(req)
	if resp.StatusCode != 503 || hits.get("/charge") != 1 {
		t.Errorf("POST without a key: %d, upstream saw %d requests, want 503 and 1", resp.StatusCode, hits.get("/charge"))
	}
	if resp.Header.Get("Heed-Attempts") != "1" {
		t.Errorf("Heed-Attempts %q", resp.Header.Get("Heed-Attempts"))
	}

	// With an Idempotency-Key it may be repeated, with its body.
	req, _ = http.NewRequest("POST", "http://"+listen+"/keyed", strings.NewReader("amount=7"))
	req.Header.Set("Idempotency-Key", "k1")
	resp, body := p.do(req)
	if resp.StatusCode != 200 || body != "got amount=7" || hits.get("/keyed") != 2 {
		t.Errorf("POST with a key: %d %q, upstream saw %d", resp.StatusCode, body, hits.get("/keyed"))
	}
}

func TestNotAnOpenProxy(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "api")
	}))
	listen := freeAddr(t)
	p := startProxy(t, "routes:\n"+routeYAML(listen, up.URL, "prefix: /api"))

	resp, body := p.get("http://" + listen + "/other?secret=1")
	if resp.StatusCode != 404 || !strings.Contains(body, "no route matches GET "+listen+" /other") || strings.Contains(body, "secret") {
		t.Errorf("no route: %d %q", resp.StatusCode, body)
	}
	resp, body = p.get("http://" + listen + "/api/x")
	if resp.StatusCode != 200 || body != "api" {
		t.Errorf("route: %d %q", resp.StatusCode, body)
	}
	resp, _ = p.get("http://" + listen + "/apix")
	if resp.StatusCode != 404 {
		t.Errorf("/apix matched /api: %d", resp.StatusCode)
	}

	for _, c := range []struct {
		req    string
		status string
	}{
		{"GET http://example.com/api/x HTTP/1.1\r\nHost: example.com\r\n\r\n", "400"},
		{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "405"},
	} {
		conn, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, c.req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		conn.Close()
		if !strings.HasPrefix(resp.Status, c.status) || !strings.Contains(string(b), "not an open proxy") {
			t.Errorf("%q: %s %q", strings.Fields(c.req)[0], resp.Status, b)
		}
	}
}

func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Second):
		}
		fmt.Fprint(w, "data: two\n\n")
	}))
	listen := freeAddr(t)
	p := startProxy(t, "routes:\n"+routeYAML(listen, up.URL))

	resp, err := p.client.Get("http://" + listen + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	// The first event arrived while the upstream still holds the second.
	close(release)
	rest, _ := io.ReadAll(r)
	if string(rest) != "\ndata: two\n\n" {
		t.Errorf("rest: %q", rest)
	}
}

func TestUpgradePassThrough(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.Copy(conn, brw) // echo until the client closes
	}))
	listen := freeAddr(t)
	p := startProxy(t, "routes:\n"+routeYAML(listen, up.URL))
	_ = p

	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", listen)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("switch: %s %v", resp.Status, resp.Header)
	}
	fmt.Fprint(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Errorf("echo: %q %v", line, err)
	}
}

func TestAdminEndpoints(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	listen := freeAddr(t)
	p := startProxy(t, "routes:\n"+routeYAML(listen, up.URL, "name: api"))
	p.get("http://" + listen + "/x")

	resp, body := p.get("http://" + p.admin + "/metrics")
	if resp.StatusCode != 200 || !strings.Contains(body, `heed_requests_total{key="`+strings.TrimPrefix(up.URL, "http://")+`",method="GET",outcome="success",route="api"} 1`) {
		t.Errorf("/metrics: %d\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(body, "heed_breaker_state{") {
		t.Errorf("/metrics does not read the watched policy's breaker state")
	}
	resp, _ = p.get("http://" + p.admin + "/healthz")
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	resp, body = p.get("http://" + p.admin + "/routes")
	var info struct{ Routes []RouteInfo }
	if err := json.Unmarshal([]byte(body), &info); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/routes: %d %v\n%s", resp.StatusCode, err, body)
	}
	if len(info.Routes) != 1 || info.Routes[0].Name != "api" || info.Routes[0].Upstream != up.URL ||
		len(info.Routes[0].Keys) != 1 || info.Routes[0].Keys[0].Breaker != "closed" {
		t.Errorf("/routes: %+v", info)
	}
}

func TestReloadKeepsBreakerState(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	a, b := freeAddr(t), freeAddr(t)
	routeA := routeYAML(a, up.URL, "name: a", "attempts: 1", "breaker: {consecutive_failures: 2, open_timeout: 10m}")
	p := startProxy(t, "routes:\n"+routeA)
	admin := "admin: " + p.admin + "\n"

	for range 2 {
		if resp, _ := p.get("http://" + a + "/fail"); resp.StatusCode != 500 {
			t.Fatalf("want the upstream's 500, got %d", resp.StatusCode)
		}
	}
	resp, body := p.get("http://" + a + "/ok")
	if resp.StatusCode != 503 || !strings.HasPrefix(body, "heed: breaker_open: ") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("breaker not open: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	// A bad configuration is refused and the one in force kept.
	if err := os.WriteFile(p.config, []byte(admin+"routes:\n"+routeA+"    max_wait: forever\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	eventually(t, "reload refused", func() bool { return strings.Contains(p.stderr.String(), "reload refused") })
	if !strings.Contains(p.stderr.String(), "routes[0].max_wait: bad duration \\\"forever\\\"") {
		t.Errorf("the refusal does not name the field:\n%s", p.stderr.String())
	}

	// Add route b; route a is unchanged, its breaker still open.
	if err := os.WriteFile(p.config, []byte(admin+"routes:\n"+routeA+routeYAML(b, up.URL, "name: b")), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	eventually(t, "route b serving", func() bool {
		resp, err := p.client.Get("http://" + b + "/ok")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	resp, body = p.get("http://" + a + "/ok")
	if resp.StatusCode != 503 || !strings.HasPrefix(body, "heed: breaker_open: ") {
		t.Errorf("route a's breaker lost by the reload: %d %q", resp.StatusCode, body)
	}
	_, body = p.get("http://" + p.admin + "/routes")
	if !strings.Contains(body, `"breaker": "open"`) || !strings.Contains(body, `"name": "b"`) {
		t.Errorf("/routes after reload:\n%s", body)
	}
}

func TestSIGTERMDrains(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		fmt.Fprint(w, "slow")
	}))
	listen := freeAddr(t)
	p := startProxy(t, "grace: 5s\nroutes:\n"+routeYAML(listen, up.URL))

	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := p.client.Get("http://" + listen + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{resp.StatusCode, string(b), err}
	}()
	<-arrived
	p.signal(syscall.SIGTERM)
	eventually(t, "readyz 503 while draining", func() bool {
		resp, err := p.client.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	eventually(t, "listener closed while draining", func() bool {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	close(release)
	r := <-res
	if r.err != nil || r.status != 200 || r.body != "slow" {
		t.Errorf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	if err := p.wait(5 * time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
}

func TestPythonClient(t *testing.T) {
	if err := exec.Command("python3", "-c", "import requests").Run(); err != nil {
		t.Skip("python3 with requests is not installed: apt-get install python3-requests")
	}
	var hits counter
	var total atomic.Int64
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		if hits.inc(r.URL.Path) == 1 {
			// No Retry-After: heed backs off (full jitter from 500 ms),
			// where a Retry-After: 0 would get up to a second of jitter.
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	}))
	listen := freeAddr(t)
	// Without pacing: heed's adaptive pacer would rightly slow the route
	// down after a run of 503s, and the test would take seconds.
	startProxy(t, "routes:\n"+routeYAML(listen, up.URL, "pacing: false"))

	const script = `
import sys, requests
base, n = sys.argv[1], int(sys.argv[2])
s = requests.Session()  # no retry adapter: the proxy retries
bad = 0
for i in range(n):
    r = s.get(f"{base}/item/{i}", timeout=10)
    if r.status_code != 200 or r.text != f"ok /item/{i}" or r.headers.get("Heed-Attempts") != "2":
        print("FAIL", i, r.status_code, r.headers.get("Heed-Attempts"), r.text[:200])
        bad += 1
print("done", n - bad, "of", n)
sys.exit(1 if bad else 0)
`
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 10
	out, err := exec.CommandContext(ctx, "python3", "-c", script, "http://"+listen, fmt.Sprint(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	if got := total.Load(); got != 2*n {
		t.Errorf("upstream saw %d requests, want %d", got, 2*n)
	}
}

// The command line's settings hold across a reload: a file reloaded on
// SIGHUP does not turn the access log back on.
func TestReloadKeepsFlags(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	a, b := freeAddr(t), freeAddr(t)
	p := startProxy(t, "access_log: true\nroutes:\n"+routeYAML(a, up.URL, "name: a"), "-access-log=false")
	p.get("http://" + a + "/one")
	admin := "admin: " + p.admin + "\naccess_log: true\n"
	if err := os.WriteFile(p.config, []byte(admin+"routes:\n"+routeYAML(a, up.URL, "name: a")+routeYAML(b, up.URL, "name: b")), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	eventually(t, "route b serving", func() bool {
		resp, err := p.client.Get("http://" + b + "/two")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	p.get("http://" + a + "/three")
	if strings.Contains(p.stderr.String(), `"msg":"request"`) {
		t.Errorf("an access log line despite -access-log=false:\n%s", p.stderr.String())
	}
}
