package heedredis

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/throttle"
)

// leaseScript reserves up to ARGV[3] slots of a GCRA rate limit kept in
// KEYS[1] (the theoretical arrival time of the next event, in µs of Redis
// time). ARGV: interval µs, tolerance µs, slots wanted, how far ahead a
// slot may lie (µs), TTL margin (ms). It returns the slots' offsets from
// Redis's now in µs, or {-1, offset} when even the first lies too far
// ahead. Redis's own clock serves the whole fleet, so the instances'
// clocks need not agree.
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local interval, tol = tonumber(ARGV[1]), tonumber(ARGV[2])
local n, ahead = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i = 1, n do
  local at = tat - tol
  if at < now then at = now end
  if at - now > ahead then
    if #out == 0 then return {-1, at - now} end
    break
  end
  out[#out + 1] = at - now
  tat = tat + interval
end
redis.call('SET', KEYS[1], tat, 'PX', math.ceil((tat - now) / 1000) + tonumber(ARGV[5]))
return out
`)

// Limiter is a rate limit shared by every instance whose Store uses the
// same Redis and key: a GCRA token bucket evaluated in Redis, leased to
// each instance a few slots at a time. It implements throttle.RateLimiter:
// put it in heed.Limits.Limiter.
type Limiter struct {
	s         *Store
	key       string
	redisKey  string
	interval  time.Duration
	tolerance time.Duration
	local     *throttle.Limiter // the fallback while Redis fails
	leaseSize int               // slots per round trip

	mu    sync.Mutex
	slots []time.Time // leased, in order, on the local clock
	// Switching between Redis and the local fallback must not book the
	// same moments twice: the callers asleep on slots of one kind still
	// send at them. A local slot comes after the last leased one handed
	// out (leasedLast), and a leased slot after the last local one, one
	// fleet interval apart (localNext).
	leasedLast, localNext time.Time
	leasing               chan struct{} // closed when the lease in flight ends; nil when none
	f                     fault
}

var _ throttle.RateLimiter = (*Limiter)(nil)

// Limiter returns the shared rate limit of key: rate events a second with
// the given burst, across the fleet.
func (s *Store) Limiter(key string, rate float64, burst int) (*Limiter, error) {
	if err := checkRate(rate, burst); err != nil {
		return nil, err
	}
	local, err := throttle.NewLimiter(rate*s.cfg.FallbackShare, max(1, int(float64(burst)*s.cfg.FallbackShare)))
	if err != nil {
		return nil, fmt.Errorf("heedredis: %w", err)
	}
	interval := time.Duration(float64(time.Second) / rate)
	return &Limiter{
		s: s, key: key, redisKey: s.redisKey(key, "rate"),
		interval: interval, tolerance: time.Duration(burst-1) * interval, local: local, leaseSize: s.cfg.Lease,
	}, nil
}

func checkRate(rate float64, burst int) error {
	if !(rate > 0) || math.IsInf(rate, 0) || rate > 1e6 {
		return fmt.Errorf("heedredis: rate %v: want a positive rate up to 1e6 a second", rate)
	}
	if burst < 1 {
		return fmt.Errorf("heedredis: burst %d: want at least 1", burst)
	}
	return nil
}

// ReserveBefore reserves a slot for an event ready at now: a leased one
// when the instance holds one, else a new lease from Redis (one at a time
// per instance: callers arriving meanwhile wait for it rather than lease
// more), else (Redis failing) the instance's local limit, or a refusal
// with FailClosed.
func (l *Limiter) ReserveBefore(now, deadline time.Time) (time.Time, bool) {
	entered := time.Now()
	l.mu.Lock()
	for {
		if at, ok, decided := l.fromLease(now, deadline); decided {
			l.mu.Unlock()
			return at, ok
		}
		if now.Before(l.f.until) {
			l.mu.Unlock()
			return l.fallback(now, deadline)
		}
		if l.leasing == nil {
			break
		}
		wait := l.leasing
		l.mu.Unlock()
		<-wait // bounded by the Store's timeout
		l.mu.Lock()
	}
	done := make(chan struct{})
	l.leasing = done
	l.mu.Unlock()

	ahead := time.Duration(math.MaxInt64)
	if !deadline.IsZero() {
		ahead = max(0, deadline.Sub(now))
	}
	l.mu.Lock()
	interval, tolerance := l.interval, l.tolerance
	l.mu.Unlock()
	offsets, refused, err := l.lease(ahead, interval, tolerance)

	l.mu.Lock()
	l.leasing = nil
	close(done)
	if err != nil {
		left := l.f.failed(now, l.s.cfg.Retry)
		l.mu.Unlock()
		if left {
			l.s.reportFault(l.key, err)
		}
		return l.fallback(now, deadline)
	}
	back := l.f.succeeded()
	var at time.Time
	var ok bool
	if refused >= 0 {
		at, ok = now.Add(refused), false
	} else {
		// The offsets count from Redis's now. This caller takes the first
		// slot counted from its own now, as it waits from the reply (heed
		// sleeps at - now once this returns). The others are for callers
		// that come later with a later now: counted from this caller's,
		// they would fall before their time by the round trip and any wait
		// for an earlier lease, and the fleet would send more than its
		// limit in a window, by the rate times that delay. Counted from
		// the reply, none is early: the price is lateness, capacity lost,
		// never excess.
		base := now.Add(time.Since(entered))
		l.insert(now.Add(offsets[0]))
		for _, o := range offsets[1:] {
			l.insert(base.Add(o))
		}
		at, ok, _ = l.fromLease(now, deadline)
	}
	l.mu.Unlock()
	if back {
		l.s.reportRecover(l.key)
	}
	return at, ok
}

// insert adds a leased slot in time order: leases usually come in order,
// but a slow one may land after a later one.
func (l *Limiter) insert(at time.Time) {
	i := len(l.slots)
	for i > 0 && l.slots[i-1].After(at) {
		i--
	}
	l.slots = append(l.slots, time.Time{})
	copy(l.slots[i+1:], l.slots[i:])
	l.slots[i] = at
}

// Rate returns the fleet's limit in events a second. heed reads it to start
// an instance's adaptive pace near the limit when the server pushes back
// under it, rather than from scratch.
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(time.Second) / float64(l.interval)
}

// setRate changes the limit to rate events a second with a burst of one:
// the shared pace. Slots already leased keep their times.
func (l *Limiter) setRate(rate float64) {
	l.mu.Lock()
	l.interval, l.tolerance = time.Duration(float64(time.Second)/rate), 0
	l.mu.Unlock()
}

// fromLease hands out the first leased slot, dropping those too old to
// use; decided is false when no slot is held.
func (l *Limiter) fromLease(now, deadline time.Time) (at time.Time, ok, decided bool) {
	oldest := now.Add(-l.s.cfg.MaxStale)
	i := 0
	for i < len(l.slots) && l.slots[i].Before(oldest) {
		i++
	}
	l.slots = l.slots[i:]
	if len(l.slots) == 0 {
		return time.Time{}, false, false
	}
	at = later(l.slots[0], l.localNext)
	if !deadline.IsZero() && at.After(deadline) {
		return at, false, true
	}
	if l.slots[0].Before(l.localNext) {
		l.localNext = at.Add(l.interval)
	}
	l.slots = l.slots[1:]
	if at.Before(now) {
		at = now
	}
	l.leasedLast = later(l.leasedLast, at)
	return at, true, true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Allow takes a slot only if one is free at now.
func (l *Limiter) Allow(now time.Time) bool {
	_, ok := l.ReserveBefore(now, now)
	return ok
}

// fallback reserves a slot of the local limiter, after the last leased
// slot handed out: the callers asleep on slots leased from Redis before the
// fault still send at them. It must be called without l.mu held.
func (l *Limiter) fallback(now, deadline time.Time) (time.Time, bool) {
	if l.s.cfg.FailClosed {
		return now.Add(l.s.cfg.Retry), false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.local.ReserveBefore(later(now, l.leasedLast), deadline)
	if ok {
		l.localNext = later(l.localNext, at.Add(l.interval))
	}
	return at, ok
}

// lease asks Redis for up to Lease slots no further than ahead; refused is
// the offset of the first slot when it lies too far (else -1).
func (l *Limiter) lease(ahead, interval, tolerance time.Duration) (offsets []time.Duration, refused time.Duration, err error) {
	aheadUS := int64(math.MaxInt64 / 2)
	if ahead < time.Duration(aheadUS)*time.Microsecond {
		aheadUS = ahead.Microseconds()
	}
	res, err := l.s.call(leaseScript, []string{l.redisKey},
		interval.Microseconds(), tolerance.Microseconds(), l.leaseSize, aheadUS, 60_000)
	if err != nil {
		return nil, -1, err
	}
	vals, ok := res.([]any)
	if !ok || len(vals) == 0 {
		return nil, -1, fmt.Errorf("heedredis: unexpected lease reply %v", res)
	}
	nums := make([]int64, len(vals))
	for i, v := range vals {
		n, ok := v.(int64)
		if !ok {
			return nil, -1, fmt.Errorf("heedredis: unexpected lease reply %v", res)
		}
		nums[i] = n
	}
	if nums[0] == -1 {
		if len(nums) != 2 || nums[1] < 0 {
			return nil, -1, fmt.Errorf("heedredis: unexpected lease reply %v", res)
		}
		return nil, time.Duration(nums[1]) * time.Microsecond, nil
	}
	offsets = make([]time.Duration, len(nums))
	for i, n := range nums {
		if n < 0 || i > 0 && n < nums[i-1] {
			return nil, -1, fmt.Errorf("heedredis: unexpected lease reply %v", res)
		}
		offsets[i] = time.Duration(n) * time.Microsecond
	}
	return offsets, -1, nil
}
