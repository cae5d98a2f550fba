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
	"github.com/heed-go/heed/throttle"
)

// Defaults. Each is the production checklist of the seed article, and
// README.md gives the reason for each.
const (
	// DefaultMaxAttempts is the number of attempts, the first one included:
	// five retries ride out a restart or a short overload without holding
	// a connection for long.
	DefaultMaxAttempts = 6
	// DefaultMaxWait caps any single wait. A server asking for more is not
	// waited for: the call ends at once with an error saying when to come
	// back.
	DefaultMaxWait = 60 * time.Second
	// DefaultMaxBodyBuffer bounds how much of a request body without
	// GetBody heed buffers so it can send it again.
	DefaultMaxBodyBuffer = 1 << 20
	// DefaultResponseBuffer bounds how much of a response body heed reads
	// inside the attempt, so that a truncated body can still be retried.
	DefaultResponseBuffer = 1 << 20
	// maxDrain bounds how much of a discarded response is read so its
	// connection can be reused; beyond it the connection is closed instead.
	maxDrain = 64 << 10
)

// DefaultBackoff is full jitter from 500 ms, capped at 30 s: five retries
// wait about 8 s in all on average, and clients that failed together are
// spread over the whole interval instead of returning together.
var DefaultBackoff = backoff.Full(500*time.Millisecond, 30*time.Second)

// Option configures a [Policy]. Options are checked together by
// [NewPolicy] and [New], which refuse settings that cannot work.
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
	breakerOn       bool
	breakerSettings breaker.Settings
	breakerCounter  func(Outcome, breaker.Outcome) breaker.Outcome
	newBudget       func(key string) budget.Budget
	tierHeaders     bool
	pacing          bool
	pacerConfig     throttle.PacerConfig
	limits          Limits
	keyLimits       func(key string) Limits
	breakerFleet    func(key string) breaker.Fleet
	hedge           *HedgeConfig // nil: no hedging
	stale           *StaleConfig // nil: no stale-if-error store
	fallback        Fallback
	secretPaths     []pathPattern // WithSecretPath; nil: no segment is secret
	problems        []error       // bad values met while applying options
}

func defaultConfig() config {
	return config{
		maxAttempts:     DefaultMaxAttempts,
		backoff:         DefaultBackoff,
		maxWait:         DefaultMaxWait,
		statusRules:     defaultStatusRules(),
		maxBodyBuffer:   DefaultMaxBodyBuffer,
		respBuffer:      DefaultResponseBuffer,
		clock:           clock.Real(),
		rand:            rand.Float64,
		maxKeys:         DefaultMaxKeys,
		breakerOn:       true,
		breakerSettings: DefaultBreaker,
		newBudget:       ratioBudget(budget.DefaultRatio),
		tierHeaders:     true,
		pacing:          true,
	}
}

// ratioBudget returns a factory of Ratio budgets; c has been checked.
func ratioBudget(c budget.RatioConfig) func(string) budget.Budget {
	return func(string) budget.Budget {
		b, _ := budget.NewRatio(c)
		return b
	}
}

// defaultStatusRules is the seed's decision table: 429, 503 and 408 are
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
	if c.breakerOn {
		if _, err := breaker.New(c.breakerSettings); err != nil {
			errs = append(errs, fmt.Errorf("heed: WithBreaker: %w", err))
		}
	}
	return errors.Join(errs...)
}

// WithBase sets the RoundTripper that [New] wraps. The default is
// [http.DefaultTransport].
func WithBase(rt http.RoundTripper) Option {
	return optionFunc(func(c *config) { c.base = rt })
}

