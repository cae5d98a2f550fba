// Package throttle paces requests so a server's limit is not hit: a token
// bucket and a concurrency limit for limits that are known, and an
// adaptive pacer that learns a safe rate from what the server says.
//
// Every decision is a plain function of the state and the time given, in
// the manner of golang.org/x/time/rate's ReserveN(t, n), so the transport
// drives them with the real clock and tests and the simulator in virtual
// time.
package throttle

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// ErrThrottled is matched by the errors of this package that refuse or end
// a wait.
var ErrThrottled = errors.New("throttled")

// maxInterval bounds the time between events, and the span of a burst: a
// year, far below where durations overflow.
const maxInterval = 365 * 24 * time.Hour

// RateLimiter is a key's rate limit as heed's transport uses it: a
// reservation at a given time, refused when it would end past a deadline.
// *Limiter is the in-memory one; a fleet shares one kept in Redis through
// the heedredis module. Implementations must be safe for concurrent use
// and must not block for long: the transport calls them on every request.
type RateLimiter interface {
	// ReserveBefore reserves a slot for an event ready at now and returns
	// when it may happen. When that would be after deadline (zero for
	// none) it reserves nothing and returns when it could have happened
	// and false.
	ReserveBefore(now, deadline time.Time) (time.Time, bool)
	// Allow reserves a slot only if one is free at now.
	Allow(now time.Time) bool
}

var _ RateLimiter = (*Limiter)(nil)

// Limiter is a token bucket in its GCRA form: rate events a second with a
// burst, reserved at a given time. It is safe for concurrent use and
// allocates nothing.
//
// golang.org/x/time/rate is the ecosystem's token bucket; heed keeps its
// own because it needs reservations made at an injected time and refused
// when they would end past a deadline, without the allocation of
// rate.Limiter.ReserveN, and a rate that the adaptive pacer changes often.
type Limiter struct {
	mu        sync.Mutex
	interval  time.Duration // time per event; 0 means no limit
	tolerance time.Duration // how far ahead of schedule a burst may run
	tat       time.Time     // theoretical arrival time of the next event
}

// NewLimiter returns a limiter of rate events a second and the given
// burst. rate must be positive and finite, burst at least 1.
func NewLimiter(rate float64, burst int) (*Limiter, error) {
	l := &Limiter{}
	if err := l.set(rate, burst); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Limiter) set(rate float64, burst int) error {
	if !(rate > 0) || math.IsInf(rate, 0) {
		return fmt.Errorf("throttle: rate %v must be positive and finite", rate)
	}
	if burst < 1 {
		return fmt.Errorf("throttle: burst %d must be at least 1", burst)
	}
	interval := float64(time.Second) / rate
	if interval > float64(maxInterval) {
		return fmt.Errorf("throttle: rate %v is below one event a year", rate)
	}
	if float64(burst-1)*interval > float64(maxInterval) {
		return fmt.Errorf("throttle: burst %d at rate %v spans more than a year", burst, rate)
	}
	l.interval = max(1, time.Duration(interval))
	l.tolerance = time.Duration(burst-1) * l.interval
	return nil
}

// SetRate changes the rate and burst from now on, keeping the events
// already reserved.
func (l *Limiter) SetRate(rate float64, burst int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.set(rate, burst)
}

// Rate returns the limiter's rate in events a second.
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(time.Second) / float64(l.interval)
}

// Reserve reserves an event at now and returns when it may happen (now or
// later). It never refuses.
func (l *Limiter) Reserve(now time.Time) time.Time {
	at, _ := l.ReserveBefore(now, time.Time{})
	return at
}

// ReserveBefore reserves an event at now if it may happen before deadline
// (zero for none) and returns when. Otherwise it reserves nothing, and
// returns when the event could have happened and false.
func (l *Limiter) ReserveBefore(now, deadline time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reserveLocked(now, deadline)
}

func (l *Limiter) reserveLocked(now, deadline time.Time) (time.Time, bool) {
	tat := l.tat
	if tat.Before(now) {
		tat = now
	}
	at := tat.Add(-l.tolerance)
	if at.Before(now) {
		at = now
	}
	if !deadline.IsZero() && at.After(deadline) {
		return at, false
	}
	l.tat = tat.Add(l.interval)
	return at, true
}

// Allow reports whether an event may happen at now, and reserves it if so.
func (l *Limiter) Allow(now time.Time) bool {
	_, ok := l.ReserveBefore(now, now)
	return ok
}
