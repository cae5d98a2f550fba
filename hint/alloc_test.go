package hint_test

import (
	"net/http"
	"testing"

	"github.com/heed-go/heed/hint"
)

// TestZeroAllocs pins the promise that the common paths do not allocate.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	tests := []struct {
		name string
		h    http.Header
	}{
		{"RetryAfter delta", http.Header{"Retry-After": {"120"}}},
		{"RetryAfter invalid lines", http.Header{"Retry-After": {"soon", "1.5", "-1", ""}}},
		{"RateLimit X", http.Header{
			"X-Ratelimit-Limit": {"5000"}, "X-Ratelimit-Remaining": {"4999"}, "X-Ratelimit-Reset": {"1748779260"},
		}},
		{"RateLimit IETF", http.Header{
			"Ratelimit-Policy": {`"burst";q=100;w=60, "daily";q=1000;w=86400`},
			"Ratelimit":        {`"burst";r=50;t=30, "daily";r=999;t=3600`},
		}},
		{"RateLimit IETF dictionary", http.Header{
			"Ratelimit":        {"limit=100, remaining=50, reset=30"},
			"Ratelimit-Policy": {"100;w=60"},
		}},
		{"RateLimit IETF separate fields", http.Header{
			"Ratelimit-Limit": {"100"}, "Ratelimit-Remaining": {"50"}, "Ratelimit-Reset": {"30"},
		}},
		{"RateLimit malformed", http.Header{
			"Ratelimit": {`"burst";r=`}, "X-Ratelimit-Remaining": {"-1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := func() {
				sinkD, sinkB = hint.RetryAfter(tt.h, now)
				sinkQ, sinkB = hint.RateLimit(tt.h, now)
			}
			if n := testing.AllocsPerRun(100, fn); n != 0 {
				t.Errorf("%v allocations per run, want 0", n)
			}
		})
	}
}
