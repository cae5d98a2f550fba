package heed

import (
	"context"
	"net/url"
	"time"

	"github.com/heed-go/heed/breaker"
)

// This file is the one list of heed's events; layers add their kinds here.

// EventKind says what an [Event] reports: an attempt, a retry, a give-up,
// the end of a call, a breaker's change, a wait for limits, a hedge, a
// degraded answer (a stored response or a fallback's), or what became of
// an outbox entry.
type EventKind uint8

const (
	// EventAttempt: an attempt finished, with a response or an error.
	EventAttempt EventKind = iota + 1
	// EventRetry: heed will retry after Wait, which came from Source.
	EventRetry
	// EventGiveUp: heed stopped retrying for Reason.
	EventGiveUp
	// EventDone: the call ended; Err is nil for a response returned to the
	// caller, even a final error status.
	EventDone
	// EventBreaker: the circuit breaker of Key changed from From to To;
	// RetryAt is when an open breaker will let probes through.
	EventBreaker
	// EventThrottle: the key's limits or pacer held attempt Attempt back for
	// Wait before it could go (Err is set when they refused it instead).
	EventThrottle
	// EventHedge: attempt Attempt had not answered after Wait, and heed
	// sent copy Hedge of it (1 for the first hedge).
	EventHedge
	// EventStale: the call failed (Reason, Err) and heed served a stored
	// response of age Age instead (see WithStaleIfError); Status is its.
	EventStale
	// EventFallback: the call failed (Reason, Err) and the fallback
	// answered; Status is its response's, 0 when it returned an error.
	EventFallback
	// EventQueued: the call failed (Reason) and its request was written to
	// the outbox as Entry, due again at NextAt (see WithOutbox). With Err
	// set, the call qualified but could not be queued, and ended with its
	// failure.
	EventQueued
	// EventReplayed: outbox entry Entry was sent again (its Attempt-th
	// replay) and failed (Status or Err); it is due again at NextAt.
	EventReplayed
	// EventDelivered: outbox entry Entry was sent again and the server
	// accepted it (Status); it left the outbox.
	EventDelivered
	// EventDead: outbox entry Entry will not be sent again: the server
	// refused it for a reason time cannot fix (Status, Err), or its time
	// to live ran out (Reason ErrExpired). It stays in the store.
	EventDead
	// The server side's kinds, reported by heed's middleware (packages
	// ratelimit and shed) about requests a server receives. Key is
	// the client's class (a bounded label, never the raw client key),
	// Method and URL the request's.

	// EventAdmitted: the middleware let the request through to the handler;
	// Wait is how long it held the request first (the shed queue, the
	// rate limit's delay mode), zero when it went straight through.
	EventAdmitted
	// EventLimited: a rate limit refused the request with 429; Wait is the
	// Retry-After it was told.
	EventLimited
	// EventShed: the load shedder refused the request with 503 (Status),
	// or did not start it because its caller's deadline had passed (Err);
	// Wait is the Retry-After it was told, Attempt the request's attempt
	// number as its client marked it.
	EventShed
)

func (k EventKind) String() string {
	switch k {
	case EventAttempt:
		return "attempt"
	case EventRetry:
		return "retry"
	case EventGiveUp:
		return "give_up"
	case EventDone:
		return "done"
	case EventBreaker:
		return "breaker"
	case EventThrottle:
		return "throttle"
	case EventHedge:
		return "hedge"
	case EventStale:
		return "stale"
	case EventFallback:
		return "fallback"
	case EventQueued:
		return "queued"
	case EventReplayed:
		return "replayed"
	case EventDelivered:
		return "delivered"
	case EventDead:
		return "dead"
	case EventAdmitted:
		return "admitted"
	case EventLimited:
		return "limited"
	case EventShed:
		return "shed"
	}
	return "unknown"
}

// Event is one decision or observation of heed's. Fields that do not apply
// to a kind are zero.
type Event struct {
	Kind EventKind
	Time time.Time
	// Key is the key of the request's per-key state: its host by default,
	// or what WithKeyFunc or a call's Overrides chose.
	Key    string
	Method string
	// URL is the request's URL as sent, with its secrets REDACTED: its
	// userinfo, the values of its query parameters (and parameters
	// without "=", which may be a token), and the path segments
	// [WithSecretPath] marks; parameter names and the rest of the path
	// stay. It is safe to record.
	URL *url.URL
	// Attempt is the attempt's number, from 1; MaxAttempts the policy's
	// limit.
	Attempt, MaxAttempts int
	// Hedge is the hedged copy the event is about: the copy sent
	// (EventHedge) or the one whose answer the attempt took (EventAttempt),
	// 0 for the first copy.
	Hedge int
	// Status is the response's status code, 0 if there was none.
	Status int
	// Err is the attempt's or call's error. When its text quotes a secret
	// of the URL (one that URL shows REDACTED), it comes wrapped with that
	// text redacted; errors.Is and errors.As see through the wrapper.
	Err error
	// ErrorKind classifies a transport error.
	ErrorKind ErrorKind
	// Wait and Source: the wait chosen before the next attempt.
	Wait   time.Duration
	Source WaitSource
	// Reason is why heed gave up: one of the Err* variables.
	Reason error
	// RetryAt is when the server said it will accept again.
	RetryAt time.Time
	// Duration is the attempt's duration (EventAttempt) or the call's
	// (EventDone).
	Duration time.Duration
	// Age is the age of the stored response served (EventStale).
	Age time.Duration
	// From and To are the breaker's states before and after (EventBreaker).
	From, To breaker.State
	// Entry is the outbox entry's ID, and NextAt when it is due again
	// (EventQueued, EventReplayed, EventDelivered, EventDead).
	Entry  string
	NextAt time.Time
}

// Hook receives heed's events. It is called synchronously on the request's
// goroutine, outside any lock, so it should be quick; it may call back into
// heed. Implementations must be safe for concurrent use.
type Hook interface {
	OnEvent(ctx context.Context, e Event)
}

// HookFunc adapts a function to [Hook].
type HookFunc func(ctx context.Context, e Event)

// OnEvent calls f.
func (f HookFunc) OnEvent(ctx context.Context, e Event) { f(ctx, e) }

// emit sends e to every hook. With no hook it costs a length check.
func (p *Policy) emit(ctx context.Context, e Event) {
	e = p.hideEvent(e) // hooks record URLs and errors' text: keep secrets out
	for _, h := range p.hooks {
		h.OnEvent(ctx, e)
	}
}
