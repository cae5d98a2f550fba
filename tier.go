package heed

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
	"unsafe"

	"github.com/heed-go/heed/internal/tierctx"
)

// The cross-tier protocol's headers (package tier is its server side): a
// heed client sends the attempt number on retries and the time left when
// the call has a deadline, and does not retry an error a tier below marked
// as already retried.
const (
	headerAttempt = tierctx.Attempt
	headerTimeout = tierctx.Timeout
	headerRetried = tierctx.Retried
)

// tierGaveUp records that a heed call made while serving a tier request
// gave up for reason.
func tierGaveUp(ctx context.Context, reason error) {
	if s := tierctx.StateFrom(ctx); s != nil {
		s.GiveUp(reasonToken(reason))
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

// tierHeaders returns the header to send on attempt n with the deadline,
// seen at now, or nil when the protocol adds nothing (a first attempt
// without a deadline). The values are h's own, capped, so that an append
// by a layer below cannot reach the caller's arrays; the Heed-Timeout
// value is kept in room when one is given.
func tierHeaders(h http.Header, n int, deadline, now time.Time, room *timeoutRoom) http.Header {
	if n < 2 && deadline.IsZero() {
		return nil
	}
	out := make(http.Header, len(h)+2)
	for k, v := range h {
		out[k] = v[:len(v):len(v)]
	}
	if n >= 2 {
		out[headerAttempt] = []string{strconv.Itoa(n)}
	}
	if !deadline.IsZero() {
		out[headerTimeout] = room.value(timeoutMillis(deadline, now))
	}
	return out
}

// timeoutRoom holds a Heed-Timeout value inside an allocation the call
// makes anyway.
type timeoutRoom struct {
	field  [1]string
	digits [20]byte
}

// value returns ms as a header value, in r when r is not nil.
func (r *timeoutRoom) value(ms int64) []string {
	if r == nil {
		return []string{strconv.FormatInt(ms, 10)}
	}
	b := strconv.AppendInt(r.digits[:0], ms, 10)
	// The digits are written once, here, and never again: a string over
	// them is as immutable as any, and saves an allocation per request.
	r.field[0] = unsafe.String(&b[0], len(b))
	return r.field[:]
}

// timeoutMillis is the Heed-Timeout value for a deadline seen at now: the
// milliseconds left, rounded up, so that a tiny remainder never reads as
// none, and at least 1.
func timeoutMillis(deadline, now time.Time) int64 {
	ms := (deadline.Sub(now) + time.Millisecond - 1) / time.Millisecond
	return max(1, int64(ms))
}
