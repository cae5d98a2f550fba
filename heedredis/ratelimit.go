package heedredis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/ratelimit"
)

// rateLimitLua decides one request of a ratelimit.Limiter's client key
// against all its windows at once, as ratelimit.MemoryStore does, on
// Redis's clock. KEYS[1] holds the key's state: 2n+1 little-endian
// doubles, the Redis time it was written at (µs), then per window its
// theoretical arrival time and that of its schedule of promises (ns after
// that time); a state of another length (another number of windows)
// starts afresh. Every time is handled relative to now (0), so that the
// numbers stay far below 2^53, where Lua's doubles stop being exact: ns
// since 1970 would not be. A time past, as a window full again, is kept
// as now: MemoryStore reads every time as at least now.
//
// ARGV: windows n; the spread's Delay, Step, Hold and Horizon (ns); the
// TTL margin (ms); then per window its interval, tolerance (ns) and burst.
//
// It returns 3+2n little-endian int64s: allowed (1 or 0), the earliest
// conforming time and the return slot (ns after Redis's now; for an
// admitted request the first is its reserved slot, 0 when admitted at
// once), then per window the remaining count and the reset (ns).
//
// The state and the reply are packed with Redis's struct library rather
// than written as text: formatting and parsing numbers took a third of
// the script's time.
const rateLimitLua = `
local max, floor = math.max, math.floor
local n = tonumber(ARGV[1])
local delay, step, hold, horizon = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local st = {}
local raw = redis.call('GET', KEYS[1])
if raw and #raw == 8 * (2 * n + 1) then st = {struct.unpack('<' .. string.rep('d', 2 * n + 1), raw)} end
local shift = 0
if st[1] then shift = (now - st[1]) * 1000 end
local conform = 0
for i = 1, n do
  local tat = max((st[2 * i] or 0) - shift, 0)
  st[2 * i] = tat
  st[2 * i + 1] = max((st[2 * i + 1] or 0) - shift, 0)
  conform = max(conform, tat - tonumber(ARGV[5 + 3 * i]))
end
local allowed = conform <= 0 or conform <= delay
local at = 0
local out = {0, conform, conform}
if allowed then at, out[1] = conform, 1 end
local y = conform
for i = 1, n do
  local a = 4 + 3 * i
  local iv, tol, burst = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local x = max(st[2 * i], at)
  if allowed then
    x = x + iv
    st[2 * i] = x
  end
  local rem, reset = burst, 0
  if x > at then
    reset = x - at
    local room = at + tol - x
    if room >= 0 then
      local q = floor(room / iv)
      if q * iv > room then q = q - 1 elseif (q + 1) * iv <= room then q = q + 1 end
      rem = q + 1
      if rem > burst then rem = burst end
    else
      rem = 0
    end
  end
  out[2 + 2 * i], out[3 + 2 * i] = rem, reset
  y = max(y, max(st[2 * i + 1], st[2 * i]) - tol)
end
local write = allowed
if not allowed and step > 0 then
  local record = true
  if y > conform + horizon then
    y, record = conform + horizon, false
  end
  local x = 0
  if y > 0 then
    local k = floor(y / step)
    if k * step > y then k = k - 1 elseif (k + 1) * step <= y then k = k + 1 end
    if y - k * step <= hold then x = y else x = (k + 1) * step end
  end
  if record then
    for i = 1, n do st[2 * i + 1] = max(st[2 * i + 1], st[2 * i], x) + tonumber(ARGV[4 + 3 * i]) end
    write = true
  end
  out[3] = x
end
if write then
  st[1] = now
  local exp = 0
  for i = 2, 2 * n + 1 do exp = max(exp, st[i]) end
  redis.call('SET', KEYS[1], struct.pack('<' .. string.rep('d', 2 * n + 1), unpack(st, 1, 2 * n + 1)), 'PX', math.ceil(exp / 1000000) + tonumber(ARGV[6]))
end
return struct.pack('<' .. string.rep('i8', 3 + 2 * n), unpack(out))
`

