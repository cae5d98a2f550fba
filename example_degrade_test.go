package heed_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
)

// The first copy of a request is stuck; a hedge sent after 10 ms answers,
// and the stuck copy is cancelled.
func ExampleWithHedging() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select { // stuck until heed cancels it
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		fmt.Fprint(w, "fast")
	}))
	defer srv.Close()

	t, err := heed.New(heed.WithLogger(nil), heed.WithHedging(heed.HedgeConfig{Delay: 10 * time.Millisecond}))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: t}
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 fast
}

// A response stored while the server was up is served when it goes down,
// marked with Cache-Status and Age.
func ExampleWithStaleIfError() {
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=60, stale-if-error=3600")
		fmt.Fprint(w, `{"price":42}`)
	}))
	defer srv.Close()

	t, err := heed.New(heed.WithLogger(nil), heed.WithMaxAttempts(1), heed.WithStaleIfError(heed.StaleConfig{}))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: t}
	show := func() {
		resp, err := client.Get(srv.URL + "/price")
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		status, _, _ := strings.Cut(resp.Header.Get("Cache-Status"), "; ttl=")
		fmt.Printf("%d %s stale=%v %q\n", resp.StatusCode, body, heed.Degraded(resp) != nil, status)
	}
	show()
	down.Store(true)
	show()
	// Output:
	// 200 {"price":42} stale=false ""
	// 200 {"price":42} stale=true "heed; fwd=stale; fwd-status=503"
}

// A fallback answers a failed call with a degraded response; the failure
// it was given says what happened.
func ExampleWithFallback() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	fallback := func(ctx context.Context, req *http.Request, failure *heed.Error) (*http.Response, error) {
		fmt.Println("fallback after", len(failure.Attempts), "attempts:", failure.Reason)
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(`{"items":[]}`))}, nil
	}
	t, err := heed.New(heed.WithLogger(nil), heed.WithMaxAttempts(3), heed.WithFallback(fallback),
		heed.WithBackoff(backoff.Full(time.Millisecond, 10*time.Millisecond))) // quick, for the example
	if err != nil {
		panic(err)
	}
	resp, err := (&http.Client{Transport: t}).Get(srv.URL + "/recommendations")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// fallback after 3 attempts: attempts exhausted
	// 200 {"items":[]}
}

// Degraded tells a user interface that it shows a substitute, and when the
// server said to try again.
func ExampleDegraded() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600") // down for maintenance
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	empty := func(ctx context.Context, req *http.Request, failure *heed.Error) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("[]"))}, nil
	}
	t, err := heed.New(heed.WithLogger(nil), heed.WithFallback(empty))
	if err != nil {
		panic(err)
	}
	resp, err := (&http.Client{Transport: t}).Get(srv.URL + "/orders")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	if failure := heed.Degraded(resp); failure != nil {
		fmt.Println("showing nothing:", errors.Is(failure, heed.ErrWaitTooLong))
		if !failure.RetryAt.IsZero() {
			wait := time.Until(failure.RetryAt)
			fmt.Println("try again in", wait.Round(time.Hour))
		}
	}
	// Output:
	// showing nothing: true
	// try again in 1h0m0s
}
