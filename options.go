package heed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/clock"
)

// Defaults; the options that change them give the reason for each.
const (
	defaultMaxAttempts    = 6
	defaultMaxWait        = 60 * time.Second
	defaultMaxBodyBuffer  = 1 << 20
	defaultResponseBuffer = 1 << 20
	// maxDrain bounds how much of a discarded response is read so its
	// connection can be reused; beyond it the connection is closed instead.
	maxDrain = 64 << 10
)

// defaultBackoff is full jitter from 500 ms, capped at 30 s: five retries
// wait about 8 s in all on average, and clients that failed together are
// spread over the whole interval instead of returning together.
var defaultBackoff = backoff.Full(500*time.Millisecond, 30*time.Second)

// Option configures a [Policy]. Options are checked together by
// [NewPolicy], [New] and [NewClient], which refuse settings that cannot
// work and settings that contradict each other, naming them. Of two
// options that set the same thing, the later wins.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	base            http.RoundTripper
	maxAttempts     int
	backoff         backoff.Strategy
	maxWait         time.Duration
	maxTotal        time.Duration
	attemptTimeout  time.Duration
	statusRules     map[int]int // status -> max attempts for it (0 = policy max); absent = not retried
	classifier      func(Outcome) Verdict
	refresh         func(context.Context, *http.Request) error
	autoKey         bool
	maxBodyBuffer   int64
	respBuffer      int64
	errorOnFinal    bool
	clock           clock.Clock
	rand            func() float64
	logger          *slog.Logger
	loggerSet       bool
	hooks           []Hook
	keyFunc         func(*http.Request) string
	maxKeys         int
	breakerOff      bool // WithoutBreaker
	breakerSet      bool // WithBreaker
	breakerSettings breaker.Settings
	breakerCounter  func(Outcome, breaker.Outcome) breaker.Outcome
	budgetOff       bool // WithoutRetryBudget
	budgetSet       bool // WithRetryBudget
	budgets         budget.Maker
	maxRetrying     int // WithMaxConcurrentRetries; 0: no cap
	noTierHeaders   bool
	limitsSet       bool // WithLimits
	limits          Limits
	keyLimits       func(key string) Limits
	breakerFleet    func(key string) breaker.Fleet
	hedge           *HedgeConfig // nil: no hedging
	stale           *StaleConfig // nil: no stale-if-error store
	fallback        fallbackFunc
	outbox          *Outbox       // nil: no outbox
	secretPaths     []pathPattern // WithSecretPath; nil: no segment is secret
	problems        []error       // bad values met while applying options
}

func defaultConfig() config {
	return config{
		maxAttempts:   defaultMaxAttempts,
		backoff:       defaultBackoff,
		maxWait:       defaultMaxWait,
		statusRules:   defaultStatusRules(),
		maxBodyBuffer: defaultMaxBodyBuffer,
		respBuffer:    defaultResponseBuffer,
		clock:         clock.Real(),
		rand:          rand.Float64,
		maxKeys:       defaultMaxKeys,
		budgets:       budget.RatioConfig{},
	}
}

// defaultStatusRules is the decision table of the usual advice for HTTP
// clients: 429, 503 and 408 are
// retried up to the policy's attempts; 502 (and 504, its sibling) at most 3
// attempts; 500 at most 2. Everything else, 400, 401, 403, 404 and 422
// among them, is final.
func defaultStatusRules() map[int]int {
	return map[int]int{
		http.StatusTooManyRequests:     0,
		http.StatusServiceUnavailable:  0,
		http.StatusRequestTimeout:      0,
		http.StatusBadGateway:          3,
		http.StatusGatewayTimeout:      3,
		http.StatusInternalServerError: 2,
	}
}

func (c *config) problem(format string, args ...any) {
	c.problems = append(c.problems, fmt.Errorf("heed: "+format, args...))
}

