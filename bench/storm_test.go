package bench

import (
	"context"
	"io"
	"log"
	"net/http"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/heed-go/heed/internal/storm"
)

// peers are the contenders of the storm beside heed, each with a client per
// caller (they keep no state a shared client would share).
func peers() []storm.Strategy {
	rh := func(name string, retries int) storm.Strategy {
		return storm.Strategy{Name: name, NewClient: func(base http.RoundTripper) (*http.Client, error) {
			c := retryablehttp.NewClient()
			c.HTTPClient.Transport = base
			c.Logger = log.New(io.Discard, "", 0)
			if retries >= 0 {
				c.RetryMax = retries
			}
			return c.StandardClient(), nil
		}}
	}
	fs := func(name string, retries int) storm.Strategy {
		return storm.Strategy{Name: name, NewClient: func(base http.RoundTripper) (*http.Client, error) {
			b := failsafehttp.NewRetryPolicyBuilder()
			if retries >= 0 {
				b = b.WithMaxRetries(retries)
			}
			return &http.Client{Transport: failsafehttp.NewRoundTripper(base, b.Build())}, nil
		}}
	}
	return []storm.Strategy{
		rh("go-retryablehttp defaults", -1),
		rh("go-retryablehttp, 10 retries", 10),
		fs("failsafe-go defaults", -1),
		fs("failsafe-go, 10 retries", 10),
	}
}

// BenchmarkStorm runs the public 429 storm (internal/storm) on loopback: a
// token-bucket API at 100 req/s, burst 10, answering 429 with Retry-After
// and X-RateLimit-* headers; 50 clients each needing 10 successful GETs.
// Each strategy runs once per iteration against a fresh server:
//
//	go test -run xxx -bench Storm -benchtime 1x
//
// It reports failed requests, attempts per success and the makespan over
// the optimal one (4.9 s).
func BenchmarkStorm(b *testing.B) {
	variants := []struct {
		name string
		cfg  storm.ServerConfig
		all  bool // run the peers too
	}{
		{"retry-after-seconds", storm.DefaultServer, true},
		{"retry-after-date-reset-epoch", storm.ServerConfig{Rate: 100, Burst: 10, RetryAfter: storm.RetryAfterDate, Reset: storm.ResetEpoch}, false},
		{"no-retry-after", storm.ServerConfig{Rate: 100, Burst: 10, RetryAfter: storm.RetryAfterNone}, false},
		{"no-retry-after-no-headers", storm.ServerConfig{Rate: 100, Burst: 10, RetryAfter: storm.RetryAfterNone, NoRateLimitHeaders: true}, false},
	}
	for _, v := range variants {
		strategies := []storm.Strategy{storm.Heed("heed-shared", true), storm.Heed("heed-independent", false)}
		if v.all {
			strategies = append(strategies, peers()...)
		}
		for _, st := range strategies {
			b.Run(v.name+"/"+slug(st.Name), func(b *testing.B) {
				sc := storm.Default
				sc.Server = v.cfg
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					r, err := storm.Run(ctx, sc, st, nil)
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(r.Failed), "failed")
					b.ReportMetric(r.AttemptsPerSuccess(), "attempts/success")
					b.ReportMetric(r.OverOptimal(), "makespan/optimal")
				}
			})
		}
	}
}

func slug(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			out = append(out, c)
		case c == ' ' || c == ',':
			if len(out) > 0 && out[len(out)-1] != '-' {
				out = append(out, '-')
			}
		}
	}
	return string(out)
}
