package heed

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/heed-go/heed/clock"
)

// Do runs fn under p's policy: it calls fn, and while fn fails with an error
// the policy deems retryable, waits and calls it again, up to the attempt
// limit. It returns fn's first success, or fn's last value with an [*Error]
// wrapping fn's last error.
//
// Errors are classified like the transport's: transient network errors are
// retried; a [*StatusError] (see [CheckStatus]) follows the decision table
// and honours its Retry-After; errors wrapped by [Retryable] or
// [RetryAfter] are retried; a [WithClassifier] predicate sees each
// [Outcome] first. Anything else ends the call, so a bug is not retried.
//
// fn receives a context that tells heed clients used inside it to make a
// single attempt each, leaving the retrying to Do. If ctx already belongs to
// a heed retry loop, Do calls fn once.
//
// Do keeps its circuit breaker and retry budget under the empty key; use
// [DoKey] to keep dependencies apart.
func Do[T any](ctx context.Context, p *Policy, fn func(context.Context) (T, error)) (T, error) {
	return DoKey(ctx, p, "", fn)
}

// DoKey is [Do] with the circuit breaker and retry budget of key, shared
// with every call and request of p under the same key.
func DoKey[T any](ctx context.Context, p *Policy, key string, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	if p == nil {
		return zero, errors.New("heed: Do with a nil Policy")
	}
	if callFrom(ctx) != nil {
		return fn(ctx)
	}
	c := newCall(ctx, p)
	c.key = key
	ks := p.keys.state(key)
	start := p.clock.Now()
	c.start = start
	deadline := callDeadline(ctx, start, p.maxTotal)
	var (
		prev, waited time.Duration
		rateLimited  int
		v            T
	)
	for n := 1; ; n++ {
		slot, slotWait, retryAt, terr := p.turn(ctx, &ks.throttle, deadline, p.allowance(prev, waited, !deadline.IsZero()))
		waited += slotWait
		if terr != nil {
			switch {
			case errors.Is(terr, ErrThrottled):
				return v, c.doError(ErrThrottled, terr, retryAt)
			case ctx.Err() != nil:
				return v, c.doError(endReason(ctx), terr, time.Time{})
			}
			return v, c.doError(ErrNotRetryable, terr, time.Time{})
		}
		t, refused := p.admit(ks)
		if refused != nil {
			if slot != nil {
				slot.Release()
			}
			return v, c.doError(ErrBreakerOpen, refused, refused.Until)
		}
		if n == 1 && ks.budget != nil {
			ks.budget.Request()
		}
		aStart := p.clock.Now()
		var err error
		v, err = fn(c)
		if slot != nil {
			slot.Release()
		}
		if err == nil {
			p.settle(ks, t, Outcome{Attempt: n}, time.Time{})
			if ks.throttle.pacing() {
				p.observe(&ks.throttle, aStart, time.Time{}, &http.Response{StatusCode: http.StatusOK}, p.rand())
			}
			if len(p.hooks) > 0 {
				c.attempts = append(c.attempts, Attempt{Number: n, Start: aStart, Duration: p.clock.Now().Sub(aStart)})
				p.emitCall(ctx, EventAttempt, c, Decision{}, nil)
				p.emitCall(ctx, EventDone, c, Decision{}, nil)
			}
			return v, nil
		}
		now := p.clock.Now()
		o := Outcome{Attempt: n, Err: err, Idempotent: true, Replayable: true}
		a := Attempt{Number: n, Start: aStart, Duration: now.Sub(aStart), Err: err}
		var h http.Header
		a.Status, h = o.status()
		draw := p.rand()
		if a.Status != 0 {
			p.observe(&ks.throttle, aStart, now, &http.Response{StatusCode: a.Status, Header: h}, draw)
		}
		if ctx.Err() != nil {
			p.settle(ks, t, Outcome{Err: context.Canceled}, now)
			a.Kind = KindCanceled
			c.attempts = append(c.attempts, a)
			return v, c.doError(endReason(ctx), err, time.Time{})
		}
		var he *Error
		if errors.As(err, &he) && he.call != c {
			// A heed loop inside fn already decided; do not multiply it.
			p.settle(ks, t, o, now)
			c.attempts = append(c.attempts, a)
			return v, err
		}
		d := p.Decide(o, When{Now: now, Deadline: deadline, Prev: prev, Draw: draw, Pace: ks.throttle.interval(), Waited: waited, RateLimited: rateLimited})
		p.settle(ks, t, o, now)
		if d.Retry {
			d = p.gate(ks, d, a.Status, now) // after settle: this attempt may have opened the breaker
		}
		a.Kind = d.Kind
		a.Wait, a.Source = d.Wait, d.Source
		c.attempts = append(c.attempts, a)
		p.emitCall(ctx, EventAttempt, c, d, nil)
		if !d.Retry {
			reason := d.Reason
			if reason == nil {
				reason = ErrNotRetryable
			}
			return v, c.doError(reason, err, d.RetryAt)
		}
		p.emitCall(ctx, EventRetry, c, d, nil)
		p.logCall(ctx, c, d)
		if !clock.Sleep(p.clock, d.Wait, ctx.Done()) {
			return v, c.doError(endReason(ctx), context.Cause(ctx), time.Time{})
		}
		prev = d.Wait
		waited += d.Wait
		if d.RateLimited {
			rateLimited++
		}
	}
}

