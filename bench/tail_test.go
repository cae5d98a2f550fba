package bench

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"

	"github.com/heed-go/heed"
)

// tailContenders are the clients of the tail-latency benchmark.
var tailContenders = []struct {
	name      string
	newClient func(base http.RoundTripper) (*http.Client, error)
}{
	{"unhedged", func(base http.RoundTripper) (*http.Client, error) {
		return heed.NewClient(heed.WithBase(base), heed.WithLogger(nil))
	}},
	{"heed", func(base http.RoundTripper) (*http.Client, error) {
		return heed.NewClient(heed.WithBase(base), heed.WithLogger(nil), heed.WithHedging(heed.HedgeConfig{}))
	}},
	{"failsafe-go", func(base http.RoundTripper) (*http.Client, error) {
		// Its adaptive hedge: p95 of the last ~1,000 executions, after 20.
		hp := hedgepolicy.NewWithDelayQuantile[*http.Response](0.95, 1000, 20)
		return &http.Client{Transport: failsafehttp.NewRoundTripper(base, hp)}, nil
	}},
}

// BenchmarkTail runs the tail-latency scenario on loopback: a server
// answering in 5 ms, or 200 ms for one request in 20 (independently per
// request); 2,000 GETs from 16 goroutines. Each contender runs once per
// iteration against a fresh server:
//
//	go test -run xxx -bench Tail -benchtime 1x
//
// It reports the p50, p99 and p99.9 latency in ms, and the extra requests
// sent, in % of the logical ones.
func BenchmarkTail(b *testing.B) {
	for _, c := range tailContenders {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				r, err := RunTail(ctx, Tail, c.newClient)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
				b.ReportMetric(ms(r.Quantile(0.5)), "p50-ms")
				b.ReportMetric(ms(r.Quantile(0.99)), "p99-ms")
				b.ReportMetric(ms(r.Quantile(0.999)), "p99.9-ms")
				b.ReportMetric(100*r.Extra(Tail.Requests), "extra-%")
			}
		})
	}
}

// TestTailRuns checks the scenario's plumbing on a small scale: every
// request is answered and counted, and hedging sends some extra requests
// but no more than its share allows.
func TestTailRuns(t *testing.T) {
	sc := TailScenario{Fast: time.Millisecond, Slow: 50 * time.Millisecond, SlowShare: 0.2, Requests: 200, Callers: 4, Seed: 7}
	for _, c := range tailContenders[:2] {
		r, err := RunTail(context.Background(), sc, c.newClient)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(r.Latencies) != sc.Requests || r.Sent < int64(sc.Requests) {
			t.Fatalf("%s: %d answered, %d sent, want %d", c.name, len(r.Latencies), r.Sent, sc.Requests)
		}
		extra := r.Sent - int64(sc.Requests)
		if c.name == "unhedged" && extra != 0 {
			t.Errorf("unhedged sent %d extra requests", extra)
		}
		// 10% of 200 plus the floor of 5.
		if extra > 25 {
			t.Errorf("%s sent %d extra requests, want at most 25", c.name, extra)
		}
	}
}
