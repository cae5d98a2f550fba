package heedprom

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/internal/vocab"
)

// DefaultMaxKeys caps the distinct values of the key label; events of
// further keys are counted under the key "other".
const DefaultMaxKeys = 100

// otherKey is the key label of keys past the cap.
const otherKey = "other"

// Option configures a Collector.
type Option func(*Collector)

// WithMaxKeys caps the distinct values of the key label at n (at least 1).
// heed's keys are hosts by default, but a key function may return many.
func WithMaxKeys(n int) Option {
	return func(c *Collector) {
		if n >= 1 {
			c.maxKeys = n
		}
	}
}

// WithNamespace replaces the "heed" prefix of every metric name.
func WithNamespace(ns string) Option {
	return func(c *Collector) { c.namespace = ns }
}

// WithDurationBuckets sets the upper bounds, in seconds, of the buckets of
// heed_request_duration_seconds. By default they are
//
//	.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60
//
// The option keeps a copy of bounds. No bounds keep the default. The
// bounds must increase, as Prometheus requires: New panics otherwise (left
// to client_golang, the panic would come at the first observation, in the
// middle of a request).
func WithDurationBuckets(bounds ...float64) Option {
	bounds = slices.Clone(bounds)
	return func(c *Collector) {
		if len(bounds) > 0 {
			c.durationBuckets = bounds
		}
	}
}

// WithWaitBuckets sets the upper bounds, in seconds, of the buckets of
// heed_retry_wait_seconds and heed_throttle_wait_seconds. By default they
// are
//
//	.01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60
//
// The option keeps a copy of bounds. No bounds keep the default. The
// bounds must increase, as Prometheus requires: New panics otherwise (left
// to client_golang, the panic would come at the first observation, in the
// middle of a request).
func WithWaitBuckets(bounds ...float64) Option {
	bounds = slices.Clone(bounds)
	return func(c *Collector) {
		if len(bounds) > 0 {
			c.waitBuckets = bounds
		}
	}
}

// Collector turns heed's events into Prometheus metrics, and reads the
// state of the policies it watches (breakers, concurrency queues, pacing)
// when it is scraped. It is a [heed.Hook] and a [prometheus.Collector]:
//
//	m := heedprom.New()
//	t, err := heed.New(heed.WithHook(m))
//	m.Watch(t.Policy())
//	prometheus.MustRegister(m)
//
// Labels are bounded: key (capped, see [WithMaxKeys]), method (the
// standard methods, else "other"), and enumerations heed defines (outcome,
// result, reason, source, state). No URL or other request value becomes a
// label. After its first event for a label set, counting an event
// allocates nothing. A Collector is safe for concurrent use.
type Collector struct {
	namespace       string
	maxKeys         int
	durationBuckets []float64
	waitBuckets     []float64

	mu       sync.RWMutex
	keys     map[string]struct{}      // key label values in use
	breakers map[string]breaker.State // states learnt from EventBreaker
	policies []*heed.Policy

	requests        *counters
	requestSeconds  *histograms
	attempts        *counters
	retries         *counters
	retryWait       *histograms
	giveUps         *counters
	budgetRefusals  *counters
	transitions     *counters
	throttleWait    *histograms
	throttleRefused *counters
	hedges          *counters
	hedgesWon       *counters
	fallbacks       *counters
	stale           *counters
	outbox          *counters
	server          *counters
	serverWait      *histograms

	breakerState *prometheus.Desc
	queueDepth   *prometheus.Desc
	inFlight     *prometheus.Desc
	pacing       *prometheus.Desc

	audit auditMetrics // WatchAudit
}

var (
	_ heed.Hook            = (*Collector)(nil)
	_ prometheus.Collector = (*Collector)(nil)
)

// The default buckets of the histograms, in seconds (see
// [WithDurationBuckets] and [WithWaitBuckets]). Calls and waits run from
// milliseconds (a fast API) to a minute (heed's default wait cap). They are
// unexported so that no program can change them under another's
// collectors; New gives each Collector its own copy.
var (
	defaultDurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	defaultWaitBuckets     = []float64{.01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60}
)

