package proxy

// Tests of the server in this process, so that -race sees it.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heed-go/heed"
)

func startInProcess(t *testing.T, yml string) *Server {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestReloadUnderLoad(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.URL.Path)
	}))
	const listen = "127.0.0.1:0"
	cfg1 := "admin: 127.0.0.1:0\nroutes:\n" + routeYAML(listen, up.URL, "name: a", "prefix: /a")
	cfg2 := cfg1 + routeYAML(listen, up.URL, "name: b", "prefix: /b", "attempts: 2")
	cfg3 := "admin: 127.0.0.1:0\nroutes:\n" + routeYAML(listen, up.URL, "name: a", "prefix: /a") +
		routeYAML(listen, up.URL, "name: b", "prefix: /b", "attempts: 3")
	s := startInProcess(t, cfg1)
	addr := s.Addr(listen)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	policyA := s.table.Load().routes[0].policy
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + addr + "/a/x")
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "/a/x" {
					errs <- fmt.Errorf("%d %q", resp.StatusCode, b)
					return
				}
			}
		})
	}
	for _, c := range []string{cfg2, cfg3, cfg1, cfg3} {
		cfg, err := Parse("test.yaml", []byte(c))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error("during reloads:", err)
	}
	if got := s.table.Load().routes[0].policy; got != policyA {
		t.Error("route a is unchanged but its policy was replaced")
	}
	resp, err := client.Get("http://" + addr + "/b/y")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("route b: %d", resp.StatusCode)
	}
	// Reloading onto a port in use fails and changes nothing.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg, err := Parse("test.yaml", []byte("routes:\n"+routeYAML(busy.Addr().String(), up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("reload onto a busy port: %v", err)
	}
	if len(s.table.Load().routes) != 2 {
		t.Error("a failed reload changed the routes")
	}
}

func TestHeedTimeoutHonoured(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	s := startInProcess(t, "routes:\n"+routeYAML("127.0.0.1:0", up.URL))
	req, _ := http.NewRequest("GET", "http://"+s.Addr("127.0.0.1:0")+"/slow", nil)
	req.Header.Set("Heed-Timeout", "100")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.HasPrefix(string(b), "heed: ") {
		t.Errorf("%d %q", resp.StatusCode, b)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v: the caller's Heed-Timeout was not honoured", d)
	}
	if resp.Header.Get("Heed-Retried") == "" {
		t.Errorf("no Heed-Retried on the error response: %v", resp.Header)
	}
}

func TestErrorStatus(t *testing.T) {
	in3s := time.Now().Add(2500 * time.Millisecond)
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		err        error
		status     int
		reason     string
		retryAfter string
	}{
		{&heed.Error{Reason: heed.ErrBreakerOpen, RetryAt: in3s}, 503, "breaker_open", "3"},
		{&heed.Error{Reason: heed.ErrBudgetExhausted, Err: netErr}, 503, "budget_exhausted", "1"},
		{&heed.Error{Reason: heed.ErrThrottled}, 503, "throttled", "1"},
		{&heed.Error{Reason: heed.ErrWaitTooLong, RetryAt: in3s}, 503, "wait_too_long", "3"},
		{&heed.Error{Reason: heed.ErrDeadline}, 504, "deadline", ""},
		{&heed.Error{Reason: heed.ErrAttemptsExhausted, Err: netErr}, 502, "attempts_exhausted", ""},
		{&heed.Error{Reason: heed.ErrNotRetryable, Err: errors.New("x509: unknown authority")}, 502, "not_retryable", ""},
		{netErr, 502, "transport_error", ""},
		{context.DeadlineExceeded, 504, "deadline", ""},
	}
	for _, c := range cases {
		req := httptest.NewRequest("GET", "/x", nil)
		w := httptest.NewRecorder()
		writeError(w, req, c.err, slog.New(slog.NewTextHandler(io.Discard, nil)))
		body := w.Body.String()
		if w.Code != c.status || !strings.HasPrefix(body, "heed: "+c.reason+": ") || w.Header().Get("Retry-After") != c.retryAfter {
			t.Errorf("%v: %d %q Retry-After %q; want %d %s %q", c.err, w.Code, body, w.Header().Get("Retry-After"), c.status, c.reason, c.retryAfter)
		}
		if w.Header().Get("Content-Type") != "text/plain; charset=utf-8" || w.Header().Get(HeaderAttempts) == "" {
			t.Errorf("%v: header %v", c.err, w.Header())
		}
	}
	// The client went away: nothing to say, 499 for the log.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("GET", "/x", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	writeError(w, req, &heed.Error{Reason: heed.ErrCanceled, Err: context.Canceled}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if w.Code != statusClientClosed {
		t.Errorf("canceled: %d", w.Code)
	}
}

