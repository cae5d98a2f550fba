package throttle

import (
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
	// Hold, if not zero, is a time before which the server will accept
	// nothing: a Retry-After longer than any caller waits (a quota spent
	// for the hour, say). No request is sent before it; Reserve refuses
	// those that cannot wait for it.
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
	// Increase multiplies the rate after each calm Probe interval. Default 1.25.
	Increase float64
	// Probe is how often a calm pacer raises its rate. Default 100 ms.
	Probe time.Duration
	// Calm is how long without a throttle, at a rate above the demand,
	// before the pacer stops pacing. Default 10 s.
	Calm time.Duration
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
type Pacer struct {
	cfg    PacerConfig
	active atomic.Bool

	mu           sync.Mutex
	lim          Limiter
	rate         float64
	ceiling      float64 // the most the server's stated quota allows; +Inf if unknown
	window       time.Duration
	lastDecrease time.Time
	lastProbe    time.Time
	lastThrottle time.Time
	lastDelay    time.Time // last time a reservation had to wait
	succ         successes
	settled      bool // a throttle hit the pace: probe gently from now on
	activated    time.Time
	oldSlots     time.Time // the last slot given out before the last decrease
	perRequest   float64   // the rate one request in flight when pacing began adds
	hold         time.Time // no slot before it: the server accepts nothing until then
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

// Reserve reserves a slot for a request ready at now and returns when it
// may be sent. When the slot would come after deadline (zero for none) it
// reserves nothing and returns the slot's time and false. An inactive
// pacer answers now at once. With a SharedPace, the slot comes from the
// fleet's schedule.
func (p *Pacer) Reserve(now, deadline time.Time) (time.Time, bool) {
	if p.cfg.Shared != nil {
		if !p.Active() {
			return now, true
		}
		at, ok := p.cfg.Shared.Reserve(now, deadline)
		if at.After(now) {
			p.mu.Lock()
			p.lastDelay = now
			p.mu.Unlock()
		}
		return at, ok
	}
	if !p.active.Load() {
		return now, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.hold) {
		if !deadline.IsZero() && p.hold.After(deadline) {
			return p.hold, false
		}
		now = p.hold // the slot is taken from the schedule as it will be then
	}
	at, ok := p.lim.reserveLocked(now, deadline)
	if at.After(now) {
		p.lastDelay = now
	}
	return at, ok
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
	if s.Hold.After(p.hold) {
		p.hold = s.Hold
	}
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
		p.activateLocked(s.Now, s.RetryAfter)
	case !p.active.Load():
		// A success with the quota running low: pace before the server
		// has to refuse, at the rate its quota states.
		p.activateLocked(s.Now, 0)
		p.observeStale(s)
	case !s.Sent.After(p.activated):
		p.observeStale(s)
	case s.Throttled:
		p.throttledLocked(s)
	default:
		p.calmLocked(s)
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
	r := math.Min(p.rate*p.cfg.Decrease, math.Max(p.succ.rate(s.Now, p.activated), floor))
	r = math.Max(floor, math.Min(r, p.ceiling))
	p.oldSlots = p.lim.tat // slots up to here were given out at the old pace
	p.setRateLocked(r)
	p.settled = true
	p.lastDecrease, p.lastProbe = s.Now, s.Now
}

// activateLocked starts pacing: at the rate the server's quota states if
// it stated one, else at what it let through lately, and probes up from
// there.
func (p *Pacer) activateLocked(now time.Time, retryAfter time.Duration) {
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
	if p.cfg.Shared != nil {
		if fleet, active := p.cfg.Shared.Rate(); active {
			r = math.Min(fleet, p.ceiling) // the fleet already paces: join it rather than start over
		}
	}
	p.rate, p.perRequest = r, per
	p.lim = Limiter{}
	p.lim.set(r, 1)
	p.lim.tat = now.Add(p.lim.interval) // the server has just run dry: the first slot is one interval away
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
		p.setRateLocked(r)
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
	step := max(p.cfg.Probe, p.lim.interval)
	if slack || !counted && now.Sub(p.lastProbe) >= step {
		// Without a remaining count the pace grows with calm time: by
		// Increase for each step (a Probe interval, or a pacing interval if
		// longer) since the last raise, so a client that went quiet is not
		// held at its old pace. Once a throttle has hit the pace it grows
		// gently: a quarter of a step per success, which keeps the share
		// of refused requests low (about one in seven at the defaults).
		raisedAt := p.lastProbe
		steps := float64(now.Sub(p.lastProbe)) / float64(step)
		up := math.Pow(p.cfg.Increase, math.Min(steps, 100))
		if p.settled {
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
			p.setRateLocked(r)
		}
	}
	if now.Sub(p.lastThrottle) >= p.cfg.Calm && now.Sub(p.lastDelay) >= p.cfg.Calm {
		p.active.Store(false)
		p.publish(0)
	}
}

func (p *Pacer) setRateLocked(r float64) {
	old := p.lim.interval
	p.rate = r
	p.publish(r)
	p.lim.set(r, 1)
	// The next free slot is one interval after the last one given out:
	// move it with the interval, so a faster pace takes effect at once.
	p.lim.tat = p.lim.tat.Add(p.lim.interval - old)
}

// AtFloor reports a pacer that is pacing at its slowest: a server that
// still refuses is not asking for a slower pace but refusing outright.
func (p *Pacer) AtFloor() bool {
	if !p.active.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate <= p.cfg.MinRate
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
