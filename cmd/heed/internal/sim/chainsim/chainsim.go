// Package chainsim is retry amplification in virtual time: K services in
// a row, each calling the next through its retry policy, the bottom one
// failing a share of its requests. It counts the requests that reach each
// tier for one that enters the top, the share of the top's requests that
// succeed and how long they take. Each tier is heed's real Transport (or a
// plain retry loop) and heed's real Middleware, on a vclock.Clock; the
// services run in one process but share nothing a network would not carry.
package chainsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/cmd/heed/internal/sim/choose"
	"github.com/heed-go/heed/cmd/heed/internal/sim/vclock"
	"github.com/heed-go/heed/internal/chain"
	"github.com/heed-go/heed/tier"
)

// Config is one chain experiment: every strategy on every chain length at
// every failure rate.
type Config struct {
	// Tiers lists the chain lengths K to simulate (2 to 10).
	Tiers []int
	// FailRates lists the shares of its requests the bottom tier fails, 1
	// for all of them.
	FailRates []float64
	// FailKind is how the bottom fails them. Default 503.
	FailKind FailKind
	// Requests enter the top, Interval apart.
	Requests int
	Interval time.Duration
	// Latency is each hop's round trip. Default 1 ms.
	Latency time.Duration
	// Deadline, if above 0, is each top-level request's deadline: the
	// client gives up then, the request fails, and the chain's work for it
	// is cancelled. The client states it in Heed-Timeout, which tiers with
	// tier.Middleware take as their deadline.
	Deadline   time.Duration
	Seed       uint64
	Strategies []Strategy
}

// FailKind is how the bottom tier fails a request.
type FailKind string

const (
	Fail503     FailKind = "503"     // it answers 503 Service Unavailable
	Fail500     FailKind = "500"     // it answers 500 Internal Server Error
	FailRefused FailKind = "refused" // the connection to it is refused
)

// FailKinds lists the kinds, the default first.
var FailKinds = []FailKind{Fail503, Fail500, FailRefused}

// ParseFailKind reads a FailKind by name.
func ParseFailKind(s string) (FailKind, error) {
	if k := FailKind(s); slices.Contains(FailKinds, k) {
		return k, nil
	}
	return "", fmt.Errorf("%q: want 503, 500 or refused", s)
}

// maxBottom bounds the requests a plain strategy may send to the bottom in
// one run: about a minute of simulation.
const maxBottom = 2e7

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	switch {
	case len(c.Tiers) == 0:
		return errors.New("no chain length")
	case slices.ContainsFunc(c.Tiers, func(k int) bool { return k < 2 || k > 10 }):
		return fmt.Errorf("tiers %v: each must be 2 to 10", c.Tiers)
	case len(c.FailRates) == 0:
		return errors.New("no fail rate")
	case c.FailKind != "" && !slices.Contains(FailKinds, c.FailKind):
		return fmt.Errorf("fail kind %q: want 503, 500 or refused", c.FailKind)
	case c.Requests < 1 || c.Requests > 100_000:
		return fmt.Errorf("requests %d: want 1 to 100,000", c.Requests)
	case c.Interval < 0 || c.Latency < 0:
		return errors.New("interval and latency must not be negative")
	case c.Deadline < 0 || c.Deadline > 24*time.Hour:
		return fmt.Errorf("deadline %v: want 0 (none) to 24h", c.Deadline)
	case len(c.Strategies) == 0:
		return errors.New("no strategy")
	}
	// A plain loop multiplies through the chain: refuse a run that would
	// send more than maxBottom requests to the bottom (hours of work).
	for _, st := range c.Strategies {
		for _, k := range c.Tiers {
			if st.attempts > 0 && float64(c.Requests)*math.Pow(float64(st.attempts), float64(k-1)) > maxBottom {
				return fmt.Errorf("%s at K = %d could send %.3g requests to the bottom (%d^%d for each of %d): use fewer tiers or requests",
					st.Name, k, float64(c.Requests)*math.Pow(float64(st.attempts), float64(k-1)), st.attempts, k-1, c.Requests)
			}
		}
	}
	for i, r := range c.FailRates {
		if !(r >= 0 && r <= 1) {
			return fmt.Errorf("fail rate %v: want 0 to 1", r)
		}
		if slices.Contains(c.FailRates[:i], r) {
			return fmt.Errorf("fail rate %v given twice", r)
		}
	}
	return nil
}

// Strategy is the retry policy every tier uses.
type Strategy struct {
	Name string
	// attempts, for a plain loop, is how many attempts each tier makes at
	// most: a chain of K sends up to attempts^(K-1) requests to the bottom
	// for each that enters the top. 0: bounded otherwise (heed).
	attempts int
	// client returns the client a tier calls the next one with.
	client func(base http.RoundTripper, clk clock.Clock, rng *rand.Rand) (*http.Client, error)
	// wrap, if set, wraps each calling tier's handler (tier.Middleware).
	wrap func(http.Handler) http.Handler
}

