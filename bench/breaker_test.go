package bench

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
)

// BenchmarkBreakerBudget measures what the breaker and the budget cost:
// the canned-200 path with both (heed's defaults) and without them, and a
// call refused by an open breaker.
func BenchmarkBreakerBudget(b *testing.B) {
	base := &Canned{Body: []byte(`{"id":42,"name":"heed"}`)}
	with, err := heed.New(heed.WithBase(base))
	if err != nil {
		b.Fatal(err)
	}
	without, err := heed.New(heed.WithBase(base), heed.WithoutBreaker(), heed.WithoutRetryBudget())
	if err != nil {
		b.Fatal(err)
	}
	run := func(rt http.RoundTripper) func(*testing.B) {
		return func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, "http://api.example/v1/items/42", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	b.Run("closed/without", run(without))
	b.Run("closed/with", run(with))

	b.Run("open/fail-fast", func(b *testing.B) {
		open, err := heed.New(heed.WithBase(base), heed.WithMaxAttempts(1), heed.WithLogger(nil),
			heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 1}),
			heed.WithBreakerCounter(func(heed.Outcome, breaker.Outcome) breaker.Outcome { return breaker.Failure }))
		if err != nil {
			b.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://api.example/v1/items/42", nil)
		if resp, err := open.RoundTrip(req); err == nil { // trips the breaker
			resp.Body.Close()
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := open.RoundTrip(req); !errors.Is(err, heed.ErrBreakerOpen) {
				b.Fatal(err)
			}
		}
	})
}
