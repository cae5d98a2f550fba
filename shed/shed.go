package shed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/internal/redact"
)

// The reasons a request is shed, in [heed.Event].Reason of an
// [heed.EventShed]; ErrDeadline is in its Err too.
var (
	// ErrOverloaded: the limit was taken and the queue full (or off).
	ErrOverloaded = errors.New("shed: overloaded: concurrency limit reached and queue full")
	// ErrQueueTimeout: the request waited in the queue past QueueTarget
	// while the queue was standing, or past QueueInterval.
	ErrQueueTimeout = errors.New("shed: overloaded: waited too long in the queue")
	// ErrDeadline: the caller's deadline passed, or the caller went away,
	// before the request could start. The error in the event wraps the
	// context's error too when the context ended.
	ErrDeadline = errors.New("shed: caller's deadline passed before the request started")
)

// Shedder is load-shedding middleware: it runs at most a limit of
// requests at once in the handlers it wraps, learns that limit from their
// latency, holds the requests past it in a short queue, and answers the
// ones it cannot serve in time with 503 and Retry-After, retries first.
// See [Config] for the algorithm. It is safe for concurrent use; the
// handlers one Shedder wraps share its limit.
type Shedder struct {
	s *settings

	mu            sync.Mutex
	lim           *limiter
	inflight      int
	lines         [lineCount][]*waiter // the queue, by line (priority)
	queued        int
	nonEmptySince time.Time // when the queue last became non-empty
	hot           bool      // the queue is standing (see standing)
	lastExpired   time.Time // when a waiter was last shed for its sojourn
}

// The queue's lines, served in this order.
const (
	lineCritical = iota
	lineNormal
	lineSheddable
	lineCount
)

func lineOf(p Priority) int {
	switch {
	case p >= Critical:
		return lineCritical
	case p <= Sheddable:
		return lineSheddable
	}
	return lineNormal
}

// waiter is a request in the queue. Its verdict is written under the
// Shedder's mutex before ready is closed.
type waiter struct {
	ready    chan struct{}
	verdict  verdict
	line     int
	enqueued time.Time
	deadline time.Time // zero: none
}

// New returns a Shedder configured by cfg, or an error naming every bad
// field of cfg.
func New(cfg Config) (*Shedder, error) {
	s, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	return &Shedder{s: s, lim: newLimiter(s, s.clock.Now())}, nil
}

// Handler returns next behind the shedder.
//
// Put it inside tier.Middleware, which sets the caller's Heed-Timeout as
// the request's deadline when the request arrives: the time a request
// waits in the shedder's queue then counts against it, as it does for the
// caller. The shedder reads Heed-Timeout itself as well, so it also works
// alone.
func (s *Shedder) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, next)
	})
}

// Stats is a snapshot of a Shedder's state.
type Stats struct {
	// Limit is how many requests may run at once (first attempts; see
	// Config for the shares of retries and critical requests).
	Limit int
	// InFlight is how many requests run now; Queued how many wait.
	InFlight, Queued int
	// Baseline is the handler's latency without a queue, as learned;
	// Latency its latency over the last window. Zero before the first
	// window.
	Baseline, Latency time.Duration
}

// Stats returns the shedder's current state.
func (s *Shedder) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Limit: s.lim.Limit(), InFlight: s.inflight, Queued: s.queued, Baseline: s.lim.baseline, Latency: s.lim.latest}
}

func (s *Shedder) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	now := s.s.clock.Now()
	attempt := Attempt(r)
	prio := Normal
	if s.s.priority != nil {
		prio = s.s.priority(r)
	}
	if attempt > 1 && prio == Normal {
		prio = Sheddable
	}
	ctx := r.Context()
	dl := deadline(r, now)
	if ctx.Err() != nil || !dl.IsZero() && !dl.After(now) {
		s.refuse(w, r, now, shedDead, attempt)
		return
	}

	v, waited := s.acquire(ctx, now, lineOf(prio), dl)
	if v != admitted {
		s.refuse(w, r, now, v, attempt)
		return
	}
	start := now
	if waited > 0 {
		start = s.s.clock.Now()
	}
	if len(s.s.hooks) > 0 {
		s.emit(ctx, r, heed.Event{Kind: heed.EventAdmitted, Time: start, Attempt: attempt, Wait: waited})
	}

	rec := recorder{ResponseWriter: w}
	finished := false
	defer func() {
		// A panic frees the slot too, but says nothing of the latency.
		s.release(start, finished && rec.sampleable())
	}()
	next.ServeHTTP(&rec, r)
	finished = true
}

