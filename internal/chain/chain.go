// Package chain is the amplification scenario of heed's design: K services
// in a row, each calling the next, the bottom one failing. It measures the
// load that reaches the bottom against the load that enters at the top.
package chain

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes a chain.
type Config struct {
	// Tiers is the number of services, the bottom one included (K >= 2).
	Tiers int
	// Bottom answers every request that reaches the bottom tier.
	Bottom http.Handler
	// Client returns the client tier i (0 = top) uses to call tier i+1.
	Client func(tier int) *http.Client
	// Wrap, if set, wraps each calling tier's handler (tier.Middleware).
	Wrap func(http.Handler) http.Handler
}

// Chain is a running chain of loopback servers.
type Chain struct {
	URL     string // the top tier
	servers []*httptest.Server
	clients []*http.Client
	hits    []atomic.Int64
}

// Start starts the chain's servers on 127.0.0.1.
func Start(c Config) *Chain {
	ch := &Chain{hits: make([]atomic.Int64, c.Tiers)}
	ch.servers = make([]*httptest.Server, c.Tiers)
	next := ""
	for i := c.Tiers - 1; i >= 0; i-- {
		var h http.Handler
		if i == c.Tiers-1 {
			h = c.Bottom
		} else {
			cl := c.Client(i)
			ch.clients = append(ch.clients, cl)
			h = forward(cl, next)
			if c.Wrap != nil {
				h = c.Wrap(h)
			}
		}
		ch.servers[i] = loopback(counting(&ch.hits[i], h))
		next = ch.servers[i].URL
	}
	ch.URL = ch.servers[0].URL
	return ch
}

// Close stops the servers and closes idle connections.
func (ch *Chain) Close() {
	for _, c := range ch.clients {
		c.CloseIdleConnections()
	}
	for _, s := range ch.servers {
		s.Close()
	}
}

// Hits returns the requests each tier received, top first.
func (ch *Chain) Hits() []int64 {
	out := make([]int64, len(ch.hits))
	for i := range ch.hits {
		out[i] = ch.hits[i].Load()
	}
	return out
}

// Amplification is the load at the bottom over the load at the top.
func (ch *Chain) Amplification() float64 {
	h := ch.Hits()
	if h[0] == 0 {
		return 0
	}
	return float64(h[len(h)-1]) / float64(h[0])
}

func loopback(h http.Handler) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("chain: no loopback listener: " + err.Error())
	}
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	return s
}

func counting(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// forward calls next with the request's context and relays the answer; a
// failed call becomes a 502.
func forward(c *http.Client, next string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, next, nil)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
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

// Load sends n GETs to url from workers goroutines, each with the given
// timeout, and counts the 200s.
func Load(ctx context.Context, url string, n, workers int, timeout time.Duration) (ok int) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		good atomic.Int64
	)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer c.CloseIdleConnections()
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				rctx, cancel := context.WithTimeout(ctx, timeout)
				req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						good.Add(1)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	return int(good.Load())
}

// Plain is the retry loop of a tier without heed: up to attempts attempts,
// at once, on any transport error or status of 500 and above.
type Plain struct {
	Next     http.RoundTripper
	Attempts int
}

func (p Plain) RoundTrip(req *http.Request) (*http.Response, error) {
	var (
		resp *http.Response
		err  error
	)
	for i := range p.Attempts {
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		resp, err = p.Next.RoundTrip(req)
		if err == nil && resp.StatusCode < 500 || i == p.Attempts-1 || req.Context().Err() != nil {
			break
		}
	}
	return resp, err
}
