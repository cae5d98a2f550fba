// Package backoff computes the wait before a retry, with the jitter
// strategies of "Exponential Backoff And Jitter" (M. Brooker, AWS
// Architecture Blog).
//
// A [Strategy] is a pure function of the retry number, the previous wait
// and one uniform random draw, so it is safe to share between goroutines,
// exact to test, and reproducible: feed it draws from a seeded source and
// the sequence repeats. Every strategy is capped, and no input overflows:
// retry 10,000 still yields a value in [0, cap].
//
// The retry number n counts from 0, so the first retry's ceiling is base,
// as in the common Python recipe base * 2**attempt. Callers that count the
// first retry as 1 (Brooker's simulator does) get 2*base for it.
package backoff

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Strategy computes the wait before retry n.
type Strategy interface {
	// Delay returns the wait before retry n (n >= 0, counted from 0),
	// given the previous wait (0 for the first retry) and a uniform draw u
	// in [0, 1). The result lies in [0, Cap()].
	Delay(n int, prev time.Duration, u float64) time.Duration
	// Cap is the largest wait the strategy returns.
	Cap() time.Duration
}

// Kind names a strategy.
type Kind uint8

const (
	KindExponential  Kind = iota + 1 // base*2^n, no jitter
	KindFull                         // rand(0, ceil)
	KindEqual                        // ceil/2 + rand(0, ceil/2)
	KindDecorrelated                 // min(cap, rand(base, prev*3))
	KindConstant                     // always the same wait
)

func (k Kind) String() string {
	switch k {
	case KindExponential:
		return "exponential"
	case KindFull:
		return "full"
	case KindEqual:
		return "equal"
	case KindDecorrelated:
		return "decorrelated"
	case KindConstant:
		return "constant"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Backoff is one of the five strategies with its base and cap. Build it with
// [Exponential], [Full], [Equal], [Decorrelated] or [Constant]; the zero
// value is invalid and [Backoff.Validate] says so. Backoff is a small value
// type, safe for concurrent use.
type Backoff struct {
	kind      Kind
	base, max time.Duration
}

var _ Strategy = Backoff{}

// Exponential doubles the wait on every retry without jitter:
// min(cap, base*2^n). Clients that fail together retry together with it;
// prefer [Full] unless you need the deterministic schedule.
func Exponential(base, cap time.Duration) Backoff {
	return Backoff{KindExponential, base, cap}
}

// Full is "full jitter": rand(0, min(cap, base*2^n)). It spreads clients
// the widest and, in Brooker's simulation, does the least total work; it is
// heed's default.
func Full(base, cap time.Duration) Backoff { return Backoff{KindFull, base, cap} }

// Equal is "equal jitter": ceil/2 + rand(0, ceil/2) with
// ceil = min(cap, base*2^n). It never waits less than half the ceiling.
func Equal(base, cap time.Duration) Backoff { return Backoff{KindEqual, base, cap} }

// Decorrelated is "decorrelated jitter": min(cap, rand(base, prev*3)). It
// ignores n and grows from the previous wait; a prev below base (such as 0
// for the first retry) counts as base.
func Decorrelated(base, cap time.Duration) Backoff {
	return Backoff{KindDecorrelated, base, cap}
}

// Constant always waits d.
func Constant(d time.Duration) Backoff { return Backoff{KindConstant, d, d} }

// Kind returns the strategy's kind.
func (b Backoff) Kind() Kind { return b.kind }

// Base returns the base wait.
func (b Backoff) Base() time.Duration { return b.base }

// Cap returns the largest wait b returns.
func (b Backoff) Cap() time.Duration { return b.max }

// Validate reports a base or cap that cannot work: a zero Backoff, a
// negative base, a base of zero for the growing strategies (they would never
// grow), or a cap below the base.
func (b Backoff) Validate() error {
	switch {
	case b.kind < KindExponential || b.kind > KindConstant:
		return errors.New("backoff: zero Backoff; build one with Full, Equal, Decorrelated, Exponential or Constant")
	case b.base < 0:
		return fmt.Errorf("backoff: %v base %v is negative", b.kind, b.base)
	case b.base == 0 && b.kind != KindConstant:
		return fmt.Errorf("backoff: %v base is zero, so the wait would never grow", b.kind)
	case b.max < b.base:
		return fmt.Errorf("backoff: %v cap %v is below its base %v", b.kind, b.max, b.base)
	}
	return nil
}

// Ceiling returns min(cap, base*2^n), the exponential schedule the jittered
// strategies draw under, without overflowing for any n.
func (b Backoff) Ceiling(n int) time.Duration {
	if n < 0 {
		n = 0
	}
	if b.base <= 0 {
		return 0
	}
	// base<<n overflows, or passes the cap, exactly when base > cap>>n.
	if n >= 63 || b.base > b.max>>uint(n) {
		return b.max
	}
	return b.base << uint(n)
}

// Delay implements [Strategy]. Draws outside [0, 1) are clamped into it.
func (b Backoff) Delay(n int, prev time.Duration, u float64) time.Duration {
	u = clampDraw(u)
	switch b.kind {
	case KindExponential:
		return b.Ceiling(n)
	case KindFull:
		return scale(b.Ceiling(n), u)
	case KindEqual:
		c := b.Ceiling(n)
		half := c / 2
		return half + scale(c-half, u)
	case KindDecorrelated:
		if prev < b.base {
			prev = b.base
		}
		hi := time.Duration(math.MaxInt64) // prev*3 saturates rather than overflows
		if prev <= hi/3 {
			hi = prev * 3
		}
		if hi <= b.base {
			return min(b.base, b.max)
		}
		return min(b.max, b.base+scale(hi-b.base, u))
	case KindConstant:
		return b.base
	}
	return 0
}

// scale returns d*u for u in [0, 1), never more than d.
func scale(d time.Duration, u float64) time.Duration {
	v := time.Duration(float64(d) * u)
	if v > d || v < 0 { // float rounding near math.MaxInt64
		return d
	}
	return v
}

func clampDraw(u float64) float64 {
	if !(u >= 0) { // also catches NaN
		return 0
	}
	if u >= 1 {
		return math.Nextafter(1, 0)
	}
	return u
}

func (b Backoff) String() string {
	if b.kind == KindConstant {
		return fmt.Sprintf("constant(%v)", b.base)
	}
	return fmt.Sprintf("%v(base=%v, cap=%v)", b.kind, b.base, b.max)
}
