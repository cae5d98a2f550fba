package audit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/heed-go/heed/audit"
)

// One call of a heed client behind Envoy, both retrying, as the service
// sees it: four requests, of which one first attempt; each layer doubled
// the requests, and one request was a retry of a retry.
func ExampleNew() {
	a := audit.New(audit.Config{})
	service := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

	for _, markers := range [][]string{
		{"X-Envoy-Attempt-Count", "1"},                      // heed's attempt 1, Envoy's 1: the call's first request
		{"X-Envoy-Attempt-Count", "2"},                      // Envoy retries it
		{"Heed-Attempt", "2", "X-Envoy-Attempt-Count", "1"}, // heed retries; Envoy counts from 1 again
		{"Heed-Attempt", "2", "X-Envoy-Attempt-Count", "2"}, // Envoy retries heed's retry
	} {
		r := httptest.NewRequest(http.MethodGet, "/items", nil)
		for i := 0; i < len(markers); i += 2 {
			r.Header.Set(markers[i], markers[i+1])
		}
		service.ServeHTTP(httptest.NewRecorder(), r)
	}

	c, _ := a.Snapshot().Class(audit.DefaultClass)
	w := c.Window
	fmt.Printf("requests %d, first attempts %d, fan-out %.1f, retries of retries %d, max position %d\n",
		w.Requests, w.First, w.FanOut, w.Compound, w.MaxPosition)
	for _, l := range w.Layers {
		if l.Marked > 0 {
			fmt.Printf("%s: marked %d, retries %d, max attempt %d, factor %.1f\n", l.Layer, l.Marked, l.Retries, l.MaxAttempt, l.Factor)
		}
	}
	// Output:
	// requests 4, first attempts 1, fan-out 4.0, retries of retries 1, max position 4
	// heed: marked 2, retries 2, max attempt 2, factor 2.0
	// envoy: marked 4, retries 2, max attempt 2, factor 2.0
}

// A retry loop of your own joins the audit with a header of its own, and
// the caller class comes from a header your clients set.
func ExampleConfig() {
	a := audit.New(audit.Config{
		Class: func(r *http.Request) string { return r.Header.Get("X-Caller") },
		Markers: []audit.Marker{
			{Layer: "jobs", Header: "X-Job-Attempt"}, // 1 on the first attempt
		},
	})
	for _, attempt := range []string{"1", "2", "3"} {
		r := httptest.NewRequest(http.MethodPost, "/charge", nil)
		r.Header.Set("X-Caller", "billing")
		r.Header.Set("X-Job-Attempt", attempt)
		a.Record(r)
	}
	c, _ := a.Snapshot().Class("billing")
	jobs, _ := c.Window.Layer("jobs")
	fmt.Printf("%s: fan-out %.0f, jobs retried %d times, up to attempt %d\n", c.Class, c.Window.FanOut, jobs.Retries, jobs.MaxAttempt)
	// Output: billing: fan-out 3, jobs retried 2 times, up to attempt 3
}
