// Package breaker is a circuit breaker: it watches the outcomes of calls to
// one dependency and, when they fail persistently, stops calls for a while
// so the dependency can recover, then lets a few probes through to see
// whether it has.
//
// A [Breaker] tells a dependency that is down from one that is degraded.
// By default it trips when the failures in a sliding window reach a ratio
// of the calls (90% of at least 20 calls in 30 s): a dependency that still
// answers one call in three or one in two keeps being called, and the
// retry budget, not the breaker, bounds what its failures cost. It can
// also trip after a number of consecutive failures (the classic rule,
// pybreaker's fail_max), alone or beside the ratio. The window is a ring
// of buckets advanced by the time the caller passes in: no goroutine or
// timer runs per call, and a success costs an atomic add.
//
// Its decisions are plain functions of its state and the time given, in the
// manner of golang.org/x/time/rate: [Breaker.Allow] at time now, then
// [Breaker.Record] the outcome. Outcomes of calls allowed before the last
// change of state are ignored, so a slow call from an earlier state cannot
// flip a fresh one. State changes are reported to a listener after the
// breaker's lock is released, so the listener may call the breaker.
package breaker

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// State is a breaker's state.
type State uint8

const (
	Closed   State = iota // calls flow; outcomes are counted
	Open                  // calls fail fast until the open time ends
	HalfOpen              // a few probes flow; their outcome closes or reopens
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Outcome is what a call allowed by the breaker came to.
type Outcome uint8

const (
	Success Outcome = iota // the dependency answered well
	Failure                // the dependency failed: counts toward tripping
	Ignore                 // says nothing about the dependency (a client error, a cancelled call)
)

// Settings configure a Breaker. The zero value of a field means its
// default, given beside it; the zero Settings is heed's default breaker.
//
// Two trip rules are offered. The ratio rule (FailureRatio, MinCalls,
// Window) trips when failures reach a share of the recent calls; the
// consecutive rule (ConsecutiveFailures) trips after a run of failures.
// Set ConsecutiveFailures alone for the consecutive rule alone, both for
// either rule to trip, neither for the ratio rule with its defaults.
type Settings struct {
	// FailureRatio trips the breaker when the failures in Window reach
	// this share of the calls, once there were at least MinCalls. Must be
	// at most 1. Default 0.9 when ConsecutiveFailures is 0, else the ratio
	// rule is off: a dependency answering one call in ten is not worth
	// calling, one answering one in two is (the retry budget bounds what
	// its failures cost), and a high threshold keeps the chance runs of a
	// partial failure from tripping it.
	FailureRatio float64
	// MinCalls is the least number of calls in Window before FailureRatio
	// can trip. Default 20.
	MinCalls int
	// Window is the span FailureRatio looks at. Default 30 s.
	Window time.Duration
	// Buckets divides Window; more buckets slide more smoothly. Default 10.
	Buckets int
	// ConsecutiveFailures, when above 0, trips the breaker after this many
	// failures in a row (pybreaker's fail_max; 5 is the classic value).
	ConsecutiveFailures int
	// OpenTimeout is how long the breaker stays open after tripping before
	// it lets probes through. Default 30 s (pybreaker's classic
	// reset_timeout).
	OpenTimeout time.Duration
	// MaxOpenTimeout caps the open time, which doubles with each trip that
	// follows a failed probe. Default 5 min. Set it equal to OpenTimeout to
	// keep the open time fixed.
	MaxOpenTimeout time.Duration
	// HalfOpenProbes is how many calls may be in flight while half-open.
	// Default 1. The first probe to fail reopens the breaker; once this
	// many probes have succeeded it closes.
	HalfOpenProbes int
	// OnStateChange, if set, is called after every change of state, after
	// the breaker's lock is released: it may call back into the breaker.
	OnStateChange func(Change)
	// Fleet, if set, joins this breaker to the breakers of the same key in
	// other instances (heedredis provides one): a trip anywhere opens them
	// all, and while they are open one instance at a time sends the
	// half-open probe. A Fleet belongs to one key: with heed, set it per
	// key through heed.WithBreakerFleet.
	Fleet Fleet
}

// DefaultFailureRatio is the ratio rule's threshold when Settings leave
// both rules unset.
const DefaultFailureRatio = 0.9

// Fleet lets the breakers of one key in many instances act as one.
// Implementations must be safe for concurrent use and quick: OpenUntil is
// asked on every call a closed breaker admits, so it answers from a cache;
// the others run after the breaker's lock is released.
type Fleet interface {
	// OpenUntil reports that the fleet holds the breaker open until until.
	OpenUntil(now time.Time) (until time.Time, open bool)
	// Opened tells the fleet this instance's breaker opened until until.
	Opened(now, until time.Time)
	// Closed tells the fleet a probe succeeded and the breaker closed.
	Closed(now time.Time)
	// ClaimProbe asks to send the fleet's next half-open probe; false when
	// another instance holds the claim (for at most hold).
	ClaimProbe(now time.Time, hold time.Duration) bool
}

// Change describes one change of state.
type Change struct {
	From, To State
	At       time.Time
	// Until is when an open breaker will let probes through; zero for
	// other states.
	Until time.Time
}

// ErrOpen is matched by every error a breaker refuses a call with.
var ErrOpen = errors.New("circuit breaker open")

// OpenError refuses a call. Until is when the breaker will next let a probe
// through; zero when it is half-open and its probes are all in flight, so
// the time depends on their outcome.
type OpenError struct {
	State State
	Until time.Time
}

func (e *OpenError) Error() string {
	if e.Until.IsZero() {
		return "circuit breaker half-open: probes in flight"
	}
	return "circuit breaker open until " + e.Until.UTC().Format(time.RFC3339Nano)
}

// Is matches ErrOpen.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// Ticket is a permission to call, to be handed back to Record.
type Ticket struct {
	gen   uint64
	probe bool
}

// Breaker is a circuit breaker for one dependency. It is safe for concurrent
// use.
type Breaker struct {
	s Settings

	// Read and written without the lock on the closed path.
	state       atomic.Uint32 // State
	gen         atomic.Uint64 // bumped on every change of state
	consecutive atomic.Int64  // failures in a row while closed (consecutive rule)
	successes   atomic.Int64  // successes not yet placed in the window (ratio rule)

	mu       sync.Mutex
	until    time.Time // open: when probes may start
	openFor  time.Duration
	probes   int        // half-open: probes in flight
	probesOK int        // half-open: probes that succeeded
	claimed  bool       // half-open: this instance holds the fleet's probe
	refusal  *OpenError // shared by every call refused in this open period
	window   ring       // ratio rule
}

// New returns a closed breaker, or an error naming a setting that cannot
// work.
func New(s Settings) (*Breaker, error) {
	if s.FailureRatio == 0 && s.ConsecutiveFailures == 0 {
		s.FailureRatio = DefaultFailureRatio
	}
	if s.MinCalls == 0 {
		s.MinCalls = 20
	}
	if s.Window == 0 {
		s.Window = 30 * time.Second
	}
	if s.Buckets == 0 {
		s.Buckets = 10
	}
	if s.OpenTimeout == 0 {
		s.OpenTimeout = 30 * time.Second
	}
	if s.MaxOpenTimeout == 0 {
		s.MaxOpenTimeout = max(5*time.Minute, s.OpenTimeout)
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = 1
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("breaker: "+format, args...)) }
	if s.ConsecutiveFailures < 0 {
		bad("ConsecutiveFailures %d is negative", s.ConsecutiveFailures)
	}
	if !(s.FailureRatio >= 0 && s.FailureRatio <= 1) {
		bad("FailureRatio %v is outside [0, 1]", s.FailureRatio)
	}
	if s.MinCalls < 0 {
		bad("MinCalls %d is negative", s.MinCalls)
	}
	if s.Window < 0 || s.Buckets < 0 || s.Buckets > 1000 {
		bad("Window %v and Buckets %d: need a positive window and 1 to 1000 buckets", s.Window, s.Buckets)
	} else if s.Window < time.Duration(s.Buckets) {
		bad("Window %v is too short for %d buckets", s.Window, s.Buckets)
	}
	if s.OpenTimeout < 0 {
		bad("OpenTimeout %v is negative", s.OpenTimeout)
	}
	if s.MaxOpenTimeout < s.OpenTimeout {
		bad("MaxOpenTimeout %v is below OpenTimeout %v", s.MaxOpenTimeout, s.OpenTimeout)
	}
	if s.HalfOpenProbes < 0 {
		bad("HalfOpenProbes %d is negative", s.HalfOpenProbes)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b := &Breaker{s: s, openFor: s.OpenTimeout}
	if s.FailureRatio > 0 {
		b.window = newRing(s.Window, s.Buckets)
	}
	return b, nil
}

// Settings returns the breaker's settings, defaults filled in.
func (b *Breaker) Settings() Settings { return b.s }

// State returns the current state. An open breaker whose open time has
// passed reports Open until a call arrives to move it to HalfOpen.
func (b *Breaker) State() State { return State(b.state.Load()) }

// NeedsTime reports whether Allow, and Record of a success, read the time
// they are given even while the breaker is closed. Callers on a hot path
// may skip reading the clock, and pass the zero time, while the breaker is
// Closed and NeedsTime is false (no fleet). A failure always needs the
// time.
func (b *Breaker) NeedsTime() bool { return b.s.Fleet != nil }

// OpenUntil returns when an open breaker will let probes through, and false
// if the breaker is not open.
func (b *Breaker) OpenUntil() (time.Time, bool) {
	if b.State() != Open {
		return time.Time{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if State(b.state.Load()) != Open {
		return time.Time{}, false
	}
	return b.until, true
}

// Allow asks to make a call at now. It returns a ticket to hand to Record,
// or an *OpenError (matching ErrOpen) when the call must fail fast. A
// refused call allocates nothing: every call refused in one open period
// shares one error.
func (b *Breaker) Allow(now time.Time) (Ticket, error) {
	f := b.s.Fleet
	if State(b.state.Load()) == Closed {
		if f == nil {
			return Ticket{gen: b.gen.Load()}, nil
		}
		until, open := f.OpenUntil(now)
		if !open || !now.Before(until) {
			return Ticket{gen: b.gen.Load()}, nil
		}
		// Another instance tripped: open here too, until the fleet's time.
		b.mu.Lock()
		var change *Change
		if State(b.state.Load()) == Closed {
			c := b.setLocked(Open, now)
			b.until = until
			b.refusal = &OpenError{State: Open, Until: until}
			c.Until = until
			change = &c
		}
		e := b.refusal
		b.mu.Unlock()
		b.notifyLocal(change)
		if e == nil { // closed again meanwhile
			return Ticket{gen: b.gen.Load()}, nil
		}
		return Ticket{}, e
	}
	// The fleet's view is read before the lock: it may be a round trip.
	var fleetUntil time.Time
	fleetOpen := false
	if f != nil {
		fleetUntil, fleetOpen = f.OpenUntil(now)
		fleetOpen = fleetOpen && now.Before(fleetUntil)
	}
	b.mu.Lock()
	var change *Change
	switch State(b.state.Load()) {
	case Closed:
		b.mu.Unlock()
		return Ticket{gen: b.gen.Load()}, nil
	case Open:
		if now.Before(b.until) {
			e := b.refusal
			b.mu.Unlock()
			return Ticket{}, e
		}
		if fleetOpen {
			// The fleet tripped again since: stay open with it.
			b.until = fleetUntil
			b.refusal = &OpenError{State: Open, Until: fleetUntil}
			e := b.refusal
			b.mu.Unlock()
			return Ticket{}, e
		}
		c := b.setLocked(HalfOpen, now)
		change = &c
	case HalfOpen:
		if fleetOpen && !b.claimed {
			// Another instance's probe failed: open again with the fleet.
			c := b.setLocked(Open, now)
			b.until = fleetUntil
			b.refusal = &OpenError{State: Open, Until: fleetUntil}
			c.Until = fleetUntil
			e := b.refusal
			b.mu.Unlock()
			b.notifyLocal(&c)
			return Ticket{}, e
		}
	}
	// Half-open: admit up to HalfOpenProbes probes at once, and with a
	// fleet only once this instance holds the fleet's probe. The claim is
	// asked outside the lock (it may be a round trip), then the state is
	// checked again.
	if f != nil && !b.claimed && b.probes < b.s.HalfOpenProbes {
		gen := b.gen.Load()
		b.mu.Unlock()
		b.notify(change)
		change = nil
		won := f.ClaimProbe(now, b.s.OpenTimeout)
		b.mu.Lock()
		if b.gen.Load() != gen || State(b.state.Load()) != HalfOpen {
			b.mu.Unlock()
			return b.Allow(now) // the state moved on meanwhile
		}
		b.claimed = b.claimed || won
	}
	if b.probes >= b.s.HalfOpenProbes || f != nil && !b.claimed {
		e := b.refusal
		b.mu.Unlock()
		b.notify(change)
		return Ticket{}, e
	}
	b.probes++
	t := Ticket{gen: b.gen.Load(), probe: true}
	b.mu.Unlock()
	b.notify(change)
	return t, nil
}

// Record reports the outcome, at now, of a call Allow admitted with t. An
// outcome from a call admitted before the breaker's last change of state is
// ignored, except that a probe's slot is always given back.
func (b *Breaker) Record(t Ticket, now time.Time, o Outcome) {
	// Closed: a success is counted without the lock or the time (it is
	// placed in the window when a failure next needs the ratio: only a
	// failure can trip the breaker), and an ignored or stale outcome
	// needs nothing.
	if !t.probe && o != Failure {
		if o == Success && t.gen == b.gen.Load() {
			if b.s.FailureRatio > 0 {
				b.successes.Add(1)
			}
			if b.s.ConsecutiveFailures > 0 && b.consecutive.Load() != 0 {
				b.consecutive.Store(0)
			}
		}
		return
	}
	b.mu.Lock()
	var change *Change
	current := t.gen == b.gen.Load()
	switch st := State(b.state.Load()); {
	case t.probe && current && st == HalfOpen:
		b.probes--
		switch o {
		case Failure:
			b.openFor = min(b.openFor*2, b.s.MaxOpenTimeout) // a failed probe: back off harder
			c := b.setLocked(Open, now)
			change = &c
		case Success:
			b.probesOK++
			if b.probesOK >= b.s.HalfOpenProbes {
				b.openFor = b.s.OpenTimeout
				c := b.setLocked(Closed, now)
				change = &c
			}
		}
	case !current || st != Closed || o != Failure:
		// A stale outcome, or one arriving in another state: nothing to count.
	default: // closed, a failure
		trip := b.s.ConsecutiveFailures > 0 && b.consecutive.Add(1) >= int64(b.s.ConsecutiveFailures)
		if b.s.FailureRatio > 0 {
			ok := b.successes.Swap(0)
			if b.window.add(now, ok, true) && b.window.trips(b.s.FailureRatio, b.s.MinCalls) {
				trip = true
			}
		}
		if trip {
			c := b.setLocked(Open, now)
			change = &c
		}
	}
	b.mu.Unlock()
	b.notify(change)
}

// setLocked moves to state to and returns the change to report once the
// lock is released. It requires b.mu to be held.
func (b *Breaker) setLocked(to State, now time.Time) Change {
	from := State(b.state.Load())
	b.gen.Add(1)
	b.consecutive.Store(0)
	b.successes.Store(0)
	b.probes, b.probesOK, b.claimed = 0, 0, false
	c := Change{From: from, To: to, At: now}
	switch to {
	case Open:
		b.until = now.Add(b.openFor)
		b.refusal = &OpenError{State: Open, Until: b.until}
		c.Until = b.until
	case HalfOpen:
		b.refusal = &OpenError{State: HalfOpen}
	case Closed:
		b.refusal = nil
		b.window.reset(now)
	}
	b.state.Store(uint32(to))
	return c
}

// notify reports a change, and tells the fleet of a trip or a recovery
// that happened here.
func (b *Breaker) notify(c *Change) {
	if c != nil && b.s.Fleet != nil {
		switch c.To {
		case Open:
			b.s.Fleet.Opened(c.At, c.Until)
		case Closed:
			b.s.Fleet.Closed(c.At)
		}
	}
	b.notifyLocal(c)
}

// notifyLocal reports a change without telling the fleet: one the fleet
// caused.
func (b *Breaker) notifyLocal(c *Change) {
	if c != nil && b.s.OnStateChange != nil {
		b.s.OnStateChange(*c)
	}
}

// ring counts calls and failures in buckets covering a window.
type ring struct {
	width          time.Duration
	calls, fails   []int64
	head           int
	headStart      time.Time
	last           time.Time // when outcomes were last added
	sumCalls, sumF int64
}

func newRing(window time.Duration, buckets int) ring {
	return ring{
		width: window / time.Duration(buckets),
		calls: make([]int64, buckets),
		fails: make([]int64, buckets),
	}
}

// add counts, at now, ok successes and one failure if failed, and reports
// whether they were counted (outcomes from before the window's start are
// dropped). The successes were counted lock-free since the last add: they
// are placed in the bucket of now, which may keep them a little longer
// than their own time would, never shorter.
func (r *ring) add(now time.Time, ok int64, failed bool) bool {
	if r.headStart.IsZero() {
		r.headStart = now
	}
	if now.Before(r.headStart) {
		// An outcome older than the current bucket still falls in the
		// window; count it in the current bucket.
		if r.headStart.Sub(now) >= r.width*time.Duration(len(r.calls)) {
			return false
		}
	} else {
		r.advance(now)
	}
	// Successes counted over a quiet spell longer than the window are
	// taken as spread evenly over it: only the share inside counts.
	if window := r.width * time.Duration(len(r.calls)); !r.last.IsZero() && now.Sub(r.last) > window {
		ok = int64(float64(ok) * float64(window) / float64(now.Sub(r.last)))
	}
	if now.After(r.last) {
		r.last = now
	}
	n := ok
	if failed {
		n++
		r.fails[r.head]++
		r.sumF++
	}
	r.calls[r.head] += n
	r.sumCalls += n
	return true
}

// advance moves the head to the bucket holding now, emptying the buckets it
// passes.
func (r *ring) advance(now time.Time) {
	steps := int64(now.Sub(r.headStart) / r.width)
	if steps <= 0 {
		return
	}
	n := int64(len(r.calls))
	for i := int64(0); i < min(steps, n); i++ {
		r.head = (r.head + 1) % len(r.calls)
		r.sumCalls -= r.calls[r.head]
		r.sumF -= r.fails[r.head]
		r.calls[r.head], r.fails[r.head] = 0, 0
	}
	if steps > math.MaxInt32 {
		r.headStart = now
	} else {
		r.headStart = r.headStart.Add(time.Duration(steps) * r.width)
	}
}

func (r *ring) trips(ratio float64, minCalls int) bool {
	return r.sumCalls >= int64(minCalls) && float64(r.sumF) >= ratio*float64(r.sumCalls)
}

// reset empties the window at now: outcomes counted from here on came
// after now.
func (r *ring) reset(now time.Time) {
	clear(r.calls)
	clear(r.fails)
	r.sumCalls, r.sumF = 0, 0
	r.headStart, r.last = time.Time{}, now
}
