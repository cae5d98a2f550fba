package bench

import (
	"context"
	"flag"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/ratelimit"
)

var (
	fleetrlLong = flag.Bool("fleetrl.long", false,
		"TestFleetRateLimitAccuracy: offer ten times the limit for 60 s instead of 3 s")
	fleetrlTimeout = flag.Duration("fleetrl.timeout", time.Second,
		"TestFleetRateLimitAccuracy: the stores' Redis timeout (heedredis's default is 50 ms)")
)

// Four instances share one server-side limit through Redis.
const (
	fleetrlInstances = 4
	fleetrlClients   = 100
	fleetrlRate      = 200 // requests a second, for the whole fleet
	fleetrlBurst     = 20
	fleetrlRetry     = time.Second // how long a fault keeps an instance on its own (heedredis's default)
)

// TestFleetRateLimitAccuracy is a fleet's server-side rate limit kept in
// Redis: four instances, each its own ratelimit.Limiter on its own
// heedredis.RateLimitStore (its own Store and Redis client), behind its
// own HTTP server on 127.0.0.1, all on one redis-server; one client key
// limited to 200 requests a second, burst 20, for the whole fleet; and
// 100 clients, each with its own keep-alive connection to one instance
// (round-robin), that together offer ten times the limit at a constant
// pace from random phases and ignore Retry-After:
//
//	cd bench && go test -run FleetRateLimitAccuracy -v .                 # 3 s
//	cd bench && go test -run FleetRateLimitAccuracy -fleetrl.long -v .   # 60 s
//
// The stores give Redis a second (-fleetrl.timeout) rather than
// heedredis's 50 ms: on a loaded machine a decision can take longer than
// 50 ms for want of a CPU, and each such call is a fault that puts its
// instance on its local quarter of the limit for Retry (a second) while
// the others keep the whole limit on Redis, which measures the fallback
// rather than the shared limit. -fleetrl.timeout 50ms measures it: each
// fault may admit up to the instance's share of the burst and of the rate
// over Retry and the timeout beyond the limit (5 + 50/s x 1.05 s here).
//
// What the limit allows is counted over the span the instances saw, from
// the first decision (the key's bucket full) to the last:
// allowed = Burst + floor(span x rate), the GCRA bound. admitted is
// counted in the handlers. The decisions are Redis's, on its clock, while
// the span is the instances' (the same machine's clock, read a round trip
// earlier), so the bound holds within a request or two.
//
// Checked: admitted at most allowed + 2, plus what the faults may add;
// and, when the clients managed to offer at least twice the limit,
// admitted within 5% of allowed. Logged: the error in %, the faults, and
// the time a decision takes (Take, Redis's round trip included).
func TestFleetRateLimitAccuracy(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	run := 3 * time.Second
	if *fleetrlLong {
		run = time.Minute
	}
	r := fleetrlRun(t, run)
	span := time.Duration(r.last.Load() - r.first.Load())
	allowed := fleetrlBurst + int64(span.Seconds()*fleetrlRate)
	admitted := r.admitted.Load()
	errPct := 100 * float64(admitted-allowed) / float64(allowed)
	offered := float64(r.sent.Load()) / run.Seconds()
	lat := r.latencies()
	t.Logf("%d instances, limit %d/s burst %d, Redis timeout %v, %v: offered %.0f/s (%.1fx the limit), 200 %d, 429 %d, errors %d, Redis faults %d",
		fleetrlInstances, fleetrlRate, fleetrlBurst, *fleetrlTimeout, run, offered, offered/fleetrlRate, r.ok.Load(), r.refused.Load(), r.errors.Load(), r.faults.Load())
	t.Logf("span %v: allowed %d, admitted %d, error %+.3f%%; per instance %v", span.Round(time.Microsecond), allowed, admitted, errPct, r.perInstance())
	t.Logf("a decision (Take, Redis included): p50 %v, p99 %v, max %v over %d",
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), len(lat))

	// Each fault: one instance on its own share (burst and rate) for
	// Retry, and the timeout before it.
	share := 1.0 / fleetrlInstances
	perFault := int64(math.Ceil(share * (fleetrlBurst + fleetrlRate*(fleetrlRetry+*fleetrlTimeout).Seconds())))
	most := allowed + 2 + r.faults.Load()*perFault
	if r.faults.Load() > 0 {
		t.Logf("%d Redis faults (a decision failed or took longer than %v): each may admit up to %d beyond the limit", r.faults.Load(), *fleetrlTimeout, perFault)
	}
	if r.errors.Load() > 0 {
		t.Errorf("%d requests failed", r.errors.Load())
	}
	if r.ok.Load() != admitted {
		t.Errorf("the clients saw %d 200s, the handlers served %d", r.ok.Load(), admitted)
	}
	if admitted > most {
		t.Errorf("admitted %d, more than the %d (+2, + the faults') one limit allows over %v", admitted, most, span)
	}
	if offered < 2*fleetrlRate {
		t.Logf("the clients offered only %.1fx the limit: the machine could not offer the demand", offered/fleetrlRate)
		return
	}
	if float64(admitted) < 0.95*float64(allowed) {
		t.Errorf("admitted %d, under the %d allowed by more than 5%%", admitted, allowed)
	}
}

