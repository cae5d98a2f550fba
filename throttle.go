package heed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/hint"
	"github.com/heed-go/heed/throttle"
)

// Limits are how heed throttles a key's requests before they leave: the
// limits its server is known to have (a token bucket and a concurrency
// limit), and the adaptive pacing heed learns from the server's push-back
// (a 429, rate-limit fields), which is on unless NoPacing. The zero value
// sets no known limit and paces with the defaults. Run at about 80% of a
// documented limit: the server's clock and window are not yours.
type Limits struct {
	// Rate is requests a second (a limit of 600 a minute is 10); 0 sets
	// no rate limit.
	Rate float64
	// Burst is how many requests may go at once within Rate. Default 1.
	Burst int
	// Concurrency is how many requests may be in flight at once; 0 sets no
	// limit.
	Concurrency int
	// Queue is how many requests may wait for a concurrency slot; beyond
	// it they fail at once with ErrThrottled.
	Queue int
	// QueueTimeout is how long a request may wait for a slot; 0 leaves only
	// the request's context to bound it.
	QueueTimeout time.Duration
	// NoPacing turns adaptive pacing off; Pacing tunes it (zero fields
	// take its defaults).
	NoPacing bool
	Pacing   throttle.PacerConfig
	// Limiter, if set, is the key's rate limit in place of Rate and Burst:
	// one kept elsewhere, such as a limit a fleet of instances shares in
	// Redis (the heedredis module). Set it per key with WithKeyLimits.
	Limiter throttle.RateLimiter
}

// rate is the key's configured rate limit in requests a second, 0 for
// none or for a Limiter that does not say.
func (l Limits) rate() float64 {
	if r, ok := l.Limiter.(interface{ Rate() float64 }); ok {
		return r.Rate()
	}
	return l.Rate
}

func (l Limits) validate() error {
	if l.NoPacing && l.Pacing != (throttle.PacerConfig{}) {
		return errors.New("NoPacing contradicts Pacing: pacing is off, yet tuned")
	}
	if err := l.Pacing.Validate(); err != nil {
		return err
	}
	if l.Limiter != nil && (l.Rate != 0 || l.Burst != 0) {
		return errors.New("set either Limiter or Rate and Burst, not both")
	}
	if l.Rate < 0 || l.Rate > 0 && l.Rate != l.Rate {
		return fmt.Errorf("rate %v: must be a positive number, or 0 for none", l.Rate)
	}
	if l.Rate > 0 {
		if _, err := throttle.NewLimiter(l.Rate, max(1, l.Burst)); err != nil {
			return err
		}
	}
	if l.Burst < 0 || l.Concurrency < 0 || l.Queue < 0 || l.QueueTimeout < 0 {
		return fmt.Errorf("burst %d, concurrency %d, queue %d, queue timeout %v: none may be negative", l.Burst, l.Concurrency, l.Queue, l.QueueTimeout)
	}
	if l.Concurrency == 0 && (l.Queue > 0 || l.QueueTimeout > 0) {
		return fmt.Errorf("a queue (%d, timeout %v) needs a concurrency limit", l.Queue, l.QueueTimeout)
	}
	return nil
}

// ErrThrottled: a limit of the key's would make the request wait past its
// deadline, or its concurrency queue is full or timed out. RetryAt is when
// the rate limit would have let it go. It is throttle.ErrThrottled.
var ErrThrottled = throttle.ErrThrottled

// throttleState is the proactive throttling of one key.
type throttleState struct {
	pacer    *throttle.Pacer      // nil when adaptive pacing is off
	limiter  throttle.RateLimiter // nil without a rate limit
	bulkhead *throttle.Bulkhead   // nil without a concurrency limit
	err      error                // settings of this key that cannot work (limits, budget): its requests fail with it

	// quotaLooks counts successes checked for rate-limit fields and found
	// without them; past quotaProbes the key's server is taken not to send
	// them and successes are no longer checked (a 429 checks again). -1:
	// the server sends them.
	quotaLooks atomic.Int32
}

