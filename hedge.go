package heed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/throttle"
)

// HedgeConfig configures hedged requests ("The Tail at Scale"): when an
// attempt has not answered after a delay, heed sends a copy and takes
// whichever answers first. The zero value of a field means its default.
type HedgeConfig struct {
	// Delay before a hedge is sent. Zero: adaptive, the Percentile of the
	// latency recently seen for the key, at least MinDelay.
	Delay time.Duration
	// Percentile of recent latency the adaptive delay waits for. Default
	// 0.95: only the slowest twentieth of requests are hedged.
	Percentile float64
	// MinDelay is the floor of the adaptive delay. Default 1 ms.
	MinDelay time.Duration
	// MaxHedges is the most copies sent besides the first. Default 1.
	MaxHedges int
	// Share caps hedges at this share of the key's requests over 10 s, on
	// top of drawing each hedge from the retry budget. Default 0.1: the p95
	// delay hedges about 5% of requests, and 10% leaves room for variance
	// while keeping the extra load small.
	Share float64
	// Keyed lets requests that are not idempotent but carry an
	// Idempotency-Key (a POST, say) be hedged too.
	Keyed bool
}

func (c *HedgeConfig) defaults() {
	if c.Percentile == 0 {
		c.Percentile = 0.95
	}
	if c.MinDelay == 0 {
		c.MinDelay = time.Millisecond
	}
	if c.MaxHedges == 0 {
		c.MaxHedges = 1
	}
	if c.Share == 0 {
		c.Share = 0.1
	}
}

func (c HedgeConfig) validate() error {
	switch {
	case c.Delay < 0 || c.MinDelay < 0:
		return fmt.Errorf("delay %v and min delay %v must not be negative", c.Delay, c.MinDelay)
	case !(c.Percentile > 0 && c.Percentile < 1):
		return fmt.Errorf("percentile %v must be in (0, 1)", c.Percentile)
	case c.MaxHedges < 1 || c.MaxHedges > 10:
		return fmt.Errorf("max hedges %d: want 1 to 10", c.MaxHedges)
	case !(c.Share > 0 && c.Share <= 1):
		return fmt.Errorf("share %v must be in (0, 1]", c.Share)
	}
	return nil
}

// WithHedging turns hedged requests on (they are off by default: they add
// load). Only requests safe to repeat are hedged: idempotent methods, and
// with Keyed those carrying an Idempotency-Key. Hedging applies to
// requests through the Transport; [Do] does not hedge. See docs/hedging.md.
func WithHedging(c HedgeConfig) Option {
	return optionFunc(func(cfg *config) {
		c.defaults()
		if err := c.validate(); err != nil {
			cfg.problem("WithHedging: %v", err)
			return
		}
		cfg.hedge = &c
	})
}

// hedgeState is a key's hedging: its latency estimate and its share.
type hedgeState struct {
	lat   latencies
	share *budget.Ratio
	races sync.Pool // of *race
}

func (p *Policy) newHedgeState() *hedgeState {
	b, _ := budget.NewRatio(budget.RatioConfig{Percent: p.hedge.Share, MinPerSecond: 0.5, Window: 10 * time.Second})
	return &hedgeState{share: b}
}

// delay is how long an attempt runs before a hedge follows it; false when
// there is too little history for an adaptive delay.
func (h *hedgeState) delay(c *HedgeConfig) (time.Duration, bool) {
	if c.Delay > 0 {
		return c.Delay, true
	}
	d, ok := h.lat.quantile(c.Percentile)
	return max(d, c.MinDelay), ok
}

// hedgeable reports a request heed may send several copies of.
func (l *loop) hedgeable() bool {
	hc := l.p.hedge
	if hc == nil || l.ks.hedge == nil || !l.body.replayable {
		return false
	}
	return idempotentMethod(l.method) || l.p.idempotent || hc.Keyed && hasIdempotencyKey(l.header)
}

// hedgeResult is what one copy of a request got.
type hedgeResult struct {
	resp  *http.Response
	err   error
	index int                // 0 for the first copy
	slot  *throttle.Bulkhead // the concurrency slot the copy holds, if any
}

// release frees what a copy that lost holds: its body and its slot.
func (r hedgeResult) release() {
	if r.resp != nil {
		r.resp.Body.Close()
	}
	if r.slot != nil {
		r.slot.Release()
	}
}

// race collects the answers of one attempt's copies. Once it is decided,
// copies that answer late free what they got themselves, so neither a
// connection nor a goroutine outlives them. Races are pooled: the last of
// the caller and the copies to be done with one puts it back.
type race struct {
	mu      sync.Mutex
	decided bool
	refs    int              // the caller's, and one per copy that has not delivered
	results chan hedgeResult // buffered for every copy: sends never block
	cancels []context.CancelCauseFunc
	timer   *time.Timer // the hedge delay's, when the clock is the real one
	pool    *sync.Pool  // where it goes back to
}

