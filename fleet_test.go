package heed_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/internal/chain"
	"github.com/heed-go/heed/internal/storm"
	"github.com/heed-go/heed/throttle"
)

// strayOnce answers one request, the first sent after at, with a 429 and
// Retry-After: 1 instead of passing it on: the stray refusal a shared
// limit lets through now and then.
type strayOnce struct {
	next http.RoundTripper
	at   time.Time
	done atomic.Bool
}

func (s *strayOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if !time.Now().Before(s.at) && s.done.CompareAndSwap(false, true) {
		rec := httptest.NewRecorder()
		rec.Header().Set("Retry-After", "1")
		rec.WriteHeader(http.StatusTooManyRequests)
		resp := rec.Result()
		resp.Request = req
		return resp, nil
	}
	return s.next.RoundTrip(req)
}

// Two instances share one rate limit (a fleet's, as heedredis keeps it);
// one of them meets a stray 429. It slows a little, not to one request a
// second: the pace starts near the configured limit, and the instance
// keeps its share. Before, it paced itself at one request a second for
// about nine seconds while the other took the whole limit.
func TestStray429DoesNotStarveAFleetInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, err := storm.NewAPI(storm.ServerConfig{Rate: 100, Burst: 10, NoRateLimitHeaders: true})
		if err != nil {
			t.Fatal(err)
		}
		shared, _ := throttle.NewLimiter(100, 10) // the fleet's limit, shared by both
		limits := heed.WithKeyLimits(func(string) heed.Limits { return heed.Limits{Limiter: shared} })
		start := time.Now()
		a, _ := heed.NewClient(heed.WithLogger(nil), limits,
			heed.WithBase(&strayOnce{next: chain.Memory{Handler: api, Latency: time.Millisecond}, at: start.Add(time.Second)}))
		b, _ := heed.NewClient(heed.WithLogger(nil), limits, heed.WithBase(chain.Memory{Handler: api, Latency: time.Millisecond}))
		var ok [2]atomic.Int64
		var wg sync.WaitGroup
		for i, c := range []*http.Client{a, b} {
			for range 8 {
				wg.Go(func() {
					for time.Since(start) < 5*time.Second {
						resp, err := c.Get("http://api.test/")
						if err != nil {
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							ok[i].Add(1)
						}
					}
				})
			}
		}
		wg.Wait()
		na, nb := ok[0].Load(), ok[1].Load()
		if na < nb*8/10 || na+nb < 450 {
			t.Errorf("in 5 s at a shared 100/s: the instance that met the 429 got %d, the other %d", na, nb)
		}
		t.Logf("the instance that met the stray 429: %d; the other: %d", na, nb)
	})
}
