package storm

import (
	"io"
	"net/http"
	"net/http/httptest"
	"time"
)

// InMemory is an http.RoundTripper that serves requests with a handler in
// the caller's goroutine, with no network: the storm then runs inside a
// testing/synctest bubble, in virtual time.
type InMemory struct {
	Handler http.Handler
	// Latency is added before and after the handler, as a network would.
	Latency time.Duration
}

// RoundTrip implements http.RoundTripper.
func (m InMemory) RoundTrip(req *http.Request) (*http.Response, error) {
	if m.Latency > 0 {
		time.Sleep(m.Latency)
		defer time.Sleep(m.Latency)
	}
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	rec := httptest.NewRecorder()
	m.Handler.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}
