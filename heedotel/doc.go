// Package heedotel records heed's calls as OpenTelemetry traces.
//
// A [Tracing] plays two parts. Its [Tracing.Transport] wraps a heed
// Transport and records each request as one logical span (kind Internal,
// named "HTTP {method}") that lasts the whole call, retries and waits
// included, and ends with the call's outcome. As a [heed.Hook] it records
// what heed reports inside that call: each attempt as a child span of kind
// Client named "{method}", following the OpenTelemetry HTTP client
// conventions (http.request.method, url.full, server.address, server.port,
// http.response.status_code, error.type, and http.request.resend_count on
// resends), and heed's decisions as events on the logical span:
//
//	heed.retry     heed.attempt, heed.wait (seconds), heed.wait.source
//	heed.throttle  heed.attempt, heed.wait, heed.error when refused
//	heed.give_up   heed.attempt, heed.reason, heed.retry_at when known
//	heed.hedge     heed.attempt, heed.hedge (the copy sent), heed.wait
//	heed.stale     heed.reason, heed.age (seconds), http.response.status_code
//	heed.fallback  heed.reason, http.response.status_code when it answered
//
// heed.reason names the reason ("attempts_exhausted", "breaker_open", ...)
// as heed's log lines and heedprom's labels do.
//
// A call refused by an open circuit breaker has no attempt span: its
// logical span carries a heed.give_up event whose reason is the breaker's
// and ends with status Error and error.type "breaker_open".
//
// Use both parts together:
//
//	tr := heedotel.New()
//	t, err := heed.New(heed.WithHook(tr))
//	...
//	client := &http.Client{Transport: tr.Transport(t)}
//
// URLs are recorded redacted, as heed redacts them: userinfo and query values
// never reach a trace.
//
// # With otelhttp
//
// heedotel composes with go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp
// rather than replacing it. Attempt spans are recorded after the fact, so
// they cannot carry the trace context to the server; otelhttp's client
// spans can. To propagate, make otelhttp heed's base and record attempts as
// events, so each physical request has one span, otelhttp's, under the
// logical span:
//
//	tr := heedotel.New(heedotel.WithAttemptEvents())
//	t, err := heed.New(heed.WithHook(tr), heed.WithBase(otelhttp.NewTransport(http.DefaultTransport)))
//	...
//	client := &http.Client{Transport: tr.Transport(t)}
//
// Without [Tracing.Transport], the hook records under whatever span the
// request's context holds, such as the span of an otelhttp.NewTransport
// wrapped around heed's.
package heedotel