// newRace returns a race for up to copies copies, from the key's pool: a
// pool per key rather than one for the process keeps each race's channel
// and timer among the goroutines that use the key (testing/synctest
// forbids sharing them across its bubbles).
func (h *hedgeState) newRace(copies int) *race {
	r, _ := h.races.Get().(*race)
	if r == nil {
		r = &race{pool: &h.races}
	}
	if cap(r.results) < copies {
		r.results = make(chan hedgeResult, copies)
	}
	r.decided, r.refs = false, 1
	return r
}

// unref drops a reference; the last one recycles the race. Every result
// sent has been received or released by then: deliver sends only before
// decide, which drains the channel.
func (r *race) unref() {
	r.mu.Lock()
	r.refs--
	last := r.refs == 0
	r.mu.Unlock()
	if last {
		clear(r.cancels)
		r.cancels = r.cancels[:0]
		r.pool.Put(r)
	}
}

func (r *race) deliver(res hedgeResult) {
	r.mu.Lock()
	if !r.decided {
		r.results <- res
		r.mu.Unlock()
	} else {
		r.mu.Unlock()
		res.release()
	}
	r.unref()
}

// decide ends the race for winner: every other copy is cancelled, and the
// answers already in are freed.
func (r *race) decide(winner int) {
	for i, cancel := range r.cancels {
		if i != winner {
			cancel(ErrHedgeLost)
		}
	}
	r.mu.Lock()
	r.decided = true
	r.mu.Unlock()
	for {
		select {
		case res := <-r.results:
			res.release()
		default:
			return
		}
	}
}

// launch sends copy i of areq in its own goroutine.
func (r *race) launch(l *loop, areq *http.Request, i int, slot *throttle.Bulkhead) error {
	body := areq.Body
	if i > 0 && l.body.get != nil {
		b, err := l.body.get()
		if err != nil {
			return err
		}
		body = b
	}
	ctx, cancel := context.WithCancelCause(areq.Context())
	creq := areq.WithContext(ctx)
	creq.Body = body
	r.cancels = append(r.cancels, cancel)
	r.mu.Lock()
	r.refs++
	r.mu.Unlock()
	t := l.t // not l: the loop must stay on its caller's stack
	go func() {
		resp, err := t.send(creq)
		r.deliver(hedgeResult{resp: resp, err: err, index: i, slot: slot})
	}()
	return nil
}

// hedgeTimer is the hedge delay's timer: the race's own, reused, when the
// clock is the real one (a new timer costs three allocations), else the
// clock's.
func (r *race) hedgeTimer(c clock.Clock, d time.Duration) clock.Timer {
	if c != clock.Real() {
		return c.NewTimer(d)
	}
	if r.timer == nil {
		r.timer = time.NewTimer(d)
	} else {
		r.timer.Reset(d) // stopped when the race last ended: no stale tick
	}
	return realTimer{r.timer}
}

// realTimer is a *time.Timer as a clock.Timer.
type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// sendHedged makes one attempt of areq with hedging, timed from start
// (zero: not read yet): while it has not answered after the hedge delay,
// up to MaxHedges copies follow, one per delay, each only when the key's
// share of hedges, its retry budget and its limits allow one without
// waiting. The first answer that is not a retryable failure wins, and the
// other copies are cancelled. A copy that fails retryably does not cancel
// the ones still in flight, but no further copy follows it; when every
// copy has failed, the last failure is the attempt's, for the retry loop
// to decide on. The copy that answered is returned with its index, its
// context's cancel and its concurrency slot in stop, which ends them once
// the caller is done with the response.
func (l *loop) sendHedged(areq *http.Request, stop *stopper, start time.Time) (*http.Response, *stopper, int, error) {
	p, hc, hs := l.p, l.p.hedge, l.ks.hedge
	if stop == nil {
		stop = &stopper{}
	}
	if start.IsZero() {
		start = p.clock.Now()
	}
	delay, known := hs.delay(hc)
	if !known {
		// Too little history for a delay: send plainly, and learn.
		resp, err := l.t.send(areq)
		if err == nil && resp != nil && !failedStatus(resp.StatusCode) {
			l.now = p.clock.Now()
			hs.lat.add(l.now.Sub(start))
		}
		return resp, stop, 0, err
	}
	r := hs.newRace(1 + hc.MaxHedges)
	defer r.unref()
	r.launch(l, areq, 0, stop.slot) // the first copy sends areq's own body: no error
	stop.slot = nil
	timer := r.hedgeTimer(p.clock, delay)
	defer func() { timer.Stop() }() // before the race goes back to its pool
	fire := timer.C()
	pending, sent := 1, 1
	var failed hedgeResult // the latest retryable failure, kept until a copy does better
	hasFailed := false
	for {
		select {
		case res := <-r.results:
			pending--
			won := res.err == nil && res.resp != nil && !failedStatus(res.resp.StatusCode)
			if won || pending == 0 {
				if hasFailed {
					failed.release()
				}
				r.decide(res.index)
				if won {
					l.now = p.clock.Now()
					hs.lat.add(wonAfter(res.index, l.now.Sub(start), delay))
				}
				stop.hedge, stop.slot = r.cancels[res.index], res.slot
				return res.resp, stop, res.index, res.err
			}
			// A retryable failure: wait for the copies still in flight,
			// but send no more.
			if hasFailed {
				failed.release()
			}
			failed, hasFailed, fire = res, true, nil
		case <-fire:
			fire = nil
			slot, ok := l.mayHedge()
			if !ok {
				continue // refused now; a copy answering will end the race
			}
			if err := r.launch(l, areq, sent, slot); err != nil {
				if slot != nil {
					slot.Release()
				}
				continue
			}
			sent++
			pending++
			if len(p.hooks) > 0 {
				l.emitHedge(areq, sent-1, delay)
			}
			if sent <= hc.MaxHedges {
				timer.Stop()
				timer = r.hedgeTimer(p.clock, delay)
				fire = timer.C()
			}
		}
	}
}

