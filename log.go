package heed

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heed-go/heed/breaker"
)

// redacted replaces secrets in logged URLs.
const redacted = "REDACTED"

// RedactURL returns u as a string with its userinfo and the values of its
// query parameters replaced by REDACTED, so it can be logged: API keys and
// tokens often travel in either. Parameter names stay, for debugging; a
// parameter without "=" is replaced whole, since it may be the token
// itself (?SECRETFLAG). Path segments stay: mark the secret ones with
// [WithSecretPath].
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	if u.User == nil && u.RawQuery == "" {
		return u.String()
	}
	r := *u
	if r.User != nil {
		r.User = url.User(redacted)
	}
	if r.RawQuery != "" {
		parts := strings.Split(r.RawQuery, "&")
		for i, kv := range parts {
			if k, _, ok := strings.Cut(kv, "="); ok {
				parts[i] = k + "=" + redacted
			} else if kv != "" {
				parts[i] = redacted
			}
		}
		r.RawQuery = strings.Join(parts, "&")
	}
	return r.String()
}

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
	if last.Number == 0 {
		level = slog.LevelDebug // refused before any attempt: the breaker's change was logged
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
		attrs = append(attrs, slog.String("key", l.ks.key), slog.String("reason", ReasonName(reason)))
		if !retryAt.IsZero() {
			attrs = append(attrs, slog.Time("retry_at", retryAt))
		}
		lg.LogAttrs(l.ctx, level, "heed: giving up", attrs...)
	}
}

// retrying logs and reports the retry heed is about to wait for.
func (l *loop) retrying(areq *http.Request, n, status int, err error, d Decision) {
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
		attrs = append(attrs, slog.String("key", l.ks.key), slog.String("reason", ResultName(status, d.Kind)),
			slog.Duration("wait", d.Wait), slog.String("source", d.Source.String()))
		lg.LogAttrs(l.ctx, levelRetry, "heed: retrying", attrs...)
	}
}

// Log levels: a retry is routine, a give-up is worth a look.
const (
	levelRetry  = slog.LevelInfo
	levelGiveUp = slog.LevelWarn
)

// Log fields carry the names metrics use as labels (key, method, reason,
// source, with values from ReasonName and ResultName), so a log line and a
// series can be matched.

// requestAttrs are the fields of a retry or give-up log line for a request.
func (c *config) requestAttrs(method string, u *url.URL, n, max, status int, err error) []slog.Attr {
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("method", method), slog.String("url", c.redactURL(u)))
	if status != 0 {
		attrs = append(attrs, slog.Int("status", status))
	}
	return append(attrs, c.callAttrs(n, max, err, u)...)
}

// callAttrs are the fields shared by requests and calls made through Do.
// An error's text is scrubbed of u's secrets: a base RoundTripper may
// quote the URL it failed on.
func (c *config) callAttrs(n, max int, err error, u *url.URL) []slog.Attr {
	attrs := []slog.Attr{slog.Int("attempt", n), slog.Int("max_attempts", max)}
	if err != nil {
		kind, _, _ := classifyError(err)
		attrs = append(attrs, slog.String("error", redactText(err.Error(), u, c.secretPaths)), slog.String("error_kind", string(kind)))
	}
	return attrs
}

// RedactText returns s with the secrets of u that [RedactURL] hides (its
// userinfo, its query values and its query parameters without "=")
// replaced by REDACTED: for an error's text, which may quote the URL it
// failed on. The URL itself is replaced by its redacted form; a secret
// elsewhere in s is replaced where it stands as in a URL ("=value",
// "user:password@", "?token"), and anywhere once it is 6 characters or
// longer, so that short values such as page=2 do not garble the text.
func RedactText(s string, u *url.URL) string {
	return redactText(s, u, nil)
}

// redactText is RedactText that also hides the path segments pats mark
// secret, in the URL and wherever they stand as a segment ("/value").
func redactText(s string, u *url.URL, pats []pathPattern) string {
	if u == nil {
		return s
	}
	hidden, segs := hidePath(u, pats)
	if u.User == nil && u.RawQuery == "" && len(segs) == 0 {
		return s
	}
	s = strings.ReplaceAll(s, u.String(), RedactURL(hidden))
	replace := func(v, before, after string) {
		if v == "" {
			return
		}
		s = strings.ReplaceAll(s, before+v+after, before+redacted+after)
		if len(v) >= minSecret {
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	if u.User != nil {
		replace(u.User.String(), "", "@")
		if pw, ok := u.User.Password(); ok {
			replace(pw, ":", "@")
		}
	}
	for kv := range strings.SplitSeq(u.RawQuery, "&") {
		if _, v, ok := strings.Cut(kv, "="); ok {
			replace(v, "=", "")
			if dv, err := url.QueryUnescape(v); err == nil && dv != v {
				replace(dv, "=", "")
			}
		} else if kv != "" {
			s = hideToken(s, kv, "?&")
			if dk, err := url.QueryUnescape(kv); err == nil && dk != kv {
				s = hideToken(s, dk, "?&")
			}
		}
	}
	for _, v := range segs {
		s = hideToken(s, v, "/")
		if dv, err := url.PathUnescape(v); err == nil && dv != v {
			s = hideToken(s, dv, "/")
		}
	}
	return s
}

// hideToken replaces v in s where it stands whole right after one of the
// bytes of marks, as a query key or a path segment does in a URL, and
// anywhere once it is minSecret long. "Whole" keeps a short secret such as
// the 1 of /users/1 from garbling HTTP/1.1 or /users/12.
func hideToken(s, v, marks string) string {
	if v == "" {
		return s
	}
	if len(v) >= minSecret {
		return strings.ReplaceAll(s, v, redacted)
	}
	var b strings.Builder
	last := 0
	for i := 0; i+len(v) <= len(s); {
		j := strings.Index(s[i:], v)
		if j < 0 {
			break
		}
		at, end := i+j, i+j+len(v)
		if at > 0 && strings.IndexByte(marks, s[at-1]) >= 0 && (end == len(s) || !tokenByte(s[end])) {
			b.WriteString(s[last:at])
			b.WriteString(redacted)
			last = end
			i = end
			continue
		}
		i = at + 1
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// tokenByte reports whether c may continue a query key or a path segment:
// a letter, a digit, or one of "-._~%+".
func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~%+", c) >= 0
}

// minSecret is the length from which RedactText replaces a secret wherever
// it appears.
const minSecret = 6

func (l *loop) emitAttempt(areq *http.Request, n, copy, status int, err error, kind ErrorKind, took time.Duration) {
	p := l.p
	p.emit(l.ctx, Event{
		Kind: EventAttempt, Time: p.clock.Now(), Key: l.ks.key, Method: l.method, URL: areq.URL,
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
	now := p.clock.Now()
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
