package hint_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/heed-go/heed/hint"
)

func ExampleRetryAfter() {
	now := time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)

	// delta-seconds
	h := http.Header{}
	h.Set("Retry-After", "120")
	fmt.Println(hint.RetryAfter(h, now))

	// an HTTP-date
	h.Set("Retry-After", "Sun, 01 Jun 2025 12:01:30 GMT")
	fmt.Println(hint.RetryAfter(h, now))

	// nothing usable
	h.Set("Retry-After", "soon")
	fmt.Println(hint.RetryAfter(h, now))
	// Output:
	// 2m0s true
	// 1m30s true
	// 0s false
}

func ExampleParseRetryAfter() {
	now := time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)
	for _, v := range []string{"1.5", "99999999999999999999", "-1"} {
		d, err := hint.ParseRetryAfter(v, now)
		fmt.Println(d, err)
	}
	// Output:
	// 1.5s <nil>
	// 87600h0m0s <nil>
	// 0s hint: invalid Retry-After value "-1"
}

func ExampleRateLimit() {
	now := time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)

	// X-RateLimit-*, with the reset as a Unix time (GitHub style).
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", fmt.Sprint(now.Add(10*time.Minute).Unix()))
	q, ok := hint.RateLimit(h, now)
	fmt.Println(ok, q.Source, q.Limit, q.Remaining, q.Reset, q.Exhausted())

	// The IETF fields of draft-ietf-httpapi-ratelimit-headers.
	h = http.Header{}
	h.Set("RateLimit-Policy", `"burst";q=100;w=60, "daily";q=1000;w=86400`)
	h.Set("RateLimit", `"burst";r=50;t=30, "daily";r=10;t=3600`)
	q, ok = hint.RateLimit(h, now)
	fmt.Println(ok, q.Source, q.Policy, q.Limit, q.Remaining, q.Reset, q.Window)
	// Output:
	// true x-ratelimit 5000 0 10m0s true
	// true ietf daily 1000 10 1h0m0s 24h0m0s
}
