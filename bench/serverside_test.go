package bench

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/didip/tollbooth/v7"
	"github.com/go-chi/httprate"
	"github.com/sethvargo/go-limiter/httplimit"
	"github.com/sethvargo/go-limiter/memorystore"
	ulule "github.com/ulule/limiter/v3"
	ululemw "github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	ululemem "github.com/ulule/limiter/v3/drivers/store/memory"

	"github.com/heed-go/heed/ratelimit"
)

// discard is a ResponseWriter that keeps nothing: the benchmark counts
// the middleware's work, not a recorder's. Its header map is cleared and
// reused, as net/http reuses nothing either but this keeps the map's own
// growth out of the count.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

// limiters are the middlewares compared, each limiting by client IP at a
// limit never reached in the benchmark (a billion a second).
func limiters(tb testing.TB) []struct {
	name string
	h    http.Handler
} {
	const limit = 1_000_000_000
	var out []struct {
		name string
		h    http.Handler
	}
	add := func(name string, h http.Handler) {
		out = append(out, struct {
			name string
			h    http.Handler
		}{name, h})
	}
	add("bare", okHandler)
	add("httprate", httprate.LimitBy(limit, time.Second, func(r *http.Request) (string, error) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		return httprate.CanonicalizeIP(host), err
	})(okHandler))
	ul := ulule.New(ululemem.NewStore(), ulule.Rate{Period: time.Second, Limit: limit})
	add("ulule", ululemw.NewMiddleware(ul).Handler(okHandler))
	store, err := memorystore.New(&memorystore.Config{Tokens: limit, Interval: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close(context.Background()) })
	sv, err := httplimit.NewMiddleware(store, httplimit.IPKeyFunc())
	if err != nil {
		tb.Fatal(err)
	}
	add("sethvargo", sv.Handle(okHandler))
	add("tollbooth", tollbooth.LimitHandler(tollbooth.NewLimiter(limit, nil), okHandler))
	hl, err := ratelimit.New(ratelimit.Config{Windows: []ratelimit.Window{{Limit: limit, Per: time.Second, Burst: 1000}}})
	if err != nil {
		tb.Fatal(err)
	}
	add("heed-ratelimit", hl.Handler(okHandler))
	return out
}

// BenchmarkRateLimitOverhead is one request through each middleware, from
// one client, under a limit never reached:
//
//	cd bench && go test -run xxx -bench RateLimitOverhead -benchmem .
func BenchmarkRateLimitOverhead(b *testing.B) {
	for _, l := range limiters(b) {
		b.Run(l.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/items", nil)
			req.RemoteAddr = "192.0.2.7:41234"
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				l.h.ServeHTTP(w, req)
			}
		})
	}
}
