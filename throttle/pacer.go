package throttle

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed/hint"
)

// Signal is what one response told the pacer.
type Signal struct {
	// Now is when the response arrived; Sent when its request left (zero
	// if unknown: such a throttle never lowers the pace, since it may
	// report a request sent before the pace was set).
	Now, Sent time.Time
	// Throttled: the server refused for rate (a 429, or a 503 with a
	// Retry-After).
	Throttled bool
	// RetryAfter is the wait the server asked for, if HasRetryAfter.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// Quota is what the rate-limit fields said, if HasQuota.
	Quota    hint.Quota
	HasQuota bool
	// Draw is a uniform random draw in [0, 1): where, one to two
	// intervals on, a pace that starts now takes its first turn, and by
	// what part of an interval a refusal moves the turns to come, so that
	// clients refused together (all by one server at once) do not send
	// together, turn after turn, for ever after.
	Draw float64
	// Hold, if not zero, is a time before which the server will accept
	// nothing: a Retry-After longer than any caller waits (a quota spent
	// for the hour, say). No turn comes before it; Take refuses the
	// requests that cannot wait for it.
	Hold time.Time
}

// PacerConfig tunes a Pacer. Zero fields take the defaults given.
type PacerConfig struct {
	// Safety is the share of a rate the server states that the pacer uses,
	// leaving room for timing jitter. Default 0.95.
	Safety float64
	// MinRate is the slowest pace, in requests a second. Default 0.5.
	MinRate float64
	// Decrease multiplies the rate on a throttle. Default 0.7.
	Decrease float64
	// Increase sets how gently a pace grows near the pace the server last
	// refused: by a quarter of Increase-1 per success, and by Increase per
	// success whose quota shows room. Default 1.25.
	Increase float64
	// Probe is how often, at the most, a calm pacer raises its rate: it
	// doubles per Probe interval, or per pacing interval if longer, while
	// nothing pushes back. Default 100 ms.
	Probe time.Duration
	// Calm is how long without a throttle, at a rate above the demand,
	// before the pacer stops pacing. Default 10 s.
	Calm time.Duration
	// Limit is the key's configured rate limit in requests a second, 0 for
	// none (heed sets it from the key's Limits). A push-back under a
	// configured limit says the limit is a little high, not that the
	// server has run dry: the pace starts at Decrease times the limit
	// rather than at one request a second, so a stray 429 in a fleet
	// sharing a limit does not starve the instance that met it.
	Limit float64
	// Shared, if set, paces a fleet of instances as one (heedredis provides
	// it): the pace each instance learns is published, and while any
	// instance paces, every instance's requests take their slots from one
	// schedule at the fleet's pace, so one instance's 429 slows them all.
	Shared SharedPace
}

// SharedPace is the pace of one key shared by a fleet. Implementations
// must be safe for concurrent use and must not block for long: Active and
// Rate answer from a cache, and Publish only records the value to send.
type SharedPace interface {
	// Publish records this instance's pace in requests a second, 0 when
	// it stopped pacing.
	Publish(rate float64)
	// Rate returns the fleet's pace and whether any instance paces.
	Rate() (rate float64, active bool)
	// Reserve reserves a slot at the fleet's pace for a request ready at
	// now, as Limiter.ReserveBefore does.
	Reserve(now, deadline time.Time) (time.Time, bool)
}

// Validate returns an error naming every setting that cannot work. Zero
// fields are valid: they take their defaults.
func (c PacerConfig) Validate() error {
	var errs []error
	bad := func(name string, v any, want string) {
		errs = append(errs, fmt.Errorf("throttle: PacerConfig.%s %v: %s", name, v, want))
	}
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	if c.Safety != 0 && !(c.Safety > 0 && c.Safety <= 1) {
		bad("Safety", c.Safety, "must be in (0, 1]")
	}
	if !(c.MinRate >= 0) || !finite(c.MinRate) {
		bad("MinRate", c.MinRate, "must be a non-negative number")
	}
	if c.Decrease != 0 && !(c.Decrease > 0 && c.Decrease < 1) {
		bad("Decrease", c.Decrease, "must be in (0, 1): a throttle slows the pace")
	}
	if c.Increase != 0 && !(c.Increase > 1 && finite(c.Increase)) {
		bad("Increase", c.Increase, "must be above 1: room speeds the pace up")
	}
	if c.Probe < 0 {
		bad("Probe", c.Probe, "must not be negative")
	}
	if c.Calm < 0 {
		bad("Calm", c.Calm, "must not be negative")
	}
	if !(c.Limit >= 0) || !finite(c.Limit) {
		bad("Limit", c.Limit, "must be a non-negative number")
	}
	return errors.Join(errs...)
}

