// Package budget bounds retries (and hedges) to a share of the traffic, so
// that a sustained failure cannot multiply the load on a struggling
// dependency however many requests are retrying.
//
// Two forms are offered. [Ratio] is the retry budget of Finagle and
// Linkerd: retries may be at most a percentage of the requests
// seen over a rolling window, plus a small floor of retries per second so a
// quiet client can still retry. [TokenBucket] is gRPC's retry throttling: a
// failed attempt costs a token, a success returns a fraction of one, and no
// retries are made while the bucket is at or below half full.
//
// Both are safe for concurrent use, and both keep their hot path (a request
// that succeeds) to an atomic operation without reading the clock.
package budget

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Budget is what a retry loop asks before it retries.
type Budget interface {
	// Request records a new request (a first attempt).
	Request()
	// Outcome records how an attempt ended.
	Outcome(failed bool)
	// Withdraw asks, at now, to spend one retry or hedge. It reports false
	// when the budget is spent; it is never asked for a first attempt.
	Withdraw(now time.Time) bool
}

// ErrExhausted is the reason heed gives when a budget refuses a retry.
var ErrExhausted = errors.New("retry budget exhausted")

// Ratio allows retries up to Percent of the requests seen in the last Window,
// plus MinPerSecond retries per second of the window regardless. It is
// Finagle's and Linkerd's retry budget. The zero Ratio is usable: it is
// the budget of the zero [RatioConfig].
//
// Requests are counted with one atomic add and no clock read; they are
// placed in the window's buckets when the budget is next asked for a retry.
// Requests that arrived during a quiet spell longer than the window are
// assumed spread evenly over it, and only the share inside the window
// counts.
type Ratio struct {
	percent float64
	floor   float64 // retries allowed per window regardless of traffic
	width   time.Duration

	pending atomic.Int64 // requests not yet placed in a bucket

	mu       sync.Mutex
	reqs     []float64
	rets     []float64
	head     int
	headTime time.Time // start of the head bucket; zero until first use
	last     time.Time // when pending requests were last placed
	sumReqs  float64
	sumRets  float64
}

// Maker makes the retry budget of each key a client keeps state for: heed
// asks it once per key, on the key's first request. [RatioConfig] and
// [TokenBucketConfig] are Makers that give every key a budget of its own;
// heedredis gives one whose budgets a fleet of instances shares.
type Maker interface {
	NewBudget(key string) (Budget, error)
}

// MakerFunc adapts a function to [Maker], for budgets of your own.
type MakerFunc func(key string) (Budget, error)

// NewBudget calls f.
func (f MakerFunc) NewBudget(key string) (Budget, error) { return f(key) }

// RatioConfig configures a Ratio budget. The zero RatioConfig is heed's
// default: 25% of requests, with a floor of 10 retries per second, over
// 10 s. A dependency failing one request in five at random needs retries
// of a quarter of the requests (p/(1-p)) to serve them all, so 25% lets
// every request through such a failure, yet a sustained failure adds at
// most a quarter to the load (Linkerd and Finagle use 20%, which gives up
// on a few percent of the requests at a 20% failure rate). The floor keeps
// a client making a few requests a second from being starved of retries.
type RatioConfig struct {
	// Percent is the share of requests that may be retried, in [0, 1].
	Percent float64
	// MinPerSecond is the floor: retries per second allowed whatever the
	// traffic.
	MinPerSecond float64
	// Window is how far back requests and retries are counted. Default
	// 10 s.
	Window time.Duration
	// Buckets divides the window. Default 10.
	Buckets int
}

