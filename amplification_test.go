package heed_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/internal/chain"
	"github.com/heed-go/heed/tier"
)

func always503() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
}

func heedClient(t *testing.T, opts ...heed.Option) *http.Client {
	t.Helper()
	c, err := heed.NewClient(append([]heed.Option{heed.WithLogger(nil)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Four services in a row, the bottom one failing: every tier retrying on
// its own multiplies the load by 6^3 = 216; heed's defaults keep it under
// 1.5 (docs/resilience.md has the full table, from bench/).
func TestAmplification(t *testing.T) {
	if testing.Short() {
		t.Skip("loopback chain")
	}
	t.Run("plain 6-attempt retries", func(t *testing.T) {
		ch := chain.Start(chain.Config{Tiers: 4, Bottom: always503(), Client: func(int) *http.Client {
			return &http.Client{Transport: chain.Plain{Next: &http.Transport{}, Attempts: 6}}
		}})
		defer ch.Close()
		chain.Load(context.Background(), ch.URL, 5, 1, 10*time.Second)
		if a := ch.Amplification(); a != 216 {
			t.Fatalf("amplification %v, want 216 (hits %v)", a, ch.Hits())
		}
	})
	t.Run("heed defaults", func(t *testing.T) {
		ch := chain.Start(chain.Config{Tiers: 4, Bottom: always503(), Wrap: tier.Middleware,
			Client: func(int) *http.Client { return heedClient(t) }})
		defer ch.Close()
		chain.Load(context.Background(), ch.URL, 300, 10, 2*time.Second)
		if a := ch.Amplification(); a > 1.5 {
			t.Fatalf("amplification %v (hits %v)", a, ch.Hits())
		}
		t.Logf("hits top to bottom %v: amplification %.3f", ch.Hits(), ch.Amplification())
	})
	t.Run("heed without breaker: the budget and the protocol", func(t *testing.T) {
		ch := chain.Start(chain.Config{Tiers: 4, Bottom: always503(), Wrap: tier.Middleware,
			Client: func(int) *http.Client {
				return heedClient(t, heed.WithoutBreaker(), heed.WithBackoff(backoff.Full(time.Millisecond, 10*time.Millisecond)))
			}})
		defer ch.Close()
		// The budget allows 25% of the requests plus a floor of 10 retries
		// a second: 1,000 requests in about a second make at most 1,350.
		chain.Load(context.Background(), ch.URL, 1000, 10, 2*time.Second)
		if a := ch.Amplification(); a > 1.5 {
			t.Fatalf("amplification %v (hits %v)", a, ch.Hits())
		}
		t.Logf("hits top to bottom %v: amplification %.3f", ch.Hits(), ch.Amplification())
	})
}

// One transient failure at the bottom: the tier closest to it retries and
// the request succeeds end to end.
func TestChainSurvivesTransientFailure(t *testing.T) {
	var calls atomic.Int32
	bottom := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("ok"))
	})
	ch := chain.Start(chain.Config{Tiers: 4, Bottom: bottom, Wrap: tier.Middleware,
		Client: func(int) *http.Client {
			return heedClient(t, heed.WithBackoff(backoff.Full(time.Millisecond, 10*time.Millisecond)))
		}})
	defer ch.Close()
	if ok := chain.Load(context.Background(), ch.URL, 1, 1, 5*time.Second); ok != 1 {
		t.Fatalf("request failed end to end (hits %v)", ch.Hits())
	}
	if h := ch.Hits(); h[0] != 1 || h[1] != 1 || h[2] != 1 || h[3] != 2 {
		t.Fatalf("hits %v: only the tier closest to the failure should retry", h)
	}
}
