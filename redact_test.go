package heed_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/internal/redact"
)

// urlQuoting fails as net/http's client does: its error quotes the URL it
// failed on, secrets and all. With a next it passes the request down and
// quotes only that RoundTripper's errors; without, it fails with cause.
type urlQuoting struct {
	next  http.RoundTripper
	cause error
}

func (q urlQuoting) RoundTrip(req *http.Request) (*http.Response, error) {
	err := q.cause
	if q.next != nil {
		var resp *http.Response
		if resp, err = q.next.RoundTrip(req); err == nil {
			return resp, nil
		}
	}
	return nil, &url.Error{Op: req.Method, URL: req.URL.String(), Err: err}
}

func TestRedactURLValuelessKeys(t *testing.T) {
	cases := []struct{ in, want string }{
		{"https://api.example/x?SECRETFLAG&a=1", "https://api.example/x?REDACTED&a=REDACTED"},
		{"https://api.example/x?a=1&SECRETFLAG", "https://api.example/x?a=REDACTED&REDACTED"},
		{"https://api.example/x?tok%2Fen", "https://api.example/x?REDACTED"},
		{"https://api.example/x?a=&b", "https://api.example/x?a=REDACTED&REDACTED"},
		{"https://api.example/x?a=1&&b=2", "https://api.example/x?a=REDACTED&&b=REDACTED"}, // an empty part hides nothing
		{"https://api.example/x?", "https://api.example/x?"},
		{"https://api.example/x?sig=a%2Fb%3D&k=v+w#top", "https://api.example/x?sig=REDACTED&k=REDACTED#top"},
		{"https://bob:hunter2@api.example/x?flag", "https://REDACTED@api.example/x?REDACTED"},
		{"https://bob@api.example/v1/x", "https://REDACTED@api.example/v1/x"},
	}
	for _, c := range cases {
		u, err := url.Parse(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := redact.URL(u); got != c.want {
			t.Errorf("RedactURL(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestRedactTextValuelessKeys(t *testing.T) {
	cases := []struct{ url, text, want string }{
		{ // the URL quoted whole, as net/http's url.Error does
			"https://api.example/x?SECRETFLAG&a=1",
			`Get "https://api.example/x?SECRETFLAG&a=1": EOF`,
			`Get "https://api.example/x?REDACTED&a=REDACTED": EOF`,
		},
		{ // a long valueless key, anywhere
			"https://api.example/x?SECRETFLAG",
			"token SECRETFLAG refused",
			"token REDACTED refused",
		},
		{ // a short one only where it stands whole as a key
			"https://api.example/x?ab&page=2",
			"GET /x?ab rejected; ?abc and lab stay",
			"GET /x?REDACTED rejected; ?abc and lab stay",
		},
		{ // a valueless key escaped in the URL, unescaped in the text
			"https://api.example/x?tok%2Fen99",
			"bad credential tok/en99",
			"bad credential REDACTED",
		},
		{ // an escaped value, in both forms
			"https://api.example/x?sig=abc%2Fdef%3D",
			"signature abc%2Fdef%3D or abc/def= expired",
			"signature REDACTED or REDACTED expired",
		},
		{ // userinfo, whole and the password alone
			"https://bob:hunter22@api.example/x",
			`proxy said bob:hunter22@api.example no; "hunter22" is wrong`,
			`proxy said REDACTED@api.example no; "REDACTED" is wrong`,
		},
		{ // the password net/http already strips
			"https://bob:hunter22@api.example/x?flag",
			`Get "https://bob:***@api.example/x?flag": EOF`,
			`Get "https://bob:***@api.example/x?REDACTED": EOF`,
		},
	}
	for _, c := range cases {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := redact.Text(c.text, u, u, nil); got != c.want {
			t.Errorf("RedactText(%q, %s) =\n%q, want\n%q", c.text, c.url, got, c.want)
		}
	}
}

func TestWithSecretPathRefusesBadPatterns(t *testing.T) {
	cases := map[string][]string{
		"need at least one pattern":         nil,
		"empty pattern":                     {""},
		`starts with "/"`:                   {"v1/tokens/*"},
		`no "*" segment`:                    {"/v1/tokens"},
		`"*" stands for a whole segment`:    {"/v1/tok*"},
		"empty segment":                     {"/v1//*"},
		`WithSecretPath("/v1/*/")`:          {"/v1/*/"},
		`WithSecretPath("x"): a pattern is`: {"/ok/*", "x"},
	}
	for want, pats := range cases {
		_, err := heed.New(heed.WithSecretPath(pats...))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("WithSecretPath(%q): error %v, want one saying %s", pats, err, want)
		}
	}
	if _, err := heed.New(heed.WithSecretPath("/v1/tokens/*", "/users/*/keys/*"), heed.WithSecretPath("/*")); err != nil {
		t.Errorf("good patterns refused: %v", err)
	}
}

// Which segments each pattern hides, seen where heed shows the URL of a
// failed call: its *Error.
func TestWithSecretPathSegments(t *testing.T) {
	cases := []struct {
		pats      []string
		url, want string
	}{
		{[]string{"/v1/tokens/*"}, "https://api.example/v1/tokens/sk_live_abc/charges", "https://api.example/v1/tokens/REDACTED/charges"},
		{[]string{"/v1/tokens/*"}, "https://api.example/v1/tokens/sk_live_abc", "https://api.example/v1/tokens/REDACTED"},
		{[]string{"/v1/tokens/*"}, "https://api.example/v1/tokens", "https://api.example/v1/tokens"},
		{[]string{"/v1/tokens/*"}, "https://api.example/v1/tokens/", "https://api.example/v1/tokens/"},
		{[]string{"/v1/tokens/*"}, "https://api.example/v2/tokens/abc", "https://api.example/v2/tokens/abc"},
		{[]string{"/v1/tokens/*"}, "https://api.example/x/v1/tokens/abc", "https://api.example/x/v1/tokens/abc"},
		{[]string{"/users/*/keys/*"}, "https://api.example/users/42/keys/k-9/rotate", "https://api.example/users/REDACTED/keys/REDACTED/rotate"},
		{[]string{"/users/*/keys/*"}, "https://api.example/users/42/roles/admin", "https://api.example/users/42/roles/admin"},
		{[]string{"/users/*", "/users/admin/keys/*"}, "https://api.example/users/admin/keys/k1", "https://api.example/users/REDACTED/keys/REDACTED"},
		{[]string{"/v1/tokens/*"}, "https://api.example/v1/tokens/a%2Fb/c%20d", "https://api.example/v1/tokens/REDACTED/c%20d"},
		{[]string{"/my files/*"}, "https://api.example/my%20files/abc", "https://api.example/my%20files/REDACTED"},
		{[]string{"/v1/tokens/*"}, "https://u:p@api.example/v1/tokens/t0k/x?a=1&flag#f", "https://REDACTED@api.example/v1/tokens/REDACTED/x?a=REDACTED&REDACTED#f"},
	}
	for _, c := range cases {
		tr, err := heed.New(heed.WithSecretPath(c.pats...), heed.WithMaxAttempts(1), heed.WithLogger(nil),
			heed.WithBase(urlQuoting{cause: errors.New("boom")}))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", c.url, nil)
		_, err = tr.RoundTrip(req)
		var he *heed.Error
		if !errors.As(err, &he) {
			t.Fatalf("%s: %v is no *heed.Error", c.url, err)
		}
		if got := he.RequestURL(); got != c.want {
			t.Errorf("%q on %s: RequestURL() = %s, want %s", c.pats, c.url, got, c.want)
		}
		if want := fmt.Sprintf(`heed: GET %s: not retryable after 1 attempt: GET %q: boom`, c.want, c.want); he.Error() != want {
			t.Errorf("%q on %s: Error() =\n%s, want\n%s", c.pats, c.url, he.Error(), want)
		}
	}
}

// A short secret segment is hidden where it stands as a segment, and
// nowhere else.
func TestWithSecretPathShortSegment(t *testing.T) {
	tr, err := heed.New(heed.WithSecretPath("/users/*"), heed.WithMaxAttempts(1), heed.WithLogger(nil),
		heed.WithBase(urlQuoting{cause: errors.New("HTTP/1.1 proxy refused /users/1 (id 1, /users/12)")}))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://api.example/users/1", nil)
	_, err = tr.RoundTrip(req)
	want := `heed: GET http://api.example/users/REDACTED: not retryable after 1 attempt: ` +
		`GET "http://api.example/users/REDACTED": HTTP/1.1 proxy refused /users/REDACTED (id 1, /users/12)`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v, want\n%s", err, want)
	}
}

// A call to a dead server, whose errors quote the URL, with secrets in
// its userinfo, its query and its path: none shows in heed's log lines, in
// its error, or in what a hook sees once it redacts as heedotel does.
func TestWithSecretPathNeverShown(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var (
		mu   sync.Mutex
		seen []string // what hooks may record: the URL, and error texts as heedotel redacts them
		ops  int      // attempt errors that still unwrap to the dial error
		kind = map[heed.EventKind]bool{}
	)
	hook := heed.HookFunc(func(_ context.Context, e heed.Event) {
		mu.Lock()
		defer mu.Unlock()
		kind[e.Kind] = true
		if e.URL == nil {
			return
		}
		seen = append(seen, e.URL.String(), e.URL.Path, e.URL.RawPath, redact.URL(e.URL))
		if e.Err != nil {
			seen = append(seen, redact.Text(e.Err.Error(), e.URL, e.URL, nil))
			var oe *net.OpError
			if e.Kind == heed.EventAttempt && errors.As(e.Err, &oe) {
				ops++
			}
		}
	})
	dial := &http.Transport{}
	t.Cleanup(dial.CloseIdleConnections)
	c, _ := client(t, heed.WithLogger(logger), heed.WithHook(hook), heed.WithMaxAttempts(3),
		heed.WithBase(urlQuoting{next: dial}), heed.WithSecretPath("/v1/tokens/*"))

	u := "http://alice:pw0rd99@" + heedtest.DeadAddr(t) + "/v1/tokens/sk_live_abc123/charges?SECRETFLAG&api_key=k%2Fey99"
	_, err := c.Get(u)
	var he *heed.Error
	if !errors.As(err, &he) {
		t.Fatalf("%v is no *heed.Error", err)
	}
	out := buf.String()
	if !strings.Contains(out, "heed: retrying") || !strings.Contains(out, "heed: giving up") {
		t.Fatalf("expected retry and give-up lines:\n%s", out)
	}
	if !strings.Contains(he.Error(), "/v1/tokens/REDACTED/charges?REDACTED&api_key=REDACTED") {
		t.Errorf("error does not show the redacted URL: %s", he.Error())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range []heed.EventKind{heed.EventAttempt, heed.EventRetry, heed.EventGiveUp, heed.EventDone} {
		if !kind[k] {
			t.Errorf("hook saw no %s event", k)
		}
	}
	if ops != 3 {
		t.Errorf("%d of 3 attempt errors unwrap to a *net.OpError", ops)
	}
	recorded := strings.Join(seen, "\n")
	if !strings.Contains(recorded, "/v1/tokens/REDACTED/charges") {
		t.Errorf("hooks never saw the redacted path:\n%s", recorded)
	}
	for _, secret := range []string{"sk_live_abc123", "SECRETFLAG", "alice", "pw0rd99", "k%2Fey99", "k/ey99"} {
		if strings.Contains(out, secret) {
			t.Errorf("log leaks %q:\n%s", secret, out)
		}
		if strings.Contains(he.Error(), secret) {
			t.Errorf("error leaks %q: %s", secret, he.Error())
		}
		if strings.Contains(he.RequestURL(), secret) {
			t.Errorf("RequestURL leaks %q: %s", secret, he.RequestURL())
		}
	}
	// The URL hooks get keeps the query as sent (hooks redact it), but
	// never the secret segment.
	for _, s := range seen {
		if strings.Contains(s, "sk_live_abc123") {
			t.Errorf("hook sees the secret segment: %s", s)
		}
	}
}

// Secret segments cost a request that heed neither logs nor reports
// nothing: they are hidden only where a URL is shown.
func TestWithSecretPathCostsNothing(t *testing.T) {
	base := &canned{body: []byte("ok")}
	plain, err := heed.New(heed.WithBase(base))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := heed.New(heed.WithBase(base), heed.WithSecretPath("/v1/*"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://api.example/v1/items", nil)
	allocs := func(rt http.RoundTripper) float64 {
		return testing.AllocsPerRun(200, func() {
			resp, _ := rt.RoundTrip(req)
			resp.Body.Close()
		})
	}
	if p, s := allocs(plain), allocs(secret); s > p {
		t.Errorf("WithSecretPath: %.0f allocations per request, %.0f without", s, p)
	}
}

func BenchmarkCanned200SecretPath(b *testing.B) {
	t, err := heed.New(heed.WithBase(&canned{body: []byte(`{"ok":true}`)}), heed.WithSecretPath("/v1/*"))
	if err != nil {
		b.Fatal(err)
	}
	benchRoundTrip(b, t)
}

// Keys, tokens and the like travel in some APIs' paths. WithSecretPath
// names where, and heed's logs, errors and events show those segments as
// REDACTED, as they show userinfo and query values.
func ExampleWithSecretPath() {
	tr, err := heed.New(
		heed.WithSecretPath("/v1/tokens/*", "/users/*/keys/*"),
		heed.WithMaxAttempts(1), heed.WithLogger(nil),
		heed.WithBase(urlQuoting{cause: errors.New("connection reset")}), // fails, quoting the URL
	)
	if err != nil {
		panic(err)
	}
	req, _ := http.NewRequest("GET", "https://api.example/v1/tokens/sk_live_abc/charges?limit=10", nil)
	_, err = tr.RoundTrip(req)
	fmt.Println(err)

	_, err = heed.New(heed.WithSecretPath("/v1/tokens"))
	fmt.Println(err)
	// Output:
	// heed: GET https://api.example/v1/tokens/REDACTED/charges?limit=REDACTED: not retryable after 1 attempt: GET "https://api.example/v1/tokens/REDACTED/charges?limit=REDACTED": connection reset
	// heed: WithSecretPath("/v1/tokens"): no "*" segment: nothing to redact
}
