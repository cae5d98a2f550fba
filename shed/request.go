package shed

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heed-go/heed/tier"
)

// The retry marks of other clients and proxies that Attempt reads.
const (
	// headerEnvoyAttempt is Envoy's attempt count, 1 on a first attempt
	// (sent when the route sets include_request_attempt_count).
	headerEnvoyAttempt = "X-Envoy-Attempt-Count"
	// headerGRPCPrevious is gRPC's count of the attempts before this one
	// (gRFC A6), 0 or absent on a first attempt.
	headerGRPCPrevious = "Grpc-Previous-Rpc-Attempts"
	// headerAmzRequest is the AWS SDKs' "attempt=N; max=M".
	headerAmzRequest = "Amz-Sdk-Request"
)

// maxAttempt bounds an attempt number read from a header.
const maxAttempt = 1 << 16

// Attempt returns the attempt number r's client marked it with, 1 for a
// first attempt or an unmarked request: heed's Heed-Attempt (absent on a
// first attempt, 2 or more on retries), Envoy's x-envoy-attempt-count (1,
// 2, ...), gRPC's grpc-previous-rpc-attempts (the attempts before this
// one, so plus one) and the AWS SDKs' amz-sdk-request (attempt=N). The
// highest mark wins; values that are not numbers are ignored.
//
// A request with an attempt number above 1 is a retry, which a Shedder
// sheds before first attempts.
func Attempt(r *http.Request) int {
	n := 1
	if v, ok := headerInt(r.Header, tier.HeaderAttempt); ok {
		n = max(n, v)
	}
	if v, ok := headerInt(r.Header, headerEnvoyAttempt); ok {
		n = max(n, v)
	}
	if v, ok := headerInt(r.Header, headerGRPCPrevious); ok && v < maxAttempt {
		n = max(n, v+1)
	}
	if v := r.Header.Get(headerAmzRequest); v != "" {
		for part := range strings.SplitSeq(v, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.EqualFold(k, "attempt") {
				if a, err := strconv.Atoi(val); err == nil && a > 0 && a <= maxAttempt {
					n = max(n, a)
				}
			}
		}
	}
	return n
}

// headerInt reads a small non-negative integer field.
func headerInt(h http.Header, name string) (int, bool) {
	v := h.Get(name)
	if v == "" || len(v) > 6 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > maxAttempt {
		return 0, false
	}
	return n, true
}

// maxTimeout bounds a deadline read from Heed-Timeout, as tier.Middleware
// does.
const maxTimeout = 24 * time.Hour

// deadline returns when r's caller gives up, seen from now: the earlier of
// its context's deadline and now plus its Heed-Timeout, zero when it has
// neither. A Heed-Timeout of zero or less says no time is left: heed
// rounds the time left up, so any time at all reads as 1 ms or more.
func deadline(r *http.Request, now time.Time) time.Time {
	d, _ := r.Context().Deadline()
	v := r.Header.Get(tier.HeaderTimeout)
	if v == "" || len(v) > 13 {
		return d
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return d // not a number: ignored, as tier.Middleware ignores it
	}
	t := now.Add(min(time.Duration(max(ms, 0))*time.Millisecond, maxTimeout))
	if d.IsZero() || t.Before(d) {
		return t
	}
	return d
}
