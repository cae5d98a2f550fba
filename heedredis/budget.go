package heedredis

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/budget"
)

// budgetScript keeps a ratio retry budget in the hash KEYS[1]: requests
// and retries counted in buckets of Redis time. ARGV: requests to add,
// retries wanted (0 or 1), bucket width µs, buckets in the window,
// percent, retries allowed per second regardless. It returns 1 when the
// retry is granted (and counts it), else 0.
var budgetScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local width, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local cur = math.floor(now / width)
local add, want = tonumber(ARGV[1]), tonumber(ARGV[2])
if add > 0 then redis.call('HINCRBY', KEYS[1], 'q' .. cur, add) end
local reqs, rets = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = all[i]
  local b = tonumber(string.sub(f, 2))
  if b == nil or b <= cur - n then
    redis.call('HDEL', KEYS[1], f)
  elseif string.sub(f, 1, 1) == 'q' then
    reqs = reqs + tonumber(all[i + 1])
  else
    rets = rets + tonumber(all[i + 1])
  end
end
local granted = 0
if want > 0 then
  local allow = tonumber(ARGV[5]) * reqs + tonumber(ARGV[6]) * (width * n / 1000000)
  if rets + 1 <= allow then
    redis.call('HINCRBY', KEYS[1], 't' .. cur, 1)
    granted = 1
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(width * n / 1000) * 2)
return granted
`)

// Budget is a retry budget shared by every instance whose Store uses the
// same Redis and key: retries may be Percent of the fleet's requests plus
// MinPerSecond, over the Window. It implements budget.Budget; Store.Budgets
// gives one per key to heed.WithRetryBudget. Requests are counted locally and sent to Redis in
// batches (with the next retry, and every second); each retry asks Redis,
// since retries are rare and already wait for their backoff.
type Budget struct {
	s       *Store
	key     string
	hkey    string
	cfg     budget.RatioConfig
	width   time.Duration
	pending atomic.Int64
	local   *budget.Ratio // the fallback, kept warm

	mu sync.Mutex
	f  fault
}

var _ budget.Budget = (*Budget)(nil)

// Budget returns the shared retry budget of key; the zero RatioConfig
// means heed's default (25% of requests plus 10 a second, over 10 s).
func (s *Store) Budget(key string, c budget.RatioConfig) (*Budget, error) {
	c = c.WithDefaults()
	local, err := budget.NewRatio(budget.RatioConfig{Percent: c.Percent, MinPerSecond: c.MinPerSecond * s.cfg.FallbackShare, Window: c.Window, Buckets: c.Buckets})
	if err != nil {
		return nil, fmt.Errorf("heedredis: %w", err)
	}
	b := &Budget{s: s, key: key, hkey: s.redisKey(key, "budget"), cfg: c, width: c.Window / time.Duration(c.Buckets), local: local}
	s.mu.Lock()
	s.budgets = append(s.budgets, b)
	s.mu.Unlock()
	return b, nil
}

// Request counts a request, locally until the next flush.
func (b *Budget) Request() {
	b.pending.Add(1)
	b.local.Request()
}

// Outcome implements budget.Budget; a ratio budget ignores outcomes.
func (b *Budget) Outcome(bool) {}

// Withdraw asks Redis for one retry, sending the requests counted since
// the last flush with it. While Redis fails, the local budget answers (or
// none, with FailClosed).
func (b *Budget) Withdraw(now time.Time) bool {
	b.mu.Lock()
	local := now.Before(b.f.until)
	b.mu.Unlock()
	if local {
		return b.fallback(now)
	}
	n := b.pending.Swap(0)
	res, err := b.s.call(budgetScript, []string{b.hkey}, n, 1, b.width.Microseconds(), b.cfg.Buckets, b.cfg.Percent, b.cfg.MinPerSecond)
	granted, ok := res.(int64)
	if err == nil && !ok {
		err = fmt.Errorf("heedredis: unexpected budget reply %v", res)
	}
	b.mu.Lock()
	if err != nil {
		b.pending.Add(n) // not counted: try again later
		left := b.f.failed(now, b.s.cfg.Retry)
		b.mu.Unlock()
		if left {
			b.s.reportFault(b.key, err)
		}
		return b.fallback(now)
	}
	back := b.f.succeeded()
	b.mu.Unlock()
	if back {
		b.s.reportRecover(b.key)
	}
	if granted == 1 {
		b.local.Withdraw(now) // keep the fallback's view of retries close
		return true
	}
	return false
}

func (b *Budget) fallback(now time.Time) bool {
	if b.s.cfg.FailClosed {
		return false
	}
	return b.local.Withdraw(now)
}

// flush sends the requests counted locally; on failure they wait for the
// next flush.
func (b *Budget) flush() {
	n := b.pending.Swap(0)
	if n == 0 {
		return
	}
	if _, err := b.s.call(budgetScript, []string{b.hkey}, n, 0, b.width.Microseconds(), b.cfg.Buckets, b.cfg.Percent, b.cfg.MinPerSecond); err != nil {
		b.pending.Add(n)
	}
}

// flushLoop sends every budget's request counts once a second, so the
// fleet sees each instance's traffic even when it retries nothing, and
// publishes each shared pace when it changes (kick) and before it lapses.
func (s *Store) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.flushAll()
			return
		case <-t.C:
			s.flushAll()
			s.sendPaces()
		case <-s.kick:
			s.sendPaces()
		}
	}
}

func (s *Store) sendPaces() {
	s.mu.Lock()
	ps := append([]*Pace(nil), s.paces...)
	s.mu.Unlock()
	now := time.Now()
	for _, p := range ps {
		p.send(now)
	}
}

func (s *Store) flushAll() {
	s.mu.Lock()
	bs := append([]*Budget(nil), s.budgets...)
	s.mu.Unlock()
	for _, b := range bs {
		b.flush()
	}
}
