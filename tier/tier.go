// Package tier is the server side of heed's cross-tier protocol, which
// keeps retries from multiplying through a chain of services: only the
// tier closest to a failure retries it, and no tier waits past its
// caller's deadline.
//
// A heed client sends [HeaderAttempt] on its retries and [HeaderTimeout]
// when its call has a deadline. [Middleware] reads them on the server: the
// handler's context gets the caller's deadline, and the handler's own heed
// calls make a single attempt when the caller is retrying. When one of the
// handler's heed calls gives up on its dependency, Middleware marks the
// handler's error response with [HeaderRetried], and a heed caller does not
// retry it again.
//
// The package needs nothing but the standard library; servers that are not
// heed clients may use it to read the headers.
package tier

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/heed-go/heed/internal/tierctx"
)

// The protocol's headers.
const (
	// HeaderAttempt carries the number of a retry attempt (2, 3, ...). A
	// first attempt does not carry it.
	HeaderAttempt = tierctx.Attempt
	// HeaderTimeout carries the caller's remaining deadline, in whole
	// milliseconds rounded up, when the call has one; 0 says it has passed.
	HeaderTimeout = tierctx.Timeout
	// HeaderRetried marks an error response of a tier that gave up on its
	// own dependency: the failure is below it and was already retried
	// there. Its value names why: exhausted, budget, breaker, deadline,
	// wait, not_retryable, canceled.
	HeaderRetried = tierctx.Retried
)

// maxPropagatedTimeout bounds a deadline read from Heed-Timeout.
const maxPropagatedTimeout = 24 * time.Hour

// Middleware makes a server a tier of the cross-tier protocol. It reads the
// caller's Heed-Timeout and sets it as the request context's deadline, so
// the handler's own heed calls never wait beyond the caller's deadline. When
// the request is a retry (Heed-Attempt of 2 or more), the handler's heed
// calls make a single attempt each: the caller is already retrying. And
// when one of the handler's heed calls gives up on its dependency (retries
// exhausted, budget refused, breaker open, ...), Middleware marks the
// handler's error response (status 400 or above) with Heed-Retried, so a
// heed caller does not retry it again: only the tier closest to the failure
// retries.
//
// Requests without the headers, from clients that are not heed, pass
// through unchanged.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if d, ok := parseTimeout(r.Header.Get(HeaderTimeout)); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		if n, err := strconv.Atoi(r.Header.Get(HeaderAttempt)); err == nil && n >= 2 {
			ctx = context.WithValue(ctx, tierctx.CallKey{}, tierctx.Above{}) // a retry loop above: heed calls below make one attempt
		}
		tw := &writer{ResponseWriter: w} // with the State, one allocation
		tw.state.Context = ctx
		next.ServeHTTP(tw, r.WithContext(&tw.state))
	})
}

// parseTimeout reads a Heed-Timeout value: whole milliseconds, capped at a
// day. Zero or less says the caller's deadline has passed (heed rounds the
// time left up, so any time at all reads as 1 or more): the deadline is
// now. Anything that is not an integer is ignored.
func parseTimeout(v string) (time.Duration, bool) {
	if v == "" || len(v) > 12 {
		return 0, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false
	}
	return min(time.Duration(max(ms, 0))*time.Millisecond, maxPropagatedTimeout), true
}

// writer adds Heed-Retried to an error response once a heed call of the
// handler has given up.
type writer struct {
	http.ResponseWriter
	state       tierctx.State
	wroteHeader bool
}

func (w *writer) WriteHeader(code int) {
	if !w.wroteHeader && code >= 400 {
		if reason, ok := w.state.Reason(); ok {
			w.Header().Set(HeaderRetried, reason)
		}
	}
	if code >= 200 {
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *writer) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps streaming handlers working.
func (w *writer) Flush() {
	w.wroteHeader = true
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack keeps handlers that take over the connection working.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}
