// Package heedprom exports heed's events and per-key state as Prometheus
// metrics. It is a module of its own, so heed's core never depends on
// client_golang.
//
// A [Collector] is a heed.Hook that counts events, and a
// prometheus.Collector that also reads, at each scrape, the state of the
// policies it watches:
//
//	m := heedprom.New()
//	t, err := heed.New(heed.WithHook(m))
//	if err != nil { ... }
//	m.Watch(t.Policy())        // breaker state, queue depth, pacing
//	prometheus.MustRegister(m) // the one line of registration
//
// # Metrics
//
// Counters (labels in braces):
//
//	heed_requests_total{key,method,outcome}      calls that ended: success, client_error, server_error, failure
//	heed_attempts_total{key,method,result}       attempts: 2xx..5xx, or the transport error kind
//	heed_retries_total{key,method,reason}        retries, by the retried attempt's result
//	heed_give_ups_total{key,method,reason}       attempts_exhausted, budget_exhausted, breaker_open, wait_too_long, deadline, ...
//	heed_budget_refusals_total{key}              retries the retry budget refused
//	heed_breaker_transitions_total{key,from,to}  circuit breaker state changes
//	heed_throttle_refusals_total{key}            attempts the key's limits refused
//	heed_hedges_total{key}                       hedged copies sent
//	heed_hedges_won_total{key}                   attempts answered by a hedged copy
//	heed_fallbacks_total{key}                    failed calls the fallback answered
//	heed_stale_responses_total{key}              failed calls answered from the stale-if-error store
//
// Histograms, in seconds:
//
//	heed_request_duration_seconds{key,method,outcome}  calls, waits included
//	heed_retry_wait_seconds{key,source}                waits before retries: retry_after, ratelimit_reset, backoff, ...
//	heed_throttle_wait_seconds{key}                    waits for the key's limits or pacer
//	heed_server_wait_seconds{class,decision}           server middleware: an admitted request's wait before its handler, a refusal's Retry-After
//
// Their buckets run from milliseconds to a minute, heed's default wait cap
// ([WithDurationBuckets] and [WithWaitBuckets] give the default bounds and
// set others, collector by collector).
//
// Gauges, read from watched policies at scrape time:
//
//	heed_breaker_state{key,state}     1 for the breaker's state (closed, half_open, open), 0 for the others
//	heed_throttle_queue_depth{key}    requests queued for a concurrency slot
//	heed_throttle_in_flight{key}      requests holding one
//	heed_pacer_active{key}            1 while adaptive pacing spaces the key's requests
//
// The label values are heed's own vocabulary, the same as in heed's log
// lines: reasons such as "attempts_exhausted" and "breaker_open", results
// such as "5xx" and "timeout", outcomes "success", "client_error",
// "server_error" and "failure".
// The key label is capped ([WithMaxKeys], 100 by default; the rest count
// as "other"), methods beyond the standard ones count as "other", and no
// URL becomes a label: 10,000 URLs on one host make one series.
//
// Ready-made alerting rules (retry ratio too high, breaker open too long,
// retry budget exhausted) and a Grafana dashboard are in the repository's
// docs/observability; heedprom's tests check that every metric they use
// exists, and the bench module's tests that they parse as Prometheus rules
// and PromQL.
package heedprom