func (c *PacerConfig) defaults() {
	if c.Safety == 0 {
		c.Safety = 0.95
	}
	if c.MinRate == 0 {
		c.MinRate = 0.5
	}
	if c.Decrease == 0 {
		c.Decrease = 0.7
	}
	if c.Increase == 0 {
		c.Increase = 1.25
	}
	if c.Probe == 0 {
		c.Probe = 100 * time.Millisecond
	}
	if c.Calm == 0 {
		c.Calm = 10 * time.Second
	}
}

// Pacer learns a safe sending rate for one server (or one key) from what
// the server says, and spaces requests so its limit is not hit. Until the
// server first pushes back it is inactive and costs an atomic load per
// request.
//
// Requests wait their turn in a line ([Pacer.Take], [Pacer.Turn],
// [Pacer.Leave]): a turn is reckoned at the pace of the moment, so the
// requests queued behind a slow pace move up as soon as the pace rises.
type Pacer struct {
	cfg    PacerConfig
	active atomic.Bool

	mu           sync.Mutex
	ln           line
	rate         float64
	ceiling      float64 // the most the server's stated quota allows; +Inf if unknown
	refused      float64 // the pace the server last refused at; 0 if none yet
	window       time.Duration
	lastDecrease time.Time
	lastProbe    time.Time
	lastThrottle time.Time
	lastDelay    time.Time // last time a request had to wait its turn
	succ         successes
	settled      bool // a throttle hit the pace: probe gently from now on
	activated    time.Time
	oldSlots     time.Time // the turn of the last place handed out before the last decrease
	perRequest   float64   // the rate one request in flight when pacing began adds
	hold         time.Time // no turn before it: the server accepts nothing until then
	fullest      int64     // the most requests the server's quota has been seen to have left
}

// NewPacer returns an inactive pacer.
func NewPacer(cfg PacerConfig) *Pacer {
	cfg.defaults()
	return &Pacer{cfg: cfg, ceiling: math.Inf(1)}
}

// Active reports whether the pacer is spacing requests: this instance's,
// or with a SharedPace, any instance's of the fleet.
func (p *Pacer) Active() bool {
	if p.active.Load() {
		return true
	}
	if p.cfg.Shared != nil {
		_, active := p.cfg.Shared.Rate()
		return active
	}
	return false
}

