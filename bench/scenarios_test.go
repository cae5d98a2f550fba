package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/heed-go/heed"
)

// A scenario is one shape of request the hot-path benchmarks send to every
// contender: what the canned base answers, how each request is built, and
// the contenders (the first is always the bare base).
type scenario struct {
	name string
	body []byte // what the canned base answers
	// request returns one request, reused for every call, and what
	// resets what a call consumed of it (nil when nothing is).
	request    func() (*http.Request, func())
	contenders func(tb testing.TB, base http.RoundTripper) []contender
}

type contender struct {
	name string
	rt   http.RoundTripper
}

// payload is the 64-byte JSON body of the POST scenario.
var payload = []byte(`{"order":"ord_8Hq2","amount":1999,"currency":"eur","capture":true}`)[:64]

// onlyReader is a request body that hides its type, so net/http gives the
// request no GetBody: an io.Reader a caller passes as it is. It is reset
// before each call rather than allocated, so the body itself costs every
// contender nothing.
type onlyReader struct{ r bytes.Reader }

func (o *onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }
func (o *onlyReader) Close() error               { return nil }

// scenarios are the configurations people run, each beside the peers that
// offer it. heed runs with the option the scenario names and its defaults
// otherwise; the peers run with their defaults.
func scenarios(tb testing.TB) []scenario {
	small := []byte(`{"id":42,"name":"heed"}`)
	get := func(ctx context.Context) func() (*http.Request, func()) {
		return func() (*http.Request, func()) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.example/v1/items/42", nil)
			return req, nil
		}
	}
	// A deadline far away, as http.Client{Timeout: ...} gives each request.
	deadline, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
	tb.Cleanup(cancel)
	withPeers := func(opts ...heed.Option) func(testing.TB, http.RoundTripper) []contender {
		return func(tb testing.TB, base http.RoundTripper) []contender {
			return []contender{{"bare", base}, {"heed", mustHeed(tb, base, opts...)}, {"retryablehttp", retryable(base)}, {"failsafe", failsafeRetry(base)}}
		}
	}
	kb4 := bytes.Repeat([]byte("heed"), 1024)
	everything := []heed.Option{
		heed.WithLimits(heed.Limits{Rate: 1e9, Burst: 1000, Concurrency: 1000}),
		heed.WithHook(heed.HookFunc(func(context.Context, heed.Event) {})),
		heed.WithHedging(heed.HedgeConfig{}),
		heed.WithStaleIfError(heed.StaleConfig{}),
	}
	return []scenario{
		{name: "get", body: small, request: get(context.Background()), contenders: withPeers()},
		{name: "deadline", body: small, request: get(deadline), contenders: withPeers()},
		{
			// What a real client sends besides: the map heed copies to add
			// Heed-Timeout holds them all.
			name: "deadline-headers", body: small,
			request: func() (*http.Request, func()) {
				req, _ := get(deadline)()
				req.Header.Set("Accept", "application/json")
				req.Header.Set("Authorization", "Bearer 8Hq2b7Lx0pQ9rT4v")
				req.Header.Set("User-Agent", "shop/2.4 (+https://shop.example)")
				req.Header.Set("X-Request-Id", "5c0e1f0e3f0a4d4c")
				return req, nil
			},
			contenders: withPeers(),
		},
		{
			name: "post", body: small,
			request: func() (*http.Request, func()) {
				body := &onlyReader{}
				req, _ := http.NewRequest(http.MethodPost, "http://api.example/v1/orders", body)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", "5c0e1f0e-3f0a-4d4c-9a55-2b1f3c1d9e77")
				req.ContentLength = int64(len(payload))
				return req, func() { body.r.Reset(payload); req.Body = body }
			},
			contenders: withPeers(),
		},
		{
			// A body net/http can rewind itself (bytes.Reader): nothing to buffer.
			name: "post-getbody", body: small,
			request: func() (*http.Request, func()) {
				body := bytes.NewReader(payload)
				req, _ := http.NewRequest(http.MethodPost, "http://api.example/v1/orders", body)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", "5c0e1f0e-3f0a-4d4c-9a55-2b1f3c1d9e77")
				return req, func() { body.Reset(payload); req.Body = io.NopCloser(body) }
			},
			contenders: withPeers(),
		},
		{
			name: "hedging", body: small, request: get(context.Background()),
			contenders: func(tb testing.TB, base http.RoundTripper) []contender {
				return []contender{{"bare", base}, {"heed", mustHeed(tb, base, heed.WithHedging(heed.HedgeConfig{}))}, {"failsafe", failsafeRetry(base)},
					{"failsafe-hedging", failsafehttp.NewRoundTripper(base, failsafehttp.NewRetryPolicyBuilder().Build(),
						hedgepolicy.NewWithDelayQuantile[*http.Response](0.95, 1000, 20))}}
			},
		},
		{name: "stale", body: small, request: get(context.Background()), contenders: heedOnly(heed.WithStaleIfError(heed.StaleConfig{}))},
		{name: "stale-4k", body: kb4, request: get(context.Background()), contenders: heedOnly(heed.WithStaleIfError(heed.StaleConfig{}))},
		{
			name: "everything", body: small, request: get(context.Background()),
			contenders: func(tb testing.TB, base http.RoundTripper) []contender {
				return []contender{{"bare", base}, {"heed", mustHeed(tb, base, everything...)}, {"failsafe", failsafeRetry(base)},
					{"failsafe-breaker", failsafehttp.NewRoundTripper(base, failsafehttp.NewRetryPolicyBuilder().Build(),
						circuitbreaker.NewWithDefaults[*http.Response]())}}
			},
		},
	}
}

