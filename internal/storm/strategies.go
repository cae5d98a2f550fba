package storm

import (
	"io"
	"net/http"

	"github.com/heed-go/heed"
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
