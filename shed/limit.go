package shed

import (
	"math"
	"time"
)

// limiter is the adaptive concurrency limit (see Config). It is a plain
// function of the samples and times it is given; the Shedder's mutex
// guards it.
type limiter struct {
	s *settings

	limit     float64
	slowStart bool
	slowCap   float64 // slow start ends here; 0: at the first queue
	nextProbe time.Time
	probing   bool    // the pending cut is a probe
	probeBase float64 // the baseline before it
	base      minFilter
	holdUntil time.Time // after a cut, samples before this are dropped

	// The current window.
	start    time.Time
	n        int
	mean     float64 // seconds
	m2       float64 // sum of squared deviations from mean (Welford)
	peak     int     // most requests in flight
	area     float64 // requests in flight integrated over the window, request-seconds
	excluded float64 // the part of area of requests not sampled
	pressed  bool    // a request waited or was shed for want of room

	// The requests in flight, as last tracked.
	cur  int
	last time.Time

	latest   time.Duration // the last window's mean
	baseline time.Duration // the baseline at the last window's close

	// Windows at light load pooled for the baseline (see close).
	pool struct {
		work  float64 // latency times requests, summed, seconds
		n     int
		since time.Time // when the first window pooled closed
	}

	// The last cut, checked by the window after it.
	cut struct {
		pending     bool
		limit       float64 // the limit before it
		latency     float64 // the window's mean latency that caused it, seconds
		concurrency float64 // the window's mean requests in flight
	}
}

// baselinePool is how many requests of windows at light load are pooled
// before they offer the baseline their mean: with 100 a 50 ms handler at
// light load was learned 3-6% low, with 200 1-3% (30% low without).
const baselinePool = 200

func newLimiter(s *settings, now time.Time) *limiter {
	l := &limiter{s: s, limit: float64(s.initialLimit), slowStart: true, start: now, nextProbe: now}
	l.base.width = s.baselineWindow / minBuckets
	return l
}

// Limit returns the current limit, a whole number of requests.
func (l *limiter) Limit() int { return int(l.limit) }

