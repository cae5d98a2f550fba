package heed

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The cross-tier protocol (docs/protocol.md). A heed client adds the request
// headers; Middleware reads them on the server and sets the response header.
const (
	// HeaderAttempt carries the number of a retry attempt (2, 3, ...). A
	// first attempt does not carry it.
	HeaderAttempt = "Heed-Attempt"
	// HeaderTimeout carries the caller's remaining deadline, in whole
	// milliseconds, when the call has one.
	HeaderTimeout = "Heed-Timeout"
	// HeaderRetried marks an error response of a tier that gave up on its
	// own dependency: the failure is below it and was already retried
	// there. Its value names why: exhausted, budget, breaker, deadline,
	// wait, not_retryable, canceled.
	HeaderRetried = "Heed-Retried"
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
			ctx = &call{Context: ctx} // a retry loop above: heed calls below make one attempt
		}
		ts := &tierState{}
		ctx = context.WithValue(ctx, tierKey{}, ts)
		next.ServeHTTP(&tierWriter{ResponseWriter: w, state: ts}, r.WithContext(ctx))
	})
}

// parseTimeout reads a Heed-Timeout value: whole milliseconds, positive,
// capped at a day. Anything else is ignored.
func parseTimeout(v string) (time.Duration, bool) {
	if v == "" || len(v) > 12 {
		return 0, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return 0, false
	}
	return min(time.Duration(ms)*time.Millisecond, maxPropagatedTimeout), true
}

type tierKey struct{}

// tierState records, for one request a tier serves, whether one of its heed
// calls gave up on a dependency, and why.
type tierState struct{ gaveUp atomic.Pointer[string] }

// tierGaveUp records that a heed call made while serving a tier request
// gave up for reason.
func tierGaveUp(ctx context.Context, reason error) {
	if ts, ok := ctx.Value(tierKey{}).(*tierState); ok {
		s := reasonToken(reason)
		ts.gaveUp.Store(&s)
	}
}

// reasonToken names a give-up reason in the Heed-Retried header.
func reasonToken(reason error) string {
	switch {
	case errors.Is(reason, ErrAttemptsExhausted):
		return "exhausted"
	case errors.Is(reason, ErrBudgetExhausted):
		return "budget"
	case errors.Is(reason, ErrBreakerOpen):
		return "breaker"
	case errors.Is(reason, ErrDeadline):
		return "deadline"
	case errors.Is(reason, ErrWaitTooLong):
		return "wait"
	case errors.Is(reason, ErrCanceled):
		return "canceled"
	}
	return "not_retryable"
}

// tierWriter adds Heed-Retried to an error response once a heed call of the
// handler has given up.
type tierWriter struct {
	http.ResponseWriter
	state       *tierState
	wroteHeader bool
}

func (w *tierWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 400 {
		if reason := w.state.gaveUp.Load(); reason != nil {
			w.Header().Set(HeaderRetried, *reason)
		}
	}
	if code >= 200 {
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *tierWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *tierWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps streaming handlers working.
func (w *tierWriter) Flush() {
	w.wroteHeader = true
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack keeps handlers that take over the connection working.
func (w *tierWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// tierHeaders returns the header to send on attempt n with the deadline,
// or nil when the protocol adds nothing (a first attempt without a
// deadline).
func tierHeaders(h http.Header, n int, deadline, now time.Time) http.Header {
	if n < 2 && deadline.IsZero() {
		return nil
	}
	out := h.Clone()
	if out == nil {
		out = make(http.Header, 2)
	}
	if n >= 2 {
		out[HeaderAttempt] = []string{strconv.Itoa(n)}
	}
	if !deadline.IsZero() {
		ms := (deadline.Sub(now) + time.Millisecond - 1) / time.Millisecond // round up: never shorten a tiny remainder to 0
		out[HeaderTimeout] = []string{strconv.FormatInt(max(1, int64(ms)), 10)}
	}
	return out
}
