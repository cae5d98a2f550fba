package heed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/internal/vocab"
)

// Do runs fn under p's policy: it calls fn, and while fn fails with an error
// the policy deems retryable, waits and calls it again, up to the attempt
// limit. It returns fn's first success, or fn's last value with an [*Error]
// wrapping fn's last error.
//
// Errors are classified like the transport's: transient network errors are
// retried; a [*StatusError] (see [CheckStatus]) follows the decision table
// and honours its Retry-After; errors wrapped by [Retryable] or
// [RetryableAfter] are retried; a [WithClassifier] predicate sees each
// [Outcome] first. Anything else ends the call, so a bug is not retried.
//
// fn receives a context that tells heed clients used inside it to make a
// single attempt each, leaving the retrying to Do. If ctx already belongs to
// a heed retry loop, Do calls fn once.
//
// Do keeps its circuit breaker and retry budget under the empty key, shared
// by every Do call of p; give a call the key of its dependency with
// [Override] (Overrides.Key), which also changes its attempts and time
// bounds.
func Do[T any](ctx context.Context, p *Policy, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	if p == nil {
		return zero, errors.New("heed: Do with a nil Policy")
	}
	p, err := p.forCall(ctx)
	if err != nil {
		return zero, err
	}
	if callFrom(ctx) != nil {
		return fn(ctx)
	}
	key := p.fixedKey
	start := p.clock.Now()
	if p.maxTotal > 0 {
		// The bound ends fn's context too, as it ends a transport's
		// request: fn's work stops where the call's time does.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		total := p.clock.AfterFunc(p.maxTotal, func() { cancel(errTotalTimeout) })
		defer func() {
			total.Stop()
			cancel(nil)
		}()
	}
	c := newCall(ctx, p)
	c.key = key
	ks := p.keys.state(key)
	c.start = start
	deadline := callDeadline(ctx, start, p.maxTotal)
	var (
		prev, waited time.Duration
		rateLimited  int
		v            T
		retrying     bool // the call holds one of the key's WithMaxConcurrentRetries places
	)
	defer func() { ks.endRetry(retrying) }()
	for n := 1; ; n++ {
		slot, slotWait, retryAt, terr := p.turn(ctx, &ks.throttle, deadline, p.allowance(prev, waited, !deadline.IsZero()), time.Time{})
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
		v, err = runAttempt(p, c, fn)
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
				p.emitCall(ctx, EventAttempt, c, decision{}, nil)
				p.emitCall(ctx, EventDone, c, decision{}, nil)
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
		d := p.decide(o, when{Now: now, Deadline: deadline, Prev: prev, Draw: draw, Pace: ks.throttle.interval(), Waited: waited, RateLimited: rateLimited})
		p.settle(ks, t, o, now)
		retrying = ks.endRetry(retrying)
		if d.Retry {
			d = p.gate(ks, d, a.Status, now) // after settle: this attempt may have opened the breaker
			retrying = d.holdsRetry
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
		p.logCall(ctx, c, ks, d)
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

// runAttempt calls fn once, within the policy's attempt timeout: fn's
// context ends when it runs out, and an error fn returns after that is the
// attempt's timeout (retryable), whatever fn made of the cancellation. A
// fn that ignores its context cannot be stopped; a success it returns
// late is still a success.
func runAttempt[T any](p *Policy, c *call, fn func(context.Context) (T, error)) (T, error) {
	if p.attemptTimeout <= 0 {
		return fn(c)
	}
	actx, cancel := context.WithCancelCause(context.Context(c))
	timer := p.clock.AfterFunc(p.attemptTimeout, func() { cancel(errAttemptTimeout) })
	v, err := fn(actx)
	timer.Stop()
	cancel(nil)
	if err != nil && errors.Is(context.Cause(actx), errAttemptTimeout) && c.Err() == nil {
		err = fmt.Errorf("%w (fn returned: %v)", errAttemptTimeout, err) // not fn's cancellation: the timeout is what happened
	}
	return v, err
}

// doError builds the *Error that ends a Do call and reports it.
func (c *call) doError(reason, cause error, retryAt time.Time) *Error {
	p := c.policy
	e := &Error{Reason: reason, Attempts: append([]Attempt(nil), c.attempts...), RetryAt: retryAt, Err: cause, call: c}
	tierGaveUp(c.Context, reason)
	d := decision{Reason: reason, RetryAt: retryAt}
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
		attrs := c.keyAttr(p.callAttrs(last.Number, p.maxAttempts, last.Status, last.Err, nil))
		attrs = append(attrs, slog.String("reason", vocab.Reason(reason)))
		lg.LogAttrs(c.Context, level, "heed: giving up", attrs...)
	}
	return e
}

// keyAttr adds the call's key to a log line's fields, when it has one.
func (c *call) keyAttr(attrs []slog.Attr) []slog.Attr {
	if c.key == "" {
		return attrs
	}
	return append(attrs, slog.String("key", c.key))
}

// emitCall reports an event of a Do call.
func (p *Policy) emitCall(ctx context.Context, kind EventKind, c *call, d decision, err error) {
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

func (p *Policy) logCall(ctx context.Context, c *call, ks *keyState, d decision) {
	if lg := p.log(); lg != nil && lg.Enabled(ctx, levelRetry) {
		last := c.attempts[len(c.attempts)-1]
		attrs := c.keyAttr(p.callAttrs(last.Number, p.maxAttempts, last.Status, last.Err, nil))
		attrs = append(attrs, slog.String("reason", vocab.Result(last.Status, string(last.Kind))),
			slog.Duration("wait", d.Wait), slog.String("source", d.Source.String()))
		attrs = paceAttrs(attrs, ks)
		lg.LogAttrs(ctx, levelRetry, "heed: retrying", attrs...)
	}
}