// plainStrategy retries at once, up to attempts in all, on any transport
// error or status of 500 and above.
func plainStrategy(name string, attempts int) Strategy {
	return Strategy{Name: name, attempts: attempts, client: func(base http.RoundTripper, _ clock.Clock, _ *rand.Rand) (*http.Client, error) {
		return &http.Client{Transport: chain.Plain{Next: base, Attempts: attempts}}, nil
	}}
}

// heedStrategy is heed's defaults with opts, its tiers wrapped in
// tier.Middleware if middleware is set.
func heedStrategy(name string, middleware bool, opts ...heed.Option) Strategy {
	st := Strategy{Name: name, client: func(base http.RoundTripper, clk clock.Clock, rng *rand.Rand) (*http.Client, error) {
		return heed.NewClient(append([]heed.Option{heed.WithBase(base), heed.WithLogger(nil), heed.WithClock(clk), heed.WithRand(rng)}, opts...)...)
	}}
	if middleware {
		st.wrap = tier.Middleware
	}
	return st
}

// Strategies returns every strategy, by name: one retry per tier (the
// textbook example of retry amplification), a naive loop of 6 attempts at once, heed's defaults
// without the retry budget and the cross-tier protocol (a breaker per tier
// remains), heed's defaults without the breaker, and heed's defaults, the
// last two with tier.Middleware on every tier.
func Strategies() []Strategy {
	return []Strategy{
		plainStrategy("one-retry", 2),
		plainStrategy("naive", 6),
		heedStrategy("heed-no-budget", false, heed.WithoutRetryBudget(), heed.WithoutTierHeaders()),
		heedStrategy("heed-no-breaker", true, heed.WithoutBreaker()),
		heedStrategy("heed", true),
	}
}

// ParseStrategies picks strategies by name, comma-separated; "all" is
// every one.
func ParseStrategies(s string) ([]Strategy, error) {
	return choose.Pick(Strategies(), func(st Strategy) string { return st.Name }, s, "chain strategy")
}

// Breaker is a named circuit-breaker setting to run the heed strategy with.
type Breaker struct {
	Name string
	Opt  heed.Option // nil: heed's default breaker
	// Under, if set, wraps the transport under heed (the SRE throttle).
	Under func(next http.RoundTripper, clk clock.Clock, rng *rand.Rand) http.RoundTripper
}

// Breakers lists the breaker settings -breaker can name. One line adds one.
func Breakers() []Breaker {
	return []Breaker{
		{"default", nil, nil},
		{"consecutive5", heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 5}), nil},
		{"ratio50", heed.WithBreaker(breaker.Settings{FailureRatio: 0.5, MinCalls: 20, Window: 30 * time.Second}), nil},
		{"ratio85", heed.WithBreaker(breaker.Settings{FailureRatio: 0.85, MinCalls: 20}), nil},
		{"off", heed.WithoutBreaker(), nil},
		{"sre2", heed.WithoutBreaker(), sre(2)},
		{"sre10", heed.WithoutBreaker(), sre(10)},
	}
}

// sre returns the SRE book's adaptive throttling with multiplier k, as a
// transport under heed.
func sre(k float64) func(http.RoundTripper, clock.Clock, *rand.Rand) http.RoundTripper {
	return func(next http.RoundTripper, clk clock.Clock, rng *rand.Rand) http.RoundTripper {
		return &sreThrottle{next: next, clk: clk, rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())), k: k}
	}
}

// ParseBreakers picks breaker settings by name, comma-separated; "all" is
// every one.
func ParseBreakers(s string) ([]Breaker, error) {
	return choose.Pick(Breakers(), func(b Breaker) string { return b.Name }, s, "breaker setting")
}

// WithBreakers replaces the heed strategy in sts by one strategy per
// breaker setting, named heed[NAME].
func WithBreakers(sts []Strategy, bs []Breaker) ([]Strategy, error) {
	i := slices.IndexFunc(sts, func(st Strategy) bool { return st.Name == "heed" })
	if i < 0 {
		return nil, errors.New("breaker settings apply to the heed strategy, which is not among the strategies")
	}
	var vs []Strategy
	for _, b := range bs {
		var opts []heed.Option
		if b.Opt != nil {
			opts = append(opts, b.Opt)
		}
		st := heedStrategy("heed["+b.Name+"]", true, opts...)
		if under := b.Under; under != nil {
			client := st.client
			st.client = func(base http.RoundTripper, clk clock.Clock, rng *rand.Rand) (*http.Client, error) {
				return client(under(base, clk, rng), clk, rng)
			}
		}
		vs = append(vs, st)
	}
	return slices.Concat(sts[:i], vs, sts[i+1:]), nil
}

// Point is one strategy on one chain length at one failure rate.
type Point struct {
	Strategy string
	Tiers    int
	FailKind FailKind
	FailRate float64
	Hits     []int64 // requests sent to each tier, top first (refused connections included)
	OK       int     // requests into the top answered 200 (in time)
	// Max and P99 are the slowest and the 99th-percentile top-level
	// request, in virtual time; a request past the deadline counts as the
	// deadline.
	Max, P99 time.Duration
}

