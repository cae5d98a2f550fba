package heed

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/internal/vocab"
)

// Reasons a call ends without success. An [*Error] matches exactly one of
// them with errors.Is.
var (
	// ErrAttemptsExhausted: every allowed attempt failed.
	ErrAttemptsExhausted = vocab.ErrAttemptsExhausted
	// ErrNotRetryable: the failure is one that repeating cannot fix (a
	// certificate error, an unsupported scheme, a refused credential).
	ErrNotRetryable = vocab.ErrNotRetryable
	// ErrNotIdempotent: the request may have reached the server and is not
	// safe to repeat (a POST or PATCH without an Idempotency-Key).
	ErrNotIdempotent = vocab.ErrNotIdempotent
	// ErrBodyNotReplayable: the request body could not be kept for another
	// attempt (no GetBody, larger than the body buffer, and some of it
	// was sent).
	ErrBodyNotReplayable = vocab.ErrBodyNotReplayable
	// ErrWaitTooLong: the server asked for a wait longer than the cap.
	ErrWaitTooLong = vocab.ErrWaitTooLong
	// ErrDeadline: the next attempt could not start before the deadline.
	ErrDeadline = vocab.ErrDeadline
	// ErrCanceled: the caller cancelled the call.
	ErrCanceled = vocab.ErrCanceled
	// ErrBreakerOpen: the key's circuit breaker refused the attempt; RetryAt
	// is when it will let a probe through. It is breaker.ErrOpen.
	ErrBreakerOpen = breaker.ErrOpen
	// ErrBudgetExhausted: the key's retry budget refused a retry. It is
	// budget.ErrExhausted.
	ErrBudgetExhausted = budget.ErrExhausted
	// ErrRetriedBelow: the server said (with Heed-Retried) that the failure
	// is below it and was already retried there.
	ErrRetriedBelow = vocab.ErrRetriedBelow
	// ErrExpired: an outbox entry's time to live ran out before it was
	// delivered (the Reason of its EventDead).
	ErrExpired = vocab.ErrExpired
)

// Error is how heed reports a call that ended without success: what
// happened, every attempt made, and when the server will accept again if it
// said. It wraps the last cause, so errors.Is and errors.As see through it
// (to a [*StatusError], a *net.OpError, context.Canceled, ...), and it
// matches its Reason with errors.Is.
type Error struct {
	// Reason is why heed stopped: one of the Err* variables of this package.
	Reason error
	// Method is the request's method; empty for calls made through Do.
	Method string
	// Attempts lists every attempt, in order.
	Attempts []Attempt
	// RetryAt is when the server said it will accept again; zero if it did
	// not say.
	RetryAt time.Time
	// Err is the last cause: a transport error, a [*StatusError], or the
	// caller's cancellation.
	Err error

	call  *call         // the call that decided: an outer heed loop passes its errors through
	url   *url.URL      // the request's URL; redacted whenever shown
	paths []pathPattern // the policy's WithSecretPath patterns, for redacting url
}

// RequestURL returns the request's URL with its userinfo, its query values
// (and parameters without "=") and the path segments marked by
// [WithSecretPath] redacted; empty for calls made through Do.
func (e *Error) RequestURL() string { return redactURLPaths(e.url, e.paths) }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("heed: ")
	if e.Method != "" {
		b.WriteString(e.Method)
		b.WriteByte(' ')
		b.WriteString(e.RequestURL())
		b.WriteString(": ")
	}
	b.WriteString(e.Reason.Error())
	b.WriteString(" after ")
	b.WriteString(strconv.Itoa(len(e.Attempts)))
	if len(e.Attempts) == 1 {
		b.WriteString(" attempt")
	} else {
		b.WriteString(" attempts")
	}
	if !e.RetryAt.IsZero() {
		b.WriteString("; server accepts again at ")
		b.WriteString(e.RetryAt.UTC().Format(time.RFC3339))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(redactText(e.Err.Error(), e.url, e.paths)) // a cause may quote the URL
	}
	return b.String()
}

// Unwrap returns the last cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's Reason.
func (e *Error) Is(target error) bool { return target == e.Reason }

// StatusError is an HTTP response that counts as a failure, as an error:
// the cause of an [*Error] when heed gives up on a status, and what
// [CheckStatus] returns so [Do] can classify a response by the decision
// table and honour its Retry-After.
type StatusError struct {
	StatusCode int
	Header     http.Header
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// CheckStatus returns nil for a response below 400, and otherwise a
// [*StatusError] carrying its status and header (with Retry-After and
// rate-limit fields), after draining and closing its body so the connection
// can be reused. Use it inside a function run by [Do].
func CheckStatus(resp *http.Response) error {
	if resp == nil || resp.StatusCode < 400 {
		return nil
	}
	drainAndClose(resp.Body)
	return &StatusError{StatusCode: resp.StatusCode, Header: resp.Header}
}

// Retryable marks err as a transient failure that [Do] retries.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err: err}
}

type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// RetryableAfter marks err as transient and carries the wait its source
// asked for, which [Do] honours like a server's Retry-After.
func RetryableAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &hintError{err: err, wait: max(0, d)}
}

type hintError struct {
	err  error
	wait time.Duration
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }
