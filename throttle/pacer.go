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
	// Now is when the response arrived; Sent when its request left.
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
}

// NewPacer returns an inactive pacer.
func NewPacer(cfg PacerConfig) *Pacer {
	cfg.defaults()
	return &Pacer{cfg: cfg, ceiling: math.Inf(1)}
}

// Active reports whether the pacer is spacing requests.
func (p *Pacer) Active() bool { return p.active.Load() }

// Rate returns the pace in requests a second, and false when inactive.
func (p *Pacer) Rate() (float64, bool) {
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
// pacer answers now at once.
func (p *Pacer) Reserve(now, deadline time.Time) (time.Time, bool) {
	if !p.active.Load() {
		return now, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.lim.reserveLocked(now, deadline)
	if at.After(now) {
		p.lastDelay = now
	}
	return at, ok
}

// Observe learns from one response.
func (p *Pacer) Observe(s Signal) {
	if !s.Throttled && !p.active.Load() && !(s.HasQuota && s.Quota.Exhausted()) {
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
	case s.Throttled || s.HasQuota && s.Quota.Exhausted():
		p.throttledLocked(s)
	case p.active.Load():
		p.calmLocked(s.Now)
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
}

func (p *Pacer) throttledLocked(s Signal) {
	p.lastThrottle = s.Now
	if !p.active.Load() {
		// First push-back: start from what the server let through lately,
		// within what its quota says, and probe up from there.
		r := p.succ.rate(s.Now)
		r = math.Min(math.Max(r, p.cfg.MinRate), p.ceiling)
		p.rate = r
		p.lim = Limiter{}
		p.lim.set(r, 1)
		p.lim.tat = s.Now
		p.lastDecrease, p.lastProbe = s.Now, s.Now
		p.active.Store(true)
		return
	}
	// One decrease per round trip: throttles of requests sent before the
	// last decrease report the old rate.
	if s.Sent.Before(p.lastDecrease) {
		return
	}
	r := math.Max(p.cfg.MinRate, math.Min(p.rate*p.cfg.Decrease, p.ceiling))
	p.setRateLocked(r)
	p.lastDecrease, p.lastProbe = s.Now, s.Now
}

// calmLocked raises the rate after each calm probe interval, up to the
// server's stated ceiling, and stops pacing once it has been calm long
// enough at a rate no request needed to wait for.
func (p *Pacer) calmLocked(now time.Time) {
	if now.Sub(p.lastProbe) >= p.cfg.Probe {
		p.lastProbe = now
		if r := math.Min(p.rate*p.cfg.Increase, p.ceiling); r > p.rate {
			p.setRateLocked(r)
		}
	}
	if now.Sub(p.lastThrottle) >= p.cfg.Calm && now.Sub(p.lastDelay) >= p.cfg.Calm {
		p.active.Store(false)
	}
}

func (p *Pacer) setRateLocked(r float64) {
	p.rate = r
	p.lim.set(r, 1)
}

// Spread is the window over which requests told to wait d should spread
// their retries: about one pacing interval per client the server is
// likely refusing at once.
func (p *Pacer) Spread(d time.Duration) time.Duration {
	r, ok := p.Rate()
	if !ok || r <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / r)
}

// successes counts successful responses in 100 ms buckets over 1 s.
type successes struct {
	buckets [10]int
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

// rate is successes a second over the last second.
func (s *successes) rate(now time.Time) float64 {
	s.advance(now)
	return float64(s.total)
}
