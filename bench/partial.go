package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/internal/chain"
	"github.com/heed-go/heed/tier"
)

// FailureKind is how the bottom of a partial-failure chain fails.
type FailureKind string

const (
	Fail503     FailureKind = "503"     // the bottom answers 503
	Fail500     FailureKind = "500"     // the bottom answers 500
	FailRefused FailureKind = "refused" // the tier above gets connection refused
)

// FailureKinds lists the kinds in the order of the sweep.
var FailureKinds = []FailureKind{Fail503, Fail500, FailRefused}

// PartialScenario is the partial-failure scenario: a chain of services on
// loopback (internal/chain), each calling the next, the bottom one failing
// a random share of requests; a load generator without retries sends
// Requests GETs to the top from Workers goroutines.
type PartialScenario struct {
	// Tiers is the length of the chain, the bottom included: 2 is one
	// calling tier over the bottom, 4 is three (top, two middle) as in the
	// amplification table.
	Tiers int
	Kind  FailureKind
	// Rate is the share of requests that fail, in [0, 1]. For FailRefused
	// it is the share of the bottom caller's connections refused.
	Rate     float64
	Requests int
	Workers  int
	// Deadline bounds each top call; 0 means none (Cap still applies).
	Deadline time.Duration
	// SendFor stops sending new top calls after this long, so that a
	// contender that waits seconds between retries does not hold a cell for
	// many minutes; the calls in flight finish. 0 means no limit.
	SendFor time.Duration
	// Cap bounds a top call without a Deadline, so that a cell always
	// ends; 0 means 2 minutes.
	Cap time.Duration
	// Seed seeds the failure draws: a run is reproducible given its seed,
	// up to the order in which requests reach the draw.
	Seed uint64
}

// Partial is the sweep's cell shape: 2,000 GETs from 20 workers, 5 s per
// call, at most 20 s of sending. Tiers, Kind and Rate vary per cell.
var Partial = PartialScenario{
	Tiers: 4, Kind: Fail503, Rate: 0.5,
	Requests: 2000, Workers: 20,
	Deadline: 5 * time.Second, SendFor: 20 * time.Second, Cap: 2 * time.Minute,
	Seed: 1,
}

// TierName names the chain length the way the sweep does: "one-tier" for a
// chain of 2 (one calling tier), "four-tiers" for a chain of 4.
func (sc PartialScenario) TierName() string {
	switch sc.Tiers {
	case 2:
		return "one-tier"
	case 4:
		return "four-tiers"
	}
	return fmt.Sprintf("tiers-%d", sc.Tiers)
}

func (sc PartialScenario) validate() error {
	switch {
	case sc.Tiers < 2:
		return fmt.Errorf("bench: a chain needs at least 2 tiers, got %d", sc.Tiers)
	case !slices.Contains(FailureKinds, sc.Kind):
		return fmt.Errorf("bench: unknown failure kind %q", sc.Kind)
	case !(sc.Rate >= 0 && sc.Rate <= 1):
		return fmt.Errorf("bench: failure rate %v is not in [0, 1]", sc.Rate)
	case sc.Requests < 1 || sc.Workers < 1:
		return fmt.Errorf("bench: %d requests from %d workers", sc.Requests, sc.Workers)
	case sc.Deadline < 0 || sc.SendFor < 0 || sc.Cap < 0:
		return errors.New("bench: negative duration")
	}
	return nil
}

// Contender is a way of calling the tier below, used by every calling tier
// of the chain.
type Contender struct {
	Name string
	// Tier, if set, wraps each calling tier's handler (tier.Middleware).
	Tier func(http.Handler) http.Handler
	// NewClient builds one calling tier's client on base, a transport of
	// that tier's own.
	NewClient func(base http.RoundTripper) (*http.Client, error)
}

// PartialContenders returns the contenders of the sweep, each with its
// defaults: heed (with its tier middleware), heed without its breaker, a
// naive loop of 6 immediate attempts, go-retryablehttp and failsafe-go.
func PartialContenders() []Contender {
	return []Contender{
		{Name: "heed", Tier: tier.Middleware, NewClient: func(base http.RoundTripper) (*http.Client, error) {
			return heed.NewClient(heed.WithBase(base), heed.WithLogger(nil))
		}},
		{Name: "heed-no-breaker", Tier: tier.Middleware, NewClient: func(base http.RoundTripper) (*http.Client, error) {
			return heed.NewClient(heed.WithBase(base), heed.WithLogger(nil), heed.WithoutBreaker())
		}},
		{Name: "naive", NewClient: func(base http.RoundTripper) (*http.Client, error) {
			return &http.Client{Transport: chain.Plain{Next: base, Attempts: 6}}, nil
		}},
		{Name: "go-retryablehttp", NewClient: func(base http.RoundTripper) (*http.Client, error) {
			c := retryablehttp.NewClient()
			c.HTTPClient.Transport = base
			c.Logger = log.New(io.Discard, "", 0)
			return c.StandardClient(), nil
		}},
		{Name: "failsafe-go", NewClient: func(base http.RoundTripper) (*http.Client, error) {
			return &http.Client{Transport: failsafehttp.NewRoundTripper(base, failsafehttp.NewRetryPolicyBuilder().Build())}, nil
		}},
	}
}

// PartialResult is what one contender got in one cell.
type PartialResult struct {
	Scenario  PartialScenario
	Contender string
	Sent      int         // top calls sent (SendFor may stop short of Requests)
	OK        int         // of them answered 200
	Errors    int         // of them ended by an error, mostly their deadline
	Codes     map[int]int // status of the top calls answered
	Hits      []int64     // requests each tier received, top first
	// Refused counts the bottom caller's connections refused (FailRefused).
	Refused int64
	// Latencies of every top call, answered or not, sorted.
	Latencies []time.Duration
	Wall      time.Duration // from the first call sent to the last one ended
}

