package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The harness's heavy run (wrk, nginx, haproxy, caddy) is `go run
// ./bench/proxylab`; these tests check its parsing, its configs and its
// table without running any of them.

func TestParseWrkCaptured(t *testing.T) {
	// wrk 4.1.0 -t1 -c32 -d2s --latency against the harness's backend.
	b, err := os.ReadFile("testdata/wrk-latency.txt")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseWrk(string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 94556, ReqPerSec: 47247.60, P50: 526 * time.Microsecond, P99: 11750 * time.Microsecond}
	if r != want {
		t.Errorf("ParseWrk = %+v, want %+v", r, want)
	}
}

func TestParseWrkErrors(t *testing.T) {
	// The captured layout with the lines wrk adds when things go wrong
	// (socket errors, non-2xx answers), and latencies in seconds.
	b, err := os.ReadFile("testdata/wrk-errors.txt")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseWrk(string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 100, ReqPerSec: 10, P50: 1500 * time.Millisecond, P99: 2 * time.Second, Errors: 1 + 2 + 3 + 4 + 5}
	if r != want {
		t.Errorf("ParseWrk = %+v, want %+v", r, want)
	}
}

func TestParseWrkWithoutLatency(t *testing.T) {
	// Without --latency there is no distribution: an error, not zeros.
	b, err := os.ReadFile("testdata/wrk-latency.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := regexp.MustCompile(`(?s)  Latency Distribution.*?99%[^\n]*\n`).ReplaceAllString(string(b), "")
	if _, err := ParseWrk(out); err == nil {
		t.Error("ParseWrk without the latency distribution: no error")
	}
	if _, err := ParseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("ParseWrk of a failed run: no error")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0.00us": 0, "526.00us": 526 * time.Microsecond, "1.78ms": 1780 * time.Microsecond, "2.07ms": 2070 * time.Microsecond,
		"2.00s": 2 * time.Second, "1.50m": 90 * time.Second, "1.00h": time.Hour,
	} {
		got, err := parseWrkDuration(in)
		if err != nil || got != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12", "abcms", "-1ms"} {
		if _, err := parseWrkDuration(in); err == nil {
			t.Errorf("parseWrkDuration(%q): no error", in)
		}
	}
}

var testParams = ConfigParams{Dir: "/tmp/plab/x", Port: 18080, Upstream: 18081, MaxConn: 11024, NoFile: 14096}

func render(t *testing.T, name string) string {
	t.Helper()
	b, err := RenderConfig(name, testParams)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "{{") || strings.Contains(s, "<no value>") {
		t.Fatalf("%s left a placeholder:\n%s", name, s)
	}
	return s
}