// validate refuses settings that cannot work, naming them.
func (c *config) validate() error {
	errs := c.problems
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("heed: "+format, args...)) }
	if v, ok := c.backoff.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("heed: WithBackoff: %w", err))
		}
	}
	if c.maxTotal > 0 && c.attemptTimeout > c.maxTotal {
		add("WithAttemptTimeout(%v) is longer than WithMaxTotal(%v)", c.attemptTimeout, c.maxTotal)
	}
	if !c.breakerOff {
		if _, err := breaker.New(c.breakerSettings); err != nil {
			errs = append(errs, fmt.Errorf("heed: WithBreaker: %w", err))
		}
	}
	if c.breakerOff {
		for _, o := range []struct {
			set  bool
			name string
		}{{c.breakerSet, "WithBreaker"}, {c.breakerFleet != nil, "WithBreakerFleet"}, {c.breakerCounter != nil, "WithBreakerCounter"}} {
			if o.set {
				add("WithoutBreaker contradicts %s: %s configures the breaker WithoutBreaker turns off", o.name, o.name)
			}
		}
	}
	if c.limitsSet && c.keyLimits != nil {
		add("WithLimits contradicts WithKeyLimits, whose limits replace it for every key: set NoPacing or Pacing in the Limits WithKeyLimits returns")
	}
	if c.budgetOff && c.budgetSet {
		add("WithoutRetryBudget contradicts WithRetryBudget: keep one")
	}
	if c.budgetOff && c.maxRetrying > 0 {
		add("WithoutRetryBudget contradicts WithMaxConcurrentRetries(%d): the cap is part of the retry budget", c.maxRetrying)
	}
	return errors.Join(errs...)
}

// WithBase sets the RoundTripper every Transport of the policy sends its
// attempts through. The default is [http.DefaultTransport].
func WithBase(rt http.RoundTripper) Option {
	return optionFunc(func(c *config) {
		if rt == nil {
			c.problem("WithBase(nil): need a RoundTripper")
			return
		}
		c.base = rt
	})
}

// WithMaxAttempts sets how many attempts a request may make, the first one
// included. 1 turns retrying off. Default 6: five retries ride out a
// restart or a short overload without holding a connection for long.
func WithMaxAttempts(n int) Option {
	return optionFunc(func(c *config) {
		if n < 1 {
			c.problem("WithMaxAttempts(%d): need at least 1 attempt", n)
			return
		}
		c.maxAttempts = n
	})
}

// WithBackoff sets the wait used when the server gives no hint. Default
// full jitter from 500 ms, capped at 30 s ([backoff.Full]).
func WithBackoff(s backoff.Strategy) Option {
	return optionFunc(func(c *config) {
		if s == nil {
			c.problem("WithBackoff(nil): need a strategy")
			return
		}
		c.backoff = s
	})
}

// WithMaxWait caps every single wait, the server's hints included. When the
// server asks for longer, heed returns at once with an [*Error] whose
// RetryAt says when the server will accept again. Default 60 s.
func WithMaxWait(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.problem("WithMaxWait(%v): the cap must be positive", d)
			return
		}
		c.maxWait = d
	})
}

// WithMaxTotal bounds the whole call, waits and attempts included, as a
// deadline on the request's context would: the caller's read of a body
// heed hands over still streaming is bounded by it too, until the body is
// closed. Zero, the default, sets no bound beyond the context's own
// deadline.
func WithMaxTotal(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.problem("WithMaxTotal(%v): must not be negative", d)
			return
		}
		c.maxTotal = d
	})
}

// WithAttemptTimeout bounds each attempt until its response headers arrive
// and, when heed reads the body ahead inside the attempt (see
// [WithResponseBuffer]), until that read ends. A timed-out attempt is a
// retryable failure. Once heed hands a response over, the bound no longer
// applies: the caller's own read of a streamed body, or of the rest of one
// longer than the read-ahead, is bounded by its context and
// [WithMaxTotal], never cut by the attempt's end. Zero, the default, sets
// no per-attempt bound.
func WithAttemptTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.problem("WithAttemptTimeout(%v): must not be negative", d)
			return
		}
		c.attemptTimeout = d
	})
}

