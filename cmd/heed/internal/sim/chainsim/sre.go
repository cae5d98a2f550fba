package chainsim

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/heed-go/heed/clock"
)

// sreThrottle is the client-side adaptive throttling of Google's SRE book
// ("Handling Overload"), for comparison with heed's breaker: each attempt
// is refused locally with probability max(0, (requests - K*accepts) /
// (requests + 1)), counted over a sliding window. It sits under heed (with
// heed's breaker off), so retries are throttled too; a refused attempt
// fails with errSRERefused, which heed does not retry.
type sreThrottle struct {
	next  http.RoundTripper
	clk   clock.Clock
	rng   *rand.Rand
	k     float64
	ring  [20]struct{ requests, accepts float64 }
	head  int
	start time.Time
}

// sreWindow is the span the throttle counts over, in 20 buckets; the SRE
// book uses two minutes.
const sreWindow = 2 * time.Minute

var errSRERefused = errors.New("sre: refused locally")

func (s *sreThrottle) advance(now time.Time) {
	width := sreWindow / time.Duration(len(s.ring))
	if s.start.IsZero() {
		s.start = now
	}
	for n := 0; now.Sub(s.start) >= width && n <= len(s.ring); n++ {
		s.head = (s.head + 1) % len(s.ring)
		s.ring[s.head].requests, s.ring[s.head].accepts = 0, 0
		s.start = s.start.Add(width)
	}
	if now.Sub(s.start) >= width {
		s.start = now
	}
}

func (s *sreThrottle) sums() (requests, accepts float64) {
	for _, b := range s.ring {
		requests += b.requests
		accepts += b.accepts
	}
	return requests, accepts
}

// RoundTrip implements http.RoundTripper. One actor runs at a time in the
// simulation, so the throttle needs no lock.
func (s *sreThrottle) RoundTrip(req *http.Request) (*http.Response, error) {
	s.advance(s.clk.Now())
	requests, accepts := s.sums()
	s.ring[s.head].requests++
	if p := (requests - s.k*accepts) / (requests + 1); p > 0 && s.rng.Float64() < p {
		return nil, errSRERefused
	}
	resp, err := s.next.RoundTrip(req)
	if err == nil && resp.StatusCode < 500 {
		s.advance(s.clk.Now())
		s.ring[s.head].accepts++
	}
	return resp, err
}