type fleetrlResult struct {
	first, last               atomic.Int64 // the instances' first and last decision, ns since the Unix epoch
	admitted                  atomic.Int64
	sent, ok, refused, errors atomic.Int64
	faults                    atomic.Int64
	byInstance                [fleetrlInstances]atomic.Int64
	mu                        sync.Mutex
	lat                       []time.Duration
}

func (r *fleetrlResult) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.lat)
	return r.lat
}

func (r *fleetrlResult) perInstance() []int64 {
	var out []int64
	for i := range r.byInstance {
		out = append(out, r.byInstance[i].Load())
	}
	return out
}

// fleetrlTimed is an instance's store, seen from the test: it records the
// span of the decisions and how long each took.
type fleetrlTimed struct {
	ratelimit.Store
	r   *fleetrlResult
	mu  sync.Mutex
	lat []time.Duration
}

func (s *fleetrlTimed) Take(ctx context.Context, key string, now time.Time, ws []ratelimit.Window, sp ratelimit.Spread) (ratelimit.Decision, error) {
	start := time.Now()
	d, err := s.Store.Take(ctx, key, now, ws, sp)
	el := time.Since(start)
	s.r.first.CompareAndSwap(0, now.UnixNano())
	for {
		last := s.r.last.Load()
		if now.UnixNano() <= last || s.r.last.CompareAndSwap(last, now.UnixNano()) {
			break
		}
	}
	s.mu.Lock()
	s.lat = append(s.lat, el)
	s.mu.Unlock()
	return d, err
}

func fleetrlRun(t *testing.T, run time.Duration) *fleetrlResult {
	srv := redistest.Start(t)
	defer srv.Stop() // before goleak looks, not at the test's cleanup
	r := &fleetrlResult{}
	var urls []string
	var timed []*fleetrlTimed
	for i := range fleetrlInstances {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		defer rdb.Close()
		store, err := heedredis.New(rdb, heedredis.Config{
			Timeout:       *fleetrlTimeout,
			Retry:         fleetrlRetry,
			FallbackShare: 1.0 / fleetrlInstances,
			OnFault:       func(string, error) { r.faults.Add(1) },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		ts := &fleetrlTimed{Store: store.RateLimitStore("fleetrl"), r: r}
		timed = append(timed, ts)
		l, err := ratelimit.New(ratelimit.Config{
			Windows: []ratelimit.Window{{Limit: fleetrlRate, Per: time.Second, Burst: fleetrlBurst}},
			Key:     func(*http.Request) string { return "api" },
			Store:   ts,
		})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			r.admitted.Add(1)
			r.byInstance[i].Add(1)
			w.WriteHeader(http.StatusOK)
		})))
		defer hs.Close()
		urls = append(urls, hs.URL)
	}

	// Each client sends one request every clients/(10 x rate), from a
	// random phase, on its own connection; one that falls behind sends at
	// once, without making up for more than one period.
	period := time.Duration(fleetrlClients) * time.Second / (10 * fleetrlRate)
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(run)
	var wg sync.WaitGroup
	for c := range fleetrlClients {
		tr := &http.Transport{MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		url := urls[c%fleetrlInstances]
		phase := time.Duration(rng.Int64N(int64(period)))
		wg.Go(func() {
			for next := start.Add(phase); next.Before(end); next = next.Add(period) {
				if behind := time.Since(next); behind > period {
					next = next.Add(behind - period)
				}
				time.Sleep(time.Until(next))
				r.sent.Add(1)
				resp, err := client.Get(url)
				if err != nil {
					r.errors.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					r.ok.Add(1)
				case http.StatusTooManyRequests:
					r.refused.Add(1)
				default:
					r.errors.Add(1)
				}
			}
		})
	}
	wg.Wait()
	for _, ts := range timed {
		r.lat = append(r.lat, ts.lat...)
	}
	return r
}