var rateLimitScript = redis.NewScript(rateLimitLua)

// rateLimitMargin is how long a key's state outlives the information it
// holds: its windows full again and its promises passed. A key that
// expires holds nothing a new key would not; the margin covers rounding.
const rateLimitMargin = time.Second

// RateLimitStore is a ratelimit.Store kept in Redis: the server-side rate
// limit of a fleet, one limit per client key for every instance whose
// Store uses the same Redis. Give it to ratelimit.Config.Store; it
// decides as ratelimit.MemoryStore does (every window at once, the
// schedule of promised return slots, the reservations of MaxDelay), in one
// Lua script per request on Redis's clock. See "The server's rate limit"
// in the package documentation for what it costs, how far the fleet can
// overshoot and what happens when Redis fails.
//
// Like a MemoryStore, it learns the number of windows at its first Take
// and refuses calls with another number: use one per ratelimit.Limiter.
// It is safe for concurrent use.
type RateLimitStore struct {
	s      *Store
	kind   string        // the Redis keys' kind; also the key OnFault and OnRecover are told
	script *redis.Script // rateLimitScript; tests give one on a clock of their own
	margin time.Duration // rateLimitMargin; tests lengthen it

	n      atomic.Int32             // windows, learnt at the first Take
	params atomic.Pointer[rlParams] // the script's arguments for the windows and spreads last seen
	local  *ratelimit.MemoryStore   // the fallback while Redis fails

	down    atomic.Bool // f.down, read without the lock
	mu      sync.Mutex
	f       fault
	probing bool // a call is asking Redis whether it is back
}

var _ ratelimit.Store = (*RateLimitStore)(nil)

// RateLimitStore returns a ratelimit.Store in Redis for one
// ratelimit.Limiter. Instances whose Stores share a Redis share the limit
// of each client key when they use the same name; name ("" is fine when
// there is one limit) keeps the limits of different Limiters apart, each
// Limiter with its own RateLimitStore. The Redis key of a client key is
// Prefix:{client key}:ratelimit, or ...:ratelimit:name.
//
// While Redis fails, each instance decides alone, on windows whose rate
// and burst are Config.FallbackShare of the Limiter's; with
// Config.FailClosed it refuses instead. Config.OnFault and OnRecover are
// told the kind (ratelimit or ratelimit:name), never a client key.
func (s *Store) RateLimitStore(name string) *RateLimitStore {
	kind := "ratelimit"
	if name != "" {
		kind += ":" + name
	}
	return &RateLimitStore{s: s, kind: kind, script: rateLimitScript, margin: rateLimitMargin, local: ratelimit.NewMemoryStore(0)}
}

// rlParams is what a Take needs beside the key, built once for a set of
// windows: the script's arguments for the last two spreads seen (a
// Limiter asks with its spread, or with Delay zeroed when MaxWaiting
// requests wait), and the fallback's windows. It is never modified once
// published.
type rlParams struct {
	iv, tol, burst []int64
	wargs          []any              // per window: interval, tolerance, burst
	local          []ratelimit.Window // the windows scaled by FallbackShare
	spread         [2]ratelimit.Spread
	args           [2][]any // the script's ARGV for spread[i]; nil when unused
	last           int      // the slot filled last; the next goes in the other
}

var errRateLimitWindows = errors.New("heedredis: a RateLimitStore serves one set of windows")