// WithRetryStatus makes responses with status code retryable, for at most
// maxAttempts attempts (0 means the policy's WithMaxAttempts). It
// overrides the default table for that code.
func WithRetryStatus(code, maxAttempts int) Option {
	return optionFunc(func(c *config) {
		if code < 100 || code > 599 {
			c.problem("WithRetryStatus(%d, %d): not an HTTP status code", code, maxAttempts)
			return
		}
		if maxAttempts < 0 {
			c.problem("WithRetryStatus(%d, %d): negative attempts", code, maxAttempts)
			return
		}
		c.statusRules = copyRules(c.statusRules)
		c.statusRules[code] = maxAttempts
	})
}

// WithoutRetryStatus makes responses with these status codes final.
func WithoutRetryStatus(codes ...int) Option {
	return optionFunc(func(c *config) {
		c.statusRules = copyRules(c.statusRules)
		for _, code := range codes {
			if code < 100 || code > 599 {
				c.problem("WithoutRetryStatus(%d): not an HTTP status code", code)
				continue
			}
			delete(c.statusRules, code)
		}
	})
}

// copyRules copies m so an option never changes a map another config shares.
func copyRules(m map[int]int) map[int]int {
	out := make(map[int]int, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// WithClassifier adds a predicate consulted before the decision table on
// every attempt that failed or returned a response. Returning
// [VerdictRetry] or [VerdictStop] overrides the table; [VerdictDefault]
// defers to it. A VerdictRetry also
// overrides the method rules: the classifier then vouches that repeating the
// request is safe. It cannot make a consumed, unbuffered body replayable.
func WithClassifier(f func(Outcome) Verdict) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.problem("WithClassifier(nil): need a function")
			return
		}
		c.classifier = f
	})
}

// WithCredentialRefresh lets one 401 per call be retried at once: f is
// called with the request heed will send next, a deep copy it may change
// (set a fresh Authorization header, say). If f returns an error the call
// ends with it.
func WithCredentialRefresh(f func(ctx context.Context, next *http.Request) error) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.problem("WithCredentialRefresh(nil): need a function")
			return
		}
		c.refresh = f
	})
}

// WithAutoIdempotencyKey makes heed give every POST and PATCH that lacks an
// Idempotency-Key header a fresh one (a random UUID), sent unchanged on
// every attempt of that request, so those requests may be retried like
// idempotent ones. Use it only with servers that honour the header.
func WithAutoIdempotencyKey() Option {
	return optionFunc(func(c *config) { c.autoKey = true })
}

// WithMaxBodyBuffer bounds the buffer heed keeps of a request body that has
// no GetBody, so it can be sent again. A larger body is sent once and not
// retried, unless its connection could not be made (no byte of it left);
// a failure heed would otherwise have retried ends the call with
// [ErrBodyNotReplayable]. 0 disables buffering. Default
// 1 MiB.
func WithMaxBodyBuffer(n int64) Option {
	return optionFunc(func(c *config) {
		if n < 0 {
			c.problem("WithMaxBodyBuffer(%d): must not be negative", n)
			return
		}
		c.maxBodyBuffer = n
	})
}

// WithResponseBuffer bounds how much of a response body heed reads inside
// the attempt when the request may be retried, so that a body cut short
// (connection reset, unexpected EOF) is retried instead of surfacing later
// in the caller's read. Bodies whose Content-Length is larger, and streams
// (text/event-stream, NDJSON), are handed over unread; a body of unknown
// length that turns out larger is handed over as the part read followed by
// the rest, still streaming. 0 disables reading ahead. Default
// 1 MiB.
func WithResponseBuffer(n int64) Option {
	return optionFunc(func(c *config) {
		if n < 0 {
			c.problem("WithResponseBuffer(%d): must not be negative", n)
			return
		}
		c.respBuffer = n
	})
}

