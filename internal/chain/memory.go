package chain

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"time"
)

// Memory is an http.RoundTripper that carries each request to a handler in
// memory, as a network would: the handler gets a fresh request with the
// method, URL, header and body, and a context that ends when the caller's
// does but carries none of its values, so a heed client in the handler
// sees a call of its own, as across processes. It starts no goroutines of
// its own beyond the context's, so a chain of them runs inside a
// testing/synctest bubble, in virtual time.
type Memory struct {
	Handler http.Handler
	// Latency is spent before and after the handler, as a network would.
	Latency time.Duration
}

// RoundTrip implements http.RoundTripper.
func (m Memory) RoundTrip(req *http.Request) (*http.Response, error) {
	if m.Latency > 0 {
		if !sleep(req.Context(), m.Latency) {
			return nil, context.Cause(req.Context())
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := context.AfterFunc(req.Context(), func() { cancel(context.Cause(req.Context())) })
	defer stop()
	var body io.Reader
	if req.Body != nil {
		body = req.Body
		defer req.Body.Close()
	}
	sreq := httptest.NewRequest(req.Method, req.URL.String(), body).WithContext(ctx)
	sreq.Header = req.Header.Clone()
	rec := httptest.NewRecorder()
	m.Handler.ServeHTTP(rec, sreq)
	resp := rec.Result()
	resp.Request = req
	if m.Latency > 0 && !sleep(req.Context(), m.Latency) {
		return nil, context.Cause(req.Context())
	}
	return resp, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// StartMemory builds the chain of c in memory, each tier calling the next
// through a Memory transport with the given latency, and returns the top
// tier's handler and the count of requests each tier received, top first.
// c.Client receives the Memory transport to the next tier as its base.
func StartMemory(c MemoryConfig) (top http.Handler, hits func() []int64) {
	counts := make([]atomic.Int64, c.Tiers)
	next := http.Handler(counting(&counts[c.Tiers-1], c.Bottom))
	for i := c.Tiers - 2; i >= 0; i-- {
		cl := c.Client(i, Memory{Handler: next, Latency: c.Latency})
		h := forward(cl, "http://tier"+strconv.Itoa(i+1)+".test/")
		if c.Wrap != nil {
			h = c.Wrap(h)
		}
		next = counting(&counts[i], h)
	}
	return next, func() []int64 {
		out := make([]int64, len(counts))
		for i := range counts {
			out[i] = counts[i].Load()
		}
		return out
	}
}

// MemoryConfig describes a chain in memory.
type MemoryConfig struct {
	Tiers   int
	Bottom  http.Handler
	Latency time.Duration
	// Client returns the client tier i (0 = top) calls tier i+1 with,
	// sending through base.
	Client func(tier int, base http.RoundTripper) *http.Client
	Wrap   func(http.Handler) http.Handler
}
