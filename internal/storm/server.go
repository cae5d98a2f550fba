// Package storm is the public 429 storm scenario of heed's design: a
// token-bucket API on loopback and many clients that each need a number of
// successful GETs from it. heed's demo and its benchmarks run it.
package storm

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/tier"
)

// RetryAfterForm says how the server writes Retry-After on a 429.
type RetryAfterForm int

const (
	RetryAfterSeconds RetryAfterForm = iota // whole delta-seconds, rounded up
	RetryAfterDate                          // an HTTP-date
	RetryAfterNone                          // no Retry-After at all
)

// ResetForm says how the server writes X-RateLimit-Reset.
type ResetForm int

const (
	ResetDelta ResetForm = iota // seconds from now
	ResetEpoch                  // Unix time in seconds
)

// ServerConfig describes the rate-limited API.
type ServerConfig struct {
	Rate       float64 // requests per second the bucket refills
	Burst      int     // bucket size
	RetryAfter RetryAfterForm
	Reset      ResetForm
	// NoRateLimitHeaders leaves out X-RateLimit-* (sent on every response
	// by default).
	NoRateLimitHeaders bool
	// Clock refills the bucket; nil means the wall clock. Tests share a fake
	// clock between the server and the clients to run in virtual time.
	Clock clock.Clock
	// Recorder, if not nil, is told of every request the API answers.
	Recorder Recorder
	// Limit, if not nil, replaces the API's own bucket and headers: it
	// wraps a handler that always answers 200, and what it refuses counts
	// as throttled. Rate and Burst still say what the limit is (for the
	// optimal makespan); Recorder is not told.
	Limit func(http.Handler) http.Handler
}

// Arrival is one request as the API saw it.
type Arrival struct {
	At       time.Time // when the API took it, on the server's clock
	Admitted bool      // answered 200; false: 429
	// Attempt is the request's Heed-Attempt header: 2 or more for a heed
	// retry, 0 when absent (a first attempt, or a client that is not heed).
	Attempt int
}

// Recorder receives the API's arrivals. Arrive is called in the handler's
// goroutine, concurrently for concurrent requests, after the bucket's
// decision and before the response is written.
type Recorder interface {
	Arrive(Arrival)
}

// DefaultServer is the public 429 storm's API: 100 req/s, burst 10, 429 with
// whole-second Retry-After and X-RateLimit-* headers.
var DefaultServer = ServerConfig{Rate: 100, Burst: 10}

// API is the token-bucket API as an http.Handler: it answers 200 while the
// bucket holds a token and 429 otherwise.
type API struct {
	cfg ServerConfig

	mu     sync.Mutex
	tokens float64
	last   time.Time

	served, throttled atomic.Int64
	limited           http.Handler // cfg.Limit around the always-200 handler
}

// NewAPI returns the API with a full bucket.
func NewAPI(cfg ServerConfig) (*API, error) {
	if !(cfg.Rate > 0) || cfg.Burst < 1 {
		return nil, fmt.Errorf("storm: rate %v and burst %d must be positive", cfg.Rate, cfg.Burst)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	a := &API{cfg: cfg, tokens: float64(cfg.Burst), last: cfg.Clock.Now()}
	if cfg.Limit != nil {
		a.limited = cfg.Limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.served.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok":true}`)
		}))
	}
	return a, nil
}

// countRefusals counts the 429s a Limit writes.
type countRefusals struct {
	http.ResponseWriter
	api *API
}

func (c countRefusals) WriteHeader(code int) {
	if code == http.StatusTooManyRequests {
		c.api.throttled.Add(1)
	}
	c.ResponseWriter.WriteHeader(code)
}

// Server is the API on 127.0.0.1.
type Server struct {
	*API
	URL string
	srv *httptest.Server
}

// NewServer starts the API on loopback; Close stops it.
func NewServer(cfg ServerConfig) (*Server, error) {
	api, err := NewAPI(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{API: api, srv: httptest.NewUnstartedServer(api)}
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.Start()
	s.URL = s.srv.URL
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Served and Throttled count the requests answered 200 and 429.
func (s *API) Served() int64    { return s.served.Load() }
func (s *API) Throttled() int64 { return s.throttled.Load() }

// take refills the bucket and takes a token if one is there. It returns
// whether it did, the tokens left, and how long until the next token and
// until the bucket is full.
func (s *API) take(now time.Time) (ok bool, left float64, next, full time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = math.Min(float64(s.cfg.Burst), s.tokens+now.Sub(s.last).Seconds()*s.cfg.Rate)
	s.last = now
	if s.tokens >= 1 {
		s.tokens--
		ok = true
	}
	left = s.tokens
	if left < 1 {
		next = time.Duration((1 - left) / s.cfg.Rate * float64(time.Second))
	}
	full = time.Duration((float64(s.cfg.Burst) - left) / s.cfg.Rate * float64(time.Second))
	return ok, left, next, full
}

// ServeHTTP answers one request.
func (s *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.limited != nil {
		s.limited.ServeHTTP(countRefusals{w, s}, r)
		return
	}
	now := s.cfg.Clock.Now()
	ok, left, next, full := s.take(now)
	if s.cfg.Recorder != nil {
		n, _ := strconv.Atoi(r.Header.Get(tier.HeaderAttempt))
		s.cfg.Recorder.Arrive(Arrival{At: now, Admitted: ok, Attempt: n})
	}
	h := w.Header()
	if !s.cfg.NoRateLimitHeaders {
		h.Set("X-RateLimit-Limit", strconv.FormatFloat(s.cfg.Rate, 'f', -1, 64))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(int(left)))
		reset := ceilSeconds(full)
		if s.cfg.Reset == ResetEpoch {
			h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(full).Unix()+1, 10))
		} else {
			h.Set("X-RateLimit-Reset", strconv.Itoa(reset))
		}
	}
	if ok {
		s.served.Add(1)
		h.Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
		return
	}
	s.throttled.Add(1)
	switch s.cfg.RetryAfter {
	case RetryAfterSeconds:
		h.Set("Retry-After", strconv.Itoa(ceilSeconds(next)))
	case RetryAfterDate:
		// An HTTP-date has whole seconds: name the first second boundary at
		// or after the next token.
		at := now.Add(next).Truncate(time.Second)
		if at.Before(now.Add(next)) {
			at = at.Add(time.Second)
		}
		h.Set("Retry-After", at.UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(http.StatusTooManyRequests)
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