// WithErrorOnExhausted turns a final retryable response (a 503 after the
// last attempt, say) into an [*Error] whose cause is a [*StatusError],
// instead of returning the response as net/http would.
func WithErrorOnExhausted() Option {
	return optionFunc(func(c *config) { c.errorOnFinal = true })
}

// WithClock sets the clock heed reads and sleeps on. Tests pass a
// heedtest.Clock so waits take no real time. Deadlines compared against it
// are the request context's, so build them from the same clock.
func WithClock(c clock.Clock) Option {
	return optionFunc(func(cfg *config) {
		if c == nil {
			cfg.problem("WithClock(nil): need a clock")
			return
		}
		cfg.clock = c
	})
}

// WithRand sets the source of the random draws used for jitter. A seeded
// source gives a reproducible sequence of waits. heed serialises access to
// it, so it need not be safe for concurrent use. The default is the
// runtime's per-thread generator.
func WithRand(src rand.Source) Option {
	return optionFunc(func(c *config) {
		if src == nil {
			c.problem("WithRand(nil): need a source")
			return
		}
		var mu sync.Mutex
		r := rand.New(src)
		c.rand = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			return r.Float64()
		}
	})
}

// WithLogger sets where retries and give-ups are logged. nil turns logging
// off. The default is [slog.Default] at the time of each log line.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger, c.loggerSet = l, true })
}

// WithHook adds a receiver of heed's events. Several hooks may be added;
// they are called in order, synchronously, outside any lock.
func WithHook(h Hook) Option {
	return optionFunc(func(c *config) {
		if h == nil {
			c.problem("WithHook(nil): need a hook")
			return
		}
		c.hooks = append(c.hooks, h)
	})
}

// WithKeyFunc sets how requests are grouped for the state heed keeps per
// key: the circuit breaker, the retry budget, the limits and pacing, the
// hedging delay and [Policy.Stats]. The default key is the request's host
// (with its port); a call's [Overrides] may set its key. Return a route or a tenant to keep them
// apart; keep the number of distinct keys bounded (see [WithMaxKeys]).
func WithKeyFunc(f func(*http.Request) string) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.problem("WithKeyFunc(nil): need a function")
			return
		}
		c.keyFunc = f
	})
}

// WithMaxKeys bounds how many keys get state of their own; the keys beyond
// share one. Default 4096.
func WithMaxKeys(n int) Option {
	return optionFunc(func(c *config) {
		if n < 1 {
			c.problem("WithMaxKeys(%d): need at least 1", n)
			return
		}
		c.maxKeys = n
	})
}

// WithBreaker sets the circuit breaker kept per key. The default is the
// zero [breaker.Settings]: open when 90% of at least 20 calls in the last
// 30 s failed, for 30 s (doubling, up to 5 min, each time a probe fails);
// one probe at a time when half-open. Zero fields take those defaults.
// Leave Settings.Fleet nil: a Fleet belongs to one key, so join each key's
// breaker to its fleet with [WithBreakerFleet].
func WithBreaker(s breaker.Settings) Option {
	return optionFunc(func(c *config) {
		if s.Fleet != nil {
			c.problem("WithBreaker: Settings.Fleet would join every key's breaker to one key's fleet; use WithBreakerFleet")
			return
		}
		c.breakerSet, c.breakerSettings = true, s
	})
}

// WithoutBreaker turns the circuit breaker off. It contradicts
// [WithBreaker], [WithBreakerFleet] and [WithBreakerCounter].
func WithoutBreaker() Option {
	return optionFunc(func(c *config) { c.breakerOff = true })
}

// WithBreakerFleet joins each key's circuit breaker to the breakers of the
// same key in other instances: f returns the key's breaker.Fleet, such as
// the one heedredis keeps in Redis. A trip in one instance then opens the
// key's breaker in all, and one instance at a time sends the half-open
// probe.
func WithBreakerFleet(f func(key string) breaker.Fleet) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.problem("WithBreakerFleet: nil function")
			return
		}
		c.breakerFleet = f
	})
}

