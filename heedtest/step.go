package heedtest

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/heed-go/heed/clock"
)

// Step is one scripted answer. The zero Step answers 200 with an empty body.
//
// A step first waits for Delay. Then, if Hang, Reset or Truncate is set, the
// first of them in that order decides what happens; otherwise the server
// answers Status with Header and Body. Handler, if set, replaces all of
// this.
type Step struct {
	// Status is the response status code; 0 means 200.
	Status int
	// Header holds extra response header fields. Content-Length and
	// Transfer-Encoding are set by the server and override any given here.
	Header http.Header
	// Body is the response body.
	Body string
	// Delay is how long to wait before answering, on the clock given by
	// DelayOn, else in real time. The wait ends early, without an answer,
	// when the client gives up or the server is closed.
	Delay time.Duration
	// Hang makes the step never answer: it returns only when the client
	// gives up (the request's context is done) or the server is closed.
	Hang bool
	// Reset aborts the connection with a TCP reset instead of answering; the
	// client sees "connection reset by peer" (syscall.ECONNRESET).
	//
	// Beware that net/http.Transport itself retries, once and at once, a
	// request that fails this way on a reused keep-alive connection when
	// the request is replayable: a GET, HEAD, OPTIONS or TRACE, or any
	// request with an Idempotency-Key or X-Idempotency-Key header, whose
	// body is empty or has a GetBody. That retry is a new request and takes
	// the next step. A request on a new connection is never retried this
	// way, nor is a plain POST.
	Reset bool
	// Truncate promises len(Body) bytes (Content-Length) but sends only the
	// first len(Body)/2 and then closes the connection, so the client's
	// read of the body fails with io.ErrUnexpectedEOF. With an empty Body
	// nothing is missing and the answer looks complete.
	Truncate bool
	// Chunked sends Body with chunked transfer encoding, without a
	// Content-Length; the client sees a ContentLength of -1. With Truncate,
	// the connection closes after a chunk holding the first half of Body,
	// before the final zero-length chunk, and the client's read fails with
	// io.ErrUnexpectedEOF.
	Chunked bool
	// Handler, if set, serves the request itself; the other fields are
	// ignored. The request's body can be read again: it holds what the
	// client sent, which is also recorded. Server.Close cancels the
	// request's context and waits for Handler to return; a Handler that
	// hijacks the connection must close it itself.
	Handler http.HandlerFunc
}

// Status returns a step answering code with an empty body.
func Status(code int) Step { return Step{Status: code} }

// RetryAfter returns a step answering code with a Retry-After header of
// seconds, as delta-seconds.
func RetryAfter(code int, seconds int) Step {
	return Step{Status: code, Header: http.Header{"Retry-After": {strconv.Itoa(seconds)}}}
}

// RetryAfterDate returns a step answering code with a Retry-After header
// naming the time at as an HTTP-date (IMF-fixdate, [net/http.TimeFormat]).
// The date has a resolution of one second; at is converted to UTC.
func RetryAfterDate(code int, at time.Time) Step {
	return Step{Status: code, Header: http.Header{"Retry-After": {at.UTC().Format(http.TimeFormat)}}}
}

// OK returns a step answering 200 with body.
func OK(body string) Step { return Step{Status: http.StatusOK, Body: body} }

func (s Step) status() int {
	if s.Status == 0 {
		return http.StatusOK
	}
	return s.Status
}

// Option configures a [Server] or a [Transport].
type Option func(*options)

type options struct {
	clock clock.Clock
}

// DelayOn makes steps wait out their Delay on c, for example a [*Clock],
// instead of in real time.
func DelayOn(c clock.Clock) Option {
	return func(o *options) { o.clock = c }
}

func buildOptions(opts []Option) options {
	o := options{clock: clock.Real()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clock == nil {
		o.clock = clock.Real()
	}
	return o
}

// Request is what a [Server] or [Transport] received.
type Request struct {
	Method string
	// URL is the path and query, as received.
	URL string
	// Header is a copy of the request's header fields.
	Header http.Header
	// Body is the full request body, read before the step was applied.
	Body []byte
	// Step is the index of the step that answered. Once the script is used
	// up it stays at the last index; it is 0 for an empty script.
	Step int
}

func (r Request) clone() Request {
	r.Header = r.Header.Clone()
	r.Body = bytes.Clone(r.Body)
	return r
}

// script hands out steps in order and records the requests they answer. It
// is safe for concurrent use.
type script struct {
	steps []Step // never empty

	mu   sync.Mutex
	reqs []Request
}

func newScript(steps []Step) *script {
	s := &script{steps: make([]Step, len(steps))}
	for i, st := range steps {
		st.Header = st.Header.Clone()
		s.steps[i] = st
	}
	if len(s.steps) == 0 {
		s.steps = []Step{{}}
	}
	return s
}

// next records a request and returns the step that answers it.
func (s *script) next(method, uri string, h http.Header, body []byte) Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(len(s.reqs), len(s.steps)-1)
	s.reqs = append(s.reqs, Request{
		Method: method,
		URL:    uri,
		Header: h.Clone(),
		Body:   body,
		Step:   i,
	})
	return s.steps[i]
}

func (s *script) requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = r.clone()
	}
	return out
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// bodyAllowed reports whether a response with status code may have a body,
// as in RFC 9110: not 1xx, 204 or 304.
func bodyAllowed(code int) bool {
	switch {
	case code >= 100 && code <= 199:
		return false
	case code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	}
	return true
}

// responseHeader returns the step's header fields in canonical form.
func (s Step) responseHeader() http.Header {
	h := make(http.Header, len(s.Header)+1)
	for k, vs := range s.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	h.Del("Content-Length")
	h.Del("Transfer-Encoding")
	return h
}
