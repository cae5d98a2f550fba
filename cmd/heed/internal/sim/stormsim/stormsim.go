// Package stormsim is the public 429 storm (50 clients x 10 GETs against
// an API that allows 100 requests a second with a burst of 10, answering
// 429 with Retry-After) in virtual time: a token-bucket API and C clients
// x M requests, each client driven
// by heed's real Transport (or by a plain strategy for comparison), on a
// vclock.Clock shared by the server and the clients. Nothing is modelled:
// the same code that runs over loopback in heed's benchmarks runs here,
// one request at a time, and a storm of 10,000 clients takes seconds.
package stormsim

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/cmd/heed/internal/sim/choose"
	"github.com/heed-go/heed/cmd/heed/internal/sim/vclock"
	"github.com/heed-go/heed/hint"
	"github.com/heed-go/heed/internal/storm"
)

// Config is one storm.
type Config struct {
	storm.Scenario
	// Latency is the network's round trip. Default 1 ms.
	Latency time.Duration
	// Seed seeds every client's randomness (jitter), one stream per client.
	Seed uint64
	// Strategies to run, each against a fresh server.
	Strategies []Strategy
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Clients < 1 || c.Clients > 1_000_000:
		return fmt.Errorf("clients %d: want 1 to 1,000,000", c.Clients)
	case c.PerClient < 1 || c.PerClient > 100_000:
		return fmt.Errorf("requests %d: want 1 to 100,000 per client", c.PerClient)
	case !(c.Server.Rate > 0) || math.IsInf(c.Server.Rate, 0) || c.Server.Rate > 1e6:
		return fmt.Errorf("rate %v: want a positive rate up to 1e6 requests a second", c.Server.Rate)
	case c.Server.Burst < 1:
		return fmt.Errorf("burst %d: want at least 1", c.Server.Burst)
	case c.Latency < 0 || c.Latency > time.Minute:
		return fmt.Errorf("latency %v: want 0 to 1m", c.Latency)
	case len(c.Strategies) == 0:
		return errors.New("no strategy")
	}
	return nil
}

// Strategy is one way for the clients to call the API.
type Strategy struct {
	Name string
	// Shared: one client for every caller (goroutines of one process),
	// else a client per caller (processes sharing nothing).
	Shared bool
	// client returns a caller's client sending through base, sleeping on
	// clk and drawing from rng.
	client func(base http.RoundTripper, clk clock.Clock, rng *rand.Rand) (*http.Client, error)
}

// The plain strategies are the recipes a typical guide to handling HTTP
// 429 gives: at most 6 attempts (5 retries), exponential backoff from 1 s
// capped at 60 s, with or without jitter, honouring Retry-After or not.
const (
	plainAttempts = 6
	plainBase     = time.Second
	plainCap      = 60 * time.Second
	raJitter      = 2 * time.Second // Retry-After plus a random 0-2 s, so clients told the same second spread out
)

// Strategies returns every strategy, by name.
func Strategies() []Strategy {
	plain := func(name string, wait func(n int, ra time.Duration, hasRA bool, rng *rand.Rand) time.Duration) Strategy {
		return Strategy{Name: name, client: func(base http.RoundTripper, clk clock.Clock, rng *rand.Rand) (*http.Client, error) {
			return &http.Client{Transport: &plainRT{next: base, clk: clk, rng: rng, wait: wait}}, nil
		}}
	}
	expo := func(n int) time.Duration { return min(plainCap, plainBase<<min(n, 20)) }
	heedStrategy := func(name string, shared bool) Strategy {
		return Strategy{Name: name, Shared: shared, client: func(base http.RoundTripper, clk clock.Clock, rng *rand.Rand) (*http.Client, error) {
			return heed.NewClient(heed.WithBase(base), heed.WithLogger(nil), heed.WithClock(clk), heed.WithRand(rng))
		}}
	}
	return []Strategy{
		{Name: "no-retry", client: func(base http.RoundTripper, _ clock.Clock, _ *rand.Rand) (*http.Client, error) {
			return &http.Client{Transport: base}, nil
		}},
		plain("exponential", func(n int, _ time.Duration, _ bool, _ *rand.Rand) time.Duration { return expo(n) }),
		plain("full-jitter", func(n int, _ time.Duration, _ bool, rng *rand.Rand) time.Duration {
			return time.Duration(rng.Float64() * float64(expo(n)))
		}),
		plain("retry-after", func(n int, ra time.Duration, hasRA bool, _ *rand.Rand) time.Duration {
			if hasRA {
				return ra
			}
			return expo(n)
		}),
		plain("retry-after-jitter", func(n int, ra time.Duration, hasRA bool, rng *rand.Rand) time.Duration {
			if hasRA {
				return ra + time.Duration(rng.Float64()*float64(raJitter))
			}
			return time.Duration(rng.Float64() * float64(expo(n)))
		}),
		heedStrategy("heed-shared", true),
		heedStrategy("heed", false),
	}
}

