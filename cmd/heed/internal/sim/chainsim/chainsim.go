// Package chainsim is retry amplification in virtual time: K services in
// a row, each calling the next through its retry policy, the bottom one
// failing. It counts the requests that reach each tier for one that enters
// the top. Each tier is heed's real Transport (or a plain retry loop) and
// heed's real Middleware, on a vclock.Clock; the services run in one
// process but share nothing a network would not carry.
package chainsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/cmd/heed/internal/sim/choose"
	"github.com/heed-go/heed/cmd/heed/internal/sim/vclock"
	"github.com/heed-go/heed/internal/chain"
)

// Config is one chain experiment.
type Config struct {
	// Tiers lists the chain lengths K to simulate (2 to 10).
	Tiers []int
	// FailRate is the share of requests the bottom tier fails (503), 1 for
	// all of them.
	FailRate float64
	// Requests enter the top, Interval apart.
	Requests int
	Interval time.Duration
	// Latency is each hop's round trip. Default 1 ms.
	Latency    time.Duration
	Seed       uint64
	Strategies []Strategy
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	switch {
	case len(c.Tiers) == 0:
		return errors.New("no chain length")
	case slices.ContainsFunc(c.Tiers, func(k int) bool { return k < 2 || k > 10 }):
		return fmt.Errorf("tiers %v: each must be 2 to 10", c.Tiers)
	case !(c.FailRate >= 0 && c.FailRate <= 1):
		return fmt.Errorf("fail rate %v: want 0 to 1", c.FailRate)
	case c.Requests < 1 || c.Requests > 100_000:
		return fmt.Errorf("requests %d: want 1 to 100,000", c.Requests)
	case c.Interval < 0 || c.Latency < 0:
		return errors.New("interval and latency must not be negative")
	case len(c.Strategies) == 0:
		return errors.New("no strategy")
	}
	return nil
}

// Strategy is the retry policy every tier uses.
type Strategy struct {
	Name string
	// client returns the client a tier calls the next one with.
	client func(base http.RoundTripper, clk clock.Clock, rng *rand.Rand) (*http.Client, error)
	// wrap, if set, wraps each calling tier's handler (heed.Middleware).
	wrap func(http.Handler) http.Handler
}

// Strategies returns every strategy, by name: one retry per tier (the
// seed's example), heed's defaults without the retry budget and the
// cross-tier protocol (a breaker per tier remains), and heed's defaults.
func Strategies() []Strategy {
	heedClient := func(opts ...heed.Option) func(http.RoundTripper, clock.Clock, *rand.Rand) (*http.Client, error) {
		return func(base http.RoundTripper, clk clock.Clock, rng *rand.Rand) (*http.Client, error) {
			return heed.NewClient(append([]heed.Option{heed.WithBase(base), heed.WithLogger(nil), heed.WithClock(clk), heed.WithRand(rng)}, opts...)...)
		}
	}
	return []Strategy{
		{Name: "one-retry", client: func(base http.RoundTripper, _ clock.Clock, _ *rand.Rand) (*http.Client, error) {
			return &http.Client{Transport: chain.Plain{Next: base, Attempts: 2}}, nil
		}},
		{Name: "heed-no-budget", client: heedClient(heed.WithoutRetryBudget(), heed.WithTierHeaders(false))},
		{Name: "heed", client: heedClient(), wrap: heed.Middleware},
	}
}

// ParseStrategies picks strategies by name, comma-separated; "all" is
// every one.
func ParseStrategies(s string) ([]Strategy, error) {
	return choose.Pick(Strategies(), func(st Strategy) string { return st.Name }, s, "chain strategy")
}

// Point is one strategy on one chain length.
type Point struct {
	Strategy string
	Tiers    int
	Hits     []int64 // requests each tier received, top first
	OK       int     // requests into the top answered 200
}

// Amplification is the load at the bottom over the load at the top.
func (p Point) Amplification() float64 {
	if p.Hits[0] == 0 {
		return 0
	}
	return float64(p.Hits[len(p.Hits)-1]) / float64(p.Hits[0])
}

