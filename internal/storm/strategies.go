package storm

import (
	"io"
	"net/http"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/hint"
)

// baseTransport is a fresh connection pool sized for the scenario, so a
// shared client does not churn connections.
func baseTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 100
	return t
}

// NoRetry is a plain client: one attempt per request.
func NoRetry() Strategy {
	return Strategy{Name: "no retries", NewClient: func(base http.RoundTripper) (*http.Client, error) {
		return &http.Client{Transport: base}, nil
	}}
}

// Naive is the hand-written loop: retry at once, up to 6 attempts, on any
// status but 2xx.
func Naive() Strategy {
	return Strategy{Name: "naive retry loop", NewClient: func(base http.RoundTripper) (*http.Client, error) {
		return &http.Client{Transport: naiveRT{base, 6}}, nil
	}}
}

type naiveRT struct {
	next     http.RoundTripper
	attempts int
}

func (n naiveRT) RoundTrip(req *http.Request) (*http.Response, error) {
	var (
		resp *http.Response
		err  error
	)
	for i := range n.attempts {
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		resp, err = n.next.RoundTrip(req)
		if err == nil && resp.StatusCode/100 == 2 || i == n.attempts-1 {
			break
		}
	}
	return resp, err
}

// Heed is heed with its defaults (plus opts), shared by every caller or one
// per caller.
func Heed(name string, shared bool, opts ...heed.Option) Strategy {
	return Strategy{Name: name, Shared: shared, NewClient: func(base http.RoundTripper) (*http.Client, error) {
		o := append([]heed.Option{heed.WithBase(base), heed.WithLogger(nil)}, opts...)
		return heed.NewClient(o...)
	}}
}

// Exact is the retry loop written from scratch that the usual advice
// gives: on a 429 or 503 it sleeps exactly what Retry-After says (either
// form), with no jitter, else backs off 1, 2, 4... seconds, for up to 5
// retries. Clients told the same Retry-After come back together: the
// herd the header itself makes. clk nil is the real clock.
func Exact(clk clock.Clock) Strategy {
	if clk == nil {
		clk = clock.Real()
	}
	return Strategy{Name: "exact Retry-After, no jitter", NewClient: func(base http.RoundTripper) (*http.Client, error) {
		return &http.Client{Transport: exactRT{next: base, retries: 5, clock: clk}}, nil
	}}
}

type exactRT struct {
	next    http.RoundTripper
	retries int
	clock   clock.Clock
}

func (e exactRT) RoundTrip(req *http.Request) (*http.Response, error) {
	for i := 0; ; i++ {
		resp, err := e.next.RoundTrip(req)
		if err != nil || i == e.retries || resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
			return resp, err
		}
		wait, ok := hint.RetryAfter(resp.Header, e.clock.Now())
		if !ok {
			wait = time.Duration(1<<i) * time.Second
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !clock.Sleep(e.clock, wait, req.Context().Done()) {
			return nil, req.Context().Err()
		}
	}
}