// acquire takes a slot for a request of line li arrived at now, waiting
// in the queue if need be. It returns the verdict, and how long the
// request waited.
func (s *Shedder) acquire(ctx context.Context, now time.Time, li int, dl time.Time) (verdict, time.Duration) {
	s.mu.Lock()
	s.expire(now)
	if s.room(li) && s.noneAhead(li) {
		s.inflight++
		s.lim.track(now, s.inflight)
		if s.hot && now.Sub(s.lastExpired) >= s.interval() {
			s.hot = false
		}
		s.mu.Unlock()
		return admitted, 0
	}
	s.lim.press()
	for s.s.maxQueue < 0 || s.queued >= s.queueCap() {
		if s.s.maxQueue < 0 || !s.evict(li) {
			s.mu.Unlock()
			return shedFull, 0
		}
	}
	w := &waiter{ready: make(chan struct{}), line: li, enqueued: now, deadline: dl}
	s.push(w, now)
	wait, late := s.interval(), shedQueue
	if s.standing(now) {
		wait = s.target()
	}
	if !dl.IsZero() && dl.Sub(now) <= wait {
		wait, late = dl.Sub(now), shedLate
	}
	s.mu.Unlock()

	t := s.s.clock.NewTimer(wait)
	select {
	case <-w.ready:
	case <-t.C():
		s.giveUp(w, late, s.s.clock.Now())
	case <-ctx.Done():
		s.giveUp(w, shedLate, s.s.clock.Now())
	}
	t.Stop()
	if w.verdict != admitted {
		return w.verdict, 0
	}
	return admitted, s.s.clock.Now().Sub(now)
}

// room reports whether a request of line li may start now. Called with
// s.mu held.
func (s *Shedder) room(li int) bool {
	l := s.lim.Limit()
	switch li {
	case lineCritical:
		return s.inflight < l+max(1, int(math.Ceil(float64(l)*s.s.criticalHeadroom)))
	case lineSheddable:
		return s.inflight < max(1, int(float64(l)*s.s.retryShare))
	}
	return s.inflight < l
}

// noneAhead reports whether no request of line li or a more urgent one
// waits, so that a new arrival does not overtake them. Called with s.mu
// held.
func (s *Shedder) noneAhead(li int) bool {
	for k := 0; k <= li; k++ {
		if len(s.lines[k]) > 0 {
			return false
		}
	}
	return true
}

// queueCap is how many requests may wait. Called with s.mu held.
func (s *Shedder) queueCap() int {
	if s.s.maxQueue > 0 {
		return s.s.maxQueue
	}
	return s.lim.Limit()
}

// target and interval are QueueTarget and QueueInterval, capped by the
// handler's baseline latency: a request waits in a standing queue at most
// a quarter of the time the handler takes without a queue, and in any
// queue at most that time. A burst the handler cannot absorb within one
// of its own latencies is not a burst. Called with s.mu held.
func (s *Shedder) target() time.Duration {
	if b := s.lim.baseline; b > 0 {
		return min(s.s.queueTarget, b/4)
	}
	return s.s.queueTarget
}

func (s *Shedder) interval() time.Duration {
	if b := s.lim.baseline; b > 0 {
		return max(s.target(), min(s.s.queueInterval, b))
	}
	return s.s.queueInterval
}

// standing reports whether the queue is standing: it stayed non-empty for
// a whole interval, so it holds an overload rather than a burst. It stays
// standing until the overload ends: a request finds room at once, and none
// was shed for its wait for an interval. Shedding the waiters of a
// standing queue empties it and frees their slots for the next comers,
// which ends nothing (CoDel likewise stays in its dropping state after the
// queue empties). Called with s.mu held.
func (s *Shedder) standing(now time.Time) bool {
	if !s.hot && s.queued > 0 && now.Sub(s.nonEmptySince) >= s.interval() {
		s.hot = true
	}
	return s.hot
}

func (s *Shedder) push(w *waiter, now time.Time) {
	if s.queued == 0 {
		s.nonEmptySince = now
	}
	s.lines[w.line] = append(s.lines[w.line], w)
	s.queued++
}

// remove takes the i-th waiter out of line li and gives it verdict v.
// Called with s.mu held.
func (s *Shedder) remove(li, i int, v verdict) {
	line := s.lines[li]
	w := line[i]
	copy(line[i:], line[i+1:])
	line[len(line)-1] = nil
	s.lines[li] = line[:len(line)-1]
	s.queued--
	w.verdict = v
	close(w.ready)
}

// expire sheds the waiters at the heads of the lines that a standing
// queue kept past QueueTarget, or whose callers' deadlines have passed.
// Called with s.mu held.
func (s *Shedder) expire(now time.Time) {
	if s.queued == 0 {
		return
	}
	standing := s.standing(now)
	for li := range s.lines {
		for len(s.lines[li]) > 0 {
			v := s.overdue(s.lines[li][0], now, standing)
			if v == pending {
				break
			}
			if v == shedQueue {
				s.lastExpired = now
			}
			s.remove(li, 0, v)
		}
	}
}

// overdue returns why w must leave the queue at now, or pending.
func (s *Shedder) overdue(w *waiter, now time.Time, standing bool) verdict {
	switch {
	case !w.deadline.IsZero() && !w.deadline.After(now):
		return shedLate
	case standing && now.Sub(w.enqueued) > s.target():
		return shedQueue
	}
	return pending
}

// evict makes room in a full queue for a request of line li by shedding
// the newest waiter of a less urgent line. Called with s.mu held.
func (s *Shedder) evict(li int) bool {
	for k := lineCount - 1; k > li; k-- {
		if n := len(s.lines[k]); n > 0 {
			s.remove(k, n-1, shedFull)
			return true
		}
	}
	return false
}

// dispatch hands free slots to the waiters, most urgent line first.
// Called with s.mu held.
func (s *Shedder) dispatch(now time.Time) {
	for li := range s.lines {
		for len(s.lines[li]) > 0 {
			if !s.room(li) {
				return // a less urgent line has less room still
			}
			s.inflight++
			s.lim.track(now, s.inflight)
			s.remove(li, 0, admitted)
		}
	}
}

// giveUp takes w out of the queue with verdict v at now, unless it was
// handed a slot or shed meanwhile.
func (s *Shedder) giveUp(w *waiter, v verdict, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.verdict != pending {
		return
	}
	if v == shedQueue {
		s.lastExpired = now
	}
	for i, x := range s.lines[w.line] {
		if x == w {
			s.remove(w.line, i, v)
			return
		}
	}
}

// release frees the slot of a request that started at start, sampling its
// latency when sample is set, and hands free slots to the queue.
func (s *Shedder) release(start time.Time, sample bool) {
	now := s.s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	s.lim.track(now, s.inflight)
	s.lim.sample(now, now.Sub(start), sample)
	s.expire(now)
	s.dispatch(now)
}

// refuse writes the shed response for verdict v and reports it.
func (s *Shedder) refuse(w http.ResponseWriter, r *http.Request, arrived time.Time, v verdict, attempt int) {
	wait := 0
	if v != shedDead {
		wait = s.retryAfter()
	}
	respond(w, v, wait)
	if len(s.s.hooks) == 0 {
		return
	}
	e := heed.Event{
		Kind:    heed.EventShed,
		Time:    s.s.clock.Now(),
		Attempt: attempt,
		Status:  http.StatusServiceUnavailable,
		Wait:    time.Duration(wait) * time.Second,
	}
	switch v {
	case shedFull:
		e.Reason = ErrOverloaded
	case shedQueue:
		e.Reason = ErrQueueTimeout
	default:
		e.Reason, e.Err = ErrDeadline, ErrDeadline
		if err := context.Cause(r.Context()); err != nil {
			e.Err = fmt.Errorf("%w: %w", ErrDeadline, err)
		}
	}
	e.Duration = e.Time.Sub(arrived)
	s.emit(r.Context(), r, e)
}

// emit fills in the request's fields and sends e to the hooks.
func (s *Shedder) emit(ctx context.Context, r *http.Request, e heed.Event) {
	e.Key = defaultClass
	if s.s.class != nil {
		if k := s.s.class(r); k != "" {
			e.Key = k
		}
	}
	e.Method = r.Method
	e.URL = redact.Copy(r.URL)
	for _, h := range s.s.hooks {
		h.OnEvent(ctx, e)
	}
}

// recorder notes the handler's status, and whether it took the connection
// over.
type recorder struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// sampleable reports whether the request's latency says something about
// the handler's capacity: not when it failed with a 5xx (a fast failure
// is cheap, a slow one is usually a dependency's timeout, neither is the
// cost of the work), nor when it took the connection over (its time is
// the connection's).
func (w *recorder) sampleable() bool {
	return !w.hijacked && w.status < 500
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps streaming handlers working.
func (w *recorder) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack keeps handlers that take the connection over working.
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}