// WithBreakerCounter lets f decide how an attempt's outcome counts for the
// breaker. f gets heed's own verdict (see docs/resilience.md) and returns
// the one to use.
func WithBreakerCounter(f func(o Outcome, verdict breaker.Outcome) breaker.Outcome) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.problem("WithBreakerCounter(nil): need a function")
			return
		}
		c.breakerCounter = f
	})
}

// WithRetryBudget sets the retry budget kept per key: m makes each key's
// budget on the key's first request. Retries (and hedges) the budget
// refuses end the call with [ErrBudgetExhausted]. The default is the zero
// [budget.RatioConfig]: retries may be 25% of the requests of the last
// 10 s, plus 10 a second. Give a budget.RatioConfig to change those
// figures, a [budget.TokenBucketConfig] for gRPC's retry throttling, a
// fleet's shared budgets (heedredis), or a [budget.MakerFunc] of your
// own. A budget that m cannot make fails that key's requests with an
// error naming it.
func WithRetryBudget(m budget.Maker) Option {
	return optionFunc(func(c *config) {
		if m == nil {
			c.problem("WithRetryBudget(nil): need a budget.Maker")
			return
		}
		if v, ok := m.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				c.problem("WithRetryBudget: %v", err)
				return
			}
		}
		c.budgetSet, c.budgets = true, m
	})
}

// WithoutRetryBudget turns the retry budget off: only the attempt limit
// bounds retries. It contradicts [WithRetryBudget] and
// [WithMaxConcurrentRetries].
func WithoutRetryBudget() Option {
	return optionFunc(func(c *config) { c.budgetOff = true })
}

// WithMaxConcurrentRetries caps the retries of a key in flight at once,
// beside the ratio of the retry budget (Envoy's max_retries): a retry
// counts from the moment heed decides to make it until its attempt ends,
// its wait included, and a retry past the cap ends its call with
// [ErrBudgetExhausted]. The ratio bounds retries over time; the cap
// bounds a burst of them, when many calls fail at once before the ratio
// has seen the failures. Retries of a 429 that wait as the server or the
// pacer says are not counted, as the ratio does not charge them: the
// server is healthy and sets their pace. 0, the default, sets no cap.
func WithMaxConcurrentRetries(n int) Option {
	return optionFunc(func(c *config) {
		if n < 0 {
			c.problem("WithMaxConcurrentRetries(%d): must not be negative", n)
			return
		}
		c.maxRetrying = n
	})
}

// WithoutTierHeaders stops heed from sending the cross-tier protocol's
// request headers, which it sends by default: Heed-Attempt on retries and
// Heed-Timeout when the call has a deadline (see package github.com/heed-go/heed/tier).
func WithoutTierHeaders() Option {
	return optionFunc(func(c *config) { c.noTierHeaders = true })
}

// WithLimits sets how every key is throttled before its requests leave:
// the rate and concurrency its server is known to allow, and the adaptive
// pacing (on by default; [Limits] tunes it or turns it off). A request that
// would wait past its deadline fails at once with [ErrThrottled]. A
// Limits.Limiter or a Pacing.Shared is one key's state: give them per key
// with [WithKeyLimits].
func WithLimits(l Limits) Option {
	return optionFunc(func(c *config) {
		if l.Limiter != nil {
			c.problem("WithLimits: a Limiter would be shared by every key; return one per key from WithKeyLimits")
			return
		}
		if l.Pacing.Shared != nil {
			c.problem("WithLimits: a Pacing.Shared pace would be shared by every key; return one per key from WithKeyLimits")
			return
		}
		if err := l.validate(); err != nil {
			c.problem("WithLimits: %v", err)
			return
		}
		c.limitsSet, c.limits = true, l
	})
}

// WithKeyLimits sets limits per key: f is called once for each key, on its
// first request, and its answer is that key's limits, pacing included (so
// it contradicts [WithLimits]). Limits that cannot work make that key's
// requests fail with an error naming them.
func WithKeyLimits(f func(key string) Limits) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.problem("WithKeyLimits(nil): need a function")
			return
		}
		c.keyLimits = f
	})
}
