package heedredis

import (
	"crypto/rand"
	"encoding/hex"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/throttle"
)

// paceScript publishes one instance's pace and returns the fleet's: the
// pace last published by any instance, while at least one instance has
// published a pace within the TTL. KEYS: the sorted set of pacing
// instances (score: when their entry lapses, ms of Redis time) and the
// fleet's pace. ARGV: instance, pace (0: stopped pacing; -1: only read),
// TTL ms.
var paceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, rate, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if rate > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, id)
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl * 2)
elseif rate == 0 then
  redis.call('ZREM', KEYS[1], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
if redis.call('ZCARD', KEYS[1]) == 0 then return '0' end
return redis.call('GET', KEYS[2]) or '0'
`)

// Pace is the adaptive pace of one key shared by a fleet, which then paces
// like one client: each instance's pacer publishes the pace it learns, the
// last one published is the fleet's, and while any instance paces, every
// instance takes its slots from one schedule in Redis at that pace. A 429
// seen anywhere lowers the pace everywhere; an instance that starts pacing
// joins the fleet's pace rather than starting over. It implements
// throttle.SharedPace: Store.KeyLimits and Store.KeyPacing set it.
type Pace struct {
	s     *Store
	key   string
	zkey  string
	rkey  string
	slots *Limiter

	mu         sync.Mutex
	rate       float64 // the fleet's pace, 0 when none
	readAt     time.Time
	refreshing bool
	mine       float64 // this instance's pace to publish
	dirty      bool
	sentAt     time.Time
	f          fault
}

var _ throttle.SharedPace = (*Pace)(nil)

// PaceTTL is how long an instance's published pace counts without being
// published again; active pacers publish at least every PaceTTL/4.
const PaceTTL = 10 * time.Second

// Pace returns the shared pace of key.
func (s *Store) Pace(key string) *Pace {
	slots, _ := s.Limiter(key, 1, 1) // valid: the rate is set before each use
	slots.redisKey = s.redisKey(key, "pace-slots")
	// One slot per round trip: the pace changes often, and a lease taken
	// at a slow pace would hold its slow slots after the pace rose.
	slots.leaseSize = 1
	p := &Pace{s: s, key: key, zkey: s.redisKey(key, "pacers"), rkey: s.redisKey(key, "pace"), slots: slots}
	s.mu.Lock()
	s.paces = append(s.paces, p)
	s.mu.Unlock()
	return p
}

// Publish records this instance's pace, sent to Redis by the Store's
// background loop at once.
func (p *Pace) Publish(rate float64) {
	p.mu.Lock()
	p.mine, p.dirty = rate, true
	if rate > 0 {
		p.rate = rate // the last published pace is the fleet's
	}
	p.mu.Unlock()
	select {
	case p.s.kick <- struct{}{}:
	default:
	}
}

// Rate returns the fleet's pace, read from Redis at most every
// BreakerRefresh; while Redis fails, this instance's own.
func (p *Pace) Rate() (float64, bool) {
	now := time.Now()
	p.mu.Lock()
	if p.refreshing || now.Sub(p.readAt) < BreakerRefresh || now.Before(p.f.until) {
		r := p.rate
		if now.Before(p.f.until) {
			r = p.mine
		}
		p.mu.Unlock()
		return r, r > 0
	}
	p.refreshing = true
	p.mu.Unlock()
	r, err := p.exchange(-1)
	p.mu.Lock()
	p.refreshing, p.readAt = false, now
	p.mu.Unlock()
	if err != nil {
		return p.fallback()
	}
	return r, r > 0
}

func (p *Pace) fallback() (float64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mine, p.mine > 0
}

// Reserve takes a slot from the fleet's schedule at the fleet's pace.
func (p *Pace) Reserve(now, deadline time.Time) (time.Time, bool) {
	r, active := p.Rate()
	if !active {
		return now, true
	}
	p.slots.setRate(math.Max(r, 0.01))
	return p.slots.ReserveBefore(now, deadline)
}

// exchange publishes rate (-1: none) and reads the fleet's pace.
func (p *Pace) exchange(rate float64) (float64, error) {
	res, err := p.s.call(paceScript, []string{p.zkey, p.rkey}, p.s.id, strconv.FormatFloat(rate, 'g', -1, 64), PaceTTL.Milliseconds())
	var r float64
	if err == nil {
		v, ok := res.(string)
		if !ok {
			err = errUnexpected(res)
		} else if r, err = strconv.ParseFloat(v, 64); err == nil && (r < 0 || math.IsNaN(r) || math.IsInf(r, 0)) {
			err = errUnexpected(res)
		}
	}
	now := time.Now()
	p.mu.Lock()
	if err != nil {
		left := p.f.failed(now, p.s.cfg.Retry)
		p.mu.Unlock()
		if left {
			p.s.reportFault(p.key, err)
		}
		return 0, err
	}
	p.rate = r
	back := p.f.succeeded()
	p.mu.Unlock()
	if back {
		p.s.reportRecover(p.key)
	}
	return r, nil
}

// send publishes this instance's pace when it changed, or again before
// its entry lapses.
func (p *Pace) send(now time.Time) {
	p.mu.Lock()
	due := p.dirty || p.mine > 0 && now.Sub(p.sentAt) >= PaceTTL/4
	mine := p.mine
	if due {
		p.dirty, p.sentAt = false, now
	}
	p.mu.Unlock()
	if due {
		if _, err := p.exchange(mine); err != nil {
			p.mu.Lock()
			p.dirty = true // try again on the next round
			p.mu.Unlock()
		}
	}
}

func newInstanceID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func errUnexpected(res any) error {
	return &unexpectedError{res}
}

type unexpectedError struct{ res any }

func (e *unexpectedError) Error() string {
	return "heedredis: unexpected reply " + strconv.Quote(toString(e.res))
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return "?"
}

// KeyPacing returns, for heed.WithKeyLimits, pacing shared by the fleet
// for every key, with no configured limit.
func (s *Store) KeyPacing() func(key string) heed.Limits {
	return func(key string) heed.Limits {
		return heed.Limits{Pacing: throttle.PacerConfig{Shared: s.Pace(key)}}
	}
}