// args returns the script's arguments for windows and spread, and the
// params they come from.
func (r *RateLimitStore) args(windows []ratelimit.Window, spread ratelimit.Spread) ([]any, *rlParams, error) {
	n := len(windows)
	if n == 0 || n > ratelimit.MaxWindows {
		return nil, nil, fmt.Errorf("heedredis: %d windows, want 1 to %d", n, ratelimit.MaxWindows)
	}
	if !r.n.CompareAndSwap(0, int32(n)) { // the first Take sets n; the others must agree
		if m := int(r.n.Load()); m != n {
			return nil, nil, fmt.Errorf("%w: %d windows, then %d", errRateLimitWindows, m, n)
		}
	}
	p := r.params.Load()
	if p == nil || !p.fits(windows) {
		p = r.newParams(windows)
	} else {
		for i := range p.spread {
			if p.args[i] != nil && p.spread[i] == spread {
				return p.args[i], p, nil
			}
		}
	}
	// A new spread (or new windows): a new snapshot with its arguments in
	// the older slot. Racing calls may each build one; the last stored
	// stays.
	q := *p
	i := 1 - q.last
	args := make([]any, 0, 6+len(q.wargs))
	args = append(args, strconv.Itoa(n), nanos(spread.Delay), nanos(spread.Step), nanos(spread.Hold), nanos(spread.Horizon),
		strconv.FormatInt(r.margin.Milliseconds(), 10))
	args = append(args, q.wargs...)
	q.spread[i], q.args[i], q.last = spread, args, i
	r.params.Store(&q)
	return args, &q, nil
}

func nanos(d time.Duration) string { return strconv.FormatInt(int64(d), 10) }

// fits reports whether p was built for windows.
func (p *rlParams) fits(windows []ratelimit.Window) bool {
	if len(windows) != len(p.iv) {
		return false
	}
	for i := range windows {
		w := &windows[i]
		if int64(w.Interval()) != p.iv[i] || int64(w.Tolerance()) != p.tol[i] || w.Burst != p.burst[i] {
			return false
		}
	}
	return true
}

// newParams builds the params of windows, without spreads.
func (r *RateLimitStore) newParams(windows []ratelimit.Window) *rlParams {
	share := r.s.cfg.FallbackShare
	p := &rlParams{last: 1}
	for _, w := range windows {
		iv, tol := int64(w.Interval()), int64(w.Tolerance())
		p.iv, p.tol, p.burst = append(p.iv, iv), append(p.tol, tol), append(p.burst, w.Burst)
		p.wargs = append(p.wargs, strconv.FormatInt(iv, 10), strconv.FormatInt(tol, 10), strconv.FormatInt(w.Burst, 10))
		// The fallback keeps Limit and lengthens Per by 1/share, which
		// scales the rate exactly, where scaling Limit would round it
		// (a limit of 1 a second shared by 20 would stay 1 a second on
		// each); the burst cannot be less than 1.
		per := float64(w.Per) / share
		p.local = append(p.local, ratelimit.Window{
			Name:  w.Name,
			Limit: w.Limit,
			Per:   time.Duration(min(per, float64(math.MaxInt64/4))),
			Burst: max(1, int64(float64(w.Burst)*share)),
		})
	}
	return p
}

// Take decides one request of key at now; see ratelimit.Store. It asks
// Redis, under Config.Timeout; while Redis fails it decides on the
// instance's local windows (FallbackShare of the limit), or refuses with
// FailClosed: a Redis fault never makes it return an error, which would
// let the request through. It returns an error only for windows it cannot
// serve: none, more than ratelimit.MaxWindows, or another number than at
// its first call.
func (r *RateLimitStore) Take(ctx context.Context, key string, now time.Time, windows []ratelimit.Window, spread ratelimit.Spread) (ratelimit.Decision, error) {
	args, p, err := r.args(windows, spread)
	if err != nil {
		return ratelimit.Decision{}, err
	}
	probe, ok := r.onRedis(now)
	if !ok {
		return r.fallback(key, now, p, spread)
	}
	d, err := r.remote(ctx, key, now, args, len(windows))
	if err != nil || probe || r.down.Load() {
		r.done(now, probe, err)
	}
	if err != nil {
		return r.fallback(key, now, p, spread)
	}
	return d, nil
}

// onRedis says whether a call at now asks Redis, and whether it does as
// the probe that finds out whether Redis is back: while Redis fails, the
// instance keeps to its local windows for Config.Retry, then one call at
// a time asks Redis while the others keep deciding locally, so that a
// Redis still down holds up one request per Retry, not all that come.
func (r *RateLimitStore) onRedis(now time.Time) (probe, ok bool) {
	if !r.down.Load() {
		return false, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.f.down:
		return false, true
	case r.probing || now.Before(r.f.until):
		return false, false
	}
	r.probing = true
	return true, true
}

