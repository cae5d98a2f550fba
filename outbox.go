package heed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/outbox"
)

// ErrQueued: the call failed for a reason time can fix, and its request
// was written to the policy's outbox, to be sent again later (see
// [WithOutbox]). The error is a [*QueuedError].
var ErrQueued = errors.New("queued in the outbox")

// QueuedError is the error of a call whose request heed queued in its
// outbox: the write is not lost, it will be sent again from NextAt on.
// errors.Is(err, [ErrQueued]) is true, and it unwraps to the failure, so
// errors.Is and errors.As see the failure's reason and causes too.
type QueuedError struct {
	// ID names the entry in the store (heed outbox show ID).
	ID string
	// NextAt is when the entry is due to be sent again: a user interface
	// can say "saved; we will send it at 14:05".
	NextAt time.Time
	// Failure is why the call failed.
	Failure *Error
}

func (e *QueuedError) Error() string {
	return fmt.Sprintf("%s; queued as entry %s, next try at %s", e.Failure.Error(), e.ID, e.NextAt.UTC().Format(time.RFC3339))
}

// Is reports whether target is ErrQueued.
func (e *QueuedError) Is(target error) bool { return target == ErrQueued }

// Unwrap returns the failure.
func (e *QueuedError) Unwrap() error { return e.Failure }

// Outbox configures the policy's outbox (see [WithOutbox]). A zero field
// takes its default.
type Outbox struct {
	// Store keeps the entries: an embedded file
	// ([github.com/heed-go/heed/outbox/boltstore]) or, for a fleet,
	// heedredis's Redis Streams store. Required.
	Store outbox.Store
	// TTL is how long after it was queued an entry may still be sent;
	// after that it is dead (kept, never sent). Default 24 hours.
	TTL time.Duration
	// Backoff spaces the replays of one entry; a server's Retry-After and
	// an open breaker's reopening time push them later still. Default
	// full jitter from 1 s, doubling to 10 minutes.
	Backoff backoff.Strategy
	// MaxBody is the largest request body queued; a larger one is not.
	// Default 1 MiB.
	MaxBody int64
	// Scrub is called with the header that is about to be stored (a
	// copy), to remove what must not be written to disk, such as
	// credentials; Prepare puts fresh ones back at replay. By default the
	// whole header is stored (boltstore's file is readable only by its
	// owner).
	Scrub func(h http.Header)
	// Prepare is called on each replayed request before it is sent, to add
	// what Scrub removed; an error reschedules the entry.
	Prepare func(ctx context.Context, req *http.Request) error
	// Concurrency is how many entries one Replay sends at once. Default 8.
	Concurrency int
	// Poll bounds how long Replay sleeps before it looks at the store
	// again: entries added by other processes are seen within it.
	// Default 1 s.
	Poll time.Duration
}

const (
	defaultOutboxTTL         = 24 * time.Hour
	defaultOutboxMaxBody     = 1 << 20
	defaultOutboxConcurrency = 8
	defaultOutboxPoll        = time.Second
)

var defaultOutboxBackoff = backoff.Full(time.Second, 10*time.Minute)

// WithOutbox makes heed keep the writes it could not deliver. A call ends
// with a [*QueuedError] (errors.Is(err, [ErrQueued])) instead of its
// failure, after its request was written durably to o.Store, when all of
// these hold:
//
//   - the request is a write heed may repeat safely: its method is not
//     GET, HEAD, OPTIONS or TRACE, and it carries an Idempotency-Key (its
//     own, or one from [WithAutoIdempotencyKey]);
//   - the failure is one time can fix: attempts exhausted on a retryable
//     status (408, 429, 5xx but 501 and 505) or transport error, the
//     breaker open, the retry budget spent, the key's limits refusing, a
//     wait the server asked for longer than [WithMaxWait], or no time
//     left before the deadline;
//   - the caller is still waiting (its context has not ended), the body
//     could be kept (no larger than MaxBody), and the request is not itself
//     a replay.
//
// A request that fails for any other reason (a 400, 404 or 422, a refused
// certificate, a POST without a key) is never queued. The outbox comes
// before [WithStaleIfError] and [WithFallback]: a queued call is not
// answered by them. If the store fails, the call ends with its failure, as
// without an outbox, and the store's error is logged and reported to
// hooks.
//
// [Policy.Replay] sends queued entries again, through the same policy.
// Calls made through [Do] are never queued: heed has no request to keep.
func WithOutbox(o Outbox) Option {
	return optionFunc(func(cfg *config) {
		if err := o.validate(); err != nil {
			cfg.problem("WithOutbox: %v", err)
			return
		}
		o.defaults()
		cfg.outbox = &o
	})
}