// ParseStrategies picks strategies by name, comma-separated; "all" is
// every one.
func ParseStrategies(s string) ([]Strategy, error) {
	return choose.Pick(Strategies(), func(st Strategy) string { return st.Name }, s, "storm strategy")
}

// plainRT retries 429s and 5xx by a wait function of the retry number
// (from 0) and the response's Retry-After.
type plainRT struct {
	next http.RoundTripper
	clk  clock.Clock
	rng  *rand.Rand
	wait func(n int, ra time.Duration, hasRA bool, rng *rand.Rand) time.Duration
}

func (p *plainRT) RoundTrip(req *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		resp, err := p.next.RoundTrip(req)
		if err != nil || resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests || n == plainAttempts-1 {
			return resp, err
		}
		ra, hasRA := time.Duration(0), false
		if v := resp.Header.Get("Retry-After"); v != "" {
			if d, err := hint.ParseRetryAfter(v, p.clk.Now()); err == nil {
				ra, hasRA = d, true
			}
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		clock.Sleep(p.clk, p.wait(n, ra, hasRA, p.rng), nil)
	}
}

// Result is one strategy's storm.
type Result struct {
	storm.Result
	// Sent holds the virtual time of every attempt the server saw, from
	// the start, for the attempts-over-time chart.
	Sent []time.Duration
}

// Run plays the storm for each strategy, progress reporting the requests
// finished so far of every strategy in all.
func Run(ctx context.Context, cfg Config, progress func(done, total int)) ([]Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Latency == 0 {
		cfg.Latency = time.Millisecond
	}
	total := len(cfg.Strategies) * cfg.Clients * cfg.PerClient
	var out []Result
	for i, st := range cfg.Strategies {
		r, err := run(ctx, cfg, st, func(done int) {
			if progress != nil {
				progress(i*cfg.Clients*cfg.PerClient+done, total)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func run(ctx context.Context, cfg Config, st Strategy, progress func(done int)) (Result, error) {
	clk := vclock.New()
	srv := cfg.Server
	srv.Clock = clk
	api, err := storm.NewAPI(srv)
	if err != nil {
		return Result{}, err
	}
	var sent []time.Duration
	base := &vclock.Network{Clock: clk, RTT: cfg.Latency, Handler: api, Arrived: func() { sent = append(sent, clk.Elapsed()) }}
	clients := make([]*http.Client, cfg.Clients)
	for i := range clients {
		if st.Shared && i > 0 {
			clients[i] = clients[0]
			continue
		}
		rng := vclock.Rand(cfg.Seed, uint64(i))
		if clients[i], err = st.client(base, clk, rng); err != nil {
			return Result{}, err
		}
	}
	var ok, failed, done int // actors run one at a time: no locks needed
	for i := range cfg.Clients {
		clk.Go(func() {
			for range cfg.PerClient {
				if get(clients[i]) {
					ok++
				} else {
					failed++
				}
				done++
				if done%256 == 0 && progress != nil {
					progress(done)
				}
			}
		})
	}
	if err := clk.Run(ctx, 0, nil); err != nil {
		return Result{}, err
	}
	if progress != nil {
		progress(done)
	}
	return Result{
		Result: storm.Result{
			Name: st.Name, Succeeded: ok, Failed: failed,
			Attempts: api.Served() + api.Throttled(), Throttled: api.Throttled(),
			Makespan: clk.Elapsed(), Optimal: cfg.Optimal(),
		},
		Sent: sent,
	}, nil
}

func get(c *http.Client) bool {
	resp, err := c.Get("http://storm.test/v1/items")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK
}

// WriteCSV writes the results, one row per strategy. over_optimal is
// empty for a strategy that lost requests, as in the table: its makespan
// is not a time to do the work.
func WriteCSV(w io.Writer, cfg Config, rs []Result) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"strategy", "clients", "requests", "rate", "burst", "succeeded", "failed", "attempts", "throttled",
		"attempts_per_success", "makespan_s", "optimal_s", "over_optimal"})
	for _, r := range rs {
		over := ""
		if r.Failed == 0 {
			over = strconv.FormatFloat(r.OverOptimal(), 'f', 4, 64)
		}
		cw.Write([]string{r.Name, strconv.Itoa(cfg.Clients), strconv.Itoa(cfg.PerClient),
			strconv.FormatFloat(cfg.Server.Rate, 'f', -1, 64), strconv.Itoa(cfg.Server.Burst),
			strconv.Itoa(r.Succeeded), strconv.Itoa(r.Failed), strconv.FormatInt(r.Attempts, 10), strconv.FormatInt(r.Throttled, 10),
			strconv.FormatFloat(r.AttemptsPerSuccess(), 'f', 4, 64), strconv.FormatFloat(r.Makespan.Seconds(), 'f', 3, 64),
			strconv.FormatFloat(r.Optimal.Seconds(), 'f', 3, 64), over})
	}
	cw.Flush()
	return cw.Error()
}
