package heed

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync/atomic"
	"time"
)

// Overrides change a [Policy]'s settings for the calls made with one
// context (see [Override]): a call that must not wait long, a POST the
// server deduplicates, a request that must not be hedged. The call still
// shares its key's state, the circuit breaker, the retry budget, the
// limits and pacing, with every other call of the policy, so overriding a
// setting never starts a key's state over. A zero field keeps the
// policy's setting.
type Overrides struct {
	// Key files the call under this key instead of the one the policy's
	// key function gives (the request's host), and names the key of a
	// [Do] call (the empty key by default).
	Key string
	// MaxAttempts bounds the call's attempts, the first one included; 1
	// makes a single attempt.
	MaxAttempts int
	// RetryStatus, if not nil, replaces the policy's retryable statuses for
	// the call: each status retried, with its own limit of attempts (0
	// for MaxAttempts). An empty map retries no status.
	RetryStatus map[int]int
	// AttemptTimeout and MaxTotal bound each attempt and the whole call,
	// as [WithAttemptTimeout] and [WithMaxTotal] do.
	AttemptTimeout, MaxTotal time.Duration
	// Idempotent vouches that the call is safe to repeat although its
	// method is not idempotent and it carries no Idempotency-Key.
	Idempotent bool
	// NoHedging turns hedging off for the call.
	NoHedging bool
}

type overridesKey struct{}

// overridden is set once any context carries Overrides: until then a
// request does not look for them.
var overridden atomic.Bool

// Override returns a copy of ctx whose heed calls, through a [Transport]
// or [Do], use o in place of their policy's settings. Bad values in o
// make those calls fail with an error naming them. o applies to every
// heed call made with ctx or a context derived from it; a later Override
// replaces an earlier one whole.
func Override(ctx context.Context, o Overrides) context.Context {
	if o.RetryStatus != nil {
		o.RetryStatus = maps.Clone(o.RetryStatus) // the caller may change its map later
	}
	overridden.Store(true)
	return context.WithValue(ctx, overridesKey{}, &o)
}

// forCall returns the policy a call made with ctx runs under: p, or a
// copy of p changed by the context's Overrides, which shares p's per-key
// state. A zero Policy is refused here, for Do and the transport alike.
func (p *Policy) forCall(ctx context.Context) (*Policy, error) {
	if p.keys == nil {
		return nil, errZeroPolicy
	}
	if !overridden.Load() {
		return p, nil
	}
	o, _ := ctx.Value(overridesKey{}).(*Overrides)
	if o == nil {
		return p, nil
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("heed: Overrides."+format, args...))
	}
	if o.MaxAttempts < 0 {
		bad("MaxAttempts %d: must not be negative", o.MaxAttempts)
	}
	if o.AttemptTimeout < 0 {
		bad("AttemptTimeout %v: must not be negative", o.AttemptTimeout)
	}
	if o.MaxTotal < 0 {
		bad("MaxTotal %v: must not be negative", o.MaxTotal)
	}
	for code, n := range o.RetryStatus {
		if code < 100 || code > 599 || n < 0 {
			bad("RetryStatus[%d] = %d: need a status code and attempts of at least 0", code, n)
		}
	}
	c := *p
	c.plain = false
	if o.Key != "" {
		c.fixedKey, c.keyFixed = o.Key, true
	}
	if o.MaxAttempts > 0 {
		c.maxAttempts = o.MaxAttempts
	}
	if o.RetryStatus != nil {
		c.statusRules = o.RetryStatus
	}
	if o.AttemptTimeout > 0 {
		c.attemptTimeout = o.AttemptTimeout
	}
	if o.MaxTotal > 0 {
		c.maxTotal = o.MaxTotal
	}
	if c.maxTotal > 0 && c.attemptTimeout > c.maxTotal {
		bad("AttemptTimeout %v is longer than the call's MaxTotal %v", c.attemptTimeout, c.maxTotal)
	}
	if o.Idempotent {
		c.idempotent = true
	}
	if o.NoHedging {
		c.hedge = nil
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

// keyFor returns the key of a request: the key its Overrides set, else
// the key function's, else its host.
func (p *Policy) keyFor(req *http.Request) string {
	switch {
	case p.keyFixed:
		return p.fixedKey
	case p.keyFunc != nil:
		return p.keyFunc(req)
	}
	return req.URL.Host
}