func (o *Outbox) validate() error {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("a nil Store"))
	}
	if o.TTL < 0 {
		errs = append(errs, fmt.Errorf("a negative TTL (%v)", o.TTL))
	}
	if o.MaxBody < 0 {
		errs = append(errs, fmt.Errorf("a negative MaxBody (%d)", o.MaxBody))
	}
	if o.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("a negative Concurrency (%d)", o.Concurrency))
	}
	if o.Poll < 0 {
		errs = append(errs, fmt.Errorf("a negative Poll (%v)", o.Poll))
	}
	if b, ok := o.Backoff.(backoff.Backoff); ok {
		if err := b.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("the Backoff: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (o *Outbox) defaults() {
	if o.TTL == 0 {
		o.TTL = defaultOutboxTTL
	}
	if o.Backoff == nil {
		o.Backoff = defaultOutboxBackoff
	}
	if o.MaxBody == 0 {
		o.MaxBody = defaultOutboxMaxBody
	}
	if o.Concurrency == 0 {
		o.Concurrency = defaultOutboxConcurrency
	}
	if o.Poll == 0 {
		o.Poll = defaultOutboxPoll
	}
}

// replayKey marks the context of a request sent by Replay: it is never
// queued again, and no stale response or fallback answers it.
type replayKey struct{}

func isReplay(ctx context.Context) bool { return ctx.Value(replayKey{}) != nil }

// laterReasons are the failures time can fix.
func laterReason(reason error) bool {
	switch reason {
	case ErrAttemptsExhausted, ErrBreakerOpen, ErrBudgetExhausted, ErrWaitTooLong, ErrDeadline, ErrRetriedBelow, ErrThrottled:
		return true
	}
	return false
}

// safeMethod reports the methods that only read: there is no write to keep.
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// queue writes the failed call to the outbox when it qualifies. It
// returns the error the call ends with instead, or nil when the call was
// not queued.
func (l *loop) queue(resp *http.Response, fe *Error) error {
	p, o := l.p, l.p.outbox
	if isReplay(l.ctx) || safeMethod(l.method) || !hasIdempotencyKey(l.header) ||
		!laterReason(fe.Reason) || !l.body.replayable {
		return nil
	}
	body, err := l.keptBody(o.MaxBody)
	if err != nil {
		l.outboxFailed(fe, err)
		return nil
	}
	now := p.clock.Now()
	h := l.header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	if o.Scrub != nil {
		o.Scrub(h)
	}
	e := &outbox.Entry{
		Key: l.ks.key, Method: l.method, URL: l.req.URL.String(), Header: h, Body: body,
		Queued: now, Expires: now.Add(o.TTL), NextAt: nextReplay(o, 0, now, fe.RetryAt, p.rand()),
	}
	e.LastStatus, e.LastError = failureOf(fe, p.secretPaths)
	// The caller's context may end while the store writes; the write must
	// not be cut short half way, so it runs on a context of its own.
	if err := o.Store.Add(context.WithoutCancel(l.ctx), e); err != nil {
		l.outboxFailed(fe, err)
		return nil
	}
	if resp != nil {
		drainAndClose(resp.Body)
	}
	p.outboxEvent(l.ctx, EventQueued, e, fe.Reason, nil, e.LastStatus)
	return &QueuedError{ID: e.ID, NextAt: e.NextAt, Failure: fe}
}

// keptBody returns the request's body bytes for the outbox.
func (l *loop) keptBody(limit int64) ([]byte, error) {
	if l.body.get == nil {
		return nil, nil
	}
	rc, err := l.body.get()
	if err != nil {
		return nil, fmt.Errorf("reading the request body for the outbox: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading the request body for the outbox: %w", err)
	case int64(len(b)) > limit:
		return nil, fmt.Errorf("request body over the outbox's MaxBody of %d bytes", limit)
	}
	return b, nil
}

// outboxFailed reports a call that qualified for the outbox but could not
// be queued: it ends with its failure, so nothing is lost silently.
func (l *loop) outboxFailed(fe *Error, err error) {
	p := l.p
	if len(p.hooks) > 0 {
		p.emit(l.ctx, Event{Kind: EventQueued, Time: p.clock.Now(), Key: l.ks.key, Method: l.method, URL: l.req.URL, Reason: fe.Reason, Err: err})
	}
	if lg := p.log(); lg != nil {
		lg.LogAttrs(l.ctx, slog.LevelError, "heed: could not queue a failed request in the outbox",
			slog.String("method", l.method), slog.String("url", redactURLPaths(l.req.URL, p.secretPaths)),
			slog.String("key", l.ks.key), slog.String("error", redactText(err.Error(), l.req.URL, p.secretPaths)))
	}
}

// nextReplay is when an entry that failed n replays (0: just queued) is
// due: after the backoff, and no sooner than the server or the breaker
// said.
func nextReplay(o *Outbox, n int, now, retryAt time.Time, draw float64) time.Time {
	next := now.Add(o.Backoff.Delay(n, 0, clampDraw(draw)))
	if retryAt.After(next) {
		next = retryAt
	}
	return next
}

// failureOf describes a failure for an entry: a status, or an error's text
// with the URL's secrets redacted.
func failureOf(fe *Error, paths []pathPattern) (int, string) {
	var se *StatusError
	if errors.As(fe.Err, &se) {
		return se.StatusCode, ""
	}
	msg := fe.Reason.Error()
	if fe.Err != nil {
		msg = redactText(fe.Err.Error(), fe.url, paths)
	}
	return 0, msg
}

// outboxEvent reports an entry's change to hooks and the log.
func (p *Policy) outboxEvent(ctx context.Context, kind EventKind, e *outbox.Entry, reason, err error, status int) {
	u := entryURL(e)
	if len(p.hooks) > 0 {
		p.emit(ctx, Event{
			Kind: kind, Time: p.clock.Now(), Key: e.Key, Method: e.Method, URL: u, Entry: e.ID,
			Status: status, Reason: reason, Err: err, NextAt: e.NextAt, Attempt: e.Replays,
		})
	}
	if lg := p.log(); lg != nil {
		level := slog.LevelInfo
		switch kind {
		case EventReplayed:
			level = slog.LevelDebug
		case EventDead:
			level = slog.LevelWarn
		}
		if !lg.Enabled(ctx, level) {
			return
		}
		attrs := []slog.Attr{
			slog.String("entry", e.ID), slog.String("method", e.Method),
			slog.String("url", redactURLPaths(u, p.secretPaths)), slog.String("key", e.Key),
			slog.Int("replays", e.Replays),
		}
		if status != 0 {
			attrs = append(attrs, slog.Int("status", status))
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", redactText(err.Error(), u, p.secretPaths)))
		}
		if kind == EventQueued || kind == EventReplayed {
			attrs = append(attrs, slog.Time("next_at", e.NextAt))
		}
		lg.LogAttrs(ctx, level, "heed: outbox entry "+strings.ReplaceAll(kind.String(), "_", " "), attrs...)
	}
}

// entryURL parses e's URL; an entry heed wrote always has a valid one.
func entryURL(e *outbox.Entry) *url.URL {
	u, err := url.Parse(e.URL)
	if err != nil {
		return &url.URL{}
	}
	return u
}
