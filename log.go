package heed

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/internal/redact"
	"github.com/heed-go/heed/internal/vocab"
)

// log returns the logger to use, or nil when logging is off.
func (p *Policy) log() *slog.Logger {
	if p.loggerSet {
		return p.logger
	}
	return slog.Default()
}

// fail ends the call with an *Error and reports it.
func (l *loop) fail(areq *http.Request, reason, cause error, retryAt time.Time) *Error {
	c := l.getCall()
	e := &Error{
		Reason:   reason,
		Method:   l.method,
		Attempts: append([]Attempt(nil), c.attempts...),
		RetryAt:  retryAt,
		Err:      cause,
		call:     c,
		url:      areq.URL,
		paths:    l.p.secretPaths,
	}
	l.giveUp(areq, reason, retryAt)
	if len(l.p.hooks) > 0 {
		l.emitDone(areq, lastStatus(c.attempts), e)
	}
	return e
}

func lastStatus(as []Attempt) int {
	if len(as) == 0 {
		return 0
	}
	return as[len(as)-1].Status
}

// refused ends a call whose breaker refused attempt n. A first attempt
// refused costs no allocation beyond the error: the call keeps no record.
func (l *loop) refused(n int, oe *breaker.OpenError) *Error {
	if n > 1 {
		return l.fail(l.req, ErrBreakerOpen, oe, oe.Until)
	}
	e := &Error{Reason: ErrBreakerOpen, Method: l.method, RetryAt: oe.Until, Err: oe, url: l.req.URL, paths: l.p.secretPaths}
	l.giveUp(l.req, ErrBreakerOpen, oe.Until)
	if len(l.p.hooks) > 0 {
		l.emitDone(l.req, 0, e)
	}
	return e
}

// giveUp logs and reports that heed stopped retrying for reason, and tells
// the tier serving the request, if any, that its dependency failed.
func (l *loop) giveUp(areq *http.Request, reason error, retryAt time.Time) {
	p := l.p
	tierGaveUp(l.ctx, reason)
	var last Attempt
	if l.c != nil && len(l.c.attempts) > 0 {
		last = l.c.attempts[len(l.c.attempts)-1]
	}
	level := levelGiveUp
	switch {
	case last.Number == 0:
		level = slog.LevelDebug // refused before any attempt: the breaker's change was logged
	case last.Number == 1 && last.Status != 0 && reason == ErrNotRetryable:
		level = slog.LevelDebug // a first answer the table does not retry (a 404) is the answer, not a give-up
	}
	if len(p.hooks) > 0 {
		p.emit(l.ctx, Event{
			Kind: EventGiveUp, Time: p.clock.Now(), Key: l.ks.key, Method: l.method, URL: areq.URL,
			Attempt: last.Number, MaxAttempts: p.maxAttempts, Status: last.Status, Err: last.Err,
			ErrorKind: last.Kind, Reason: reason, RetryAt: retryAt,
		})
	}
	if lg := p.log(); lg != nil && lg.Enabled(l.ctx, level) {
		attrs := p.requestAttrs(l.method, areq.URL, last.Number, p.maxAttempts, last.Status, last.Err)
		attrs = append(attrs, slog.String("key", l.ks.key), slog.String("reason", vocab.Reason(reason)))
		if !retryAt.IsZero() {
			attrs = append(attrs, slog.Time("retry_at", retryAt))
		}
		lg.LogAttrs(l.ctx, level, "heed: giving up", attrs...)
	}
}

// retrying logs and reports the retry heed is about to wait for.
func (l *loop) retrying(areq *http.Request, n, status int, err error, d decision) {
	p := l.p
	if len(p.hooks) > 0 {
		p.emit(l.ctx, Event{
			Kind: EventRetry, Time: p.clock.Now(), Key: l.ks.key, Method: l.method, URL: areq.URL,
			Attempt: n, MaxAttempts: p.maxAttempts, Status: status, Err: err, ErrorKind: d.Kind,
			Wait: d.Wait, Source: d.Source, RetryAt: d.RetryAt,
		})
	}
	if lg := p.log(); lg != nil && lg.Enabled(l.ctx, levelRetry) {
		attrs := p.requestAttrs(l.method, areq.URL, n, p.maxAttempts, status, err)
		attrs = append(attrs, slog.String("key", l.ks.key), slog.String("reason", vocab.Result(status, string(d.Kind))),
			slog.Duration("wait", d.Wait), slog.String("source", d.Source.String()))
		attrs = paceAttrs(attrs, l.ks)
		lg.LogAttrs(l.ctx, levelRetry, "heed: retrying", attrs...)
	}
}