// track notes that n requests are in flight from now on.
func (l *limiter) track(now time.Time, n int) {
	if from := later(l.last, l.start); now.After(from) {
		l.area += float64(l.cur) * now.Sub(from).Seconds()
	}
	l.cur, l.last = n, now
	if !now.Before(l.start) {
		l.peak = max(l.peak, n)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// press notes that a request found no room: it waited or was shed.
func (l *limiter) press() { l.pressed = true }

// sample adds a request that ended at now after latency, and closes the
// window when it is due. A request whose latency says nothing of the
// handler's capacity (ok false) only has its time taken out of the
// window's. It reports whether the limit changed.
func (l *limiter) sample(now time.Time, latency time.Duration, ok bool) bool {
	if now.Before(l.holdUntil) {
		return false // the requests admitted before the last cut are draining
	}
	if !ok {
		l.excluded += min(latency, now.Sub(l.start)).Seconds()
		return false
	}
	x := latency.Seconds()
	l.n++
	d := x - l.mean
	l.mean += d / float64(l.n)
	l.m2 += d * (x - l.mean)
	if !l.due(now) {
		return false
	}
	return l.close(now)
}

// maxSamplesFactor bounds a window at this many times MinSamples.
const maxSamplesFactor = 20

// due reports whether the window has measured enough to close: at least
// MinSamples requests over at least Window and twice the latest mean
// latency (a window shorter than its requests would keep only the fastest
// of those admitted since the limit last moved), and enough of them that
// the mean is known to within a tenth (its standard error), or 20 times
// MinSamples.
func (l *limiter) due(now time.Time) bool {
	if l.n < l.s.minSamples || now.Sub(l.start) < max(l.s.window, 2*l.latest) {
		return false
	}
	if l.n >= maxSamplesFactor*l.s.minSamples || l.mean <= 0 {
		return true
	}
	variance := l.m2 / float64(l.n-1)
	return variance/float64(l.n) <= 0.01*l.mean*l.mean
}

// close ends the window at now and moves the limit.
func (l *limiter) close(now time.Time) bool {
	l.track(now, l.cur)
	concurrency := l.area / now.Sub(l.start).Seconds()
	// The window's latency by Little's law: the requests in flight on
	// average over the rate they ended at. In a steady state it is the
	// mean of the samples; when the limit moves it follows at once,
	// where the samples' mean lags by a whole latency (the requests
	// ending now began under the old limit).
	latency := l.mean
	if work := l.area - l.excluded; work > 0 {
		latency = work / float64(l.n)
	}
	// Its relative standard error, from the samples' spread: tiny for a
	// steady handler, a tenth for one with a heavy tail (see due).
	se := 0.0
	if l.n > 1 && l.mean > 0 {
		se = math.Sqrt(l.m2/float64(l.n-1)/float64(l.n)) / l.mean
	}
	inUse := l.pressed || float64(l.peak)*2 >= l.limit
	n := l.n
	l.start, l.n, l.mean, l.m2, l.peak, l.area, l.excluded, l.pressed = now, 0, 0, 0, l.cur, 0, 0, false
	l.latest = time.Duration(latency * float64(time.Second))
	if latency <= 0 {
		return false // a clock that did not move
	}

	if l.cut.pending {
		// The first window after a cut: did the handler get faster? A
		// queue inside it drains when its concurrency falls, and its
		// latency falls with it. When the handler ran a fifth fewer
		// requests at once (measured, not the limit: demand may have
		// been below the old limit) and its latency stayed where it was,
		// the latency has another cause (a slower dependency, a heavier
		// mix of requests), and the baseline is re-learned from it.
		l.cut.pending = false
		if concurrency <= 0.8*l.cut.concurrency && latency >= 0.95*l.cut.latency {
			l.base.reset(now, latency)
			l.pool.work, l.pool.n = 0, 0
		}
		if l.probing {
			// A probe that found the handler faster at half the
			// concurrency than the baseline says had a baseline learned
			// with a queue in it (a server started under overload): probe
			// again soon, until it finds no better. Either way, climb back
			// in slow start, up to the limit before the probe.
			l.probing = false
			l.nextProbe = now.Add(l.s.probeInterval)
			if latency*(1+2*se) < 0.9*l.probeBase {
				l.nextProbe = now.Add(max(10*l.s.window, 20*l.latest))
			}
			l.slowStart, l.slowCap = true, l.cut.limit
		}
	}
	// The minimum of noisy means is lower than their mean by a few
	// standard errors: each window offers its mean plus two, which
	// cancels that bias. But a window at light load holds few requests
	// with few in flight, and Little's law over it errs by the requests
	// at its two edges, an error the samples' spread does not show: the
	// minimum over BaselineWindow of such windows came out 15-20% below
	// the handler's latency. So windows at light load are pooled until
	// they hold baselinePool requests (or for one bucket of the
	// baseline's minimum, so that a quiet server's baseline stays fresh)
	// before they offer their mean; a window in use offers at once, with
	// what was pooled, so a queue is still seen within a window.
	if l.pool.n == 0 {
		l.pool.since = now
	}
	l.pool.work += latency * float64(n)
	l.pool.n += n
	if l.pool.n > 0 && (!l.base.set || inUse || l.pool.n >= baselinePool || now.Sub(l.pool.since) >= l.base.width) {
		pooled := l.pool.work / float64(l.pool.n)
		l.base.add(now, pooled*(1+2*se*math.Sqrt(float64(n)/float64(l.pool.n))))
		l.pool.work, l.pool.n = 0, 0
	}
	base := l.base.get(now)
	l.baseline = time.Duration(base * float64(time.Second))

	if !inUse {
		// A window at light load measured the handler without a queue
		// (and lowered the baseline if it was high): as good as a probe.
		l.nextProbe = now.Add(l.s.probeInterval)
	}

	before := l.limit
	ratio := latency / base
	if l.slowStart && ratio > (1+l.s.tolerance)/2 {
		// Latency is rising halfway to the tolerance: a queue is
		// forming, and growing by half again would overshoot it by far
		// (TCP's HyStart leaves slow start on a delay increase too).
		l.slowStart = false
	}
	switch {
	case l.s.probeInterval > 0 && inUse && !l.slowStart && !now.Before(l.nextProbe):
		// Probe: halve the limit for a window, to measure the handler
		// with less of a queue than the limit lets form. Under a long
		// overload no window runs without one, and a baseline learned
		// with a queue (or grown stale) would otherwise hold the limit
		// where that queue stays (BBR's ProbeRTT, Envoy's minRTT window).
		if l.cutTo(now, max(float64(l.s.minLimit), l.limit/2), latency, concurrency) {
			l.probing, l.probeBase = true, base
		} else {
			l.nextProbe = now.Add(l.s.probeInterval) // at MinLimit already
		}
	// A window above Tolerance by less than two standard errors is
	// noise, not a queue.
	case ratio <= l.s.tolerance*(1+2*se):
		if inUse {
			if l.slowStart {
				l.limit += max(1, l.limit/2)
				if l.slowCap > 0 && l.limit >= l.slowCap {
					l.limit, l.slowStart, l.slowCap = l.slowCap, false, 0
				}
			} else {
				// The square root of the limit while the latency is at
				// the baseline, less as it nears the tolerance, where a
				// queue is building: the nearer the edge, the smaller the
				// step past it before the next window shows it.
				room := (l.s.tolerance - ratio) / (l.s.tolerance - 1)
				l.limit += max(1, math.Sqrt(l.limit)*min(1, room))
			}
		}
	default:
		l.slowStart, l.slowCap = false, 0
		gradient := max(0.5, base/latency)
		l.cutTo(now, max(float64(l.s.minLimit), l.limit*(1-l.s.smoothing*(1-gradient))), latency, concurrency)
	}
	l.limit = max(float64(l.s.minLimit), min(float64(l.s.maxLimit), l.limit))
	return int(l.limit) != int(before)
}

// cutTo lowers the limit to to, after a window of latency and
// concurrency, and reports whether it did.
func (l *limiter) cutTo(now time.Time, to, latency, concurrency float64) bool {
	if to >= l.limit {
		return false
	}
	l.cut.pending = true
	l.cut.limit, l.cut.latency, l.cut.concurrency = l.limit, latency, concurrency
	// The requests in flight were admitted under the old limit, and most
	// end within twice the latency that caused the cut: the next window
	// starts after them, so that it measures the new limit and one slow
	// spell is not cut twice. Dropping the samples of a span, not of the
	// requests admitted before the cut, keeps the next window fair to
	// slow requests.
	l.holdUntil = now.Add(max(l.s.window, 2*l.latest))
	l.start = l.holdUntil
	l.limit = to
	return true
}

// minBuckets is how many buckets the baseline's window is cut into.
const minBuckets = 4

// minFilter is the least value added in the last minBuckets*width: a
// ring of buckets, each the minimum of its span. The newest bucket is
// kept however old, so a server idle for a while keeps its baseline.
type minFilter struct {
	width time.Duration
	start [minBuckets]time.Time
	val   [minBuckets]float64
	i     int
	set   bool
}

func (f *minFilter) add(now time.Time, v float64) {
	switch {
	case !f.set:
		f.reset(now, v)
	case now.Sub(f.start[f.i]) >= f.width:
		f.i = (f.i + 1) % minBuckets
		f.start[f.i], f.val[f.i] = now, v
	default:
		f.val[f.i] = min(f.val[f.i], v)
	}
}

func (f *minFilter) get(now time.Time) float64 {
	v := f.val[f.i]
	for k := range minBuckets {
		if k != f.i && !f.start[k].IsZero() && now.Sub(f.start[k]) < minBuckets*f.width {
			v = min(v, f.val[k])
		}
	}
	return v
}

func (f *minFilter) reset(now time.Time, v float64) {
	*f = minFilter{width: f.width, set: true}
	f.start[0], f.val[0] = now, v
}
