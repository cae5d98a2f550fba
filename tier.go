package heed

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

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
		out[headerAttempt] = []string{strconv.Itoa(n)}
	}
	if !deadline.IsZero() {
		out[headerTimeout] = []string{strconv.FormatInt(timeoutMillis(deadline, now), 10)}
	}
	return out
}