// New returns a Collector.
func New(opts ...Option) *Collector {
	c := &Collector{namespace: "heed", maxKeys: DefaultMaxKeys, keys: map[string]struct{}{}, breakers: map[string]breaker.State{}}
	c.durationBuckets = slices.Clone(defaultDurationBuckets)
	c.waitBuckets = slices.Clone(defaultWaitBuckets)
	for _, o := range opts {
		o(c)
	}
	checkBuckets("WithDurationBuckets", c.durationBuckets)
	checkBuckets("WithWaitBuckets", c.waitBuckets)
	ns := c.namespace
	counter := func(name, help string, labels ...string) *counters {
		return newCounters(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels), len(labels))
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *histograms {
		return newHistograms(prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets}, labels), len(labels))
	}
	c.requests = counter("requests_total", "Logical requests (calls) that ended, by outcome: success, client_error, server_error (a final error status), failure (an error).", "key", "method", "outcome")
	c.requestSeconds = histogram("request_duration_seconds", "Duration of logical requests, all attempts and waits included.", c.durationBuckets, "key", "method", "outcome")
	c.attempts = counter("attempts_total", "Attempts sent, by result: the status class (2xx..5xx) or the transport error kind.", "key", "method", "result")
	c.retries = counter("retries_total", "Retries scheduled, by reason: the status code or the transport error kind of the attempt retried.", "key", "method", "reason")
	c.retryWait = histogram("retry_wait_seconds", "Waits before retries, by source: retry_after, ratelimit_reset, backoff, refresh, breaker, throttle.", c.waitBuckets, "key", "source")
	c.giveUps = counter("give_ups_total", "Calls heed stopped retrying, by reason: attempts_exhausted, budget_exhausted, breaker_open, wait_too_long, deadline, not_retryable, ...", "key", "method", "reason")
	c.budgetRefusals = counter("budget_refusals_total", "Retries the retry budget refused.", "key")
	c.transitions = counter("breaker_transitions_total", "Circuit breaker state changes.", "key", "from", "to")
	c.throttleWait = histogram("throttle_wait_seconds", "Time attempts waited for the key's rate limit, concurrency limit or pacer.", c.waitBuckets, "key")
	c.throttleRefused = counter("throttle_refusals_total", "Attempts the key's limits refused (the wait would pass the deadline or the cap, or the queue was full).", "key")
	c.hedges = counter("hedges_total", "Hedged copies of requests sent.", "key")
	c.hedgesWon = counter("hedges_won_total", "Attempts whose answer came from a hedged copy.", "key")
	c.fallbacks = counter("fallbacks_total", "Failed calls the fallback answered.", "key")
	c.stale = counter("stale_responses_total", "Failed calls answered with a stored response (stale-if-error).", "key")
	c.server = counter("server_requests_total", "Requests a server's heed middleware decided on, by the client's class and the decision: admitted, limited (429 from ratelimit), shed (503 from shed).", "class", "decision")
	c.serverWait = histogram("server_wait_seconds", "Waits a server's heed middleware imposed, by class and decision: for admitted, the time the request waited before its handler (shed's queue, ratelimit's delay mode); for limited and shed, the Retry-After the client was told.", c.waitBuckets, "class", "decision")
	c.outbox = counter("outbox_total", "Outbox entries by event: queued (a failed write kept), queue_failed (it qualified but the store failed), replayed (sent again and failed again), delivered, dead.", "key", "event")
	c.breakerState = prometheus.NewDesc(ns+"_breaker_state", "Circuit breaker state: 1 for the key's current state, 0 for the others.", []string{"key", "state"}, nil)
	c.queueDepth = prometheus.NewDesc(ns+"_throttle_queue_depth", "Requests waiting for a slot of the key's concurrency limit.", []string{"key"}, nil)
	c.inFlight = prometheus.NewDesc(ns+"_throttle_in_flight", "Requests holding a slot of the key's concurrency limit.", []string{"key"}, nil)
	c.pacing = prometheus.NewDesc(ns+"_pacer_active", "1 while the adaptive pacer spaces the key's requests.", []string{"key"}, nil)
	c.audit.init(ns)
	return c
}

