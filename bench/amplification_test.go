package bench

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/internal/chain"
	"github.com/heed-go/heed/tier"
)

// BenchmarkAmplification runs the chain of internal/chain: four services in a
// row on loopback, each calling the next, the bottom one answering 503 to
// everything. It reports the load at the bottom over the load at the top
// (bottom/top) for each way of retrying. Run it once:
//
//	go test -run xxx -bench Amplification -benchtime 1x
func BenchmarkAmplification(b *testing.B) {
	fast := heed.WithBackoff(backoff.Full(time.Millisecond, 10*time.Millisecond))
	rows := []struct {
		name     string
		requests int
		wrap     bool
		client   func() *http.Client
	}{
		{"plain-6-attempts", 20, false, func() *http.Client {
			return &http.Client{Transport: chain.Plain{Next: &http.Transport{}, Attempts: 6}}
		}},
		{"heed-no-budget-no-breaker-no-protocol", 20, false, func() *http.Client {
			return heedClient(b, fast, heed.WithoutRetryBudget(), heed.WithoutBreaker(), heed.WithoutTierHeaders())
		}},
		{"heed-budget-only", 2000, false, func() *http.Client {
			return heedClient(b, fast, heed.WithoutBreaker(), heed.WithoutTierHeaders())
		}},
		{"heed-budget-and-protocol", 2000, true, func() *http.Client {
			return heedClient(b, fast, heed.WithoutBreaker())
		}},
		{"heed-defaults", 2000, true, func() *http.Client { return heedClient(b) }},
	}
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			for b.Loop() {
				cfg := chain.Config{Tiers: 4, Bottom: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusServiceUnavailable)
				}), Client: func(int) *http.Client { return row.client() }}
				if row.wrap {
					cfg.Wrap = tier.Middleware
				}
				ch := chain.Start(cfg)
				start := time.Now()
				chain.Load(context.Background(), ch.URL, row.requests, 20, 2*time.Second)
				took := time.Since(start)
				ch.Close()
				h := ch.Hits()
				b.ReportMetric(ch.Amplification(), "bottom/top")
				b.ReportMetric(float64(h[0]), "top-requests")
				b.ReportMetric(float64(h[len(h)-1]), "bottom-requests")
				b.ReportMetric(took.Seconds(), "run-s")
			}
		})
	}
}

func heedClient(tb testing.TB, opts ...heed.Option) *http.Client {
	c, err := heed.NewClient(append([]heed.Option{heed.WithLogger(nil)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
