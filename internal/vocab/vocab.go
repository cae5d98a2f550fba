// Package vocab is the one vocabulary of heed's logs, metrics and traces:
// the reasons a call ends without success, and the names logs and metrics
// give reasons, results and outcomes. Each set of names is closed, so the
// names are safe as metric labels. The heed package exports the reasons
// (heed.ErrAttemptsExhausted, ...); its adapters use the names.
package vocab

import (
	"errors"
	"net/http"

	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/throttle"
)

// The reasons heed defines itself; heed documents each.
var (
	ErrAttemptsExhausted = errors.New("attempts exhausted")
	ErrNotRetryable      = errors.New("not retryable")
	ErrNotIdempotent     = errors.New("request may have been processed and is not idempotent")
	ErrBodyNotReplayable = errors.New("request body cannot be sent again")
	ErrWaitTooLong       = errors.New("server asked to wait longer than the cap")
	ErrDeadline          = errors.New("deadline leaves no time for another attempt")
	ErrCanceled          = errors.New("canceled by the caller")
	ErrRetriedBelow      = errors.New("failure already retried by a tier below")
	ErrExpired           = errors.New("outbox entry's time to live ran out")
)

var reasonNames = []struct {
	err  error
	name string
}{
	{ErrAttemptsExhausted, "attempts_exhausted"},
	{budget.ErrExhausted, "budget_exhausted"},
	{breaker.ErrOpen, "breaker_open"},
	{ErrWaitTooLong, "wait_too_long"},
	{ErrDeadline, "deadline"},
	{ErrCanceled, "canceled"},
	{ErrNotRetryable, "not_retryable"},
	{ErrNotIdempotent, "not_idempotent"},
	{ErrBodyNotReplayable, "body_not_replayable"},
	{ErrRetriedBelow, "retried_below"},
	{throttle.ErrThrottled, "throttled"},
	{ErrExpired, "expired"},
}

// Reason names a reason heed gave up for (one of its Err* reasons) as logs
// and metrics spell it: "attempts_exhausted", "budget_exhausted",
// "breaker_open", "wait_too_long", "deadline", "canceled",
// "not_retryable", "not_idempotent", "body_not_replayable",
// "retried_below", "throttled", "expired"; "other" for any other error.
func Reason(reason error) string {
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

// kinds are the transport error kinds heed defines (heed.ErrorKind).
var kinds = map[string]bool{
	"refused": true, "dns": true, "dial": true, "reset": true, "timeout": true,
	"eof": true, "tls": true, "canceled": true, "retryable": true,
}

// Result names an attempt's result as logs and metrics spell it: the class
// of its status ("2xx" to "5xx"), else the kind of its transport error
// ("refused", "timeout", ...), with "other" for a kind heed does not
// define (a classifier's own); "ok" for a call through heed.Do that
// succeeded, which has neither.
func Result(status int, kind string) string {
	if status != 0 {
		if i := status / 100; i >= 1 && i <= 5 {
			return statusClasses[i]
		}
		return "other"
	}
	switch {
	case kind == "":
		return "ok"
	case kinds[kind]:
		return kind
	}
	return "other"
}

// Outcome names how a call ended as logs and metrics spell it: "failure"
// when it ended with an error, "server_error" or "client_error" for a
// final 5xx or 4xx response, else "success".
func Outcome(status int, err error) string {
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