// doError builds the *Error that ends a Do call and reports it.
func (c *call) doError(reason, cause error, retryAt time.Time) *Error {
	p := c.policy
	e := &Error{Reason: reason, Attempts: append([]Attempt(nil), c.attempts...), RetryAt: retryAt, Err: cause, call: c}
	tierGaveUp(c.Context, reason)
	d := Decision{Reason: reason, RetryAt: retryAt}
	p.emitCall(c.Context, EventGiveUp, c, d, cause)
	p.emitCall(c.Context, EventDone, c, d, e)
	level := levelGiveUp
	if len(c.attempts) == 0 {
		level = slog.LevelDebug // refused by the breaker before any attempt
	}
	if lg := p.log(); lg != nil && lg.Enabled(c.Context, level) {
		var last Attempt
		if len(c.attempts) > 0 {
			last = c.attempts[len(c.attempts)-1]
		}
		attrs := p.callAttrs(last.Number, p.maxAttempts, last.Err, nil)
		attrs = append(attrs, slog.String("key", c.key), slog.String("reason", ReasonName(reason)))
		lg.LogAttrs(c.Context, level, "heed: giving up", attrs...)
	}
	return e
}

// emitCall reports an event of a Do call.
func (p *Policy) emitCall(ctx context.Context, kind EventKind, c *call, d Decision, err error) {
	if len(p.hooks) == 0 {
		return
	}
	e := Event{Kind: kind, Time: p.clock.Now(), Key: c.key, MaxAttempts: p.maxAttempts}
	if len(c.attempts) > 0 {
		last := c.attempts[len(c.attempts)-1]
		e.Attempt, e.Status, e.Err, e.ErrorKind = last.Number, last.Status, last.Err, last.Kind
		if kind == EventAttempt {
			e.Duration = last.Duration
		}
	}
	switch kind {
	case EventRetry:
		e.Wait, e.Source, e.RetryAt = d.Wait, d.Source, d.RetryAt
	case EventGiveUp:
		e.Reason, e.RetryAt = d.Reason, d.RetryAt
	case EventDone:
		e.Err, e.Duration = err, e.Time.Sub(c.start)
	}
	p.emit(ctx, e)
}

func (p *Policy) logCall(ctx context.Context, c *call, d Decision) {
	if lg := p.log(); lg != nil && lg.Enabled(ctx, levelRetry) {
		last := c.attempts[len(c.attempts)-1]
		attrs := p.callAttrs(last.Number, p.maxAttempts, last.Err, nil)
		attrs = append(attrs, slog.String("key", c.key), slog.String("reason", ResultName(0, last.Kind)),
			slog.Duration("wait", d.Wait), slog.String("source", d.Source.String()))
		lg.LogAttrs(ctx, levelRetry, "heed: retrying", attrs...)
	}
}