func TestRewriteAndHostMatching(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s?%s host=%s xff=%s conn=%q", r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Hop"))
	}))
	const l = "127.0.0.1:0"
	s := startInProcess(t, "routes:\n"+
		routeYAML(l, up.URL+"/base", "name: strip", "prefix: /p", "strip_prefix: true")+
		routeYAML(l, up.URL, "name: named", "host: svc.internal", "preserve_host: true")+
		routeYAML(l, up.URL, "name: any"))
	addr := s.Addr(l)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	upHost := strings.TrimPrefix(up.URL, "http://")
	for _, c := range []struct{ host, path, want string }{
		{addr, "/p/x?q=1", "GET /base/x?q=1 host=" + upHost + " xff=127.0.0.1"},
		{"svc.internal:80", "/p/x", "GET /p/x? host=svc.internal:80 xff=127.0.0.1"},
		{addr, "/other", "GET /other? host=" + upHost + " xff=127.0.0.1"},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+c.path, nil)
		req.Host = c.host
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "dropped")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(b), c.want) || !strings.HasSuffix(string(b), `conn=""`) {
			t.Errorf("%s %s: %q, want %q", c.host, c.path, b, c.want)
		}
	}
}

// An https upstream trusted through tls.ca_file, asking for a client
// certificate, spoken to over HTTP/2.
func TestHTTPSUpstream(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	writeFile(t, filepath.Join(dir, "client.pem"), certPEM)
	writeFile(t, filepath.Join(dir, "client-key.pem"), keyPEM)

	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s peer=%d", r.Proto, len(r.TLS.PeerCertificates))
	}))
	up.EnableHTTP2 = true
	up.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	up.StartTLS()
	t.Cleanup(up.Close)
	writeFile(t, filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}))

	yml := "routes:\n" + routeYAML("127.0.0.1:0", up.URL,
		"tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}")
	cfg, err := Parse(filepath.Join(dir, "proxy.yaml"), []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + s.Addr("127.0.0.1:0") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "HTTP/2.0 peer=1" {
		t.Errorf("%d %q", resp.StatusCode, b)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// selfSigned returns a client certificate and its key, PEM-encoded.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "heed proxy test client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// What the proxy refuses before any upstream sees it: a path with dot
// segments (an upstream resolving them would serve outside the route's
// prefix) and an upgrade to anything but WebSocket (h2c would carry
// requests past the routes).
func TestRefusesEscapes(t *testing.T) {
	var hits sync.Map
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
	}))
	const l = "127.0.0.1:0"
	s := startInProcess(t, "routes:\n"+routeYAML(l, up.URL+"/echo", "prefix: /v1"))
	addr := s.Addr(l)
	for _, c := range []struct {
		path    string
		upgrade string
	}{
		{"/v1/../../status/418", ""},
		{"/v1/%2e%2e/%2e%2e/status/418", ""},
		{"/v1/./x", ""},
		{"/v1/x", "h2c"},
		{"/v1/x", "websocket, h2c"},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		req := "GET " + c.path + " HTTP/1.1\r\nHost: " + addr + "\r\n"
		if c.upgrade != "" {
			req += "Connection: Upgrade\r\nUpgrade: " + c.upgrade + "\r\n"
		}
		fmt.Fprint(conn, req+"\r\n")
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := io.ReadAtLeast(conn, buf, 12)
		conn.Close()
		if got := string(buf[:n]); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("%s (upgrade %q): %q, want 400", c.path, c.upgrade, got)
		}
	}
	hits.Range(func(k, _ any) bool {
		t.Errorf("the upstream saw %v", k)
		return true
	})
}

// A body heed cannot keep to send again is sent once, and the upstream's
// answer to it, with its Retry-After, is the client's.
func TestUnreplayableBodyKeepsUpstreamAnswer(t *testing.T) {
	var n int32
	var mu sync.Mutex
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		n++
		mu.Unlock()
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	const l = "127.0.0.1:0"
	s := startInProcess(t, "routes:\n"+routeYAML(l, up.URL))
	big := strings.Repeat("x", 2<<20) // past heed's 1 MiB body buffer
	req, _ := http.NewRequest(http.MethodPut, "http://"+s.Addr(l)+"/items/1", io.NopCloser(strings.NewReader(big)))
	req.ContentLength = int64(len(big))
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "7" || n != 1 {
		t.Errorf("got %d Retry-After %q after %d upstream requests, want the upstream's 503 with 7, once", resp.StatusCode, resp.Header.Get("Retry-After"), n)
	}
}

// The proxy hands a chunked JSON stream on as it comes, header first.
func TestStreamsWithoutReadAhead(t *testing.T) {
	release := make(chan struct{})
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"event":1}`)
		w.(http.Flusher).Flush()
		<-release // the rest comes only once the client has the first line
		fmt.Fprintln(w, `{"event":2}`)
	}))
	const l = "127.0.0.1:0"
	s := startInProcess(t, "routes:\n"+routeYAML(l, up.URL))
	// Held back, the header would never come: the upstream waits for the
	// client. The timeout turns that into a failure.
	client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 5 * time.Second}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + s.Addr(l) + "/watch")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line := make([]byte, len(`{"event":1}`)+1)
	_, err = io.ReadFull(resp.Body, line)
	close(release)
	if err != nil || string(line) != "{\"event\":1}\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "{\"event\":2}\n" {
		t.Errorf("rest %q", rest)
	}
}