func mustHeed(tb testing.TB, base http.RoundTripper, opts ...heed.Option) http.RoundTripper {
	t, err := heed.New(append([]heed.Option{heed.WithBase(base)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func retryable(base http.RoundTripper) http.RoundTripper {
	rc := retryablehttp.NewClient()
	rc.HTTPClient.Transport = base
	rc.Logger = log.New(io.Discard, "", 0)
	return &retryablehttp.RoundTripper{Client: rc}
}

func failsafeRetry(base http.RoundTripper) http.RoundTripper {
	return failsafehttp.NewRoundTripper(base, failsafehttp.NewRetryPolicyBuilder().Build())
}

// heedOnly is a scenario no peer offers: heed beside bare and failsafe-go's
// retry policy, the yardstick of the other rows.
func heedOnly(opts ...heed.Option) func(testing.TB, http.RoundTripper) []contender {
	return func(tb testing.TB, base http.RoundTripper) []contender {
		return []contender{{"bare", base}, {"heed", mustHeed(tb, base, opts...)}, {"failsafe", failsafeRetry(base)}}
	}
}

// roundTrip sends req once through rt and reads and closes the response.
func roundTrip(tb testing.TB, rt http.RoundTripper, req *http.Request, reset func()) {
	if reset != nil {
		reset()
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		tb.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// BenchmarkScenarios runs every scenario's contenders in the usual way, for
// benchstat and -benchmem:
//
//	go test -run xxx -bench Scenarios -benchmem -count 10 -cpu 1 .
func BenchmarkScenarios(b *testing.B) {
	for _, sc := range scenarios(b) {
		for _, c := range sc.contenders(b, &Canned{Body: sc.body}) {
			b.Run(sc.name+"/"+c.name, func(b *testing.B) {
				req, reset := sc.request()
				warm(b, c.rt, req, reset)
				b.ReportAllocs()
				for b.Loop() {
					roundTrip(b, c.rt, req, reset)
				}
			})
		}
	}
}

// warm runs enough calls for heed's adaptive parts (the hedge delay's
// latency estimate) to settle.
func warm(tb testing.TB, rt http.RoundTripper, req *http.Request, reset func()) {
	for range 100 {
		roundTrip(tb, rt, req, reset)
	}
}

// BenchmarkScenarioTable interleaves every scenario's contenders in batches
// (bare, heed, peers, bare, heed, ...), so a noisy machine's slow spells hit
// them alike, and logs a table of each one's median time per request, its
// allocations over bare, and its time as a multiple of failsafe-go's retry
// policy's. Run it once, on one CPU:
//
//	go test -run xxx -bench ScenarioTable -benchtime 1x -cpu 1 .
func BenchmarkScenarioTable(b *testing.B) {
	const rounds, batch = 200, 1000
	for b.Loop() {
		var out strings.Builder
		out.WriteString("\n| scenario | contender | ns/op (median) | allocs/op | allocs over bare | x failsafe-go |\n|---|---|---|---|---|---|\n")
		for _, sc := range scenarios(b) {
			cs := sc.contenders(b, &Canned{Body: sc.body})
			reqs := make([]*http.Request, len(cs))
			resets := make([]func(), len(cs))
			allocs := make([]float64, len(cs))
			per := make([][]float64, len(cs))
			for i, c := range cs {
				reqs[i], resets[i] = sc.request()
				warm(b, c.rt, reqs[i], resets[i])
				allocs[i] = testing.AllocsPerRun(1000, func() { roundTrip(b, c.rt, reqs[i], resets[i]) })
			}
			for range rounds {
				for i, c := range cs {
					start := time.Now()
					for range batch {
						roundTrip(b, c.rt, reqs[i], resets[i])
					}
					per[i] = append(per[i], float64(time.Since(start).Nanoseconds())/batch)
				}
			}
			med := make([]float64, len(cs))
			failsafe := 0.0
			for i, c := range cs {
				slices.Sort(per[i])
				med[i] = per[i][len(per[i])/2]
				if c.name == "failsafe" {
					failsafe = med[i]
				}
			}
			for i, c := range cs {
				ratio := "–"
				if failsafe > 0 {
					ratio = fmt.Sprintf("%.2f", med[i]/failsafe)
				}
				fmt.Fprintf(&out, "| %s | %s | %.0f | %.0f | %+.0f | %s |\n", sc.name, c.name, med[i], allocs[i], allocs[i]-allocs[0], ratio)
				if c.name == "heed" {
					b.ReportMetric(allocs[i]-allocs[0], sc.name+"-allocs-over-bare")
					if failsafe > 0 {
						b.ReportMetric(med[i]/failsafe, sc.name+"-x-failsafe")
					}
				}
			}
		}
		b.Log(out.String())
	}
}

// TestScenariosWork keeps the scenarios honest: every contender returns the
// canned body intact, and the POST's body reaches the base whole.
func TestScenariosWork(t *testing.T) {
	for _, sc := range scenarios(t) {
		got := &recording{Canned: Canned{Body: sc.body}}
		for _, c := range sc.contenders(t, got) {
			req, reset := sc.request()
			for range 30 { // past the hedge delay's warm-up
				if reset != nil {
					reset()
				}
				resp, err := c.rt.RoundTrip(req)
				if err != nil {
					t.Fatalf("%s/%s: %v", sc.name, c.name, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Equal(b, sc.body) {
					t.Fatalf("%s/%s: %d, %d bytes", sc.name, c.name, resp.StatusCode, len(b))
				}
				if sc.name == "post" && !bytes.Equal(got.lastBody(), payload) {
					t.Fatalf("%s/%s: the base got %q", sc.name, c.name, got.lastBody())
				}
			}
		}
	}
}

// recording is the canned base that keeps the last request body it read.
// Hedged copies call it from their own goroutines.
type recording struct {
	Canned
	mu   sync.Mutex
	last []byte
}

func (r *recording) RoundTrip(req *http.Request) (*http.Response, error) {
	var b []byte
	if req.Body != nil {
		b, _ = io.ReadAll(req.Body)
	}
	r.mu.Lock()
	r.last = b
	r.mu.Unlock()
	return r.Canned.RoundTrip(req)
}

func (r *recording) lastBody() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}
