package heed

import (
	"errors"
	"net/http"
	"time"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/hint"
)

// heed adds jitter on top of a server's hint so that clients told the same
// Retry-After do not wake together; the usual advice is one to two seconds.
// The jitter on a hint of d is drawn from [0, min(max(d, pace, base,
// 100 ms), 2 s)], where pace is the key's pacing interval and base the
// backoff's: clients told the same short hint spread over about as long
// again, and never over more than 2 s, whatever the hint (a long hint is
// the server's plan, and the pacer spaces what follows it).
const (
	minHintJitter = time.Second
	maxHintJitter = 2 * time.Second
)

// Policy holds heed's settings and decides, attempt by attempt, whether and
// when to retry. Its settings are immutable once built; the state it keeps
// per key (a circuit breaker and a retry budget) is shared by every
// transport and [Do] call using it. It is safe for concurrent use.
//
// Build it with [NewPolicy]: calls under a zero Policy fail with an error
// saying so.
type Policy struct {
	config
	plain bool // no hook, classifier or time bound: RoundTrip may take its fast path
	// Set only in the copy a call's Overrides make (see forCall).
	fixedKey   string // the call's key, when keyFixed
	keyFixed   bool
	idempotent bool        // the call is safe to repeat whatever its method
	keys       *registry   // state per key: breakers and budgets
	store      *staleStore // nil unless WithStaleIfError
}

// errZeroPolicy is the error of a call under a Policy not built by
// NewPolicy.
var errZeroPolicy = errors.New("heed: the Policy was not built by NewPolicy (a zero Policy has no settings)")

// NewPolicy builds a Policy from the defaults and opts. It returns an error
// naming every setting that cannot work.
func NewPolicy(opts ...Option) (*Policy, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			cfg.problem("nil Option")
			continue
		}
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.problems = nil
	plain := len(cfg.hooks) == 0 && cfg.classifier == nil && cfg.maxTotal == 0 && cfg.attemptTimeout == 0 &&
		cfg.limits.Rate == 0 && cfg.limits.Concurrency == 0 && cfg.limits.Limiter == nil && cfg.keyLimits == nil && cfg.hedge == nil &&
		cfg.stale == nil && cfg.fallback == nil && cfg.outbox == nil
	p := &Policy{config: cfg, plain: plain}
	if cfg.stale != nil {
		p.store = newStaleStore(*cfg.stale)
	}
	p.keys = newRegistry(p)
	return p, nil
}

// MaxAttempts returns the policy's attempt limit, the first attempt
// included.
func (p *Policy) MaxAttempts() int { return p.maxAttempts }

// Clock returns the clock the policy reads and sleeps on.
func (p *Policy) Clock() clock.Clock { return p.clock }

// decision is the decision core's answer after an attempt.
type decision struct {
	// Retry says to make another attempt after Wait.
	Retry bool
	// Wait is how long to wait first, and Source where it came from.
	Wait   time.Duration
	Source WaitSource
	// Reason, when Retry is false, is why not: nil when the outcome is a
	// success (or any response the policy does not treat as a failure),
	// else one of the Err* variables.
	Reason error
	// RetryAt is when the server said it will accept again; zero if it did
	// not say.
	RetryAt time.Time
	// Kind classifies the outcome's transport error.
	Kind ErrorKind
	// RateLimited: the attempt was a 429 retried as the server asked (after
	// its hint, or at the pace learned from it), which does not count
	// toward the attempt limit: a server that is only rate-limiting is not
	// given up on while the call's waiting allows.
	RateLimited bool
	// holdsRetry: the gate counted this retry among the key's retries in
	// flight (WithMaxConcurrentRetries); the call gives the place back
	// when the retry's attempt ends.
	holdsRetry bool
}

// when is the time side of a decision, and what the call has spent so
// far: the time now, the call's deadline (zero for none), the previous
// wait, a uniform random draw in [0, 1) for jitter, the pacing interval
// learned for the key (zero when it is not pacing), which sizes the spread
// of retries the server told to wait, how long the call has waited in all,
// and how many of its earlier attempts were 429s that did not count toward
// the attempt limit.
type when struct {
	Now         time.Time
	Deadline    time.Time
	Prev        time.Duration
	Draw        float64
	Pace        time.Duration
	Waited      time.Duration
	RateLimited int
}