// Log levels: a retry is routine, a give-up is worth a look.
const (
	levelRetry  = slog.LevelInfo
	levelGiveUp = slog.LevelWarn
)

// Log fields carry the names metrics use as labels (key, method, reason,
// source, with values from the names of internal/vocab), so a log line and a
// series can be matched.

// requestAttrs are the fields of a retry or give-up log line for a request.
func (c *config) requestAttrs(method string, u *url.URL, n, max, status int, err error) []slog.Attr {
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("method", method), slog.String("url", c.redactURL(u)))
	return append(attrs, c.callAttrs(n, max, status, err, u)...)
}

// callAttrs are the fields shared by requests and calls made through Do.
// An error's text is scrubbed of u's secrets: a base RoundTripper may
// quote the URL it failed on.
func (c *config) callAttrs(n, max, status int, err error, u *url.URL) []slog.Attr {
	attrs := []slog.Attr{slog.Int("attempt", n), slog.Int("max_attempts", max)}
	if status != 0 {
		attrs = append(attrs, slog.Int("status", status))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", redactText(err.Error(), u, c.secretPaths)))
		if se := (*StatusError)(nil); !errors.As(err, &se) { // a status error's kind says nothing the status does not
			kind, _, _ := classifyError(err)
			attrs = append(attrs, slog.String("error_kind", string(kind)))
		}
	}
	return attrs
}

// paceAttrs add the key's pacing interval while it paces: the pacer may
// hold the next attempt beyond the wait logged.
func paceAttrs(attrs []slog.Attr, ks *keyState) []slog.Attr {
	if pace := ks.throttle.interval(); pace > 0 {
		attrs = append(attrs, slog.Duration("pace", pace))
	}
	return attrs
}

// redactText returns s with the secrets of u that redact.URL hides, and
// the path segments pats mark secret, replaced by REDACTED (see
// redact.Text).
func redactText(s string, u *url.URL, pats []pathPattern) string {
	if u == nil {
		return s
	}
	hidden, segs := hidePath(u, pats)
	return redact.Text(s, u, hidden, segs)
}

// timeNow is the attempt's time when it was read a moment ago, else the
// clock's.
func (l *loop) timeNow() time.Time {
	if !l.now.IsZero() {
		return l.now
	}
	return l.p.clock.Now()
}

func (l *loop) emitAttempt(areq *http.Request, n, copy, status int, err error, kind ErrorKind, took time.Duration) {
	p := l.p
	p.emit(l.ctx, Event{
		Kind: EventAttempt, Time: l.timeNow(), Key: l.ks.key, Method: l.method, URL: areq.URL,
		Attempt: n, MaxAttempts: p.maxAttempts, Hedge: copy, Status: status, Err: err, ErrorKind: kind, Duration: took,
	})
}

// emitHedge reports that copy i of attempt l.n went out, delay after the
// copy before it.
func (l *loop) emitHedge(areq *http.Request, i int, delay time.Duration) {
	p := l.p
	p.emit(l.ctx, Event{
		Kind: EventHedge, Time: p.clock.Now(), Key: l.ks.key, Method: l.method, URL: areq.URL,
		Attempt: l.n, MaxAttempts: p.maxAttempts, Hedge: i, Wait: delay,
	})
}

func (l *loop) emitDone(areq *http.Request, status int, err error) {
	p := l.p
	now := l.timeNow()
	p.emit(l.ctx, Event{
		Kind: EventDone, Time: now, Key: l.ks.key, Method: l.method, URL: areq.URL,
		Attempt: l.n, MaxAttempts: p.maxAttempts, Status: status, Err: err, Duration: now.Sub(l.start),
	})
}

// emitThrottle reports a wait for the key's limits, or their refusal.
func (l *loop) emitThrottle(n int, waited time.Duration, err error) {
	p := l.p
	p.emit(l.ctx, Event{
		Kind: EventThrottle, Time: p.clock.Now(), Key: l.ks.key, Method: l.method, URL: l.req.URL,
		Attempt: n, MaxAttempts: p.maxAttempts, Wait: waited, Source: SourceThrottle, Err: err,
	})
}
