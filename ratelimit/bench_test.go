package ratelimit_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed/ratelimit"
)

// discard is a ResponseWriter that keeps nothing, with a header map
// cleared and reused, so that what is counted is the middleware's work.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// never is a limit the benchmarks never reach: a billion a second.
var never = []ratelimit.Window{{Limit: 1_000_000_000, Per: time.Second, Burst: 1000}}

func newNever(tb testing.TB, cfg ratelimit.Config) http.Handler {
	cfg.Windows = never
	l, err := ratelimit.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return l.Handler(ok)
}

// The hot path, a request under the limit from a known client, allocates
// the one block the quota fields are written from.
func TestHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	for _, c := range []struct {
		name string
		cfg  ratelimit.Config
		max  float64
	}{
		{"by address", ratelimit.Config{}, 1},
		{"by header", ratelimit.Config{Key: ratelimit.ByHeader("X-Api-Key")}, 1},
		{"legacy fields too", ratelimit.Config{LegacyHeaders: true}, 1},
		{"delay mode", ratelimit.Config{MaxDelay: time.Second}, 1},
	} {
		h := newNever(t, c.cfg)
		req := httptest.NewRequest("GET", "http://api.test/v1/items", nil)
		req.RemoteAddr = "192.0.2.7:41234"
		req.Header.Set("X-Api-Key", "sk_live_abc")
		w := &discard{h: http.Header{}}
		h.ServeHTTP(w, req) // the key's first request makes its entry
		if n := testing.AllocsPerRun(1000, func() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}); n > c.max {
			t.Errorf("%s: %v allocations a request, want at most %v", c.name, n, c.max)
		}
	}
}

// BenchmarkHandler is one request through the limiter from one client,
// under a limit never reached, as bench/'s BenchmarkRateLimitOverhead runs
// the other middlewares:
//
//	go test -run xxx -bench Handler -benchmem ./ratelimit/
func BenchmarkHandler(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  ratelimit.Config
	}{
		{"ip", ratelimit.Config{}},
		{"header", ratelimit.Config{Key: ratelimit.ByHeader("X-Api-Key")}},
		{"ip+legacy", ratelimit.Config{LegacyHeaders: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := newNever(b, c.cfg)
			req, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/items", nil)
			req.RemoteAddr = "192.0.2.7:41234"
			req.Header.Set("X-Api-Key", "sk_live_abc")
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

// BenchmarkHandlerParallel is requests from 4096 clients on every CPU at
// once: the shards keep them from waiting on one another.
func BenchmarkHandlerParallel(b *testing.B) {
	h := newNever(b, ratelimit.Config{})
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		base := next.Add(1) * 1000
		reqs := make([]*http.Request, 64)
		for i := range reqs {
			reqs[i], _ = http.NewRequest(http.MethodGet, "http://api.test/v1/items", nil)
			n := (base + int64(i)) % 4096
			reqs[i].RemoteAddr = "10.0." + strconv.Itoa(int(n/256)) + "." + strconv.Itoa(int(n%256)) + ":1234"
		}
		w := &discard{h: http.Header{}}
		i := 0
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, reqs[i%len(reqs)])
			i++
		}
	})
}

// BenchmarkRefusal is a refused request, with its problem body.
func BenchmarkRefusal(b *testing.B) {
	l, err := ratelimit.New(ratelimit.Config{Windows: []ratelimit.Window{{Limit: 1, Per: time.Hour, Burst: 1}}})
	if err != nil {
		b.Fatal(err)
	}
	h := l.Handler(ok)
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/items", nil)
	req.RemoteAddr = "192.0.2.7:41234"
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, req)
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}
