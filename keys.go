package heed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
)

// defaultMaxKeys bounds how many keys get state of their own; further keys
// share one overflow state, so a key function that returns unbounded values
// (a full URL, say) cannot grow memory without bound.
const defaultMaxKeys = 4096

// overflowKey names the state shared by keys past the limit.
const overflowKey = "(other)"

// keyState is the state heed shares between all requests to one key.
type keyState struct {
	key      string
	breaker  *breaker.Breaker // nil when breakers are off
	budget   budget.Budget    // nil when budgets are off
	throttle throttleState
	hedge    *hedgeState  // nil when hedging is off
	retrying atomic.Int32 // retries in flight, counted under WithMaxConcurrentRetries
}

// endRetry gives back the place of a retry in flight, if held, and
// reports that none is held any more.
func (ks *keyState) endRetry(held bool) bool {
	if held {
		ks.retrying.Add(-1)
	}
	return false
}

// registry maps keys to their state. Reads, on every request, load an
// immutable map without locking or allocating; a new key copies the map
// under a lock, which happens once per key.
type registry struct {
	p        *Policy
	m        atomic.Pointer[map[string]*keyState]
	last     atomic.Pointer[keyState]
	mu       sync.Mutex // serialises writers
	overflow *keyState
}

func newRegistry(p *Policy) *registry {
	r := &registry{p: p}
	m := make(map[string]*keyState)
	r.m.Store(&m)
	return r
}

