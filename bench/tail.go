package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// TailScenario is the public tail-latency scenario: a server whose latency
// is Fast for most requests and Slow for a SlowShare of them, drawn
// independently per request, called Requests times by Callers goroutines.
type TailScenario struct {
	Fast, Slow time.Duration
	SlowShare  float64
	Requests   int
	Callers    int
	Seed       uint64
}

// Tail is the scenario BenchmarkTail runs: 5 ms for 95% of requests,
// 200 ms for the other 5%; 2,000 requests from 16 goroutines.
var Tail = TailScenario{Fast: 5 * time.Millisecond, Slow: 200 * time.Millisecond, SlowShare: 0.05, Requests: 2000, Callers: 16, Seed: 1}

// TailResult is what one contender got.
type TailResult struct {
	Latencies []time.Duration // of the requests that succeeded, sorted
	Failed    int
	Sent      int64 // requests the server received
}

// Quantile returns the q-quantile of the latencies (nearest rank).
func (r TailResult) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(r.Latencies))+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// Extra is the share of requests sent beyond one per logical request.
func (r TailResult) Extra(requests int) float64 {
	return float64(r.Sent-int64(requests)) / float64(requests)
}

// RunTail runs sc against a fresh loopback server with the client that
// newClient builds on base, a fresh pooled transport.
func RunTail(ctx context.Context, sc TailScenario, newClient func(base http.RoundTripper) (*http.Client, error)) (TailResult, error) {
	var (
		sent atomic.Int64
		mu   sync.Mutex
		rng  = rand.New(rand.NewPCG(sc.Seed, sc.Seed+1))
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		mu.Lock()
		d := sc.Fast
		if rng.Float64() < sc.SlowShare {
			d = sc.Slow
		}
		mu.Unlock()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			io.WriteString(w, `{"ok":true}`)
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	base := &http.Transport{MaxIdleConnsPerHost: 4 * sc.Callers, IdleConnTimeout: time.Minute}
	defer base.CloseIdleConnections()
	client, err := newClient(base)
	if err != nil {
		return TailResult{}, err
	}

	var (
		next    atomic.Int64
		lats    = make([]time.Duration, 0, sc.Requests)
		failed  int
		latMu   sync.Mutex
		wg      sync.WaitGroup
		firstMu sync.Mutex
		first   error
	)
	for range sc.Callers {
		wg.Go(func() {
			for next.Add(1) <= int64(sc.Requests) {
				start := time.Now()
				err := get(ctx, client, srv.URL)
				took := time.Since(start)
				latMu.Lock()
				if err != nil {
					failed++
				} else {
					lats = append(lats, took)
				}
				latMu.Unlock()
				if err != nil {
					firstMu.Lock()
					first = cmpErr(first, err)
					firstMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return TailResult{}, ctx.Err()
	}
	slices.Sort(lats)
	r := TailResult{Latencies: lats, Failed: failed, Sent: sent.Load()}
	if failed > 0 {
		return r, fmt.Errorf("%d of %d requests failed, the first with: %w", failed, sc.Requests, first)
	}
	return r, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
