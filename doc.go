// Package heed makes HTTP API clients heed the servers they call.
//
// A [Transport] retries requests the way the servers ask: it honours
// Retry-After in both its forms and the reset of an exhausted rate limit
// (X-RateLimit-*, the IETF RateLimit fields), otherwise backs off with full
// jitter, retries only what is safe to repeat, caps every wait, and says
// plainly when and why it gave up.
//
//	t, err := heed.New() // the defaults are the production checklist
//	if err != nil { ... }
//	client := &http.Client{Transport: t}
//
// # Decisions
//
// After each attempt the decision core, a plain function of the policy,
// the attempt's outcome and the time, answers retry or
// not, and how long to wait. The decision table:
//
//   - 429, 503 and 408 are retried up to the attempt limit (6 by default);
//     502 and 504 at most 3 attempts; 500 at most 2; every other status is
//     final. [WithRetryStatus], [WithoutRetryStatus] and [WithClassifier]
//     override it.
//   - Transport failures known to be transient are retried: connection
//     refused or reset, DNS failures, dial, TLS-handshake and read timeouts,
//     a connection closed early or a body cut short. Certificate errors, an
//     unsupported scheme, too many redirects and anything unknown are not.
//     The caller's own cancellation ends the call at once.
//   - Only GET, HEAD, PUT, DELETE, OPTIONS and TRACE, and requests carrying
//     an Idempotency-Key, are repeated once they may have reached the server.
//     A failure before that (refused, DNS, dial, or headers never written)
//     is retried whatever the method. [WithAutoIdempotencyKey] gives every
//     POST and PATCH a key, the same on all its attempts.
//   - The wait is the server's hint when it gave one, plus a little jitter;
//     else the backoff (full jitter from 500 ms, capped at 30 s). Each wait is capped
//     ([WithMaxWait], 60 s): a server asking for more, or for longer than
//     the context's deadline allows, ends the call at once with an [*Error]
//     whose RetryAt says when it will accept again.
//
// # Bodies
//
// Every attempt sends the same request body: through Request.GetBody, or
// from a buffer of at most [WithMaxBodyBuffer] bytes (1 MiB) for a body
// without one. A larger body is sent once and not retried, unless its
// connection could not even be made (no byte of it left).
//
// A body cut short only shows when it is read, so for a request that may be
// retried heed reads response bodies of up to [WithResponseBuffer] bytes
// (1 MiB) inside the attempt, and retries one that breaks off. The caller
// then gets the body from memory. The trade-off: the caller sees the first
// byte only when the last has arrived, and memory holds up to the buffer per
// response in flight. Larger bodies, bodies of HEAD requests, and streams
// (text/event-stream, NDJSON) are handed over unread, and a failure while
// reading them is the caller's.
//
// # Results
//
// Following net/http, a final response is returned as a response, even a
// 503 after the last attempt ([WithErrorOnExhausted] turns that into an
// error), and [Attempts] lists the attempts behind it. Every other end is
// an [*Error] carrying the reason (matched by errors.Is with [ErrWaitTooLong],
// [ErrAttemptsExhausted], ...), each attempt, RetryAt, and the last cause.
//
// # Nesting
//
// heed never multiplies its own retries. A Transport whose base is a heed
// Transport, or whose request's context comes from a heed attempt or from
// [Do], makes a single attempt and leaves retrying to the loop above it.
// When another RoundTripper stands between two heed transports, the inner
// one, which sees the failure first, retries it; the outer one recognises
// the result as already handled and passes it through. Either way a request
// is attempted at most as often as one layer allows.
//
// net/http itself re-sends a request once, at once, when a pooled
// keep-alive connection turns out to be dead, if the request is replayable
// by its rules: GET, HEAD, OPTIONS, TRACE, or any request with an
// Idempotency-Key header. That re-send happens below heed and is not
// counted as a heed attempt.
//
// # Breaker, budget and tiers
//
// Every key (the request's host by default, see [WithKeyFunc]) has a
// circuit breaker and a retry budget, shared by all requests of a Policy.
// The breaker opens when 90% of at least 20 calls in 30 s failed, so a
// dependency that is down is cut off while one that is degraded keeps being
// called; open, it fails calls fast (a call retrying when it opens
// included) for 30 s, then lets one probe through ([WithBreaker],
// [ErrBreakerOpen]). The budget lets retries be at most 25% of the
// requests, plus 10 a second ([WithRetryBudget], [ErrBudgetExhausted]),
// and [WithMaxConcurrentRetries] can cap the retries in flight at once. A
// heed client tells the server the attempt number and the time left
// (Heed-Attempt, Heed-Timeout); a server wrapped in the Middleware of
// package github.com/heed-go/heed/tier passes the deadline on, makes single
// attempts when its caller is retrying, and marks a failure it already
// retried (Heed-Retried), which heed clients do not retry again. See
// docs/resilience.md and docs/protocol.md.
//
// # Throttling
//
// heed paces requests so a server's limit is not hit: static limits per key
// ([WithLimits], [WithKeyLimits]: a token bucket and a concurrency limit),
// and adaptive pacing on by default, which learns a safe rate from 429s and
// the rate-limit fields and spaces requests to it ([Limits] tunes it or
// turns it off, [ErrThrottled]). See docs/throttling.md.
//
// # Hedging and degradation
//
// Off by default, each turned on by one option. [WithHedging] sends a copy
// of a slow request safe to repeat after the p95 of the key's recent
// latency (or a fixed delay) and takes the first answer, cancelling the
// others ([ErrHedgeLost]); hedges are capped at 10% of requests and drawn
// from the retry budget. [WithStaleIfError] keeps successful GET responses
// in a bounded store and serves one, marked with Age and Cache-Status,
// when a later call fails; [WithFallback] lets a function answer a failed
// call. [Degraded] tells such an answer from a live one. See
// docs/hedging.md and docs/degradation.md.
//
// # Other calls
//
// [Do] runs any func(ctx) (T, error) under the same policy, classifying
// errors: transient network errors, [*StatusError] from [CheckStatus], and
// errors marked with [Retryable] or [RetryableAfter] are retried.
//
// # One call, other settings
//
// [Override] gives the calls made with a context settings of their own
// ([Overrides]: a key, attempts, retried statuses, timeouts, idempotency,
// no hedging), while they share their key's breaker, budget and pacing
// with every other call of the policy.
//
// # Observing
//
// Retries are logged through log/slog (the URL with userinfo and query
// values redacted), and every decision is an [Event] sent to the [Hook]s
// given by [WithHook]; with no hook, events cost nothing. Logs, metrics and
// traces name things alike: a reason heed gave up for is spelled the same
// ("attempts_exhausted", "breaker_open", ...) in all three.
// The modules github.com/heed-go/heed/heedprom (Prometheus) and
// github.com/heed-go/heed/heedotel (OpenTelemetry) are such hooks;
// [Policy.Stats] reads each key's breaker, queue and pacing state. See
// docs/observability.md.
//
// # Time
//
// heed reads the time and sleeps through a clock.Clock ([WithClock]), and
// draws its jitter from [WithRand], so tests (with heedtest.Clock) and
// simulations run the production code in virtual time.
package heed
