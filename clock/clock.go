// Package clock is the seam through which heed reads the time and sleeps.
//
// Every heed layer takes a [Clock] instead of calling the time package, so
// tests and the simulator can run the production code in virtual time (see
// heedtest.Clock) while programs use [Real].
package clock

import "time"

// Clock tells the time and makes timers. Implementations must be safe for
// concurrent use by multiple goroutines.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that sends the time on its channel once d
	// has elapsed.
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f in its own goroutine once d has elapsed. The
	// returned Timer's C method returns nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is the part of [time.Timer] heed uses.
type Timer interface {
	// C returns the channel on which the timer delivers its time, or nil
	// for a timer made by AfterFunc.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the call
	// stopped the timer, false if it had already fired or been stopped.
	Stop() bool
}

// Real returns the wall clock, backed by the time package.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{time.AfterFunc(d, f)}
}

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Sleep waits for d on c, or until done is closed, whichever comes first.
// It reports whether the full duration elapsed. A d of zero or less returns
// true at once, without making a timer.
func Sleep(c Clock, d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := c.NewTimer(d)
	select {
	case <-t.C():
		return true
	case <-done:
		t.Stop()
		return false
	}
}