// quotaProbes is how many successes without rate-limit fields make heed stop
// looking for them on a key's successes.
const quotaProbes = 16

// quotaFields reports the common rate-limit fields on a successful
// response, looking only while the key's server may send them: for a server
// that never does, a success soon costs one atomic load.
func (t *throttleState) quotaFields(h http.Header) bool {
	n := t.quotaLooks.Load()
	if n >= quotaProbes || t.pacer == nil {
		return false
	}
	if hasQuotaFields(h) {
		if n != -1 {
			t.quotaLooks.Store(-1)
		}
		return true
	}
	if n >= 0 {
		t.quotaLooks.Add(1)
	}
	return false
}

func (p *Policy) initThrottle(t *throttleState, key string) {
	l := p.limits
	if p.keyLimits != nil {
		l = p.keyLimits(key)
	}
	if !l.NoPacing {
		cfg := l.Pacing
		if cfg.Limit == 0 {
			cfg.Limit = l.rate()
		}
		t.pacer = throttle.NewPacer(cfg)
	}
	if err := l.validate(); err != nil {
		t.err = fmt.Errorf("heed: limits for key %q: %w", key, err)
		return
	}
	switch {
	case l.Limiter != nil:
		t.limiter = l.Limiter
	case l.Rate > 0:
		t.limiter, _ = throttle.NewLimiter(l.Rate, max(1, l.Burst))
	}
	if l.Concurrency > 0 {
		t.bulkhead, _ = throttle.NewBulkhead(p.clock, l.Concurrency, l.Queue, l.QueueTimeout)
	}
}

// quiet reports a key whose throttling costs nothing right now: no static
// limit and a pacer that is not pacing.
func (t *throttleState) quiet() bool {
	return t.limiter == nil && t.bulkhead == nil && t.err == nil && (t.pacer == nil || !t.pacer.Active())
}

// turn waits for the key's limits to let one attempt go: a rate slot, then
// a concurrency slot. A slot is waited for at most allow, and never past
// the deadline (zero for none). It returns the bulkhead whose slot the
// attempt now holds (nil when there is none), or an error: a refusal with
// when the rate limit would have let the attempt go, or the context's end.
func (p *Policy) turn(ctx context.Context, t *throttleState, deadline time.Time, allow time.Duration, now time.Time) (slot *throttle.Bulkhead, waited time.Duration, retryAt time.Time, err error) {
	if t.err != nil {
		return nil, 0, time.Time{}, t.err
	}
	if t.limiter != nil || t.pacer != nil && t.pacer.Active() {
		if now.IsZero() {
			now = p.clock.Now()
		}
		if limit := now.Add(max(allow, 0)); deadline.IsZero() || limit.Before(deadline) {
			deadline = limit
		}
		start, at := now, now
		if t.limiter != nil {
			a, ok := t.limiter.ReserveBefore(now, deadline)
			if !ok {
				return nil, 0, a, ErrThrottled
			}
			at = a
		}
		if t.pacer != nil {
			pl, b, ok := t.pacer.Take(now, deadline)
			if !ok {
				return nil, 0, b, ErrThrottled
			}
			// The turn is reckoned anew after each nap: when the pace
			// rises, the wait shortens. A turn that has not come by the
			// deadline is given up.
			for {
				if b = later(at, b); !b.After(now) {
					break
				}
				wake := b
				if wake.After(deadline) {
					wake = deadline
				}
				if !wake.After(now) {
					t.pacer.Leave(pl)
					return nil, now.Sub(start), b, ErrThrottled
				}
				if !clock.Sleep(p.clock, nap(wake.Sub(now)), ctx.Done()) {
					t.pacer.Leave(pl)
					return nil, now.Sub(start), time.Time{}, context.Cause(ctx)
				}
				now = p.clock.Now()
				if b, ok = t.pacer.Turn(pl, now, deadline); !ok {
					t.pacer.Leave(pl)
					return nil, now.Sub(start), b, ErrThrottled
				}
			}
			waited = now.Sub(start)
		} else if waited = at.Sub(now); !clock.Sleep(p.clock, waited, ctx.Done()) {
			return nil, waited, time.Time{}, context.Cause(ctx)
		}
	}
	if t.bulkhead != nil {
		if err := t.bulkhead.Acquire(ctx); err != nil {
			return nil, waited, time.Time{}, err
		}
		return t.bulkhead, waited, time.Time{}, nil
	}
	return nil, waited, time.Time{}, nil
}