// checkBuckets panics unless bounds are numbers in increasing order.
func checkBuckets(option string, bounds []float64) {
	for i, b := range bounds {
		if math.IsNaN(b) || i > 0 && bounds[i-1] >= b {
			panic(fmt.Sprintf("heedprom: %s: bucket bounds must increase, got %v", option, bounds))
		}
	}
}

// Watch adds a policy whose per-key state (breaker state, concurrency
// queue depth and slots in use, pacing) is read at every scrape. Without
// it, the breaker state comes from the transitions seen.
func (c *Collector) Watch(p *heed.Policy) {
	c.mu.Lock()
	c.policies = append(c.policies, p)
	c.mu.Unlock()
}

// OnEvent counts e. It implements [heed.Hook].
func (c *Collector) OnEvent(_ context.Context, e heed.Event) {
	switch e.Kind {
	case heed.EventDone:
		o := vocab.Outcome(e.Status, e.Err)
		key, method := c.key(e.Key), methodLabel(e.Method)
		c.requests.with(labels{key, method, o}).Inc()
		c.requestSeconds.with(labels{key, method, o}).Observe(e.Duration.Seconds())
	case heed.EventAttempt:
		key := c.key(e.Key)
		c.attempts.with(labels{key, methodLabel(e.Method), vocab.Result(e.Status, string(e.ErrorKind))}).Inc()
		if e.Hedge > 0 {
			c.hedgesWon.with(labels{key}).Inc()
		}
	case heed.EventRetry:
		key := c.key(e.Key)
		c.retries.with(labels{key, methodLabel(e.Method), vocab.Result(e.Status, string(e.ErrorKind))}).Inc()
		c.retryWait.with(labels{key, e.Source.String()}).Observe(e.Wait.Seconds())
	case heed.EventGiveUp:
		key := c.key(e.Key)
		r := vocab.Reason(e.Reason)
		c.giveUps.with(labels{key, methodLabel(e.Method), r}).Inc()
		if r == "budget_exhausted" {
			c.budgetRefusals.with(labels{key}).Inc()
		}
	case heed.EventBreaker:
		key := c.key(e.Key)
		c.transitions.with(labels{key, e.From.String(), e.To.String()}).Inc()
		c.mu.Lock()
		c.breakers[key] = e.To
		c.mu.Unlock()
	case heed.EventThrottle:
		key := c.key(e.Key)
		if e.Err != nil {
			c.throttleRefused.with(labels{key}).Inc()
		} else {
			c.throttleWait.with(labels{key}).Observe(e.Wait.Seconds())
		}
	case heed.EventHedge:
		c.hedges.with(labels{c.key(e.Key)}).Inc()
	case heed.EventFallback:
		c.fallbacks.with(labels{c.key(e.Key)}).Inc()
	case heed.EventStale:
		c.stale.with(labels{c.key(e.Key)}).Inc()
	case heed.EventQueued:
		event := "queued"
		if e.Err != nil {
			event = "queue_failed"
		}
		c.outbox.with(labels{c.key(e.Key), event}).Inc()
	case heed.EventReplayed, heed.EventDelivered, heed.EventDead:
		c.outbox.with(labels{c.key(e.Key), e.Kind.String()}).Inc()
	case heed.EventAdmitted, heed.EventLimited, heed.EventShed:
		l := labels{c.key(e.Key), e.Kind.String()}
		c.server.with(l).Inc()
		if e.Kind != heed.EventAdmitted || e.Wait > 0 {
			// An admission without a wait is the common case; observing it
			// would bury the waits in zeros and cost every request.
			c.serverWait.with(l).Observe(e.Wait.Seconds())
		}
	}
}