// WithMaxAttempts sets how many attempts a request may make, the first one
// included. 1 turns retrying off. Default [DefaultMaxAttempts].
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
// [DefaultBackoff].
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
// RetryAt says when the server will accept again. Default [DefaultMaxWait].
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
// every attempt that failed or returned a response. Returning [Retry] or
// [Stop] overrides the table; [Default] defers to it. A Retry verdict also
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
// [DefaultMaxBodyBuffer].
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
// [DefaultResponseBuffer].
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
// key: the circuit breaker and the retry budget. The default key is the
// request's host (with its port). Return a route or a tenant to keep them
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
// share one. Default [DefaultMaxKeys].
func WithMaxKeys(n int) Option {
	return optionFunc(func(c *config) {
		if n < 1 {
			c.problem("WithMaxKeys(%d): need at least 1", n)
			return
		}
		c.maxKeys = n
	})
}

// WithBreaker sets the circuit breaker kept per key. The default is
// [DefaultBreaker]; zero fields take breaker's defaults.
func WithBreaker(s breaker.Settings) Option {
	return optionFunc(func(c *config) { c.breakerOn, c.breakerSettings = true, s })
}

// WithoutBreaker turns the circuit breaker off.
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

func WithoutBreaker() Option {
	return optionFunc(func(c *config) { c.breakerOn = false })
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

// WithRetryBudget sets the ratio retry budget kept per key. The default is
// [budget.DefaultRatio]: 25% of requests plus 10 retries a second, over 10 s.
func WithRetryBudget(r budget.RatioConfig) Option {
	return optionFunc(func(c *config) {
		if _, err := budget.NewRatio(r); err != nil {
			c.problem("WithRetryBudget: %v", err)
			return
		}
		c.newBudget = ratioBudget(r)
	})
}

// WithTokenBucketBudget replaces the ratio budget with gRPC's retry
// throttling: a bucket of max tokens per key, a failed attempt costs one, a
// success returns ratio, and retries stop at half full.
func WithTokenBucketBudget(max, ratio float64) Option {
	return optionFunc(func(c *config) {
		if _, err := budget.NewTokenBucket(max, ratio); err != nil {
			c.problem("WithTokenBucketBudget(%v, %v): %v", max, ratio, err)
			return
		}
		c.newBudget = func(string) budget.Budget {
			b, _ := budget.NewTokenBucket(max, ratio)
			return b
		}
	})
}

// WithBudgetFunc sets a function that makes the budget for each key, for
// budgets of your own or shared ones.
func WithBudgetFunc(f func(key string) budget.Budget) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.problem("WithBudgetFunc(nil): need a function")
			return
		}
		c.newBudget = f
	})
}

// WithoutRetryBudget turns the retry budget off: only the attempt limit
// bounds retries.
func WithoutRetryBudget() Option {
	return optionFunc(func(c *config) { c.newBudget = nil })
}

// WithTierHeaders turns the cross-tier protocol's request headers on or off
// (on by default): Heed-Attempt on retries and Heed-Timeout when the call has
// a deadline. See docs/protocol.md.
func WithTierHeaders(on bool) Option {
	return optionFunc(func(c *config) { c.tierHeaders = on })
}

// WithLimits sets limits every key's server is known to have: a token
// bucket and a concurrency limit, enforced before requests leave. A request
// that would wait past its deadline fails at once with ErrThrottled.
func WithLimits(l Limits) Option {
	return optionFunc(func(c *config) {
		if err := l.validate(); err != nil {
			c.problem("WithLimits: %v", err)
			return
		}
		c.limits = l
	})
}

// WithKeyLimits sets limits per key: f is called once for each key, on its
// first request, and its answer replaces WithLimits for that key. Limits
// that cannot work make that key's requests fail with an error naming them.
func WithKeyLimits(f func(key string) Limits) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.problem("WithKeyLimits(nil): need a function")
			return
		}
		c.keyLimits = f
	})
}

// WithPacing tunes the adaptive pacing kept per key (on by default): it
// learns a safe rate from the server's push-back and rate-limit fields and
// spaces requests so the limit is not hit.
func WithPacing(cfg throttle.PacerConfig) Option {
	return optionFunc(func(c *config) { c.pacing, c.pacerConfig = true, cfg })
}

// WithoutPacing turns adaptive pacing off.
func WithoutPacing() Option {
	return optionFunc(func(c *config) { c.pacing = false })
}
