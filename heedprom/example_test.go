package heedprom_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedprom"
)

// A server busy once: the collector counts the call, its two attempts and
// the retry, by the names a dashboard and alerts use.
func Example() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	m := heedprom.New()
	t, err := heed.New(heed.WithHook(m), heed.WithLogger(nil),
		heed.WithKeyFunc(func(*http.Request) string { return "inventory" })) // the loopback port would vary
	if err != nil {
		panic(err)
	}
	m.Watch(t.Policy())
	reg := prometheus.NewRegistry()
	reg.MustRegister(m) // prometheus.MustRegister(m) for the default registry

	resp, err := (&http.Client{Transport: t}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	mfs, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "heed_requests_total", "heed_attempts_total", "heed_retries_total":
			for _, mt := range mf.GetMetric() {
				var labels []string
				for _, l := range mt.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				fmt.Println(mf.GetName(), strings.Join(labels, " "), mt.GetCounter().GetValue())
			}
		}
	}
	// Output:
	// heed_attempts_total key=inventory method=GET result=2xx 1
	// heed_attempts_total key=inventory method=GET result=5xx 1
	// heed_requests_total key=inventory method=GET outcome=success 1
	// heed_retries_total key=inventory method=GET reason=5xx 1
}

// Buckets for an API whose calls take seconds, and whose waits (a
// Retry-After, a rate limit) run to minutes. The defaults are in the
// options' documentation.
func ExampleWithDurationBuckets() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	m := heedprom.New(
		heedprom.WithDurationBuckets(.5, 1, 2, 5, 10, 20, 40),
		heedprom.WithWaitBuckets(1, 5, 15, 30, 60, 120),
	)
	t, err := heed.New(heed.WithHook(m), heed.WithLogger(nil))
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	resp, err := (&http.Client{Transport: t}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	mfs, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "heed_request_duration_seconds" {
			var bounds []string
			for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
				bounds = append(bounds, fmt.Sprint(b.GetUpperBound()))
			}
			fmt.Println(mf.GetName(), strings.Join(bounds, " "))
		}
	}
	// Output:
	// heed_request_duration_seconds 0.5 1 2 5 10 20 40
}