// state returns the state of key, creating it on first use. The last key
// asked for is remembered: a transport that calls one host skips the map.
func (r *registry) state(key string) *keyState {
	if ks := r.last.Load(); ks != nil && ks.key == key {
		return ks
	}
	if ks := (*r.m.Load())[key]; ks != nil {
		r.last.Store(ks)
		return ks
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.m.Load()
	if ks := old[key]; ks != nil {
		return ks
	}
	if len(old) >= r.p.maxKeys {
		if r.overflow == nil {
			r.overflow = r.p.newKeyState(overflowKey)
		}
		return r.overflow
	}
	ks := r.p.newKeyState(key)
	m := make(map[string]*keyState, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[key] = ks
	r.m.Store(&m)
	return ks
}

func (p *Policy) newKeyState(key string) *keyState {
	ks := &keyState{key: key}
	if !p.breakerOff {
		s := p.breakerSettings
		if p.breakerFleet != nil {
			s.Fleet = p.breakerFleet(key)
		}
		user := s.OnStateChange
		s.OnStateChange = func(c breaker.Change) {
			p.breakerChanged(key, c)
			if user != nil {
				user(c)
			}
		}
		ks.breaker, _ = breaker.New(s) // settings were checked by NewPolicy
	}
	p.initThrottle(&ks.throttle, key)
	if !p.budgetOff {
		b, err := p.budgets.NewBudget(key)
		switch {
		case err != nil:
			ks.throttle.err = errors.Join(ks.throttle.err, fmt.Errorf("heed: retry budget for key %q: %w", key, err))
		case b == nil:
			ks.throttle.err = errors.Join(ks.throttle.err, fmt.Errorf("heed: retry budget for key %q: the budget.Maker returned no budget", key))
		default:
			ks.budget = b
		}
	}
	if p.hedge != nil {
		ks.hedge = p.newHedgeState()
	}
	return ks
}

// breakerChanged reports a change of a key's breaker, outside the
// breaker's lock.
func (p *Policy) breakerChanged(key string, c breaker.Change) {
	if len(p.hooks) > 0 {
		p.emit(context.Background(), Event{Kind: EventBreaker, Time: c.At, Key: key, From: c.From, To: c.To, RetryAt: c.Until})
	}
	if lg := p.log(); lg != nil {
		level := slog.LevelInfo
		if c.To == breaker.Open {
			level = slog.LevelWarn
		}
		if lg.Enabled(context.Background(), level) {
			attrs := []slog.Attr{slog.String("key", key), slog.String("from", c.From.String()), slog.String("to", c.To.String())}
			if !c.Until.IsZero() {
				attrs = append(attrs, slog.Time("until", c.Until))
			}
			lg.LogAttrs(context.Background(), level, "heed: circuit breaker "+c.To.String(), attrs...)
		}
	}
}

// admit asks the key's breaker to let an attempt through. The clock is read
// only when the breaker needs it: a closed breaker in consecutive mode
// decides without the time.
func (p *Policy) admit(ks *keyState) (breaker.Ticket, *breaker.OpenError) {
	b := ks.breaker
	if b == nil {
		return breaker.Ticket{}, nil
	}
	var now time.Time
	if b.State() != breaker.Closed || b.NeedsTime() {
		now = p.clock.Now()
	}
	t, err := b.Allow(now)
	if err != nil {
		return t, err.(*breaker.OpenError)
	}
	return t, nil
}

// settle reports an attempt's outcome to the key's breaker and budget.
func (p *Policy) settle(ks *keyState, t breaker.Ticket, o Outcome, now time.Time) {
	if ks.breaker == nil && ks.budget == nil {
		return
	}
	count := p.breakerCount(ks, o)
	if ks.budget != nil {
		ks.budget.Outcome(count == breaker.Failure)
	}
	if b := ks.breaker; b != nil {
		if now.IsZero() && (count != breaker.Success || b.NeedsTime() || b.State() != breaker.Closed) {
			now = p.clock.Now()
		}
		b.Record(t, now, count)
	}
}

// breakerCount decides how an outcome counts for the breaker: transport
// failures and 5xx count as failures; the caller's cancellation and client
// errors (4xx but 408) do not count, nor does a failure a heed tier below
// has already retried (Heed-Retried): it speaks of that tier's dependency,
// and that tier's own breaker counts it. A 429 is the server saying it is
// healthy but busy: it counts only when the server asks for a wait longer
// than the cap and, with adaptive pacing off, when it gives no hint at all
// (the usual rule); with pacing on, the pacer answers a hint-less 429 by
// slowing down. A WithBreakerCounter function has the last word.
func (p *Policy) breakerCount(ks *keyState, o Outcome) breaker.Outcome {
	status, header := o.status()
	def := breaker.Success
	switch {
	case o.Err != nil && status == 0:
		def = breaker.Failure
		if kind, _, _ := classifyError(o.Err); kind == KindCanceled {
			def = breaker.Ignore
		}
	case status >= 400 && len(header[headerRetried]) > 0:
		def = breaker.Ignore
	case status >= 500, status == http.StatusRequestTimeout:
		def = breaker.Failure
	case status == http.StatusTooManyRequests:
		def = breaker.Ignore
		d, _, ok := serverHint(header, nil, p.clock.Now())
		if ok && d > p.maxWait || !ok && ks.throttle.pacer == nil {
			def = breaker.Failure
		}
	case status >= 400:
		def = breaker.Ignore
	}
	if p.breakerCounter != nil {
		return p.breakerCounter(o, def)
	}
	return def
}

// gate applies the budget and the breaker to a decision to retry: a retry
// the budget refuses ends the call at once, and so does one whose next
// attempt would meet an open breaker: an open breaker fails fast, with
// RetryAt saying when it lets a probe through. A retry of a 429 is not
// charged to the budget when it waits for the server's own hint, or while
// adaptive pacing is on: the server is healthy, and its hint or the pacer
// sets the pace of those retries.
func (p *Policy) gate(ks *keyState, d decision, status int, now time.Time) decision {
	if !d.Retry {
		return d
	}
	if ks.breaker != nil {
		if until, open := ks.breaker.OpenUntil(); open && now.Add(d.Wait).Before(until) {
			return decision{Reason: ErrBreakerOpen, RetryAt: until, Kind: d.Kind}
		}
	}
	paced := status == http.StatusTooManyRequests && (d.Source == SourceRetryAfter || d.Source == SourceRateLimitReset || ks.throttle.pacer != nil)
	if p.maxRetrying > 0 && !paced {
		if ks.retrying.Add(1) > int32(p.maxRetrying) {
			ks.retrying.Add(-1)
			return decision{Reason: ErrBudgetExhausted, Kind: d.Kind}
		}
		d.holdsRetry = true
	}
	if ks.budget != nil && !paced && !ks.budget.Withdraw(now) {
		ks.endRetry(d.holdsRetry)
		return decision{Reason: ErrBudgetExhausted, Kind: d.Kind}
	}
	return d
}