// Rate returns the pace in requests a second, and false when inactive.
// With a SharedPace it is the fleet's.
func (p *Pacer) Rate() (float64, bool) {
	if p.cfg.Shared != nil {
		if r, active := p.cfg.Shared.Rate(); active {
			return r, true
		}
	}
	if !p.active.Load() {
		return 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate, true
}

// Place is a request's place in a pacer's line, from [Pacer.Take]. The
// zero Place is no place: its turn is always now.
type Place struct {
	n      uint64
	taken  bool
	shared time.Time // with a SharedPace, the slot the fleet's schedule gave
}

// Take gives a request ready at now a place in line and returns when its
// turn comes at the current pace. The turn may come sooner if the pace
// rises: ask [Pacer.Turn] again before sending. When even at the fastest
// pace the server is known to allow (the rate its quota states, or the pace
// it last refused, whichever is lower) the turn would come after deadline
// (zero for none), Take takes no place and returns the turn and false. An
// inactive pacer answers now and the zero Place. With a SharedPace, the
// turn is a slot of the fleet's schedule, fixed when taken.
func (p *Pacer) Take(now, deadline time.Time) (Place, time.Time, bool) {
	if p.cfg.Shared != nil {
		if !p.Active() {
			return Place{}, now, true
		}
		at, ok := p.cfg.Shared.Reserve(now, deadline)
		if at.After(now) {
			p.mu.Lock()
			p.lastDelay = now
			p.mu.Unlock()
		}
		return Place{shared: at}, at, ok
	}
	if !p.active.Load() {
		return Place{}, now, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.hold) {
		if !deadline.IsZero() && p.hold.After(deadline) {
			return Place{}, p.hold, false
		}
		p.ln.holdUntil(now, p.hold)
	}
	k, at := p.ln.take(later(now, p.hold))
	if !deadline.IsZero() && at.After(deadline) && p.hopelessLocked(k, now, deadline) {
		p.ln.leave(k)
		return Place{}, at, false
	}
	if at.After(now) {
		p.lastDelay = now
	}
	return Place{n: k, taken: true}, at, true
}

// Turn returns when pl's turn comes at the current pace (now, or earlier,
// once it has come), and false when even at the fastest pace the server is
// known to allow it would come after deadline (zero for none): the request
// should then give its place up with Leave. A pacer that has stopped
// pacing gives every place its turn at once.
func (p *Pacer) Turn(pl Place, now, deadline time.Time) (time.Time, bool) {
	if !pl.shared.IsZero() {
		return pl.shared, deadline.IsZero() || !pl.shared.After(deadline)
	}
	if !pl.taken || !p.active.Load() {
		return now, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	at := p.ln.turn(pl.n)
	if at.After(now) {
		p.lastDelay = now
	}
	if !deadline.IsZero() && at.After(deadline) && p.hopelessLocked(pl.n, now, deadline) {
		return at, false
	}
	return at, true
}

// Leave gives pl's place up, for a request that will not wait for its
// turn after all (its caller gave up).
func (p *Pacer) Leave(pl Place) {
	if !pl.taken {
		return
	}
	p.mu.Lock()
	p.ln.leave(pl.n)
	p.mu.Unlock()
}

// hopelessLocked reports that place k's turn would come after deadline even
// at the fastest pace the server is known to allow: the lower of its
// stated quota and the pace it last refused. With neither known the pace
// may yet rise any amount, and no place is hopeless. It requires p.mu to
// be held.
func (p *Pacer) hopelessLocked(k uint64, now, deadline time.Time) bool {
	fastest := p.ceiling
	if p.refused > 0 {
		fastest = math.Min(fastest, p.refused)
	}
	switch {
	case math.IsInf(fastest, 1):
		return false // the pace may yet rise any amount
	case fastest <= p.rate:
		return true // the pace is as fast as it will get
	}
	ahead := float64(k-min(k, p.ln.waiting(now))) + 1
	return now.Add(time.Duration(ahead / fastest * float64(time.Second))).After(deadline)
}

// publish tells the fleet this instance's pace (0: not pacing).
func (p *Pacer) publish(rate float64) {
	if p.cfg.Shared != nil {
		p.cfg.Shared.Publish(rate)
	}
}

// Observe learns from one response.
func (p *Pacer) Observe(s Signal) {
	if !s.Throttled && !p.active.Load() && !(s.HasQuota && low(s.Quota)) {
		return // the common case: no push-back, nothing to learn
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.HasQuota {
		p.learnQuota(s)
	}
	if !s.Throttled {
		p.succ.add(s.Now)
	}
	switch {
	case !p.active.Load() && s.Throttled:
		// A push-back: the server is at its limit.
		p.lastThrottle = s.Now
		p.activateLocked(s.Now, s.RetryAfter, s.Draw)
	case !p.active.Load() && !s.Hold.IsZero():
		// A hold without a throttle: nothing to pace.
	case !p.active.Load():
		// A success with the quota running low: pace before the server
		// has to refuse, at the rate its quota states.
		p.activateLocked(s.Now, 0, s.Draw)
		p.observeStale(s)
	case !s.Sent.After(p.activated):
		p.observeStale(s)
	case s.Throttled:
		p.throttledLocked(s)
	default:
		p.calmLocked(s)
	}
	if s.Hold.After(p.hold) {
		p.hold = s.Hold
		if p.active.Load() {
			p.ln.holdUntil(s.Now, s.Hold) // the places waiting go no earlier
		}
	}
}

// learnQuota takes the most the server's rate-limit fields allow.
func (p *Pacer) learnQuota(s Signal) {
	q := s.Quota
	if !q.HasLimit || q.Limit <= 0 {
		return
	}
	w := q.Window
	if !q.HasWindow {
		// X-RateLimit-* carry no window: the longest reset seen is the
		// best guess of it (a fixed window counts down from its length).
		if q.HasReset {
			p.window = max(p.window, q.Reset)
		}
		w = max(p.window, time.Second)
	}
	p.ceiling = p.cfg.Safety * float64(q.Limit) / w.Seconds()
	// In a long, fixed window (an hourly quota, say) spend what remains
	// evenly over the time left, not in one burst followed by refusals
	// until the reset. Short windows are token buckets that refill as they
	// go, where the remaining count alone understates the rate.
	if w >= fixedWindow && q.HasRemaining && q.HasReset && q.Reset > 0 {
		even := p.cfg.Safety * math.Max(float64(q.Remaining), 1) / q.Reset.Seconds()
		p.ceiling = math.Min(p.ceiling, even)
	}
}

// The fair-share steps of a pace whose server's bucket is near empty: a
// success that took the last token lowers the pace by fairDecrease, one
// that left a token raises it by fairIncrease of the stated rate. Chosen
// on the 429 storm with 50 independent clients (a tenth and a hundredth
// gave the shortest makespans of 0.8/0.9/0.95 and 0.002-0.02).
const (
	fairDecrease = 0.9
	fairIncrease = 0.01
)

// fixedWindow is the window length from which a quota is read as a fixed
// window to be spent evenly rather than a bucket that refills as it goes.
const fixedWindow = 10 * time.Second

func (p *Pacer) throttledLocked(s Signal) {
	p.lastThrottle = s.Now
	// One decrease per round: throttles of requests sent before the last
	// decrease, or in slots given out before it, report the old rate.
	if !s.Sent.After(p.lastDecrease) || !s.Sent.After(p.oldSlots) {
		return
	}
	// The pace let through a throttle: fall back to at most what the server
	// has been letting through for this client lately, which under
	// contention is its share.
	floor := p.cfg.MinRate
	if s.HasRetryAfter && s.RetryAfter > 0 {
		floor = math.Max(floor, 1/s.RetryAfter.Seconds()) // one request per Retry-After: what the server asked
	}
	floor = math.Min(floor, math.Min(p.rate, p.ceiling)) // a floor never raises the pace, nor passes the quota
	r := p.rate * p.cfg.Decrease
	if s.Now.Sub(p.activated) >= time.Second {
		// A second of history: the successes tell the share the server
		// gives this client. (Right after pacing began they tell nothing:
		// those of the requests in flight before it were not counted.)
		r = math.Min(r, math.Max(p.succ.rate(s.Now, p.activated), floor))
		// But never below half the pace in one round: a client with one
		// request in flight succeeds as often as it asks, and its success
		// rate measures its demand, not its share of the server.
		r = math.Max(r, p.rate/2)
	}
	r = math.Max(floor, math.Min(r, p.ceiling))
	p.refused = p.rate
	if p.ln.next > 0 {
		p.oldSlots = p.ln.turn(p.ln.next - 1) // places up to here were handed out at the old pace
	}
	p.setRateLocked(s.Now, r)
	// A refusal is a collision with the server's other clients: move
	// this client's turns by a random part of an interval, so clients that
	// collided do not collide again at every turn.
	p.ln.delay(time.Duration(s.Draw * float64(p.ln.interval)))
	p.settled = true
	p.lastDecrease, p.lastProbe = s.Now, s.Now
}

// activateLocked starts pacing: at the rate the server's quota states if
// it stated one, else at what it let through lately, and probes up from
// there.
func (p *Pacer) activateLocked(now time.Time, retryAfter time.Duration, draw float64) {
	// Start at one request per Retry-After (or per second) for each request
	// that was in flight when the server pushed back: a client sending one
	// request at a time that is refused shares the server with others,
	// while one sending many at once may be alone. The answers to the other
	// requests in flight, arriving next, raise it (observeStale); then the
	// pace climbs fast while the server shows room.
	per := 1.0
	if retryAfter > 0 {
		per = 1 / retryAfter.Seconds()
	}
	r := math.Min(math.Max(per, p.cfg.MinRate), p.ceiling) // a stated quota wins over the floor
	if p.cfg.Limit > 0 {
		// Refused under a configured limit: the limit is a little high.
		r = math.Min(math.Max(r, p.cfg.Limit*p.cfg.Decrease), p.ceiling)
	}
	if p.cfg.Shared != nil {
		if fleet, active := p.cfg.Shared.Rate(); active {
			r = math.Min(fleet, p.ceiling) // the fleet already paces: join it rather than start over
		}
	}
	p.rate, p.perRequest, p.refused = r, per, 0
	// The server has just run dry: the first turn is one to two intervals
	// away, at a random point, so that clients the server refused together
	// start their paces out of step.
	if !(draw >= 0 && draw < 1) {
		draw = 0
	}
	p.ln.restart(now, interval(r), draw)
	p.lastDecrease, p.lastProbe, p.activated = now, now, now
	p.lastThrottle, p.lastDelay = now, now // calm is counted from here
	p.oldSlots = time.Time{}
	p.settled = false
	p.active.Store(true)
	p.publish(r)
}

// observeStale counts the answer to a request sent before pacing began
// toward the starting pace: a client that had several requests in flight
// may be the server's only client, and starts at the rate the server's
// quota states, if it states one.
func (p *Pacer) observeStale(s Signal) {
	if p.settled {
		return
	}
	r := p.rate + p.perRequest
	if !math.IsInf(p.ceiling, 1) {
		r = p.ceiling
	}
	if r = math.Min(r, p.ceiling); r > p.rate {
		p.setRateLocked(s.Now, r)
	}
}

// calmLocked raises the rate after a success: at once when the server's
// quota shows slack (two or more requests remaining), else after each calm
// probe interval; never above the server's stated ceiling. It stops pacing
// once it has been calm long enough at a rate no request needed to wait for.
func (p *Pacer) calmLocked(s Signal) {
	now := s.Now
	slack := s.HasQuota && s.Quota.HasRemaining && s.Quota.Remaining >= 2
	if s.HasQuota && s.Quota.HasRemaining && !slack {
		p.settled = true // the quota is near empty: stop climbing fast before the server refuses
	}
	if p.settled && now.Sub(p.lastThrottle) >= p.cfg.Calm/5 {
		p.settled = false // a while without push-back: the storm may be over, climb fast again
	}
	counted := s.HasQuota && s.Quota.HasRemaining
	if s.HasQuota && s.Quota.HasRemaining && s.Quota.Remaining > p.fullest {
		p.fullest = s.Quota.Remaining
	}
	if slack && 2*s.Quota.Remaining >= p.fullest && p.rate < p.ceiling {
		// The server's bucket is at least half as full as it has been
		// seen: it has room now, and the next request in line goes at
		// once rather than at its turn, unless the pace is at the rate
		// the quota states. (A client whose pace fell during a storm is
		// not held to it once the server sits idle.)
		p.ln.goNow(now)
	}
	step := max(p.cfg.Probe, p.ln.interval)
	if counted && !slack && !math.IsInf(p.ceiling, 1) {
		// The server's bucket is near empty: it is at its rate, shared by
		// clients that may not know of each other. Each success that took
		// its last token lowers the pace by a tenth (once a round), each
		// that left one raises it by a hundredth of the stated rate (once
		// a step): additive increase and multiplicative decrease, so the
		// clients' paces converge on fair shares of the server (Chiu and
		// Jain), the ones that got ahead giving up the most.
		switch {
		case s.Quota.Remaining == 0 && s.Sent.After(p.lastDecrease) && s.Sent.After(p.oldSlots):
			if p.ln.next > 0 {
				p.oldSlots = p.ln.turn(p.ln.next - 1)
			}
			p.setRateLocked(now, math.Max(p.cfg.MinRate, p.rate*fairDecrease))
			p.lastDecrease = now
		case s.Quota.Remaining >= 1 && now.Sub(p.lastProbe) >= step:
			p.lastProbe = now
			p.setRateLocked(now, math.Min(p.ceiling, p.rate+fairIncrease*p.ceiling))
		}
	}
	if slack || !counted && now.Sub(p.lastProbe) >= step {
		// Without a remaining count the pace grows with calm time, per
		// step (a Probe interval, or a pacing interval if longer) since
		// the last raise, so a client that went quiet is not held at its
		// old pace. It doubles each step, as TCP's slow start does; after
		// a throttle it doubles back to Decrease times the pace the server
		// refused, then grows gently while throttles are recent (a quarter
		// of Increase per success, which keeps the share of refused
		// requests low), and doubles again after Calm/5 without one (the
		// refused pace may be stale: the storm that set it may be over). A
		// pace that started, or fell, at one request a second is back at
		// any rate within a few seconds of calm.
		raisedAt := p.lastProbe
		steps := math.Min(float64(now.Sub(p.lastProbe))/float64(step), 100)
		up := math.Pow(2, steps)
		if near := p.cfg.Decrease * p.refused; p.rate < near {
			up = math.Min(up, near/p.rate) // back to near the refused pace, not past it
		} else if p.settled {
			up = 1 + (p.cfg.Increase-1)/4
		}
		p.lastProbe = now
		r := p.rate * up
		switch {
		case slack && !p.settled:
			r = p.rate * 2 // room, and no push-back on this pace yet: climb fast
		case slack:
			r = math.Max(p.rate+p.perRequest, p.rate*p.cfg.Increase) // near the share the server gives: climb gently
		}
		// Without a stated ceiling the pace grows only while it holds
		// requests back: growth nobody used would be untested.
		if math.IsInf(p.ceiling, 1) && p.lastDelay.Before(raisedAt) {
			r = p.rate
		}
		if r = math.Min(r, p.ceiling); r > p.rate {
			p.setRateLocked(now, r)
		}
	}
	if now.Sub(p.lastThrottle) >= p.cfg.Calm && now.Sub(p.lastDelay) >= p.cfg.Calm {
		p.active.Store(false)
		p.publish(0)
	}
}

// setRateLocked sets the pace at now: the places waiting move to it.
func (p *Pacer) setRateLocked(now time.Time, r float64) {
	p.rate = r
	p.publish(r)
	p.ln.setInterval(now, interval(r))
}

// interval is the time between requests at rate r, at least a nanosecond
// and at most maxInterval.
func interval(r float64) time.Duration {
	d := float64(time.Second) / r
	if !(d < float64(maxInterval)) {
		return maxInterval
	}
	return max(1, time.Duration(d))
}

// Interval is the time between requests at the current pace, and zero
// when the pacer is inactive.
func (p *Pacer) Interval() time.Duration {
	r, ok := p.Rate()
	if !ok || r <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / r)
}

// low reports a quota running low: used up, or under a tenth of its limit.
func low(q hint.Quota) bool {
	return q.HasRemaining && (q.Remaining == 0 || q.HasLimit && q.Remaining*10 <= q.Limit)
}

// successes counts successful responses in 100 ms buckets over 3 s.
type successes struct {
	buckets [30]int
	head    int
	start   time.Time
	total   int
}

func (s *successes) advance(now time.Time) {
	const width = 100 * time.Millisecond
	if s.start.IsZero() {
		s.start = now.Truncate(width)
	}
	for n := 0; now.Sub(s.start) >= width && n < len(s.buckets); n++ {
		s.head = (s.head + 1) % len(s.buckets)
		s.total -= s.buckets[s.head]
		s.buckets[s.head] = 0
		s.start = s.start.Add(width)
	}
	if now.Sub(s.start) >= width {
		s.start = now.Truncate(width)
	}
}

func (s *successes) add(now time.Time) {
	s.advance(now)
	s.buckets[s.head]++
	s.total++
}

// rate is successes a second over the last 3 s, or since since (at least
// 100 ms) if that is shorter: a history that began lately is not diluted by
// the time before it.
func (s *successes) rate(now, since time.Time) float64 {
	s.advance(now)
	span := 3 * time.Second
	if d := now.Sub(since); d < span {
		span = max(d, 100*time.Millisecond)
	}
	return float64(s.total) / span.Seconds()
}
