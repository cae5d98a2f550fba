package heedotel

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/internal/redact"
)

// ScopeName is the instrumentation scope of the spans heedotel records.
const ScopeName = "github.com/heed-go/heed/heedotel"

// Tracing records heed's calls as OpenTelemetry spans. It is a [heed.Hook]
// (install it with [heed.WithHook]) and, through [Tracing.Transport], the
// wrapper that starts each call's logical span. It keeps no state of its
// own between events, so it is safe for concurrent use and holds nothing
// once a call ends.
type Tracing struct {
	tracer        trace.Tracer
	attemptEvents bool
}

var _ heed.Hook = (*Tracing)(nil)

// Option configures a [Tracing].
type Option interface{ apply(*config) }

type config struct {
	tp            trace.TracerProvider
	attemptEvents bool
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTracerProvider sets the provider of the tracer. The default, also
// used for nil, is [otel.GetTracerProvider] at the time of [New].
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithAttemptEvents records each attempt as a "heed.attempt" event on the
// logical span instead of a child span. Use it when heed's base
// RoundTripper is otelhttp.NewTransport, which already makes a client span
// per physical request: attempt spans would duplicate them.
func WithAttemptEvents() Option {
	return optionFunc(func(c *config) { c.attemptEvents = true })
}

// New returns a Tracing configured by opts.
func New(opts ...Option) *Tracing {
	var c config
	for _, o := range opts {
		o.apply(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	return &Tracing{
		tracer:        c.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		attemptEvents: c.attemptEvents,
	}
}

// Transport returns a RoundTripper that records each request sent through
// next (a heed Transport, typically; nil means [http.DefaultTransport]) as
// one logical span of kind Internal, named "HTTP {method}", and passes it
// down in the request's context so the hook's attempt spans and events,
// and otelhttp's client spans below, hang off it. The span ends when next
// returns, with the response's status or the call's error: heed measures
// its calls to the same point.
func (t *Tracing) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{t: t, next: next}
}

type transport struct {
	t    *Tracing
	next http.RoundTripper
}

func (rt *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	method, attrs := requestAttrs(req.Method, req.URL, nil)
	name := "HTTP"
	if method != "" {
		name += " " + method
	}
	// The request's attributes go in at the start so samplers see them.
	ctx, span := rt.t.tracer.Start(req.Context(), name,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	defer span.End()

	resp, err := rt.next.RoundTrip(req.WithContext(ctx))
	if !span.IsRecording() {
		return resp, err
	}
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(callErrorType(err)))
		span.SetStatus(codes.Error, redact.Text(err.Error(), req.URL, req.URL, nil))
		return resp, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if et := statusErrorType(resp.StatusCode); et != "" {
		// Semconv: a status of 400 or more is the error; the description
		// stays empty since the code says it all.
		span.SetAttributes(semconv.ErrorTypeKey.String(et))
		span.SetStatus(codes.Error, "")
	}
	return resp, err
}

// OnEvent records e: an attempt as a child span of the span in ctx (or an
// event on it, with [WithAttemptEvents]), anything else as an event on that
// span. It implements [heed.Hook].
func (t *Tracing) OnEvent(ctx context.Context, e heed.Event) {
	switch e.Kind {
	case heed.EventAttempt:
		t.attempt(ctx, e)
	case heed.EventRetry:
		addEvent(ctx, "heed.retry", e, func() []attribute.KeyValue {
			return []attribute.KeyValue{
				attrAttempt.Int(e.Attempt), seconds(attrWait, e.Wait), attrWaitSource.String(e.Source.String()),
			}
		})
	case heed.EventThrottle:
		addEvent(ctx, "heed.throttle", e, func() []attribute.KeyValue {
			a := []attribute.KeyValue{attrAttempt.Int(e.Attempt), seconds(attrWait, e.Wait)}
			if e.Err != nil {
				a = append(a, attrError.String(redact.Text(e.Err.Error(), e.URL, e.URL, nil)))
			}
			return a
		})
	case heed.EventGiveUp:
		addEvent(ctx, "heed.give_up", e, func() []attribute.KeyValue {
			a := []attribute.KeyValue{attrAttempt.Int(e.Attempt), reason(e.Reason)}
			if !e.RetryAt.IsZero() {
				a = append(a, timestamp(attrRetryAt, e.RetryAt))
			}
			return a
		})
	case heed.EventHedge:
		addEvent(ctx, "heed.hedge", e, func() []attribute.KeyValue {
			return []attribute.KeyValue{attrAttempt.Int(e.Attempt), attrHedge.Int(e.Hedge), seconds(attrWait, e.Wait)}
		})
	case heed.EventStale:
		addEvent(ctx, "heed.stale", e, func() []attribute.KeyValue {
			return []attribute.KeyValue{
				reason(e.Reason), seconds(attrAge, e.Age), semconv.HTTPResponseStatusCode(e.Status),
			}
		})
	case heed.EventFallback:
		addEvent(ctx, "heed.fallback", e, func() []attribute.KeyValue {
			a := []attribute.KeyValue{reason(e.Reason)}
			if e.Status != 0 {
				a = append(a, semconv.HTTPResponseStatusCode(e.Status))
			}
			return a
		})
	case heed.EventQueued, heed.EventReplayed, heed.EventDelivered, heed.EventDead:
		// Queued is reported on the failed call's span; a replay's events
		// on whatever span the worker's context carries.
		addEvent(ctx, "heed.outbox."+e.Kind.String(), e, func() []attribute.KeyValue {
			a := []attribute.KeyValue{attrOutboxEntry.String(e.Entry)}
			if e.Status != 0 {
				a = append(a, semconv.HTTPResponseStatusCode(e.Status))
			}
			if e.Reason != nil {
				a = append(a, reason(e.Reason))
			}
			if e.Err != nil {
				a = append(a, attrError.String(redact.Text(e.Err.Error(), e.URL, e.URL, nil)))
			}
			if !e.NextAt.IsZero() && e.Kind != heed.EventDelivered && e.Kind != heed.EventDead {
				a = append(a, timestamp(attrNextAt, e.NextAt))
			}
			return a
		})
	case heed.EventBreaker:
		// heed reports breaker changes outside any call, with a background
		// context, so this records only when a caller passes a span in.
		addEvent(ctx, "heed.breaker", e, func() []attribute.KeyValue {
			a := []attribute.KeyValue{
				attrKey.String(e.Key), attrBreakerFrom.String(e.From.String()), attrBreakerTo.String(e.To.String()),
			}
			if !e.RetryAt.IsZero() {
				a = append(a, timestamp(attrRetryAt, e.RetryAt))
			}
			return a
		})
	}
	// EventDone needs nothing: the Transport ends the logical span with the
	// call's outcome.
}

// addEvent adds the event name to the span in ctx, building its attributes
// only when the span records.
func addEvent(ctx context.Context, name string, e heed.Event, attrs func() []attribute.KeyValue) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.AddEvent(name, trace.WithTimestamp(e.Time), trace.WithAttributes(attrs()...))
}

// attempt records an attempt after the fact: heed reports it when it ends,
// with its duration, so the span is started and ended at the times it ran.
func (t *Tracing) attempt(ctx context.Context, e heed.Event) {
	if t.attemptEvents {
		addEvent(ctx, "heed.attempt", e, func() []attribute.KeyValue {
			_, a := attemptAttrs(e)
			return append(a, seconds(attrDuration, e.Duration))
		})
		return
	}
	// A call made through heed.Do has no request: its attempts are not
	// HTTP client spans.
	name, kind := "heed.attempt", trace.SpanKindInternal
	if e.URL != nil {
		name, kind = "HTTP", trace.SpanKindClient
	}
	method, attrs := attemptAttrs(e)
	if e.URL != nil && method != "" {
		name = method
	}
	_, span := t.tracer.Start(ctx, name, trace.WithSpanKind(kind),
		trace.WithTimestamp(e.Time.Add(-e.Duration)), trace.WithAttributes(attrs...))
	if e.Status >= 400 {
		span.SetStatus(codes.Error, "")
	} else if e.Err != nil {
		span.SetStatus(codes.Error, redact.Text(e.Err.Error(), e.URL, e.URL, nil))
	}
	span.End(trace.WithTimestamp(e.Time))
}
