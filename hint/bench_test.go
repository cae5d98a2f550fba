package hint_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/heed-go/heed/hint"
)

var (
	sinkD time.Duration
	sinkQ hint.Quota
	sinkB bool
)

func BenchmarkRetryAfter(b *testing.B) {
	h := http.Header{"Retry-After": {"120"}}
	b.ReportAllocs()
	for b.Loop() {
		sinkD, sinkB = hint.RetryAfter(h, now)
	}
}

// BenchmarkRetryAfterDate shows the cost of an HTTP-date, which goes
// through http.ParseTime and may allocate.
func BenchmarkRetryAfterDate(b *testing.B) {
	h := http.Header{"Retry-After": {"Sun, 01 Jun 2025 12:01:30 GMT"}}
	b.ReportAllocs()
	for b.Loop() {
		sinkD, sinkB = hint.RetryAfter(h, now)
	}
}

func BenchmarkRateLimitX(b *testing.B) {
	h := hdr("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", "1748779260")
	b.ReportAllocs()
	for b.Loop() {
		sinkQ, sinkB = hint.RateLimit(h, now)
	}
}

func BenchmarkRateLimitIETF(b *testing.B) {
	h := hdr("RateLimit-Policy", `"burst";q=100;w=60, "daily";q=1000;w=86400`,
		"RateLimit", `"burst";r=50;t=30, "daily";r=999;t=3600`)
	b.ReportAllocs()
	for b.Loop() {
		sinkQ, sinkB = hint.RateLimit(h, now)
	}
}