// Amplification is the load at the bottom over the load at the top.
func (p Point) Amplification() float64 {
	if p.Hits[0] == 0 {
		return 0
	}
	return float64(p.Hits[len(p.Hits)-1]) / float64(p.Hits[0])
}

// Success is the share of the requests into the top that succeeded.
func (p Point) Success() float64 {
	if p.Hits[0] == 0 {
		return 0
	}
	return float64(p.OK) / float64(p.Hits[0])
}

// Run simulates every strategy on every chain length at every failure
// rate; progress reports the points done.
func Run(ctx context.Context, cfg Config, progress func(done, total int)) ([]Point, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Latency == 0 {
		cfg.Latency = time.Millisecond
	}
	if cfg.FailKind == "" {
		cfg.FailKind = Fail503
	}
	var out []Point
	total := len(cfg.Strategies) * len(cfg.Tiers) * len(cfg.FailRates)
	for _, st := range cfg.Strategies {
		for _, k := range cfg.Tiers {
			for _, rate := range cfg.FailRates {
				p, err := run(ctx, cfg, st, k, rate)
				if err != nil {
					return nil, fmt.Errorf("%s, %d tiers, fail rate %v: %w", st.Name, k, rate, err)
				}
				out = append(out, p)
				if progress != nil {
					progress(len(out), total)
				}
			}
		}
	}
	return out, nil
}

func run(ctx context.Context, cfg Config, st Strategy, k int, rate float64) (Point, error) {
	clk := vclock.New()
	hits := make([]int64, k)
	// One stream per chain length, whatever the rate and the kind: the
	// points of a sweep fail the same draws.
	rng := vclock.Rand(cfg.Seed, uint64(k))
	fail := func() bool { return rate >= 1 || rng.Float64() < rate }
	// The bottom tier.
	var next http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case cfg.FailKind == Fail503 && fail():
			w.WriteHeader(http.StatusServiceUnavailable)
		case cfg.FailKind == Fail500 && fail():
			w.WriteHeader(http.StatusInternalServerError)
		default:
			io.WriteString(w, "ok")
		}
	})
	next = counting(&hits[k-1], next)
	var refuse func() bool
	if cfg.FailKind == FailRefused {
		refuse = func() bool {
			if fail() {
				hits[k-1]++ // load on the bottom all the same
				return true
			}
			return false
		}
	}
	// The calling tiers, from the bottom up. Like a network, a hop carries
	// the header and nothing of the caller's context (but its
	// cancellation), so each tier's heed sees a fresh call, as across
	// processes.
	for i := k - 2; i >= 0; i-- {
		h := &hop{clk: clk, rtt: cfg.Latency, handler: next, middleware: st.wrap != nil && i+1 < k-1, refuse: refuse}
		refuse = nil
		c, err := st.client(h, clk, vclock.Rand(cfg.Seed, uint64(1000*k+i)))
		if err != nil {
			return Point{}, err
		}
		var th http.Handler = forward(c)
		if st.wrap != nil {
			th = st.wrap(th)
		}
		next = counting(&hits[i], th)
	}
	top := &http.Client{Transport: &hop{clk: clk, rtt: cfg.Latency, handler: next, middleware: st.wrap != nil}}
	ok := 0
	took := make([]time.Duration, cfg.Requests)
	for r := range cfg.Requests {
		clk.Go(func() {
			clock.Sleep(clk, time.Duration(r)*cfg.Interval, nil)
			start := clk.Now()
			req, _ := http.NewRequest(http.MethodGet, "http://tier0.test/", nil)
			if cfg.Deadline > 0 {
				s := newScope(clk, nil, start.Add(cfg.Deadline))
				defer s.cancel(nil)
				req = req.WithContext(&simCtx{Context: s.ctx, s: s, deadline: s.expiry})
				req.Header.Set(tier.HeaderTimeout, timeoutHeader(cfg.Deadline))
			}
			resp, err := top.Do(req)
			good := false
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				good = resp.StatusCode == http.StatusOK
			}
			took[r] = clk.Now().Sub(start)
			if cfg.Deadline > 0 && took[r] >= cfg.Deadline {
				took[r], good = cfg.Deadline, false // the client gave up
			}
			if good {
				ok++ // one actor runs at a time
			}
		})
	}
	if err := clk.Run(ctx, 0, nil); err != nil {
		return Point{}, err
	}
	slices.Sort(took)
	p99 := took[int(math.Ceil(0.99*float64(len(took))))-1]
	return Point{Strategy: st.Name, Tiers: k, FailKind: cfg.FailKind, FailRate: rate, Hits: hits, OK: ok, Max: took[len(took)-1], P99: p99}, nil
}

func counting(n *int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*n++ // one actor runs at a time
		h.ServeHTTP(w, r)
	})
}

// forward calls the next tier for each request and relays its answer; a
// failed call becomes a 502, as a gateway's would.
func forward(c *http.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://next.test/", nil)
		resp, err := c.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

// rateText is a fail rate as a percentage: "50%", "12.5%".
func rateText(r float64) string {
	return strings.TrimSuffix(fmt.Sprintf("%.1f", 100*r), ".0") + "%"
}
