// Package vclock runs real code in virtual time, deterministically.
//
// A [Clock] is a heed clock.Clock whose time moves only when every actor
// (a goroutine started with [Clock.Go]) is asleep on one of its timers. The
// actors take turns: exactly one runs at a time, until it sleeps or ends,
// and the next to run is the one whose timer is due first (ties go to the
// timer made first, actors started together run in the order they were
// started). So the production code of heed's transport, breaker, budget
// and pacer runs unchanged, a simulated hour takes as long as the work
// itself, and a run repeats exactly for the same random seeds.
//
// The contract the code under simulation must keep: it blocks only on
// this clock's timers (clock.Sleep does), and every NewTimer an actor makes
// is one it then waits on. AfterFunc timers run their function on the
// scheduler's goroutine when due; it must be quick and must not sleep.
package vclock

import (
	"container/heap"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/heed-go/heed/clock"
)

// Epoch is the virtual time at which a Clock starts.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Clock is a virtual clock with its scheduler. Build it with New; run the
// actors with Go and then Run.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	events events
	seq    uint64
	yield  chan bool // the running actor sleeps (false) or ends (true)
	fired  int       // events run, for progress
	actors int       // actors started and not ended
}

var _ clock.Clock = (*Clock)(nil)

// New returns a clock reading Epoch, with no actors.
func New() *Clock {
	return &Clock{now: Epoch, yield: make(chan bool)}
}

// event is a timer, an AfterFunc or an actor's start.
type event struct {
	when    time.Time
	at      int64 // when, in nanoseconds since Epoch: cheaper to compare
	seq     uint64
	ch      chan time.Time // a sleeper's timer
	fn      func()         // an AfterFunc
	start   func()         // an actor to start
	stopped bool
	index   int
}

type events []*event

func (h events) Len() int { return len(h) }
func (h events) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h events) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *events) Push(x any)   { e := x.(*event); e.index = len(*h); *h = append(*h, e) }
func (h *events) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
func (c *Clock) push(e *event) {
	c.seq++
	e.seq, e.at = c.seq, int64(e.when.Sub(Epoch))
	heap.Push(&c.events, e)
}

// Now returns the virtual time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Elapsed is the virtual time since Epoch.
func (c *Clock) Elapsed() time.Duration { return c.Now().Sub(Epoch) }

// Go starts f as an actor at the current virtual time, after the actors
// already started at that time.
func (c *Clock) Go(f func()) {
	c.mu.Lock()
	c.push(&event{when: c.now, start: f})
	c.mu.Unlock()
}

// NewTimer makes a timer that fires after d, and hands the turn to the
// next actor: the caller must now wait on the timer's channel.
func (c *Clock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	e := &event{when: c.now.Add(max(d, 0)), ch: make(chan time.Time, 1)}
	c.push(e)
	c.mu.Unlock()
	c.yield <- false
	return &timer{c: c, e: e}
}

// AfterFunc calls f on the scheduler's goroutine once d has elapsed.
func (c *Clock) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &event{when: c.now.Add(max(d, 0)), fn: f}
	c.push(e)
	return &timer{c: c, e: e}
}

type timer struct {
	c *Clock
	e *event
}

func (t *timer) C() <-chan time.Time { return t.e.ch }

func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.e.stopped || t.e.index < 0 {
		return false
	}
	t.e.stopped = true
	heap.Remove(&t.c.events, t.e.index)
	return true
}

// ErrStalled is returned by Run when actors remain but no timer is due:
// an actor blocked on something other than the clock.
var ErrStalled = errors.New("vclock: actors are blocked outside the clock")

// ErrLimit is returned by Run when the next event lies past its limit.
var ErrLimit = errors.New("vclock: virtual time limit reached with actors still running")

// Run runs the actors until all have ended, the context is done, or the
// virtual time would pass limit (zero for no limit). progress, if not nil,
// is called with the virtual time now and then. When Run returns early the
// actors stay asleep where they are, and a later Run carries on.
func (c *Clock) Run(ctx context.Context, limit time.Duration, progress func(elapsed time.Duration)) error {
	for {
		c.mu.Lock()
		if len(c.events) == 0 {
			c.mu.Unlock()
			if c.actors > 0 {
				return ErrStalled
			}
			return nil
		}
		if limit > 0 && c.events[0].when.Sub(Epoch) > limit {
			c.mu.Unlock()
			return ErrLimit
		}
		e := heap.Pop(&c.events).(*event)
		c.now = e.when
		c.fired++
		fired := c.fired
		c.mu.Unlock()
		if fired%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if progress != nil {
				progress(e.when.Sub(Epoch))
			}
		}
		switch {
		case e.fn != nil:
			e.fn()
		case e.start != nil:
			c.actors++
			f := e.start
			go func() {
				defer func() { c.yield <- true }()
				f()
			}()
			if <-c.yield {
				c.actors--
			}
		default:
			e.ch <- e.when
			if <-c.yield {
				c.actors--
			}
		}
	}
}

// Network is an http.RoundTripper that carries each request to Handler in
// virtual time: the round trip is spent on the clock before the handler
// serves it (the server's clock then runs half a trip late, which changes
// nothing but halves the events to simulate). The handler runs on the
// caller's actor.
type Network struct {
	Clock   *Clock
	RTT     time.Duration
	Handler http.Handler
	// Detach serves a fresh request carrying only the method, URL and
	// header, as a network would: nothing of the caller's context crosses.
	Detach bool
	// Arrived, if set, is called as each request reaches the handler.
	Arrived func()
}

// RoundTrip implements http.RoundTripper.
func (n *Network) RoundTrip(req *http.Request) (*http.Response, error) {
	clock.Sleep(n.Clock, n.RTT, nil)
	if n.Arrived != nil {
		n.Arrived()
	}
	sreq := req
	if n.Detach {
		sreq = httptest.NewRequest(req.Method, req.URL.String(), nil)
		sreq.Header = req.Header.Clone()
	}
	rec := httptest.NewRecorder()
	n.Handler.ServeHTTP(rec, sreq)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// Rand returns the random source of one stream (an actor, a client) of a
// simulation seeded with seed. Seed and stream are mixed (SplitMix64) into
// the PCG's state: math/rand/v2's PCG seeded with one seed and nearby
// stream numbers gives correlated draws (their second Float64s can all lie
// within a few hundredths), which would make simulated clients jitter
// alike.
func Rand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix(seed^splitmix(stream)), splitmix(stream+0x9e3779b97f4a7c15^seed)))
}

// splitmix is SplitMix64's finalizer: a bijective scramble of x.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
