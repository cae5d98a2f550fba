package shed

import (
	"net/http"
	"strconv"
	"time"

	"github.com/heed-go/heed/audit"
	"github.com/heed-go/heed/tier"
)

// Attempt returns the attempt number r's client marked it with, 1 for a
// first attempt or an unmarked request: heed's Heed-Attempt (absent on a
// first attempt, 2 or more on retries), Envoy's x-envoy-attempt-count (1,
// 2, ...), gRPC's grpc-previous-rpc-attempts (the attempts before this
// one, so plus one) and the AWS SDKs' amz-sdk-request (attempt=N). The
// highest mark wins; malformed marks are ignored. It reads the markers as
// [audit.Attempt] does.
//
// A request with an attempt number above 1 is a retry, which a Shedder
// sheds before first attempts.
func Attempt(r *http.Request) int { return audit.Attempt(r) }

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
