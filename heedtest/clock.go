package heedtest

import (
	"slices"
	"sync"
	"time"

	"github.com/heed-go/heed/clock"
)

// Clock is a fake [clock.Clock] whose time moves only when the test says so,
// so retry waits of minutes take no real time. It is safe for concurrent use.
//
// Move it with [Clock.Advance], or let it move itself with
// [Clock.AutoAdvance], which is the easiest choice when one goroutine drives
// the code under test. [Clock.BlockUntil] lets a test wait until the code
// under test is sleeping before it advances the time.
type Clock struct {
	mu      sync.Mutex
	cond    *sync.Cond // signalled when timers are added or removed
	now     time.Time
	timers  []*fakeTimer
	auto    bool
	started int // timers ever made, for Started
}

var _ clock.Clock = (*Clock)(nil)

// NewClock returns a fake clock reading start.
func NewClock(start time.Time) *Clock {
	c := &Clock{now: start}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when the fake time reaches now+d.
func (c *Clock) NewTimer(d time.Duration) clock.Timer {
	return c.add(d, nil)
}

// AfterFunc calls f in its own goroutine when the fake time reaches now+d.
func (c *Clock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return c.add(d, f)
}

// AutoAdvance makes every new NewTimer move the clock forward to its
// deadline and fire at once, as if the sleeper slept without taking any real
// time. AfterFunc timers (timeouts) do not move the clock themselves; they
// fire when a sleeper's jump or an Advance passes their deadline.
func (c *Clock) AutoAdvance() *Clock {
	c.mu.Lock()
	c.auto = true
	c.mu.Unlock()
	return c
}

// Advance moves the time forward by d, firing every timer that comes due, in
// deadline order.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.advanceLocked(target)
	c.mu.Unlock()
}

// AdvanceToNext moves the time to the earliest pending timer's deadline and
// fires it. It returns how far the time moved, and false if no timer was
// pending.
func (c *Clock) AdvanceToNext() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return 0, false
	}
	from := c.now
	c.advanceLocked(c.timers[0].when)
	return c.now.Sub(from), true
}

// Pending returns how many timers are waiting to fire.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Started returns how many timers have been made since the clock was
// created, fired or not.
func (c *Clock) Started() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
}

// BlockUntil waits until at least n timers are pending: the code under test
// has gone to sleep and the test may advance the time.
func (c *Clock) BlockUntil(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.timers) < n {
		c.cond.Wait()
	}
}

type fakeTimer struct {
	c    *Clock
	when time.Time
	ch   chan time.Time
	f    func()
}

func (c *Clock) add(d time.Duration, f func()) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), f: f}
	if f == nil {
		t.ch = make(chan time.Time, 1)
	}
	c.started++
	if d <= 0 {
		t.fireLocked(c.now)
		return t
	}
	if c.auto && f == nil {
		c.advanceLocked(t.when) // fires earlier timers first, then this one
		if t.when.After(c.now) {
			panic("heedtest: auto-advance failed to reach the timer")
		}
		t.fireLocked(c.now)
		return t
	}
	i, _ := slices.BinarySearchFunc(c.timers, t.when, func(x *fakeTimer, w time.Time) int {
		if x.when.After(w) {
			return 1
		}
		return -1 // equal deadlines keep creation order
	})
	c.timers = slices.Insert(c.timers, i, t)
	c.cond.Broadcast()
	return t
}

// advanceLocked fires due timers in order and leaves the time at target.
func (c *Clock) advanceLocked(target time.Time) {
	for len(c.timers) > 0 && !c.timers[0].when.After(target) {
		t := c.timers[0]
		c.timers = c.timers[1:]
		if t.when.After(c.now) {
			c.now = t.when
		}
		t.fireLocked(c.now)
	}
	if target.After(c.now) {
		c.now = target
	}
	c.cond.Broadcast()
}

func (t *fakeTimer) fireLocked(now time.Time) {
	if t.f != nil {
		go t.f()
		return
	}
	select {
	case t.ch <- now:
	default:
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	c.cond.Broadcast()
	return true
}
