package heedotel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/heedotel"
)

// A server busy once, then answering: one logical span for the call, one
// client span per attempt, and the wait between them as an event.
func ExampleTracing_Transport() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	// In production: an OTLP exporter, and otel.SetTracerProvider.
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	tr := heedotel.New(heedotel.WithTracerProvider(tp))
	t, err := heed.New(heed.WithHook(tr), heed.WithLogger(nil), heed.WithBackoff(backoff.Full(time.Millisecond, 2*time.Millisecond)))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: tr.Transport(t)}
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	show := func(kvs []attribute.KeyValue, keys ...attribute.Key) (s string) {
		set := attribute.NewSet(kvs...)
		for _, k := range keys {
			if v, ok := set.Value(k); ok {
				s += fmt.Sprintf(" %s=%s", k, v.String())
			}
		}
		return s
	}
	// Spans are exported as they end: the attempts, then the call.
	for _, s := range exp.GetSpans() {
		fmt.Printf("%s (%s)%s\n", s.Name, s.SpanKind,
			show(s.Attributes, "http.response.status_code", "http.request.resend_count", "error.type"))
		for _, e := range s.Events {
			fmt.Printf("  event %s%s\n", e.Name, show(e.Attributes, "heed.attempt", "heed.wait.source"))
		}
	}
	// Output:
	// GET (client) http.response.status_code=503 error.type=503
	// GET (client) http.response.status_code=200 http.request.resend_count=1
	// HTTP GET (internal) http.response.status_code=200
	//   event heed.retry heed.attempt=1 heed.wait.source=backoff
}