// Run simulates every strategy on every chain length; progress reports the
// points done.
func Run(ctx context.Context, cfg Config, progress func(done, total int)) ([]Point, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Latency == 0 {
		cfg.Latency = time.Millisecond
	}
	var out []Point
	total := len(cfg.Strategies) * len(cfg.Tiers)
	for _, st := range cfg.Strategies {
		for _, k := range cfg.Tiers {
			p, err := run(ctx, cfg, st, k)
			if err != nil {
				return nil, fmt.Errorf("%s, %d tiers: %w", st.Name, k, err)
			}
			out = append(out, p)
			if progress != nil {
				progress(len(out), total)
			}
		}
	}
	return out, nil
}

func run(ctx context.Context, cfg Config, st Strategy, k int) (Point, error) {
	clk := vclock.New()
	hits := make([]int64, k)
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(k)))
	// The bottom tier.
	var next http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.FailRate >= 1 || rng.Float64() < cfg.FailRate {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	next = counting(&hits[k-1], next)
	// The calling tiers, from the bottom up.
	for i := k - 2; i >= 0; i-- {
		// Like a network, a hop carries the header and nothing of the
		// caller's context, so each tier's heed sees a fresh call, as
		// across processes.
		c, err := st.client(&vclock.Network{Clock: clk, RTT: cfg.Latency, Handler: next, Detach: true}, clk, rand.New(rand.NewPCG(cfg.Seed, uint64(1000*k+i))))
		if err != nil {
			return Point{}, err
		}
		var h http.Handler = forward(c)
		if st.wrap != nil {
			h = st.wrap(h)
		}
		next = counting(&hits[i], h)
	}
	top := &http.Client{Transport: &vclock.Network{Clock: clk, RTT: cfg.Latency, Handler: next, Detach: true}}
	ok := 0
	for r := range cfg.Requests {
		clk.Go(func() {
			clock.Sleep(clk, time.Duration(r)*cfg.Interval, nil)
			resp, err := top.Get("http://tier0.test/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok++ // one actor runs at a time
				}
			}
		})
	}
	if err := clk.Run(ctx, 0, nil); err != nil {
		return Point{}, err
	}
	return Point{Strategy: st.Name, Tiers: k, Hits: hits, OK: ok}, nil
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

// WriteTable prints, for every strategy against K, the amplification (the
// load at the bottom over the load at the top) and the share of requests
// into the top that succeeded.
func WriteTable(w io.Writer, cfg Config, ps []Point) error {
	fmt.Fprintf(w, "%d requests into the top, %v apart; the bottom fails %.0f%% of its requests\n", cfg.Requests, cfg.Interval, cfg.FailRate*100)
	fmt.Fprintf(w, "amplification = load at the bottom / load at the top; ok = requests into the top that succeeded\n\n")
	var names []string
	for _, p := range ps {
		if !slices.Contains(names, p.Strategy) {
			names = append(names, p.Strategy)
		}
	}
	fmt.Fprintf(w, "%3s", "K")
	for _, n := range names {
		fmt.Fprintf(w, " %16s %6s", n, "ok")
	}
	fmt.Fprintf(w, " %8s\n", "2^(K-1)")
	for _, k := range cfg.Tiers {
		fmt.Fprintf(w, "%3d", k)
		for _, n := range names {
			i := slices.IndexFunc(ps, func(p Point) bool { return p.Strategy == n && p.Tiers == k })
			fmt.Fprintf(w, " %16s %5.1f%%", amp(ps[i].Amplification()), 100*float64(ps[i].OK)/float64(ps[i].Hits[0]))
		}
		fmt.Fprintf(w, " %8d\n", 1<<(k-1))
	}
	return nil
}

func amp(a float64) string {
	if a >= 100 {
		return fmt.Sprintf("%.0f", a)
	}
	return fmt.Sprintf("%.3f", a)
}

// WriteCSV writes one row per strategy and chain length.
func WriteCSV(w io.Writer, ps []Point) error {
	if _, err := fmt.Fprintln(w, "strategy,tiers,top,bottom,amplification,ok"); err != nil {
		return err
	}
	for _, p := range ps {
		if _, err := fmt.Fprintf(w, "%s,%d,%d,%d,%.6f,%d\n", p.Strategy, p.Tiers, p.Hits[0], p.Hits[len(p.Hits)-1], p.Amplification(), p.OK); err != nil {
			return err
		}
	}
	return nil
}