// decide is the retry layer's decision core: a plain function of the
// policy, the outcome of the attempt just made, and the time. The
// transport and [Do] drive it with the real clock; tests and simulations
// drive it in virtual time.
//
// In order: a classifier's verdict, else the decision table (status rules,
// then transport error kinds); the method and body rules; the attempt
// limit (a 429 the server or the pacer says when to retry does not count
// toward it); then the wait: the server's Retry-After, else an exhausted
// quota's reset, each plus jitter, else the backoff.
//
// Every wait is capped: one wait is at most the policy's max wait, and a
// call without a deadline waits at most the max wait in all. A hint that
// asks for more, or that ends after the deadline, ends the call at once
// with RetryAt set; jitter and backoff are trimmed to fit.
func (p *Policy) decide(o Outcome, w when) decision {
	now, deadline, prev, draw := w.Now, w.Deadline, w.Prev, w.Draw
	status, header := o.status()
	var d decision
	verdict := VerdictDefault
	if p.classifier != nil {
		verdict = p.classifier(o)
	}
	limit := p.maxAttempts
	var kindRetryable, notSent bool
	if o.Err != nil && status == 0 {
		d.Kind, kindRetryable, notSent = classifyError(o.Err)
	}
	statusLimit := 0
	switch verdict {
	case VerdictStop:
		d.Reason = reasonFor(o, status)
		return d
	case VerdictDefault:
		if status >= 400 && len(header[headerRetried]) > 0 {
			d.Reason = ErrRetriedBelow // a tier below retried already
			return d
		}
		switch {
		case status != 0:
			n, ok := p.statusRules[status]
			if !ok {
				d.Reason = reasonFor(o, status)
				return d
			}
			if n > 0 {
				statusLimit = n
				limit = min(limit, n)
			}
		case o.Err != nil:
			if !kindRetryable {
				d.Reason = ErrNotRetryable
				return d
			}
		default:
			return d // a response the table does not treat as failure
		}
		if !o.Idempotent && !(o.Err != nil && (o.NotSent || notSent)) {
			d.Reason = ErrNotIdempotent
			return d
		}
	}
	if !o.Replayable {
		d.Reason = ErrBodyNotReplayable
		return d
	}

	wait, src, hinted := serverHint(header, o.Err, now)
	// A 429 retried after the server's hint, or at the pace learned from
	// it, is the server rate-limiting a healthy exchange: it does not use
	// up an attempt (unless WithRetryStatus set a limit for 429 itself, or
	// WithMaxAttempts(1) turned retrying off). The call's total waiting
	// bounds those retries instead.
	d.RateLimited = status == http.StatusTooManyRequests && statusLimit == 0 && p.maxAttempts > 1 && (w.Pace > 0 || hinted && wait > 0)
	if !d.RateLimited && o.Attempt-w.RateLimited >= limit {
		d.Reason = ErrAttemptsExhausted
		return d
	}

	// The latest a wait may end: the deadline, else the rest of the
	// waiting the cap allows the call in all.
	var end time.Time
	if deadline.IsZero() {
		end = now.Add(p.maxWait - w.Waited)
	}
	if hinted {
		d.RetryAt = now.Add(wait)
		if wait > p.maxWait || !end.IsZero() && d.RetryAt.After(end) {
			d.Reason = ErrWaitTooLong
			return d
		}
		if !deadline.IsZero() && !d.RetryAt.Before(deadline) {
			d.Reason = ErrDeadline
			return d
		}
		span := min(max(wait, w.Pace, p.baseWait(), minHintJitter), maxHintJitter)
		total := min(wait+time.Duration(float64(span)*clampDraw(draw)), p.maxWait)
		if d.RateLimited && w.RateLimited > 0 {
			// Refused for rate again: wait at least as a backoff would
			// after as many refusals, so that a server swamped by more
			// clients than it can serve in time is not asked ever more
			// often (the hint, a whole second or so, is the same for all).
			total = max(total, min(p.backoff.Delay(w.RateLimited, prev, draw), p.maxWait))
		}
		switch {
		case !deadline.IsZero() && !now.Add(total).Before(deadline):
			total = wait // the jitter may not eat the time left for the attempt
		case !end.IsZero() && now.Add(total).After(end):
			total = end.Sub(now)
		}
		d.Retry, d.Wait, d.Source = true, total, src
		return d
	}
	// The backoff grows with the failures so far; after a hint-less 429
	// it grows with the call's refusals for rate, which do not count as
	// failures.
	n := o.Attempt - 1 - w.RateLimited
	if d.RateLimited {
		n = w.RateLimited
	}
	wait = min(p.backoff.Delay(n, prev, draw), p.maxWait)
	if !deadline.IsZero() && !now.Add(wait).Before(deadline) {
		d.Reason = ErrDeadline
		return d
	}
	if !end.IsZero() && now.Add(wait).After(end) {
		if !end.After(now) {
			d.Reason = ErrWaitTooLong // the call has waited all the cap allows
			return d
		}
		wait = end.Sub(now)
	}
	d.Retry, d.Wait, d.Source = true, wait, SourceBackoff
	return d
}

// reasonFor names why a final failure is final.
func reasonFor(o Outcome, status int) error {
	if status != 0 && status < 400 && o.Err == nil {
		return nil
	}
	return ErrNotRetryable
}

// baseWait is the backoff's base where the strategy has one.
func (p *Policy) baseWait() time.Duration {
	if b, ok := p.backoff.(interface{ Base() time.Duration }); ok {
		return b.Base()
	}
	return 0
}

// serverHint returns the wait the server asked for: Retry-After first, then
// the reset of an exhausted quota; or a wait carried by a RetryAfter error.
func serverHint(h http.Header, err error, now time.Time) (time.Duration, WaitSource, bool) {
	if h != nil {
		if d, ok := hint.RetryAfter(h, now); ok {
			return d, SourceRetryAfter, true
		}
		if q, ok := hint.RateLimit(h, now); ok && q.Exhausted() && q.HasReset {
			return q.Reset, SourceRateLimitReset, true
		}
	}
	var he *hintError
	if err != nil && errors.As(err, &he) {
		return he.wait, SourceRetryAfter, true
	}
	return 0, SourceNone, false
}

func clampDraw(u float64) float64 {
	if !(u >= 0) || u >= 1 {
		return 0
	}
	return u
}
