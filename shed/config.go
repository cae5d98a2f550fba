package shed

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/clock"
)

// Priority says how readily a request is shed. The zero value is [Normal].
type Priority int8

const (
	// Sheddable requests are shed first: they may start only while the
	// requests in flight are below RetryShare of the limit, and wait in
	// the queue behind every other request. Retries are sheddable (see
	// [Attempt]), and so is what Config.Priority marks so: prefetches,
	// batch jobs, anything a user is not waiting for.
	Sheddable Priority = -1
	// Normal requests may use the whole limit.
	Normal Priority = 0
	// Critical requests are shed last: they may use the limit plus
	// CriticalHeadroom of it, and are served first from the queue. Keep
	// them few (health checks, the login path, a payment's capture):
	// if most requests are critical, none is.
	Critical Priority = 1
)

func (p Priority) String() string {
	switch p {
	case Sheddable:
		return "sheddable"
	case Normal:
		return "normal"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("Priority(%d)", int8(p))
}

// Config configures a [Shedder]. The zero value of a field means its
// default, given beside it; the zero Config is a ready shedder.
//
// # The limit
//
// The limit is how many requests the handler may run at once. It is learned
// from the handler's latency, as in TCP Vegas and Netflix's
// concurrency-limits: while nothing queues inside the handler (for its
// CPUs, its connection pool, a lock) its latency stays at a baseline; once
// requests queue, latency grows with their number, and the ratio of the
// baseline to the latency says how far the concurrency is past the point
// where the queue began.
//
// Latency is measured over windows of at least Window, MinSamples requests
// and twice the handler's latency, and long enough that their mean is known
// to within a tenth: a handler with a heavy tail gets longer windows. A
// window's latency is the mean number of requests in flight over the rate
// they ended at (Little's law): it is the mean of the requests' latencies
// in a steady state, and follows a change of the limit at once, where the
// mean of the requests that ended lags by a whole latency. Requests that
// failed with a 5xx or took the connection over are left out.
//
// The baseline is the lowest window latency in the last BaselineWindow
// (each window offering its latency plus two standard errors, which cancels
// the bias of a minimum of noisy means). Each window then moves the limit:
//
//   - Latency within Tolerance times the baseline, and the limit in use (at
//     least half of it taken, or a request had to wait or was shed): the
//     limit grows by its square root, less as the latency nears the
//     tolerance (additive increase; the nearer the edge, the smaller the
//     step past it). A new Shedder starts in slow start instead, growing by
//     half of itself per window until the latency rises halfway to the
//     tolerance, so that it finds its level in a second or two.
//   - Latency past Tolerance times the baseline by more than two standard
//     errors (less is noise): the limit is multiplied by the gradient,
//     baseline / latency, at least 0.5 (multiplicative decrease). By
//     Little's law that is where the handler ran without a queue; Smoothing
//     says how much of that step to take. The requests in flight then end
//     before the next window starts, so one slow spell is not cut twice.
//   - A cut that did not make the handler faster (it ran a fifth fewer
//     requests at once and its latency did not fall) shows a latency with
//     another cause, a slower dependency or a heavier mix of requests: the
//     baseline is re-learned from it at once, and the limit stops falling
//     after one step instead of shedding for a whole BaselineWindow.
//   - Under sustained load, every ProbeInterval the limit is halved for a
//     window and climbs back in slow start: under a long overload no window
//     runs without a queue, and a baseline learned with one (a server
//     started under overload) or grown stale would otherwise keep it (BBR's
//     ProbeRTT; Envoy's adaptive concurrency does the same). A probe that
//     finds the handler faster than the baseline comes back soon, until it
//     finds no better; a window at light load counts as a probe.
//
// # The queue
//
// A request that finds the limit taken waits in a short queue rather than
// being refused: a burst is served late rather than not at all. The queue
// is managed like CoDel, as Facebook manages its request queues ("Fail at
// Scale", 2015): while it has been empty within the last QueueInterval, a
// request may wait up to QueueInterval; once it has stayed non-empty for a
// whole QueueInterval it is standing, holding an overload rather than a
// burst, and a request that waited longer than QueueTarget is shed. Both
// are capped by the baseline latency (QueueInterval at it, QueueTarget at a
// quarter of it): a burst the handler cannot absorb within one of its own
// latencies is not a burst. The queue holds at most MaxQueue requests and
// is served by priority, first come first served within one; the caller's
// deadline bounds every wait.
//
// # Priority
//
// Retries and Sheddable requests may start only while fewer than
// RetryShare of the limit are in flight; first attempts may use the whole
// limit; Critical requests the limit plus CriticalHeadroom of it. A full
// queue makes room for a request by shedding the newest waiter of a lower
// priority. Under overload retries are thus refused first, first attempts
// next, critical requests last: a retry is a request some client already
// sent, and serving it instead of a first attempt only moves the failure to
// someone else while the overload goes on.
type Config struct {
	// InitialLimit is the limit a new Shedder starts at. Default 10: low
	// enough that a server started under overload measures its baseline
	// with little queueing, while slow start reaches hundreds in a second
	// or two.
	InitialLimit int
	// MinLimit is the least the limit falls to. Default 2 (or MaxLimit,
	// if lower): a handler that can run one request at a time still gets
	// one beside the queue's next.
	MinLimit int
	// MaxLimit caps the limit. Default 1000 (or MinLimit, if higher):
	// above it a Go server is usually bounded by memory or file
	// descriptors before latency.
	MaxLimit int
	// Tolerance is how many times the baseline a window's latency may
	// reach before the limit is cut: the queueing inside the handler
	// traded for keeping it busy. Must be more than 1 (at most 100).
	// Default 1.5, as Netflix's Gradient2: at 3x overload the handler's
	// latency stays within 1.2-1.5x of its unloaded latency, and a handler
	// whose latency varies between windows is not cut for that.
	Tolerance float64
	// Smoothing is the share of the gradient's step a cut takes, in
	// (0, 1]. Default 1, the whole step: a window's latency is already an
	// average of many requests, and a partial step leaves the handler
	// queueing for several windows more (and never reaching the latency
	// without a queue, which keeps the baseline fresh).
	Smoothing float64
	// Window is the shortest measurement window. Default 100 ms.
	Window time.Duration
	// MinSamples is the fewest requests a window measures. Default 20;
	// windows grow (up to 20 times as many) until their mean is known to
	// within a tenth.
	MinSamples int
	// BaselineWindow is how far back the baseline's minimum looks, at
	// least 4 Windows: a handler that became slower for good is re-learned
	// after it at the latest (usually at once, see above). Default 30 s.
	BaselineWindow time.Duration
	// ProbeInterval is how often, under sustained load, the limit is
	// halved for a window to measure the handler with less of a queue
	// (see above). Default 30 s; negative turns probing off.
	ProbeInterval time.Duration

	// MaxQueue caps the queue; 0 means as many requests as the limit.
	// Negative turns the queue off: a request that finds the limit taken
	// is shed at once.
	MaxQueue int
	// QueueTarget is the longest a request waits in a standing queue (at
	// most a quarter of the baseline latency). Default 5 ms, CoDel's and
	// Facebook's.
	QueueTarget time.Duration
	// QueueInterval is how long the queue may stay non-empty before it
	// counts as standing, and the longest any request waits in it (at
	// most the baseline latency). Default 100 ms, CoDel's and Facebook's.
	// Must not be below QueueTarget.
	QueueInterval time.Duration

	// RetryShare is the share of the limit retries and Sheddable requests
	// may fill, in (0, 1]. Default 0.75: a quarter of the handler's
	// concurrency stays for first attempts and critical requests.
	RetryShare float64
	// CriticalHeadroom is how much beyond the limit Critical requests
	// may go, as a share of the limit (at least one request), in [0, 1].
	// Default 0.1.
	CriticalHeadroom float64
	// Priority, if set, says how readily a request may be shed. A retry
	// (see [Attempt]) of a Normal request is Sheddable; a Critical one
	// stays Critical. Default: every request is Normal.
	Priority func(*http.Request) Priority
	// Class, if set, names the request's class for events: a small,
	// bounded set of names (a route, a tenant's tier), never a raw client
	// key or path, since metrics keep a series per name. Default
	// "default".
	Class func(*http.Request) string

	// RetryAfter is the least wait a shed response asks for, in whole
	// seconds (Retry-After has no finer unit; a fraction is rounded up).
	// Default 1 s.
	RetryAfter time.Duration
	// RetryAfterJitter spreads Retry-After: a random whole number of
	// seconds from 0 to it is added, so the clients shed together do not
	// come back together. Default 2 s; negative turns it off.
	RetryAfterJitter time.Duration

	// Hooks receive an [heed.EventAdmitted] for every request let through
	// and an [heed.EventShed] for every request refused; none is made
	// without hooks.
	Hooks []heed.Hook
	// Clock is the time source. Default clock.Real().
	Clock clock.Clock
}

// settings is a Config with its defaults filled in.
type settings struct {
	initialLimit, minLimit, maxLimit int
	tolerance, smoothing             float64
	window                           time.Duration
	minSamples                       int
	baselineWindow                   time.Duration
	probeInterval                    time.Duration // 0: off
	maxQueue                         int           // -1: no queue; 0: the limit
	queueTarget, queueInterval       time.Duration
	retryShare, criticalHeadroom     float64
	priority                         func(*http.Request) Priority
	class                            func(*http.Request) string
	retryAfter                       int // seconds
	retryAfterJitter                 int // seconds
	hooks                            []heed.Hook
	clock                            clock.Clock
}

// The defaults, as documented on Config.
const (
	defaultInitialLimit     = 10
	defaultMinLimit         = 2
	defaultMaxLimit         = 1000
	defaultTolerance        = 1.5
	defaultSmoothing        = 1.0
	defaultWindow           = 100 * time.Millisecond
	defaultMinSamples       = 20
	defaultBaselineWindow   = 30 * time.Second
	defaultProbeInterval    = 30 * time.Second
	defaultQueueTarget      = 5 * time.Millisecond
	defaultQueueInterval    = 100 * time.Millisecond
	defaultRetryShare       = 0.75
	defaultCriticalHeadroom = 0.1
	defaultRetryAfter       = time.Second
	defaultRetryAfterJitter = 2 * time.Second
	defaultClass            = "default"
	maxRetryAfter           = 24 * time.Hour
)

// resolve checks c and fills in its defaults. Its error names every bad
// field.
func (c Config) resolve() (*settings, error) {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("shed: Config.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	s := &settings{
		initialLimit:     orInt(c.InitialLimit, defaultInitialLimit),
		minLimit:         orInt(c.MinLimit, defaultMinLimit),
		maxLimit:         orInt(c.MaxLimit, defaultMaxLimit),
		tolerance:        orFloat(c.Tolerance, defaultTolerance),
		smoothing:        orFloat(c.Smoothing, defaultSmoothing),
		window:           orDur(c.Window, defaultWindow),
		minSamples:       orInt(c.MinSamples, defaultMinSamples),
		baselineWindow:   orDur(c.BaselineWindow, defaultBaselineWindow),
		probeInterval:    max(0, orDur(c.ProbeInterval, defaultProbeInterval)),
		maxQueue:         c.MaxQueue,
		queueTarget:      orDur(c.QueueTarget, defaultQueueTarget),
		queueInterval:    orDur(c.QueueInterval, defaultQueueInterval),
		retryShare:       orFloat(c.RetryShare, defaultRetryShare),
		criticalHeadroom: orFloat(c.CriticalHeadroom, defaultCriticalHeadroom),
		priority:         c.Priority,
		class:            c.Class,
		hooks:            c.Hooks,
		clock:            c.Clock,
	}
	if c.InitialLimit < 0 {
		bad("InitialLimit", "%d: must not be negative", c.InitialLimit)
	}
	if c.MinLimit < 0 {
		bad("MinLimit", "%d: must not be negative", c.MinLimit)
	}
	if c.MaxLimit < 0 {
		bad("MaxLimit", "%d: must not be negative", c.MaxLimit)
	}
	// A defaulted bound follows the other one.
	if c.MinLimit == 0 {
		s.minLimit = min(s.minLimit, s.maxLimit)
	}
	if c.MaxLimit == 0 {
		s.maxLimit = max(s.maxLimit, s.minLimit)
	}
	if c.MinLimit > 0 && c.MaxLimit > 0 && s.minLimit > s.maxLimit {
		bad("MinLimit", "%d: above MaxLimit %d", s.minLimit, s.maxLimit)
	}
	if c.InitialLimit > 0 && (s.initialLimit < s.minLimit || s.initialLimit > s.maxLimit) {
		bad("InitialLimit", "%d: outside [MinLimit %d, MaxLimit %d]", s.initialLimit, s.minLimit, s.maxLimit)
	}
	// A defaulted InitialLimit follows the bounds the caller set.
	s.initialLimit = max(s.minLimit, min(s.maxLimit, s.initialLimit))
	if c.Tolerance != 0 && !(c.Tolerance > 1 && c.Tolerance <= 100) { // also NaN
		bad("Tolerance", "%v: must be more than 1 (and at most 100)", c.Tolerance)
	}
	if c.Smoothing != 0 && !(c.Smoothing > 0 && c.Smoothing <= 1) {
		bad("Smoothing", "%v: must be in (0, 1]", c.Smoothing)
	}
	if c.Window < 0 {
		bad("Window", "%v: must not be negative", c.Window)
	}
	if c.MinSamples < 0 {
		bad("MinSamples", "%d: must not be negative", c.MinSamples)
	}
	if c.BaselineWindow < 0 {
		bad("BaselineWindow", "%v: must not be negative", c.BaselineWindow)
	} else if c.Window >= 0 && s.baselineWindow < 4*s.window {
		bad("BaselineWindow", "%v: must be at least 4 Windows (%v)", s.baselineWindow, 4*s.window)
	}
	if c.QueueTarget < 0 {
		bad("QueueTarget", "%v: must not be negative", c.QueueTarget)
	}
	if c.QueueInterval < 0 {
		bad("QueueInterval", "%v: must not be negative", c.QueueInterval)
	}
	if c.QueueTarget >= 0 && c.QueueInterval >= 0 && s.queueTarget > s.queueInterval {
		bad("QueueTarget", "%v: above QueueInterval %v", s.queueTarget, s.queueInterval)
	}
	if c.MaxQueue < 0 {
		s.maxQueue = -1
	}
	if c.RetryShare != 0 && !(c.RetryShare > 0 && c.RetryShare <= 1) {
		bad("RetryShare", "%v: must be in (0, 1]", c.RetryShare)
	}
	if c.CriticalHeadroom != 0 && !(c.CriticalHeadroom >= 0 && c.CriticalHeadroom <= 1) {
		bad("CriticalHeadroom", "%v: must be in [0, 1]", c.CriticalHeadroom)
	}
	switch {
	case c.RetryAfter < 0:
		bad("RetryAfter", "%v: must not be negative", c.RetryAfter)
	case c.RetryAfter > maxRetryAfter:
		bad("RetryAfter", "%v: above a day", c.RetryAfter)
	default:
		s.retryAfter = seconds(orDur(c.RetryAfter, defaultRetryAfter))
	}
	switch {
	case c.RetryAfterJitter < 0:
		s.retryAfterJitter = 0
	case c.RetryAfterJitter > maxRetryAfter:
		bad("RetryAfterJitter", "%v: above a day", c.RetryAfterJitter)
	default:
		s.retryAfterJitter = seconds(orDur(c.RetryAfterJitter, defaultRetryAfterJitter))
	}
	for i, h := range c.Hooks {
		if h == nil {
			bad(fmt.Sprintf("Hooks[%d]", i), "nil hook")
		}
	}
	if s.clock == nil {
		s.clock = clock.Real()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orFloat(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}