// done records how a call to Redis went. Only the probe brings the store
// back: a call that went out before Redis failed and answered after says
// nothing of Redis now.
func (r *RateLimitStore) done(now time.Time, probe bool, err error) {
	var left, back bool
	r.mu.Lock()
	if probe {
		r.probing = false
	}
	if err != nil {
		left = r.f.failed(now, r.s.cfg.Retry)
		r.down.Store(true)
	} else if probe {
		back = r.f.succeeded()
		r.down.Store(false)
	}
	r.mu.Unlock()
	if left {
		r.s.reportFault(r.kind, err)
	}
	if back {
		r.s.reportRecover(r.kind)
	}
}

// remote runs the script for key and turns its answer into a Decision,
// its offsets from Redis's now counted from the caller's now. Both say
// when a reserved slot or a return slot comes: the caller waits for it
// from the reply on, after Redis's now, so a slot is never used early.
func (r *RateLimitStore) remote(ctx context.Context, key string, now time.Time, args []any, n int) (ratelimit.Decision, error) {
	// The request's values (a trace) go along, not its cancellation: a
	// client gone is no fault of Redis.
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.s.cfg.Timeout)
	defer cancel()
	reply, err := r.script.Run(ctx, r.s.rdb, []string{r.redisKey(key)}, args...).Text()
	if err != nil {
		return ratelimit.Decision{}, err
	}
	d, ok := parseDecision(reply, now, n)
	if !ok {
		return ratelimit.Decision{}, fmt.Errorf("heedredis: unexpected rate-limit reply %x", reply)
	}
	return d, nil
}

// redisKey is s.redisKey(key, r.kind), without its allocations for the
// usual key, which needs no replacing.
func (r *RateLimitStore) redisKey(key string) string {
	if key == "" || strings.ContainsAny(key, "{}") {
		return r.s.redisKey(key, r.kind)
	}
	return r.s.cfg.Prefix + ":{" + key + "}:" + r.kind
}

// parseDecision reads the script's reply: allowed, conform, retry, then a
// remaining count and a reset per window; little-endian int64s, the times
// in ns after Redis's now.
func parseDecision(reply string, now time.Time, n int) (d ratelimit.Decision, ok bool) {
	if len(reply) != 8*(3+2*n) {
		return d, false
	}
	v := func(i int) int64 {
		b := reply[8*i : 8*i+8]
		return int64(uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56)
	}
	for i := range 3 + 2*n {
		if v(i) < 0 {
			return d, false
		}
	}
	if v(0) > 1 {
		return d, false
	}
	d.Allowed, d.N = v(0) == 1, n
	switch {
	case d.Allowed && v(1) > 0:
		d.AdmitAt = now.Add(time.Duration(v(1)))
	case !d.Allowed:
		d.ConformAt = now.Add(time.Duration(v(1)))
		d.RetryAt = now.Add(time.Duration(v(2)))
	}
	for w := range n {
		d.States[w] = ratelimit.WindowState{Remaining: v(3 + 2*w), Reset: time.Duration(v(4 + 2*w))}
	}
	return d, true
}

// fallback decides while Redis fails: on the instance's local windows, or
// a refusal until Retry has passed with FailClosed.
func (r *RateLimitStore) fallback(key string, now time.Time, p *rlParams, spread ratelimit.Spread) (ratelimit.Decision, error) {
	if r.s.cfg.FailClosed {
		retry := r.s.cfg.Retry
		d := ratelimit.Decision{ConformAt: now.Add(retry), RetryAt: now.Add(retry), N: len(p.iv)}
		for i := range d.N {
			d.States[i] = ratelimit.WindowState{Reset: retry}
		}
		return d, nil
	}
	return r.local.Take(context.Background(), key, now, p.local, spread)
}
