package heed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/internal/redact"
)

type recorder struct {
	mu     sync.Mutex
	events []heed.Event
}

func (r *recorder) OnEvent(_ context.Context, e heed.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.events {
		s = append(s, e.Kind.String())
	}
	return strings.Join(s, " ")
}

func TestEvents(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(429, 2), heedtest.Status(503), heedtest.OK("")})
	rec := &recorder{}
	c, _ := client(t, heed.WithHook(rec))
	resp, _, err := get(t, c, srv.URL+"/items")
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(resp, err)
	}
	// Whether a retry then also waits its turn at the pace heed keeps for
	// the host (a throttle event) depends on the jitter drawn.
	if got, want := strings.ReplaceAll(rec.kinds(), " throttle", ""), "attempt retry attempt retry attempt done"; got != want {
		t.Fatalf("events %q, want %q (throttle events aside)", rec.kinds(), want)
	}
	r1 := rec.events[1]
	if r1.Source != heed.SourceRetryAfter || r1.Status != 429 || r1.Attempt != 1 || r1.MaxAttempts != 6 || r1.Method != "GET" || r1.URL.Path != "/items" {
		t.Fatalf("first retry event %+v", r1)
	}
	if d := rec.events[len(rec.events)-1]; d.Kind != heed.EventDone || d.Attempt != 3 || d.Status != 200 || d.Err != nil {
		t.Fatalf("done event %+v", d)
	}

	// A give-up is reported once, then the end of the call.
	srv2 := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(503, 3600)})
	rec2 := &recorder{}
	c2, _ := client(t, heed.WithHook(rec2))
	if _, err := c2.Get(srv2.URL); err == nil {
		t.Fatal("no error")
	}
	if got, want := rec2.kinds(), "attempt give_up done"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if g := rec2.events[1]; g.Reason != heed.ErrWaitTooLong || g.RetryAt.IsZero() {
		t.Fatalf("give-up event %+v", g)
	}
}

// A hook may call back into heed: events are sent outside any lock.
func TestHookMayCallHeed(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.OK("")})
	var inner *http.Client
	var called atomic.Bool
	hook := heed.HookFunc(func(ctx context.Context, e heed.Event) {
		if called.CompareAndSwap(false, true) {
			resp, err := inner.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
		}
	})
	c, _ := client(t, heed.WithHook(hook))
	inner = c
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestRetryLogs(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(503, 1), heedtest.Status(404)})
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	c, _ := client(t, heed.WithLogger(logger))
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword("alice", "s3cret")
	u.Path = "/v1/charges"
	u.RawQuery = "api_key=abc123&page=2"
	resp, err := c.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	out := buf.String()
	for _, secret := range []string{"alice", "s3cret", "abc123"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log leaks %q:\n%s", secret, out)
		}
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &line); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"msg": "heed: retrying", "method": "GET", "status": 503.0, "attempt": 1.0, "max_attempts": 6.0, "source": "retry_after",
		"key": u.Host, "reason": "5xx",
		"url": "http://REDACTED@" + u.Host + "/v1/charges?api_key=REDACTED&page=REDACTED",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log field %s = %v, want %v", k, line[k], v)
		}
	}
	if _, ok := line["wait"]; !ok {
		t.Error("log line has no wait")
	}
}

func TestRedactURL(t *testing.T) {
	cases := map[string]string{
		"https://api.example/v1/x":                  "https://api.example/v1/x",
		"https://u:p@api.example/x?token=t&flag":    "https://REDACTED@api.example/x?token=REDACTED&REDACTED",
		"https://api.example/x?a=1&a=2":             "https://api.example/x?a=REDACTED&a=REDACTED",
		"https://api.example/x?sig=a%2Fb#frag":      "https://api.example/x?sig=REDACTED#frag",
		"http://user@api.example:8080/?q=secret+ok": "http://REDACTED@api.example:8080/?q=REDACTED",
	}
	for in, want := range cases {
		u, _ := url.Parse(in)
		if got := redact.URL(u); got != want {
			t.Errorf("RedactURL(%s) = %s, want %s", in, got, want)
		}
	}
	if redact.URL(nil) != "" {
		t.Error("nil URL")
	}
}

func TestNoLoggerNoHookCostsNothing(t *testing.T) {
	base := &canned{body: []byte("ok")}
	tr, err := heed.New(heed.WithBase(base))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://api.example/", nil)
	bare := testing.AllocsPerRun(200, func() {
		resp, _ := base.RoundTrip(req)
		resp.Body.Close()
	})
	withHeed := testing.AllocsPerRun(200, func() {
		resp, _ := tr.RoundTrip(req)
		resp.Body.Close()
	})
	if withHeed > bare+1 {
		t.Fatalf("heed allocates %.0f objects per request, bare %.0f", withHeed, bare)
	}
}

// No log line carries a secret: not the URL's userinfo or query values
// (even when the base RoundTripper quotes the URL in its error), nor the
// values of Authorization, Cookie, Proxy-Authorization or Idempotency-Key.
func TestLogsNeverLeakSecrets(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	quoting := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return nil, fmt.Errorf("dial %s: %w", req.URL, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	})
	c, _ := client(t, heed.WithLogger(logger), heed.WithBase(quoting), heed.WithMaxAttempts(3))
	req, _ := http.NewRequest("POST", "http://alice:s3cret@api.test/v1/charges?api_key=abc%2F123&page=2", strings.NewReader("{}"))
	for k, v := range map[string]string{"Authorization": "Bearer tok-auth", "Cookie": "sid=tok-cookie", "Proxy-Authorization": "Basic tok-proxy", "Idempotency-Key": "tok-idem"} {
		req.Header.Set(k, v)
	}
	_, err := c.Do(req)
	if err == nil {
		t.Fatal("no error")
	}
	var he *heed.Error
	if !errors.As(err, &he) {
		t.Fatalf("%v is no *heed.Error", err)
	}
	buf.WriteString(he.Error()) // heed's error, which a caller would log too (http.Client's own wrapper quotes the URL itself)
	out := buf.String()
	if !strings.Contains(out, "heed: retrying") || !strings.Contains(out, "heed: giving up") {
		t.Fatalf("expected retry and give-up lines:\n%s", out)
	}
	for _, secret := range []string{"alice", "s3cret", "abc%2F123", "abc/123", "tok-auth", "tok-cookie", "tok-proxy", "tok-idem"} {
		if strings.Contains(out, secret) {
			t.Errorf("log leaks %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, `"reason":"attempts_exhausted"`) {
		t.Errorf("give-up line lacks the reason's name:\n%s", out)
	}
}
