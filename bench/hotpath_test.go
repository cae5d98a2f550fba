package bench

import (
	"io"
	"log"
	"net/http"
	"testing"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedprom"
)

// hotPaths returns each contender wrapped around the same canned base, with
// its default retry settings.
func hotPaths(tb testing.TB, base http.RoundTripper) []struct {
	name string
	rt   http.RoundTripper
} {
	h, err := heed.New(heed.WithBase(base))
	if err != nil {
		tb.Fatal(err)
	}
	// Throttling on but never throttling: a rate and a concurrency limit
	// far above what the benchmark reaches, and adaptive pacing.
	limited, err := heed.New(heed.WithBase(base), heed.WithLimits(heed.Limits{Rate: 1e9, Burst: 1000, Concurrency: 1000}))
	if err != nil {
		tb.Fatal(err)
	}
	// Hedging on: once its latency estimate is warm, every request runs
	// as a race that the first copy wins at once.
	hedged, err := heed.New(heed.WithBase(base), heed.WithHedging(heed.HedgeConfig{}))
	if err != nil {
		tb.Fatal(err)
	}
	// The stale-if-error store on: every response is copied into it.
	stale, err := heed.New(heed.WithBase(base), heed.WithStaleIfError(heed.StaleConfig{}))
	if err != nil {
		tb.Fatal(err)
	}
	// The Prometheus collector counting every request's events.
	m := heedprom.New()
	prom, err := heed.New(heed.WithBase(base), heed.WithHook(m))
	if err != nil {
		tb.Fatal(err)
	}
	m.Watch(prom.Policy())
	rc := retryablehttp.NewClient()
	rc.HTTPClient.Transport = base
	rc.Logger = log.New(io.Discard, "", 0)
	return []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"heed", h},
		{"heed-limits", limited},
		{"heed-prom", prom},
		{"heed-hedging", hedged},
		{"heed-stale", stale},
		{"retryablehttp", &retryablehttp.RoundTripper{Client: rc}},
		{"failsafe", failsafehttp.NewRoundTripper(base, failsafehttp.NewRetryPolicyBuilder().Build())},
		{"failsafe-hedging", failsafehttp.NewRoundTripper(base, failsafehttp.NewRetryPolicyBuilder().Build(),
			hedgepolicy.NewWithDelayQuantile[*http.Response](0.95, 1000, 20))},
	}
}

// BenchmarkHotPath is a GET answered 200 at once: the cost every request
// pays for having retries available.
func BenchmarkHotPath(b *testing.B) {
	base := &Canned{Body: []byte(`{"id":42,"name":"heed"}`)}
	for _, c := range hotPaths(b, base) {
		b.Run(c.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, "http://api.example/v1/items/42", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// TestHotPathsWork keeps the benchmark honest: every contender returns the
// canned body intact.
func TestHotPathsWork(t *testing.T) {
	base := &Canned{Body: []byte(`{"id":42}`)}
	for _, c := range hotPaths(t, base) {
		req, _ := http.NewRequest(http.MethodGet, "http://api.example/v1/items/42", nil)
		resp, err := c.rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != `{"id":42}` {
			t.Fatalf("%s: %d %q", c.name, resp.StatusCode, b)
		}
	}
}
