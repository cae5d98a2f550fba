package heed

import (
	"errors"
	"net/http"
)

// The names below are the one vocabulary of heed's logs, metrics and
// traces: a closed set each, so they are safe as metric labels.

var reasonNames = []struct {
	err  error
	name string
}{
	{ErrAttemptsExhausted, "attempts_exhausted"},
	{ErrBudgetExhausted, "budget_exhausted"},
	{ErrBreakerOpen, "breaker_open"},
	{ErrWaitTooLong, "wait_too_long"},
	{ErrDeadline, "deadline"},
	{ErrCanceled, "canceled"},
	{ErrNotRetryable, "not_retryable"},
	{ErrNotIdempotent, "not_idempotent"},
	{ErrBodyNotReplayable, "body_not_replayable"},
	{ErrRetriedBelow, "retried_below"},
	{ErrThrottled, "throttled"},
}

// ReasonName names a reason heed gave up for (one of the Err* reasons) as
// logs and metrics spell it: "attempts_exhausted", "budget_exhausted",
// "breaker_open", "wait_too_long", "deadline", "canceled",
// "not_retryable", "not_idempotent", "body_not_replayable",
// "retried_below", "throttled"; "other" for any other error.
func ReasonName(reason error) string {
	for _, r := range reasonNames {
		if reason == r.err {
			return r.name
		}
	}
	for _, r := range reasonNames {
		if errors.Is(reason, r.err) {
			return r.name
		}
	}
	return "other"
}

var statusClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// ResultName names an attempt's result as logs and metrics spell it: the
// class of its status ("2xx" to "5xx"), else the kind of its transport
// error ("refused", "timeout", ...), with "other" for a kind heed does not
// define (a classifier's own); "ok" for a call through [Do] that
// succeeded, which has neither.
func ResultName(status int, kind ErrorKind) string {
	if status != 0 {
		if i := status / 100; i >= 1 && i <= 5 {
			return statusClasses[i]
		}
		return "other"
	}
	switch kind {
	case KindNone:
		return "ok"
	case KindRefused, KindDNS, KindDial, KindReset, KindTimeout, KindEOF, KindTLS, KindCanceled, KindRetryable:
		return string(kind)
	}
	return "other"
}

// OutcomeName names how a call ended as logs and metrics spell it:
// "failure" when it ended with an error, "server_error" or "client_error"
// for a final 5xx or 4xx response, else "success".
func OutcomeName(status int, err error) string {
	switch {
	case err != nil:
		return "failure"
	case status >= http.StatusInternalServerError:
		return "server_error"
	case status >= http.StatusBadRequest:
		return "client_error"
	}
	return "success"
}