// ErrHedgeLost is the cause (see [context.Cause]) with which heed ends the
// context of a hedged copy once another copy has answered: a base
// RoundTripper or its log can tell a lost race from a caller's cancel.
var ErrHedgeLost = errors.New("heed: another copy of the request answered first")

// wonAfter is the latency sample a won race teaches the estimate. The
// first copy's is its own. When a hedge won, the first copy's latency is
// unknown but above the delay; it counts as just under the delay, in the
// bucket the delay came from. Counting the hedge's total time instead
// would push the estimate up by a bucket each time the slow share of the
// traffic strays above 1-Percentile, and the delay would creep upward
// round after round; counting it low is safe, as the hedge share caps
// how often a too-short delay can hedge.
func wonAfter(copy int, took, delay time.Duration) time.Duration {
	if copy == 0 {
		return took
	}
	return delay - 1
}

// mayHedge asks whether a hedge may go now, without waiting: the breaker
// is closed, the pacer is not holding the key back, a concurrency slot is
// free (returned, to be held by the hedge), and the key's hedge share, its
// retry budget and its rate limit each allow one more request.
func (l *loop) mayHedge() (*throttle.Bulkhead, bool) {
	ks := l.ks
	t := &ks.throttle
	if ks.breaker != nil && ks.breaker.State() != breaker.Closed || t.pacing() || t.err != nil {
		return nil, false
	}
	var slot *throttle.Bulkhead
	if t.bulkhead != nil {
		if !t.bulkhead.TryAcquire() {
			return nil, false
		}
		slot = t.bulkhead
	}
	now := l.p.clock.Now()
	if !ks.hedge.share.Withdraw(now) || ks.budget != nil && !ks.budget.Withdraw(now) || t.limiter != nil && !t.limiter.Allow(now) {
		if slot != nil {
			slot.Release()
		}
		return nil, false
	}
	return slot, true
}

// latencies is a bounded streaming estimate of a key's latency: a histogram
// of log-spaced buckets (10% apart, from 100 µs to about 7 min; 1.3 KiB)
// whose counts halve every 1,024 samples, so it follows recent traffic in
// constant memory. A quantile reads as its bucket's upper edge: it
// overshoots by at most 10%, and never falls below a latency that many
// requests share, which would hedge them all.
type latencies struct {
	mu     sync.Mutex
	counts [160]float64
	total  float64
	seen   int
}

const (
	latencyMin   = 100 * time.Microsecond
	latencyRatio = 1.1
	latencyDecay = 1024
	latencyWarm  = 20 // samples before the adaptive delay is trusted
)

func latencyBucket(d time.Duration) int {
	if d <= latencyMin {
		return 0
	}
	i := int(math.Log(float64(d)/float64(latencyMin)) / math.Log(latencyRatio))
	return min(i, len(latencies{}.counts)-1)
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[latencyBucket(d)]++
	l.total++
	if l.seen++; l.seen%latencyDecay == 0 {
		for i := range l.counts {
			l.counts[i] /= 2
		}
		l.total /= 2
	}
}

// quantile returns the upper edge of the bucket holding quantile q, and
// false until there are enough samples.
func (l *latencies) quantile(q float64) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen < latencyWarm {
		return 0, false
	}
	want := q * l.total
	var sum float64
	for i, c := range l.counts {
		if sum += c; sum >= want {
			return time.Duration(float64(latencyMin) * math.Pow(latencyRatio, float64(i+1))), true
		}
	}
	return time.Duration(float64(latencyMin) * math.Pow(latencyRatio, float64(len(l.counts)))), true
}