// WithDefaults returns c with the fields whose zero value means a default
// filled in: the settings a Ratio built from c uses.
func (c RatioConfig) WithDefaults() RatioConfig {
	if c == (RatioConfig{}) {
		c.Percent, c.MinPerSecond = 0.25, 10
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.Buckets == 0 {
		c.Buckets = 10
	}
	return c
}

// Validate returns an error naming every setting that cannot work.
func (c RatioConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if !(c.Percent >= 0 && c.Percent <= 1) {
		errs = append(errs, fmt.Errorf("budget: Percent %v is outside [0, 1]", c.Percent))
	}
	if !(c.MinPerSecond >= 0) || math.IsInf(c.MinPerSecond, 0) {
		errs = append(errs, fmt.Errorf("budget: MinPerSecond %v must be a non-negative number", c.MinPerSecond))
	}
	if c.Buckets < 1 || c.Buckets > 1000 || c.Window < time.Duration(c.Buckets) {
		errs = append(errs, fmt.Errorf("budget: Window %v with %d buckets: need a positive window and 1 to 1000 buckets", c.Window, c.Buckets))
	}
	return errors.Join(errs...)
}

// NewBudget implements [Maker]: every key gets a Ratio budget of its own.
func (c RatioConfig) NewBudget(string) (Budget, error) { return NewRatio(c) }

// NewRatio returns a Ratio budget, or an error naming a bad setting.
func NewRatio(c RatioConfig) (*Ratio, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	r := &Ratio{}
	r.init(c)
	return r, nil
}

// init sizes r for c, which has been checked.
func (r *Ratio) init(c RatioConfig) {
	c = c.WithDefaults()
	r.percent = c.Percent
	r.floor = c.MinPerSecond * c.Window.Seconds()
	r.width = c.Window / time.Duration(c.Buckets)
	r.reqs = make([]float64, c.Buckets)
	r.rets = make([]float64, c.Buckets)
}

// Request implements Budget.
func (r *Ratio) Request() { r.pending.Add(1) }

// Outcome implements Budget; a Ratio budget does not look at outcomes.
func (r *Ratio) Outcome(bool) {}

// Withdraw implements Budget.
func (r *Ratio) Withdraw(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advanceLocked(now)
	if r.sumRets+1 > r.percent*r.sumReqs+r.floor {
		return false
	}
	r.rets[r.head]++
	r.sumRets++
	return true
}

// Counts returns the requests and retries counted in the window at now.
func (r *Ratio) Counts(now time.Time) (requests, retries float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advanceLocked(now)
	return r.sumReqs, r.sumRets
}

// advanceLocked moves the window to now and places the pending requests.
// It requires r.mu to be held.
func (r *Ratio) advanceLocked(now time.Time) {
	if r.reqs == nil {
		r.init(RatioConfig{}) // the zero Ratio is the default budget
	}
	pending := float64(r.pending.Swap(0))
	if r.headTime.IsZero() {
		r.headTime, r.last = now, now
	}
	// The pending requests arrived some time in [last, now]. Assume them
	// spread evenly and keep only the share that falls inside the window.
	window := r.width * time.Duration(len(r.reqs))
	if span := now.Sub(r.last); span > window {
		pending *= float64(window) / float64(span)
	}
	if now.After(r.last) {
		r.last = now
	}
	if steps := int64(now.Sub(r.headTime) / r.width); steps > 0 {
		for i := int64(0); i < min(steps, int64(len(r.reqs))); i++ {
			r.head = (r.head + 1) % len(r.reqs)
			r.sumReqs -= r.reqs[r.head]
			r.sumRets -= r.rets[r.head]
			r.reqs[r.head], r.rets[r.head] = 0, 0
		}
		if steps >= int64(len(r.reqs)) {
			r.sumReqs, r.sumRets = 0, 0 // the whole window passed; also clears float drift
			r.headTime = now
		} else {
			r.headTime = r.headTime.Add(time.Duration(steps) * r.width)
		}
	}
	r.reqs[r.head] += pending
	r.sumReqs += pending
}

// TokenBucket is gRPC's retry throttling: it holds up to Max tokens and
// starts full; every failed attempt takes one, every success returns Ratio;
// retries are allowed only while more than half the tokens remain. It needs
// no clock. The zero TokenBucket is usable: it is the bucket of the zero
// [TokenBucketConfig].
type TokenBucket struct {
	once       sync.Once
	max, ratio int64 // in thousandths of a token
	tokens     atomic.Int64
}

// TokenBucketConfig configures a TokenBucket. Like gRPC, it accepts Max in
// (0, 1000] and Ratio in (0, Max]. The zero TokenBucketConfig is 10 tokens,
// 0.1 returned per success (gRPC's documented example): after a run of
// failures, ten successes pay for each retry.
type TokenBucketConfig struct {
	Max, Ratio float64
}

func (c TokenBucketConfig) withDefaults() TokenBucketConfig {
	if c == (TokenBucketConfig{}) {
		c.Max, c.Ratio = 10, 0.1
	}
	return c
}

// Validate returns an error naming a setting that cannot work.
func (c TokenBucketConfig) Validate() error {
	c = c.withDefaults()
	if !(c.Max > 0 && c.Max <= 1000) {
		return fmt.Errorf("budget: token bucket Max %v is outside (0, 1000]", c.Max)
	}
	if !(c.Ratio > 0 && c.Ratio <= c.Max) {
		return fmt.Errorf("budget: token bucket Ratio %v is outside (0, %v]", c.Ratio, c.Max)
	}
	return nil
}

// NewBudget implements [Maker]: every key gets a TokenBucket of its own.
func (c TokenBucketConfig) NewBudget(string) (Budget, error) { return NewTokenBucket(c) }

// NewTokenBucket returns a full bucket, or an error naming a bad setting.
func NewTokenBucket(c TokenBucketConfig) (*TokenBucket, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	t := &TokenBucket{}
	t.once.Do(func() { t.fill(c) })
	return t, nil
}

func (t *TokenBucket) fill(c TokenBucketConfig) {
	c = c.withDefaults()
	t.max, t.ratio = int64(c.Max*1000), int64(math.Max(1, c.Ratio*1000))
	t.tokens.Store(t.max)
}

// ready fills a zero TokenBucket on first use.
func (t *TokenBucket) ready() { t.once.Do(func() { t.fill(TokenBucketConfig{}) }) }

// Request implements Budget; a TokenBucket counts outcomes, not requests.
func (t *TokenBucket) Request() {}

// Outcome implements Budget.
func (t *TokenBucket) Outcome(failed bool) {
	t.ready()
	for {
		cur := t.tokens.Load()
		next := cur + t.ratio
		if failed {
			next = cur - 1000
		}
		next = max(0, min(next, t.max))
		if next == cur || t.tokens.CompareAndSwap(cur, next) {
			return
		}
	}
}

// Withdraw implements Budget: a retry is allowed while the bucket is more
// than half full. It spends nothing itself: the retried attempt's failure
// will.
func (t *TokenBucket) Withdraw(time.Time) bool {
	t.ready()
	return t.tokens.Load() > t.max/2
}

// Tokens returns the tokens left.
func (t *TokenBucket) Tokens() float64 {
	t.ready()
	return float64(t.tokens.Load()) / 1000
}

var (
	_ Budget = (*Ratio)(nil)
	_ Budget = (*TokenBucket)(nil)
	_ Maker  = RatioConfig{}
	_ Maker  = TokenBucketConfig{}
	_ Maker  = MakerFunc(nil)
)
