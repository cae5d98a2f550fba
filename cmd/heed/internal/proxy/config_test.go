package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFull(t *testing.T) {
	const yml = `
admin: 127.0.0.1:9090
grace: 5s
access_log: false
read_header_timeout: 2s
idle_timeout: 30s
max_header_bytes: 65536
routes:
  - name: api
    listen: 127.0.0.1:8080
    host: API.example.com
    prefix: /v1
    strip_prefix: true
    preserve_host: true
    upstream: https://api.example.com/base
    attempts: 4
    retry_status: {503: 3, 500: 1}
    attempt_timeout: 2s
    total_timeout: 10s
    max_wait: 5s
    limits: {rate: 10, burst: 5, concurrency: 20, queue: 40, queue_timeout: 1s}
    pacing: false
    breaker: {enabled: true, failure_ratio: 0.5, min_calls: 10, open_timeout: 15s}
    retry_budget: {percent: 20, min_per_second: 5}
    max_concurrent_retries: 8
    hedging: {enabled: true, delay: 50ms}
    stale_if_error: {enabled: true, max_bytes: 1048576, max_stale: 10m}
    auto_idempotency_key: true
  - listen: 127.0.0.1:8081
    upstream: http://127.0.0.1:9000
    breaker: {enabled: false}
    retry_budget: {enabled: false}
`
	c, err := Parse("proxy.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin != "127.0.0.1:9090" || c.Grace != 5*time.Second || c.AccessLog || c.MaxHeaderBytes != 65536 {
		t.Errorf("top level: %+v", c)
	}
	if len(c.Routes) != 2 {
		t.Fatalf("routes: %d", len(c.Routes))
	}
	r := c.Routes[0]
	p := r.Policy
	if r.Name != "api" || r.Host != "api.example.com" || r.Prefix != "/v1" || !r.StripPrefix || !r.PreserveHost ||
		r.Upstream.String() != "https://api.example.com/base" {
		t.Errorf("route: %+v", r)
	}
	if p.Attempts != 4 || p.RetryStatus[503] != 3 || p.RetryStatus[500] != 1 || p.AttemptTimeout != 2*time.Second ||
		p.TotalTimeout != 10*time.Second || p.MaxWait != 5*time.Second || p.Rate != 10 || p.Burst != 5 ||
		p.Concurrency != 20 || p.Queue != 40 || !p.NoPacing || p.NoBreaker || p.FailureRatio != 0.5 ||
		p.MinCalls != 10 || p.OpenTimeout != 15*time.Second || *p.BudgetPercent != 0.2 || *p.BudgetMinPerSecond != 5 ||
		p.MaxConcurrentRetries != 8 || !p.Hedging || p.HedgeDelay != 50*time.Millisecond || !p.StaleIfError ||
		p.StaleMaxBytes != 1<<20 || p.StaleMaxStale != 10*time.Minute || !p.AutoIdempotencyKey {
		t.Errorf("policy: %+v", p)
	}
	r = c.Routes[1]
	if r.Name != "routes[1]" || r.Prefix != "/" || !r.Policy.NoBreaker || !r.Policy.NoRetryBudget || r.Policy.AutoIdempotencyKey {
		t.Errorf("second route: %+v", r)
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse("p.yaml", []byte("routes:\n  - listen: 127.0.0.1:8080\n    upstream: http://127.0.0.1:9000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Grace != DefaultGrace || !c.AccessLog || c.Admin != "" || c.ReadHeaderTimeout != DefaultReadHeaderTimeout {
		t.Errorf("defaults: %+v", c)
	}
	if got := c.Routes[0].Policy.options(); len(got) != 0 {
		t.Errorf("a route with no settings has %d heed options, want heed's defaults", len(got))
	}
}

func TestParseErrors(t *testing.T) {
	const head = "routes:\n  - listen: 127.0.0.1:8080\n    upstream: http://127.0.0.1:9000\n"
	cases := []struct {
		name, yml, want string
	}{
		{"attempts", head + "  - listen: 127.0.0.1:8081\n    upstream: http://x\n    attempts: 0\n",
			"proxy.yaml:6: routes[1].attempts: must be at least 1"},
		{"unknown field", head + "    atempts: 3\n", "proxy.yaml:4: routes[0].atempts: unknown field"},
		{"unknown top field", "rotes: []\n" + head, "proxy.yaml:1: rotes: unknown field"},
		{"unknown nested", head + "    breaker: {ratio: 0.5}\n", "proxy.yaml:4: routes[0].breaker.ratio: unknown field"},
		{"bad URL scheme", "routes:\n  - listen: 127.0.0.1:8080\n    upstream: ftp://x\n",
			"proxy.yaml:3: routes[0].upstream: bad URL \"ftp://x\": the scheme must be http or https"},
		{"URL without host", "routes:\n  - listen: 127.0.0.1:8080\n    upstream: http://\n",
			"proxy.yaml:3: routes[0].upstream: bad URL \"http://\": no host"},
		{"no upstream", "routes:\n  - listen: 127.0.0.1:8080\n", "proxy.yaml:2: routes[0].upstream: required"},
		{"upstream port out of range", "routes:\n  - listen: 127.0.0.1:8080\n    upstream: http://127.0.0.1:99999\n",
			"proxy.yaml:3: routes[0].upstream: bad URL \"http://127.0.0.1:99999\": the port must be 1 to 65535"},
		{"no listen", "routes:\n  - upstream: http://x\n", "proxy.yaml:2: routes[0].listen: required"},
		{"bad listen", "routes:\n  - listen: 8080\n    upstream: http://x\n", "proxy.yaml:2: routes[0].listen: bad address \"8080\""},
		{"admin not loopback", "admin: 0.0.0.0:9090\n" + head, "proxy.yaml:1: admin: \"0.0.0.0:9090\" is not a loopback address"},
		{"admin empty host", "admin: :9090\n" + head, "proxy.yaml:1: admin: \":9090\" is not a loopback address"},
		{"bad duration", head + "    attempt_timeout: 2 seconds\n",
			"proxy.yaml:4: routes[0].attempt_timeout: bad duration \"2 seconds\""},
		{"negative duration", head + "    max_wait: -1s\n", "proxy.yaml:4: routes[0].max_wait: must be positive"},
		{"bad grace", "grace: soon\n" + head, "proxy.yaml:1: grace: bad duration \"soon\""},
		{"ratio", head + "    breaker: {failure_ratio: 1.5}\n", "proxy.yaml:4: routes[0].breaker.failure_ratio: must be in (0, 1]"},
		{"percent", head + "    retry_budget:\n      percent: 120\n", "proxy.yaml:5: routes[0].retry_budget.percent: must be in [0, 100]"},
		{"status", head + "    retry_status: {999: 2}\n", "proxy.yaml:4: routes[0].retry_status.999: must be an HTTP status code"},
		{"not a bool", head + "    pacing: maybe\n", "proxy.yaml:4: routes[0].pacing: must be true or false"},
		{"duplicate key", head + "    attempts: 2\n    attempts: 3\n", "proxy.yaml:5: routes[0].attempts: given twice"},
		{"duplicate route", head + head[len("routes:\n"):], "routes[1]: matches the same listen, host and prefix as routes[0]"},
		{"prefix", head + "    prefix: v1\n", "proxy.yaml:4: routes[0].prefix: must start with /"},
		{"no routes", "admin: 127.0.0.1:9090\n", "proxy.yaml:1: routes: at least one route is required"},
		{"routes not a list", "routes: {}\n", "proxy.yaml:1: routes: must be a list of routes"},
		{"missing file", head + "    tls: {ca_file: /nonexistent/ca.pem}\n", "proxy.yaml:4: routes[0].tls.ca_file: open /nonexistent/ca.pem"},
		{"tls on http", head + "    tls: {}\n", ""},
		{"cert without key", "routes:\n  - listen: 127.0.0.1:8080\n    upstream: https://x\n    tls: {cert_file: proxy.yaml}\n",
			"routes[0].tls: cert_file and key_file go together"},
		{"contradiction", head + "    retry_budget: {enabled: false}\n    max_concurrent_retries: 3\n",
			"proxy.yaml:5: routes[0].max_concurrent_retries: the cap is part of the retry budget"},
		{"settings of a breaker off", head + "    breaker: {enabled: false, open_timeout: 5s}\n",
			"proxy.yaml:4: routes[0].breaker: settings given for a breaker that enabled: false turns off"},
		{"hedging settings without enabled", head + "    hedging: {delay: 5ms}\n", "proxy.yaml:4: routes[0].hedging: settings given without enabled: true"},
		{"heed refuses", head + "    limits: {rate: 5, burst: 2}\n    pacing: true\n    hedging: {enabled: true, percentile: 1}\n",
			"proxy.yaml:2: routes[0]: heed: WithHedging: percentile 1 must be in (0, 1)"},
		{"yaml syntax", "routes: [\n", "proxy.yaml:1: did not find expected node content"},
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "proxy.yaml"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("proxy.yaml", []byte(c.yml))
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, c.want)
			}
		})
	}
}