// Bottom is the load aimed at the bottom: the requests it received, plus
// the connections refused in its place.
func (r PartialResult) Bottom() int64 {
	if len(r.Hits) == 0 {
		return r.Refused
	}
	return r.Hits[len(r.Hits)-1] + r.Refused
}

// Success is the share of top calls answered 200.
func (r PartialResult) Success() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.OK) / float64(r.Sent)
}

// Load is the load aimed at the bottom over the top calls sent.
func (r PartialResult) Load() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Bottom()) / float64(r.Sent)
}

// Quantile returns the q-quantile of the top calls' latencies (nearest
// rank); Quantile(1) is the longest.
func (r PartialResult) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(r.Latencies))+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// RunPartial runs one cell: it starts sc's chain with c in every calling
// tier, sends the load, and closes the chain, its servers and every idle
// connection before it returns. Only ctx ending makes it fail once running.
func RunPartial(ctx context.Context, sc PartialScenario, c Contender) (PartialResult, error) {
	if err := sc.validate(); err != nil {
		return PartialResult{}, err
	}
	var (
		mu   sync.Mutex
		rng  = rand.New(rand.NewPCG(sc.Seed, sc.Seed+1))
		fail = func() bool {
			mu.Lock()
			defer mu.Unlock()
			return rng.Float64() < sc.Rate
		}
	)
	code := map[FailureKind]int{Fail503: http.StatusServiceUnavailable, Fail500: http.StatusInternalServerError}[sc.Kind]
	bottom := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code != 0 && fail() {
			w.WriteHeader(code)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	var ref *refuser
	if sc.Kind == FailRefused {
		dead, err := deadAddr()
		if err != nil {
			return PartialResult{}, err
		}
		ref = &refuser{dead: dead, fail: fail}
	}

	var (
		bases []*http.Transport
		bad   error
	)
	ch := chain.Start(chain.Config{
		Tiers:  sc.Tiers,
		Bottom: bottom,
		Wrap:   c.Tier,
		Client: func(tier int) *http.Client {
			base := pooled(sc.Workers)
			if ref != nil && tier == sc.Tiers-2 {
				base.DisableKeepAlives = true
				base.DialContext = ref.dial
			}
			bases = append(bases, base)
			cl, err := c.NewClient(base)
			if err != nil {
				bad = cmpErr(bad, err)
				return &http.Client{Transport: base}
			}
			return cl
		},
	})
	top := pooled(sc.Workers)
	closeAll := func() {
		ch.Close()
		for _, t := range append(bases, top) {
			t.CloseIdleConnections()
		}
	}
	if bad != nil {
		closeAll()
		return PartialResult{}, fmt.Errorf("bench: %s: %w", c.Name, bad)
	}

	r := load(ctx, sc, &http.Client{Transport: top}, ch.URL)
	closeAll() // waits for every handler, so the counts below are final
	r.Scenario, r.Contender, r.Hits = sc, c.Name, ch.Hits()
	if ref != nil {
		r.Refused = ref.refused.Load()
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	return r, nil
}

// load sends sc's top calls to url and times each one.
func load(ctx context.Context, sc PartialScenario, c *http.Client, url string) PartialResult {
	timeout := sc.Deadline
	if timeout == 0 {
		timeout = cmp.Or(sc.Cap, 2*time.Minute)
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		r    = PartialResult{Codes: map[int]int{}, Latencies: make([]time.Duration, 0, sc.Requests)}
	)
	start := time.Now()
	for range sc.Workers {
		wg.Go(func() {
			for ctx.Err() == nil && (sc.SendFor == 0 || time.Since(start) < sc.SendFor) && next.Add(1) <= int64(sc.Requests) {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				t0 := time.Now()
				code, err := call(cctx, c, url)
				took := time.Since(t0)
				cancel()
				mu.Lock()
				r.Sent++
				r.Latencies = append(r.Latencies, took)
				if err != nil {
					r.Errors++
				} else {
					r.Codes[code]++
				}
				if code == http.StatusOK {
					r.OK++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.Wall = time.Since(start)
	slices.Sort(r.Latencies)
	return r
}

// call sends one GET and reads the whole answer: a call ends when its body
// has arrived, or fails.
func call(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// pooled is a fresh transport of the defaults' shape, keeping an idle
// connection per worker so a healthy chain reuses its connections. Proxies
// are off: the chain is on loopback only.
func pooled(workers int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConnsPerHost = workers
	t.MaxIdleConns = max(t.MaxIdleConns, workers)
	return t
}

// refuser emulates a bottom that refuses a share of connections, as an
// instance that crashed or restarts behind an address does. The tier
// calling the bottom dials afresh for every request (its transport has
// DisableKeepAlives, else pooled connections would carry requests past the
// draw) through refuser.dial, which for the drawn share dials instead a
// loopback port where nothing listens: the kernel answers with a reset and
// the dial fails with ECONNREFUSED, the very error a real refusal gives,
// before any byte of the request is sent.
type refuser struct {
	dead    string // 127.0.0.1:port, nothing listening
	fail    func() bool
	d       net.Dialer
	refused atomic.Int64
}

func (f *refuser) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if !f.fail() {
		return f.d.DialContext(ctx, network, addr)
	}
	conn, err := f.d.DialContext(ctx, network, f.dead)
	if err == nil {
		// Something took the port since deadAddr: never talk to it.
		conn.Close()
		return nil, fmt.Errorf("bench: %s is listening again, no refusal to emulate", f.dead)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		f.refused.Add(1)
	}
	return nil, err
}

// deadAddr returns a loopback address where nothing listens: a port the
// kernel just handed out and that was closed at once.
func deadAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: no loopback listener: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}
