package heed

import (
	"context"
	"errors"
	"github.com/heed-go/heed/internal/vocab"
	"log/slog"
	"net/http"
	"time"
)

// fallbackFunc is what WithFallback takes.
type fallbackFunc = func(ctx context.Context, req *http.Request, failure *Error) (*http.Response, error)

// WithFallback sets a function that may answer a call that failed: one
// that ended with an [*Error], other than the caller's own cancellation,
// or with a response whose status says the server failed (408, 429, and
// 5xx but 501 and 505) after heed stopped retrying. f gets the failure
// (its reason, every attempt, and when the server will accept again if it
// said) and may return a degraded response (a default, a cached value, an
// empty list) or a different error; returning (nil, nil) declines, and the
// call ends as it would have without a fallback. With [WithStaleIfError],
// a stored response is preferred and f is called only when there is none.
// [Degraded] tells the response f returns from a live one. [Do] does not
// call it.
func WithFallback(f func(ctx context.Context, req *http.Request, failure *Error) (*http.Response, error)) Option {
	return optionFunc(func(cfg *config) {
		if f == nil {
			cfg.problem("WithFallback: nil function")
			return
		}
		cfg.fallback = f
	})
}

// failedStatus reports statuses that say the server failed, rather than
// answered about the request: the ones heed may retry. 501 and 505 are
// answers (the server lacks the feature) and do not count.
func failedStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusRequestTimeout ||
		code >= 500 && code != http.StatusNotImplemented && code != http.StatusHTTPVersionNotSupported
}

type degradedKey struct{}

// Degraded returns the failure behind a response that heed served instead
// of the server's: a stored one ([WithStaleIfError]) or a fallback's
// ([WithFallback]). It returns nil for a response from the server. The
// failure tells a user interface what happened and, in RetryAt, when to
// try again.
func Degraded(resp *http.Response) *Error {
	if resp == nil || resp.Request == nil {
		return nil
	}
	e, _ := resp.Request.Context().Value(degradedKey{}).(*Error)
	return e
}

// degrade ends the call: it keeps a successful answer in the stale store,
// and answers a failed call from the store or the fallback when it can.
func (l *loop) degrade(resp *http.Response, err error) (*http.Response, error) {
	p := l.p
	if err == nil && !failedStatus(resp.StatusCode) {
		if p.store != nil {
			p.store.keep(l.req, resp, l.timeNow())
		}
		return resp, nil
	}
	if l.req.Context().Err() != nil {
		return resp, err // the caller is gone
	}
	var fe *Error
	if err != nil {
		if !errors.As(err, &fe) || fe.Reason == ErrCanceled {
			return resp, err
		}
	} else {
		fe = l.failure(resp)
	}
	if p.outbox != nil {
		if qe := l.queue(resp, fe); qe != nil {
			return nil, qe
		}
	}
	if isReplay(l.ctx) {
		return resp, err // the outbox's worker decides what a replay's failure means
	}
	if p.store != nil {
		now := p.clock.Now()
		if e, age, ok := p.store.lookup(l.req, now); ok {
			if resp != nil {
				drainAndClose(resp.Body)
			}
			sresp := e.response(l.marked(fe), age, fe)
			l.emitDegraded(EventStale, sresp.StatusCode, fe, age)
			return sresp, nil
		}
	}
	if p.fallback == nil {
		return resp, err
	}
	fresp, ferr := p.fallback(l.req.Context(), l.req, fe)
	if fresp == nil && ferr == nil {
		return resp, err
	}
	if resp != nil {
		drainAndClose(resp.Body)
	}
	if ferr != nil {
		if fresp != nil { // a RoundTripper must not return both
			drainAndClose(fresp.Body)
		}
		l.emitDegraded(EventFallback, 0, fe, 0)
		return nil, ferr
	}
	fresp.Request = l.marked(fe)
	if fresp.Body == nil {
		fresp.Body = http.NoBody
	}
	if fresp.Header == nil {
		fresp.Header = make(http.Header)
	}
	l.emitDegraded(EventFallback, fresp.StatusCode, fe, 0)
	return fresp, nil
}

// failure describes, as an *Error, a call that ended with resp, a status
// saying the server failed.
func (l *loop) failure(resp *http.Response) *Error {
	c := l.getCall()
	reason := l.reason
	if reason == nil {
		reason = ErrNotRetryable
	}
	return &Error{
		Reason: reason, Method: l.method, Attempts: append([]Attempt(nil), c.attempts...),
		RetryAt: l.retryAt, Err: &StatusError{StatusCode: resp.StatusCode, Header: resp.Header},
		call: c, url: l.req.URL, paths: l.p.secretPaths,
	}
}

// marked is the caller's request carrying fe, for Degraded.
func (l *loop) marked(fe *Error) *http.Request {
	return l.req.WithContext(context.WithValue(l.req.Context(), degradedKey{}, fe))
}

func (l *loop) emitDegraded(kind EventKind, status int, fe *Error, age time.Duration) {
	p := l.p
	if len(p.hooks) > 0 {
		p.emit(l.ctx, Event{
			Kind: kind, Time: p.clock.Now(), Key: l.ks.key, Method: l.method, URL: l.req.URL,
			Attempt: len(fe.Attempts), MaxAttempts: p.maxAttempts, Status: status, Err: fe, Reason: fe.Reason,
			RetryAt: fe.RetryAt, Age: age,
		})
	}
	if lg := p.log(); lg != nil && lg.Enabled(l.ctx, slog.LevelInfo) {
		msg := "heed: serving a stale response"
		if kind == EventFallback {
			msg = "heed: fallback answered"
		}
		attrs := p.requestAttrs(l.method, l.req.URL, len(fe.Attempts), p.maxAttempts, status, nil)
		attrs = append(attrs, slog.String("key", l.ks.key), slog.String("reason", vocab.Reason(fe.Reason)))
		if kind == EventStale {
			attrs = append(attrs, slog.Duration("age", age))
		}
		lg.LogAttrs(l.ctx, slog.LevelInfo, msg, attrs...)
	}
}
