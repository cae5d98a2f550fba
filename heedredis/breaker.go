package heedredis

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/breaker"
)

// openedScript records that a breaker opened until ARGV[1] (µs since the
// Unix epoch), unless the fleet is already open longer, and frees the
// probe claim; the key expires ARGV[2] ms after that time.
var openedScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1])) or 0
local u = tonumber(ARGV[1])
if u > cur then
  redis.call('SET', KEYS[1], u, 'PX', tonumber(ARGV[2]))
end
redis.call('DEL', KEYS[2])
return 1
`)

// claimScript claims the fleet's probe (KEYS[2]) for ARGV[2] ms, unless
// the fleet is open (KEYS[1]) past ARGV[1] (µs since the Unix epoch): a
// probe that failed since the claimant last read the state has reopened
// the fleet, and freed its claim for the next open period, not this one.
// It returns -1 when claimed, 0 when another instance holds the claim,
// else the fleet's open time.
var claimScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1])) or 0
if cur > tonumber(ARGV[1]) then
  return cur
end
if redis.call('SET', KEYS[2], 1, 'NX', 'PX', tonumber(ARGV[2])) then
  return -1
end
return 0
`)

// BreakerFleet is the state a key's circuit breakers share through Redis:
// whether the fleet holds them open, and until when; and which instance
// sends the half-open probe. It implements breaker.Fleet: give
// Store.BreakerFleets to heed.WithBreakerFleet. The open state is read
// from Redis at most every BreakerRefresh (250 ms) per instance and key,
// so an instance learns of another's trip within that time; a trip or a
// recovery here is written at once.
type BreakerFleet struct {
	s        *Store
	key      string
	openKey  string
	probeKey string

	mu         sync.Mutex
	until      time.Time // the fleet's open time as last read or written
	readAt     time.Time
	refreshing bool
	f          fault
}

var _ breaker.Fleet = (*BreakerFleet)(nil)

// BreakerRefresh is how often an instance reads a key's breaker state.
const BreakerRefresh = 250 * time.Millisecond

// BreakerFleet returns the fleet breaker state of key.
func (s *Store) BreakerFleet(key string) *BreakerFleet {
	return &BreakerFleet{s: s, key: key, openKey: s.redisKey(key, "breaker"), probeKey: s.redisKey(key, "probe")}
}

// BreakerFleets returns, for heed.WithBreakerFleet, the fleet state of
// each key's breaker.
func (s *Store) BreakerFleets() func(key string) breaker.Fleet {
	return func(key string) breaker.Fleet { return s.BreakerFleet(key) }
}

// OpenUntil reports the fleet's open time, from a cache read from Redis
// at most every BreakerRefresh; while Redis fails, the last value read.
func (b *BreakerFleet) OpenUntil(now time.Time) (time.Time, bool) {
	b.mu.Lock()
	if b.refreshing || now.Sub(b.readAt) < BreakerRefresh || now.Before(b.f.until) {
		u := b.until
		b.mu.Unlock()
		return u, now.Before(u)
	}
	b.refreshing = true
	b.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), b.s.cfg.Timeout)
	v, err := b.s.rdb.Get(ctx, b.openKey).Result()
	cancel()
	var until time.Time
	if err == nil {
		us, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil {
			err = errors.New("heedredis: unexpected breaker state " + strconv.Quote(v))
		} else {
			until = time.UnixMicro(us)
		}
	} else if err == redis.Nil {
		err = nil
	}
	b.mu.Lock()
	b.refreshing, b.readAt = false, now
	if err != nil {
		left := b.f.failed(now, b.s.cfg.Retry)
		u := b.until
		b.mu.Unlock()
		if left {
			b.s.reportFault(b.key, err)
		}
		return u, now.Before(u)
	}
	b.until = until
	back := b.f.succeeded()
	b.mu.Unlock()
	if back {
		b.s.reportRecover(b.key)
	}
	return until, now.Before(until)
}

// Opened writes that this instance's breaker opened until until.
func (b *BreakerFleet) Opened(now, until time.Time) {
	b.mu.Lock()
	if until.After(b.until) {
		b.until = until
	}
	b.mu.Unlock()
	ttl := until.Sub(now) + time.Minute
	_, err := b.s.call(openedScript, []string{b.openKey, b.probeKey}, until.UnixMicro(), ttl.Milliseconds())
	b.done(now, err)
}

// Closed writes that a probe succeeded: the fleet's breakers may close.
func (b *BreakerFleet) Closed(now time.Time) {
	b.mu.Lock()
	b.until, b.readAt = time.Time{}, now
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), b.s.cfg.Timeout)
	err := b.s.rdb.Del(ctx, b.openKey, b.probeKey).Err()
	cancel()
	b.done(now, err)
}

// ClaimProbe claims the fleet's next probe for hold. It is refused while
// another instance holds the claim, and while the fleet is open past now:
// the claimant's view of the open state may be up to BreakerRefresh old,
// and without this check an instance that read the state just before
// another's probe failed would claim the claim that failure freed and send
// a second probe into the same half-open period. While Redis fails every
// instance may probe (its own breaker still allows one at a time).
func (b *BreakerFleet) ClaimProbe(now time.Time, hold time.Duration) bool {
	v, err := b.s.call(claimScript, []string{b.openKey, b.probeKey}, now.UnixMicro(), max(hold, time.Millisecond).Milliseconds())
	r, _ := v.(int64)
	if err == nil && r > 0 {
		// Reopened: remember it, so this instance's next call opens with
		// the fleet without waiting for the next read.
		b.mu.Lock()
		if until := time.UnixMicro(r); until.After(b.until) {
			b.until = until
		}
		b.mu.Unlock()
	}
	b.done(now, err)
	return r < 0 || err != nil
}

// done records how a write went.
func (b *BreakerFleet) done(now time.Time, err error) {
	b.mu.Lock()
	var left, back bool
	if err != nil {
		left = b.f.failed(now, b.s.cfg.Retry)
	} else {
		back = b.f.succeeded()
	}
	b.mu.Unlock()
	if left {
		b.s.reportFault(b.key, err)
	}
	if back {
		b.s.reportRecover(b.key)
	}
}
