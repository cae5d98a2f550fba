package storm

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/internal/chain"
)

// Scenario is C clients each needing M successful GETs.
type Scenario struct {
	Server    ServerConfig
	Clients   int
	PerClient int
}

// Default is the public scenario: 50 clients x 10 GETs against DefaultServer.
var Default = Scenario{Server: DefaultServer, Clients: 50, PerClient: 10}

// Optimal is the shortest possible makespan: the burst at once, then one
// request per token.
func (s Scenario) Optimal() time.Duration {
	n := s.Clients * s.PerClient
	extra := max(0, n-s.Server.Burst)
	return time.Duration(float64(extra) / s.Server.Rate * float64(time.Second))
}

// Strategy is one way to call the API.
type Strategy struct {
	Name string
	// NewClient returns the client one caller uses, sending through base.
	// With Shared it is called once and every caller uses the same client,
	// as goroutines of one process would; otherwise once per caller, as
	// separate processes would.
	NewClient func(base http.RoundTripper) (*http.Client, error)
	Shared    bool
}

// Result is what one strategy achieved.
type Result struct {
	Name                string
	Succeeded, Failed   int
	Attempts, Throttled int64 // as counted by the server
	Makespan, Optimal   time.Duration
}

// AttemptsPerSuccess is server-side attempts over successes.
func (r Result) AttemptsPerSuccess() float64 {
	if r.Succeeded == 0 {
		return 0
	}
	return float64(r.Attempts) / float64(r.Succeeded)
}

// OverOptimal is the makespan over the optimal makespan.
func (r Result) OverOptimal() float64 {
	if r.Optimal <= 0 {
		return 0
	}
	return r.Makespan.Seconds() / r.Optimal.Seconds()
}

// Run plays the scenario for one strategy against a fresh server on
// loopback. progress, if not nil, is called with the number of finished
// requests after each.
func Run(ctx context.Context, sc Scenario, st Strategy, progress func(done int)) (Result, error) {
	srv, err := NewServer(sc.Server)
	if err != nil {
		return Result{}, err
	}
	defer srv.Close()
	return play(ctx, sc, st, srv.API, srv.URL, func() http.RoundTripper { return baseTransport() }, progress)
}

// RunInMemory plays the scenario against the API served in memory, so it
// can run inside a testing/synctest bubble.
func RunInMemory(ctx context.Context, sc Scenario, st Strategy) (Result, error) {
	api, err := NewAPI(sc.Server)
	if err != nil {
		return Result{}, err
	}
	return play(ctx, sc, st, api, "http://storm.test/", func() http.RoundTripper { return chain.Memory{Handler: api, Latency: 100 * time.Microsecond} }, nil)
}

func play(ctx context.Context, sc Scenario, st Strategy, api *API, url string, base func() http.RoundTripper, progress func(int)) (Result, error) {
	clients := make([]*http.Client, sc.Clients)
	var err error
	for i := range clients {
		if st.Shared && i > 0 {
			clients[i] = clients[0]
			continue
		}
		if clients[i], err = st.NewClient(base()); err != nil {
			return Result{}, err
		}
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()

	clk := sc.Server.Clock
	if clk == nil {
		clk = clock.Real()
	}
	var ok, failed, done atomic.Int64
	var wg sync.WaitGroup
	start := clk.Now()
	for i := range sc.Clients {
		wg.Go(func() {
			for range sc.PerClient {
				if get(ctx, clients[i], url) {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
				if n := done.Add(1); progress != nil {
					progress(int(n))
				}
			}
		})
	}
	wg.Wait()
	return Result{
		Name:      st.Name,
		Succeeded: int(ok.Load()),
		Failed:    int(failed.Load()),
		Attempts:  api.Served() + api.Throttled(),
		Throttled: api.Throttled(),
		Makespan:  clk.Now().Sub(start),
		Optimal:   sc.Optimal(),
	}, ctx.Err()
}

// get makes one logical request and reports whether it succeeded.
func get(ctx context.Context, c *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK
}