// key returns the label for key: itself while under the cap.
func (c *Collector) key(key string) string {
	c.mu.RLock()
	_, ok := c.keys[key]
	n := len(c.keys)
	c.mu.RUnlock()
	if ok {
		return key
	}
	if n >= c.maxKeys {
		return otherKey
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.keys[key]; !ok {
		if len(c.keys) >= c.maxKeys {
			return otherKey
		}
		c.keys[key] = struct{}{}
	}
	return key
}

var methods = map[string]string{}

func init() {
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace} {
		methods[m] = m
	}
}

func methodLabel(m string) string {
	if l, ok := methods[m]; ok {
		return l
	}
	if m == "" {
		return "none" // a call through heed.Do
	}
	return "other"
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range c.vecs() {
		v.Describe(ch)
	}
	ch <- c.breakerState
	ch <- c.queueDepth
	ch <- c.inFlight
	ch <- c.pacing
	c.audit.describe(ch)
}

// Collect implements [prometheus.Collector].
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.vecs() {
		v.Collect(ch)
	}
	c.audit.collect(ch)
	c.mu.RLock()
	policies := append([]*heed.Policy(nil), c.policies...)
	states := make(map[string]breaker.State, len(c.breakers))
	for k, s := range c.breakers {
		states[k] = s
	}
	c.mu.RUnlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	seen := map[string]bool{}
	for _, p := range policies {
		for _, s := range p.Stats() {
			key := c.key(s.Key)
			if seen[key] {
				continue // two policies, or keys past the cap: report the first
			}
			seen[key] = true
			if s.HasBreaker {
				states[key] = s.Breaker
			}
			gauge(c.queueDepth, float64(s.Queued), key)
			gauge(c.inFlight, float64(s.InFlight), key)
			gauge(c.pacing, b2f(s.Pacing), key)
		}
	}
	for key, st := range states {
		for _, s := range []breaker.State{breaker.Closed, breaker.HalfOpen, breaker.Open} {
			gauge(c.breakerState, b2f(st == s), key, s.String())
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *Collector) vecs() []prometheus.Collector {
	return []prometheus.Collector{
		c.requests.vec, c.requestSeconds.vec, c.attempts.vec, c.retries.vec, c.retryWait.vec, c.giveUps.vec,
		c.budgetRefusals.vec, c.transitions.vec, c.throttleWait.vec, c.throttleRefused.vec, c.hedges.vec,
		c.hedgesWon.vec, c.fallbacks.vec, c.stale.vec, c.outbox.vec, c.server.vec, c.serverWait.vec,
	}
}

// labels is a label set of up to three values, a map key that hashes
// without allocating.
type labels [3]string

// children caches the children of a metric vector by their labels.
// WithLabelValues allocates on every call (its variadic slice escapes); a
// map lookup by an array does not, so an event allocates only the first
// time its label set is seen.
type children[M any] struct {
	get func(...string) M
	mu  sync.RWMutex
	m   map[labels]M
	n   int // labels in use
}

func (c *children[M]) with(l labels) M {
	c.mu.RLock()
	m, ok := c.m[l]
	c.mu.RUnlock()
	if ok {
		return m
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok = c.m[l]; !ok {
		values := make([]string, c.n) // a copy: l must not escape
		copy(values, l[:c.n])
		m = c.get(values...)
		c.m[l] = m
	}
	return m
}

type counters struct {
	vec *prometheus.CounterVec
	children[prometheus.Counter]
}

func newCounters(v *prometheus.CounterVec, n int) *counters {
	return &counters{vec: v, children: children[prometheus.Counter]{get: v.WithLabelValues, m: map[labels]prometheus.Counter{}, n: n}}
}

type histograms struct {
	vec *prometheus.HistogramVec
	children[prometheus.Observer]
}

func newHistograms(v *prometheus.HistogramVec, n int) *histograms {
	return &histograms{vec: v, children: children[prometheus.Observer]{get: v.WithLabelValues, m: map[labels]prometheus.Observer{}, n: n}}
}