func TestParseCollectsEveryError(t *testing.T) {
	_, err := Parse("p.yaml", []byte("routes:\n  - listen: nope\n    upstream: gopher://x\n    attempts: -1\n"))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Errorf("want 3 errors, one a line, got:\n%v", err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "p.yaml:") {
			t.Errorf("error line without file:line: %q", l)
		}
	}
}

func TestFromFlags(t *testing.T) {
	c, err := FromFlags("127.0.0.1:8080", "https://api.example.com", "/v1", "127.0.0.1:9090")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 1 || c.Routes[0].Prefix != "/v1" || c.Routes[0].Upstream.Host != "api.example.com" {
		t.Errorf("%+v", c.Routes)
	}
	_, err = FromFlags("127.0.0.1:8080", "api.example.com", "/", "10.0.0.1:9090")
	if err == nil || !strings.Contains(err.Error(), "-upstream: bad URL") || !strings.Contains(err.Error(), "-admin: ") {
		t.Errorf("error: %v", err)
	}
}

func TestMatchPrefix(t *testing.T) {
	for _, c := range []struct {
		prefix, path string
		want         bool
	}{
		{"/", "/anything", true},
		{"/v1", "/v1", true},
		{"/v1", "/v1/users", true},
		{"/v1", "/v10", false},
		{"/v1/", "/v1/users", true},
		{"/v1/", "/v1", false},
		{"/v1", "/v", false},
	} {
		if got := matchPrefix(c.prefix, c.path); got != c.want {
			t.Errorf("matchPrefix(%q, %q) = %v", c.prefix, c.path, got)
		}
	}
}

// The example configuration of docs/proxy.md parses (its tls block aside:
// the files are not there).
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/proxy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	yml, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in docs/proxy.md")
	}
	var kept []string
	skip := false
	for line := range strings.Lines(yml) {
		if strings.TrimSpace(line) == "tls:" {
			skip = true
			continue
		}
		if skip && strings.HasPrefix(line, "      ") {
			continue
		}
		skip = false
		kept = append(kept, line)
	}
	c, err := Parse("proxy.md", []byte(strings.Join(kept, "")))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 3 || c.Routes[2].Policy.Rate != 8 {
		t.Errorf("%+v", c.Routes)
	}
}