// wantLines checks that each line occurs in conf, spaces collapsed.
func wantLines(t *testing.T, name, conf string, lines ...string) {
	t.Helper()
	var have []string
	for l := range strings.SplitSeq(conf, "\n") {
		have = append(have, strings.Join(strings.Fields(l), " "))
	}
	for _, l := range lines {
		found := false
		for _, h := range have {
			if h == l {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s lacks the line %q:\n%s", name, l, conf)
		}
	}
}

func TestNginxConfig(t *testing.T) {
	c := render(t, "nginx.conf.tmpl")
	wantLines(t, "nginx.conf", c,
		"daemon off;", "worker_processes 1;", "worker_rlimit_nofile 14096;", "worker_connections 11024;",
		"pid /tmp/plab/x/nginx.pid;", "access_log off;",
		"server 127.0.0.1:18081;", "keepalive 64;", "listen 127.0.0.1:18080;",
		"proxy_pass http://backend;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`)
	if strings.Count(c, "{") != strings.Count(c, "}") {
		t.Errorf("nginx.conf: unbalanced braces:\n%s", c)
	}
	for _, path := range regexp.MustCompile(`(?m)_path (\S+);`).FindAllStringSubmatch(c, -1) {
		if !strings.HasPrefix(path[1], testParams.Dir+"/") {
			t.Errorf("nginx.conf: temp path %s outside the contender's dir", path[1])
		}
	}
}

func TestHAProxyConfig(t *testing.T) {
	c := render(t, "haproxy.cfg.tmpl")
	wantLines(t, "haproxy.cfg", c,
		"nbthread 1", "maxconn 11024", "no strict-limits", "mode http", "http-reuse always",
		"bind 127.0.0.1:18080", "server s1 127.0.0.1:18081")
	if strings.Contains(c, "log ") {
		t.Errorf("haproxy.cfg logs:\n%s", c)
	}
}

func TestCaddyfile(t *testing.T) {
	c := render(t, "Caddyfile.tmpl")
	wantLines(t, "Caddyfile", c,
		"admin off", "auto_https off", "output discard",
		":18080 {", "bind 127.0.0.1", "reverse_proxy 127.0.0.1:18081 {")
	if strings.Count(c, "{") != strings.Count(c, "}") {
		t.Errorf("Caddyfile: unbalanced braces:\n%s", c)
	}
}

func TestRenderConfigIncomplete(t *testing.T) {
	p := testParams
	p.Upstream = 0
	if _, err := RenderConfig("nginx.conf.tmpl", p); err == nil {
		t.Error("RenderConfig without an upstream port: no error")
	}
}

func TestHeedArgs(t *testing.T) {
	got := strings.Join(HeedArgs("/tmp/heed", 18080, "http://127.0.0.1:18081"), " ")
	if want := "/tmp/heed proxy -listen 127.0.0.1:18080 -upstream http://127.0.0.1:18081"; got != want {
		t.Errorf("HeedArgs = %q, want %q", got, want)
	}
}

func TestStockTransport(t *testing.T) {
	if tr := StockTransport(); tr.MaxIdleConnsPerHost != 256 || tr.DisableKeepAlives {
		t.Errorf("StockTransport: MaxIdleConnsPerHost %d, DisableKeepAlives %v", tr.MaxIdleConnsPerHost, tr.DisableKeepAlives)
	}
}

func TestSelectContenders(t *testing.T) {
	keys := func(cs []Contender) string {
		var k []string
		for _, c := range cs {
			k = append(k, c.Key)
		}
		return strings.Join(k, ",")
	}
	for _, tc := range []struct{ only, heed, want string }{
		{"", "", "direct,nginx,haproxy,caddy,stock"},
		{"", "/tmp/heed", "direct,nginx,haproxy,caddy,stock,heed"},
		{"heed,nginx", "/tmp/heed", "nginx,heed"},
		{"nginx,heed", "", "nginx"},
	} {
		cs, err := selectContenders(tc.only, tc.heed)
		if err != nil || keys(cs) != tc.want {
			t.Errorf("selectContenders(%q, %q) = %s, %v; want %s", tc.only, tc.heed, keys(cs), err, tc.want)
		}
	}
	if _, err := selectContenders("squid", ""); err == nil {
		t.Error("selectContenders of an unknown contender: no error")
	}
	if _, err := selectContenders("heed", ""); err == nil {
		t.Error("selectContenders of heed alone without a binary: no error")
	}
}

func TestFormatTable(t *testing.T) {
	rows := []*Row{
		{Key: "direct", Name: "backend direct", RSSIdle: 9 << 10, RSSLoad: 15 << 10, RSSConns: 200 << 10, IdleOpened: 10000,
			Runs: []WrkResult{{ReqPerSec: 60000, P50: 400 * time.Microsecond, P99: 4 * time.Millisecond}}},
		{Key: "nginx", Name: "nginx", RSSIdle: 12 << 10, RSSLoad: 12 << 10, RSSConns: 20 << 10, IdleOpened: 8000,
			Runs: []WrkResult{
				{ReqPerSec: 30000, P50: time.Millisecond, P99: 3 * time.Millisecond, Errors: 1},
				{ReqPerSec: 40000, P50: 700 * time.Microsecond, P99: 2 * time.Millisecond, Errors: 2},
				{ReqPerSec: 35000, P50: 800 * time.Microsecond, P99: 4 * time.Millisecond},
			}},
		{Key: "caddy", Name: "caddy", Note: "did not start", RSSIdle: -1, RSSLoad: -1, RSSConns: -1},
	}
	got := FormatTable(rows, "nginx")
	want := `| contender | req/s | vs nginx | p50 | p99 | p99 vs nginx | errors | RSS idle | RSS after load | RSS, 10k idle conns |
|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|
| backend direct | 60,000 | 1.71 | 0.40 ms | 4.00 ms | 1.33 | 0 | 9.0 MiB | 15.0 MiB | 200.0 MiB |
| nginx | 35,000 | 1.00 | 0.80 ms | 3.00 ms | 1.00 | 3 | 12.0 MiB | 12.0 MiB | 20.0 MiB (8000 conns) |
| caddy | did not start | | | | | | | | |
`
	if got != want {
		t.Errorf("FormatTable:\n%s\nwant:\n%s", got, want)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("median even = %v", got) // (2+3)/2 in integer nanoseconds
	}
	if got := median[float64](nil); got != 0 {
		t.Errorf("median empty = %v", got)
	}
}

func TestParseProc(t *testing.T) {
	status := []byte("Name:\tnginx\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t1\n")
	if kib, err := parseVmRSS(status); err != nil || kib != 12345 {
		t.Errorf("parseVmRSS = %d, %v", kib, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tzombie\nState:\tZ\n")); err == nil {
		t.Error("parseVmRSS without VmRSS: no error")
	}
	pid, ppid, ok := parseStatPPID([]byte("4242 (nginx: worker (x)) S 4241 4241 1 0 -1"))
	if !ok || pid != 4242 || ppid != 4241 {
		t.Errorf("parseStatPPID = %d, %d, %v", pid, ppid, ok)
	}
}

func TestFormatThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 47247.6: "47,248", 1234567: "1,234,567"} {
		if got := formatThousands(in); got != want {
			t.Errorf("formatThousands(%v) = %q, want %q", in, got, want)
		}
	}
}