// allowance is how long the next attempt may wait for its slot: the rest
// of the pause a retry that waited prev may take under the cap and, for a
// call without a deadline, the rest of the waiting the cap allows it in
// all, having waited waited.
func (p *Policy) allowance(prev, waited time.Duration, hasDeadline bool) time.Duration {
	if hasDeadline {
		return p.maxWait - prev
	}
	return p.maxWait - waited
}

// nap is how long to sleep toward a turn d away before looking again:
// all of it when it is near, else half of it, at most a second, so a
// rising pace shortens the wait within a second. A turn far off is looked
// at every quarter of its distance: only a pace that more than quadruples
// within one nap makes it late, and a long line of waiters does not wake
// every second.
func nap(d time.Duration) time.Duration {
	if d <= 20*time.Millisecond {
		return d
	}
	return min(d, max(20*time.Millisecond, min(d/2, max(time.Second, d/4))))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// hasQuotaFields reports the common rate-limit fields on a response, with
// two map lookups: a response without them costs the pacer nothing more.
// (The rarer spellings that hint reads are still learned from a 429.)
func hasQuotaFields(h http.Header) bool {
	return len(h["X-Ratelimit-Remaining"]) > 0 || len(h["Ratelimit"]) > 0
}

// observe tells the key's pacer what a response said. sent is when its
// request left (zero if unknown).
//
// draw is the attempt's random draw: the one its retry's jitter uses, so
// that a pace the response starts takes its first turn at the same point
// of its interval as the retry, rather than at an independent one that
// would delay the retry further (the later of two draws).
func (p *Policy) observe(t *throttleState, sent, now time.Time, resp *http.Response, draw float64) {
	pc := t.pacer
	if pc == nil || resp == nil {
		return
	}
	status := resp.StatusCode
	h := resp.Header
	quota := hasQuotaFields(h)
	throttled := status == http.StatusTooManyRequests
	if !throttled && status != http.StatusServiceUnavailable && !quota && !pc.Active() {
		return
	}
	if now.IsZero() {
		now = p.clock.Now()
	}
	s := throttle.Signal{Now: now, Sent: sent, Draw: draw}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		s.RetryAfter, s.HasRetryAfter = hint.RetryAfter(h, now)
		throttled = throttled || s.HasRetryAfter // a 503 with a Retry-After is a push-back too
	}
	s.Throttled = throttled
	if s.HasRetryAfter && s.RetryAfter > p.maxWait {
		s.Hold = now.Add(s.RetryAfter) // no caller waits that long: hold every request until then
	}
	if throttled && !quota && t.quotaLooks.Load() > 0 {
		t.quotaLooks.Store(0) // pushed back: look at successes again
	}
	if quota {
		s.Quota, s.HasQuota = hint.RateLimit(h, now)
	}
	pc.Observe(s) // a zero Sent (an untimed first attempt) never counts as a push-back on the current pace
}

// pacing reports a pacer that is spacing requests.
func (t *throttleState) pacing() bool { return t.pacer != nil && t.pacer.Active() }

// interval is the pacing interval learned for the key, zero while it is
// not pacing.
func (t *throttleState) interval() time.Duration {
	if t.pacer == nil {
		return 0
	}
	return t.pacer.Interval()
}

// throttled ends a call whose attempt n its key's limits refused or whose
// wait for them was cut short.
func (l *loop) throttled(n int, err error, retryAt time.Time) *Error {
	switch {
	case errors.Is(err, ErrThrottled):
		return l.fail(l.req, ErrThrottled, err, retryAt)
	case l.ctx.Err() != nil:
		return l.fail(l.req, endReason(l.ctx), err, time.Time{})
	}
	return l.fail(l.req, ErrNotRetryable, err, time.Time{})
}
