package heedredis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/outbox"
)

// OutboxConfig configures an Outbox. The zero value of a field means its
// default.
type OutboxConfig struct {
	// Prefix starts every Redis key of the outbox. Default "heed".
	Prefix string
	// Name tells outboxes on one Redis apart; it is the keys' hash tag,
	// so it must not hold braces. Default "outbox".
	Name string
	// Consumer names this worker in the stream's consumer group, where
	// its leases are recorded (XPENDING, XINFO CONSUMERS show it). It
	// must differ between workers running at once: two workers of one
	// name share their leases. Default: the host name and a random ID,
	// new for every NewOutbox.
	Consumer string
	// Lease is how long an entry Claim handed out may stay unreported
	// before another worker's Claim takes it over, taking its worker for
	// dead. Set it well above the time a worker needs to send a batch:
	// an entry taken over from a worker still sending it goes out twice
	// (harmless where the server honours Idempotency-Key, but wasted).
	// Default 1 minute; at least a millisecond.
	Lease time.Duration
	// Timeout bounds every Redis call, within the caller's context.
	// Default 2 s: queueing a failed write is not on a request's budget,
	// and giving up early would lose it.
	Timeout time.Duration
}

func (c *OutboxConfig) defaults() {
	if c.Prefix == "" {
		c.Prefix = "heed"
	}
	if c.Name == "" {
		c.Name = "outbox"
	}
	if c.Consumer == "" {
		c.Consumer = newInstanceID()
		if host, err := os.Hostname(); err == nil && host != "" {
			c.Consumer = host + "-" + c.Consumer
		}
	}
	if c.Lease == 0 {
		c.Lease = time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
}

func (c OutboxConfig) validate() error {
	var errs []error
	if strings.ContainsAny(c.Prefix, "{}") {
		errs = append(errs, fmt.Errorf("prefix %q must not hold braces: heed adds the hash tag", c.Prefix))
	}
	if strings.ContainsAny(c.Name, "{}") {
		errs = append(errs, fmt.Errorf("outbox name %q must not hold braces: it is the keys' hash tag", c.Name))
	}
	if c.Lease < time.Millisecond {
		errs = append(errs, fmt.Errorf("lease %v: want 1ms or more (Redis counts idle time in ms)", c.Lease))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v must not be negative", c.Timeout))
	}
	return errors.Join(errs...)
}

// outboxGroup is the stream's consumer group, shared by every worker.
const outboxGroup = "workers"

// Outbox is an [outbox.Store] in Redis, shared by a fleet of workers:
// any instance may queue entries, and any number of workers claim them,
// each due entry going to one worker at a time.
//
// An entry is as durable as the server's persistence makes it: Add
// returns once Redis has the entry in memory, which survives a crash of
// the server only with appendonly yes, and then with no loss only with
// appendfsync always (everysec, Redis's default for AOF, may lose the
// last second of writes; RDB snapshots alone lose everything since the
// last one). A replica promoted after a failover may also miss the last
// writes its primary acknowledged. Where losing queued writes matters,
// use boltstore, or a Redis run with appendfsync always.
//
// Entries handed out by Claim are messages of a Redis stream read
// through a consumer group: its pending list is the lease, so a worker
// that dies with entries in hand loses them to the next worker whose
// Claim finds them unreported for Lease (Redis's clock; NextAt compares
// with the caller's). Update and Delete end the lease from any instance,
// as they find the entry's message from its ID.
//
// # Keys
//
// Every key is Prefix:outbox:{Name}:kind; the name in braces is a hash
// tag, so all keys of one outbox live in one Cluster slot and each
// script touches a single slot (and one outbox's load falls on one
// shard). The kinds: seq (the last ID), entries (hash: ID to encoded
// entry), ids (sorted set of every ID, by ID, for List), due (sorted set
// of the entries waiting, by NextAt in µs, members zero-padded IDs so
// ties go in queue order), out (the same, for the entries handed out),
// dead (set), msgs (hash: ID to the stream message leasing it) and
// stream (the stream, consumer group "workers"). Keys do not expire.
//
// It needs Redis 6.2 or later.
type Outbox struct {
	rdb  redis.UniversalClient
	cfg  OutboxConfig
	keys []string // KEYS of every script, in the order outboxLua names them

	pruneNext atomic.Int64 // when Claim next drops idle consumers, unix ns
}

var _ outbox.Store = (*Outbox)(nil)

// NewOutbox returns the outbox cfg names on rdb: a single server,
// Sentinel or Cluster client. It does not call Redis, so a service can
// start while Redis is down; the consumer group is created by the first
// Claim (and again by any Claim after the server lost its data).
func NewOutbox(rdb redis.UniversalClient, cfg OutboxConfig) (*Outbox, error) {
	cfg.defaults()
	if err := usable(rdb, cfg.validate(), "outbox calls past OutboxConfig.Timeout"); err != nil {
		return nil, err
	}
	p := cfg.Prefix + ":outbox:{" + cfg.Name + "}:"
	var keys []string
	for _, kind := range []string{"seq", "entries", "ids", "due", "out", "dead", "msgs", "stream"} {
		keys = append(keys, p+kind)
	}
	return &Outbox{rdb: rdb, cfg: cfg, keys: keys}, nil
}

// outboxLua starts every script: each gets all of the outbox's keys, in
// this order.
const outboxLua = `
local seq, entries, ids, due, out, dead, msgs, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local function member(id) return string.format('%020d', id) end
`

// outboxAddScript adds an entry (ARGV: encoding, due score, "1" if dead)
// under the next ID, and returns the ID.
var outboxAddScript = redis.NewScript(outboxLua + `
local id = string.format('%d', redis.call('INCR', seq))
redis.call('HSET', entries, id, ARGV[1])
redis.call('ZADD', ids, id, id)
if ARGV[3] == '1' then
  redis.call('SADD', dead, id)
else
  redis.call('ZADD', due, ARGV[2], member(id))
end
return id
`)

// outboxClaimScript hands out up to ARGV[5] entries to consumer ARGV[2]
// of group ARGV[1]: first the entries other workers left unreported for
// ARGV[3] ms (XPENDING IDLE finds them however long the pending list is),
// then the entries due at ARGV[4] (µs), soonest first, moved from due to
// out and into the stream, which the same script reads at once: nothing
// waits in the stream unread. Messages whose entry is gone are
// acknowledged and deleted. When ARGV[6] > 0 it also drops the consumers
// that hold no entries and were idle that many ms (every worker given a
// random name at start would otherwise stay in the group forever; one
// dropped while alive comes back with its next read). It returns ID,
// encoding pairs.
var outboxClaimScript = redis.NewScript(outboxLua + `
local group, me, lease, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[5])
local res = {}
local function take(m)
  local msg, f = m[1], m[2]
  local id = type(f) == 'table' and f[1] == 'id' and f[2]
  local enc = id and redis.call('HGET', entries, id)
  if enc then
    redis.call('HSET', msgs, id, msg)
    res[#res + 1] = id
    res[#res + 1] = enc
    return
  end
  redis.call('XACK', stream, group, msg)
  redis.call('XDEL', stream, msg)
  if id then
    if redis.call('HGET', msgs, id) == msg then
      redis.call('HDEL', msgs, id)
    end
    redis.call('ZREM', out, member(id))
  end
end
redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
local idle = redis.call('XPENDING', stream, group, 'IDLE', lease, '-', '+', max)
for i = 1, #idle, 100 do
  local batch = {}
  for j = i, math.min(i + 99, #idle) do batch[#batch + 1] = idle[j][1] end
  for _, m in ipairs(redis.call('XCLAIM', stream, group, me, lease, unpack(batch))) do
    if m then take(m) end
  end
end
local n = max - #res / 2
if n > 0 then
  local d = redis.call('ZRANGEBYSCORE', due, '-inf', ARGV[4], 'WITHSCORES', 'LIMIT', 0, n)
  for i = 1, #d, 2 do
    redis.call('ZREM', due, d[i])
    local id = string.match(d[i], '^0*(%d+)$')
    if id then
      redis.call('ZADD', out, d[i + 1], d[i])
      redis.call('HSET', msgs, id, redis.call('XADD', stream, '*', 'id', id))
    end
  end
  local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', n, 'STREAMS', stream, '>')
  if r then
    for _, m in ipairs(r[1][2]) do take(m) end
  end
end
local prune = tonumber(ARGV[6])
if prune > 0 then
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local f = {}
    for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
    if f.name ~= me and f.pending == 0 and f.idle >= prune then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, f.name)
    end
  end
end
return res
`)

// endLeaseLua acknowledges and deletes msg, the stream message leasing
// entry id, if any (the group may be gone with a server's data).
const endLeaseLua = `
local function endLease(id, msg, group)
  if msg then
    redis.pcall('XACK', stream, group, msg)
    redis.call('XDEL', stream, msg)
    redis.call('HDEL', msgs, id)
  end
end
`

// outboxUpdateScript writes entry ARGV[1] (ARGV: ID, member, encoding,
// due score, "1" if dead, consumer, group) and ends its lease. It returns
// 1, or 0 when the entry is gone, or -1 when another consumer holds its
// lease.
var outboxUpdateScript = redis.NewScript(outboxLua + endLeaseLua + `
local id, m = ARGV[1], ARGV[2]
local msg = redis.call('HGET', msgs, id)
if redis.call('HEXISTS', entries, id) == 0 then
  endLease(id, msg, ARGV[7])
  return 0
end
if msg then
  local p = redis.pcall('XPENDING', stream, ARGV[7], msg, msg, 1)
  if not p.err and p[1] and p[1][2] ~= ARGV[6] then
    return -1
  end
end
endLease(id, msg, ARGV[7])
redis.call('ZREM', out, m)
redis.call('HSET', entries, id, ARGV[3])
if ARGV[5] == '1' then
  redis.call('ZREM', due, m)
  redis.call('SADD', dead, id)
else
  redis.call('SREM', dead, id)
  redis.call('ZADD', due, ARGV[4], m)
end
return 1
`)

// outboxDeleteScript removes entry ARGV[1] (ARGV: ID, member, group)
// whoever holds its lease, and returns 1, or 0 when there was none.
var outboxDeleteScript = redis.NewScript(outboxLua + endLeaseLua + `
local id, m = ARGV[1], ARGV[2]
endLease(id, redis.call('HGET', msgs, id), ARGV[3])
redis.call('ZREM', ids, id)
redis.call('ZREM', due, m)
redis.call('ZREM', out, m)
redis.call('SREM', dead, id)
return redis.call('HDEL', entries, id)
`)

// outboxListScript returns ID, encoding pairs of up to ARGV[2] entries
// with IDs from ARGV[1] (a ZRANGEBYSCORE bound) on.
var outboxListScript = redis.NewScript(outboxLua + `
local res = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ids, ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])) do
  local enc = redis.call('HGET', entries, id)
  if enc then
    res[#res + 1] = id
    res[#res + 1] = enc
  end
end
return res
`)

// outboxStatsScript returns the number of entries, of dead ones, and the
// lowest due scores of the waiting and the handed-out ones ("" if none).
var outboxStatsScript = redis.NewScript(outboxLua + `
local function first(z)
  return redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')[2] or ''
end
return {redis.call('ZCARD', ids), redis.call('SCARD', dead), first(due), first(out)}
`)

// run runs script under the outbox's timeout.
func (o *Outbox) run(ctx context.Context, script *redis.Script, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	return script.Run(ctx, o.rdb, o.keys, args...).Result()
}

// Add implements [outbox.Store] in one round trip. The entry is as
// durable as the server's persistence (see [Outbox]) when it returns.
func (o *Outbox) Add(ctx context.Context, e *outbox.Entry) error {
	enc, err := encode(e)
	if err != nil {
		return fmt.Errorf("heedredis: outbox add: %w", err)
	}
	res, err := o.run(ctx, outboxAddScript, enc, dueScore(e.NextAt), flag(e.Dead))
	if err != nil {
		return fmt.Errorf("heedredis: outbox add: %w", err)
	}
	id, ok := res.(string)
	if _, valid := parseID(id); !ok || !valid {
		return fmt.Errorf("heedredis: outbox add: unexpected reply %v", res)
	}
	e.ID = id
	return nil
}

// Claim implements [outbox.Store] in one round trip, which keeps Redis
// busy in proportion to max and to the number of entries leased. An
// entry taken over from a worker whose lease ran out was due when that
// worker claimed it, and is not checked against now again. Entries that
// do not decode stay leased; the error names them, beside the entries
// that did decode.
func (o *Outbox) Claim(ctx context.Context, now time.Time, max int) ([]*outbox.Entry, error) {
	if max <= 0 {
		return nil, ctx.Err()
	}
	prune := int64(0)
	if t, next := time.Now().UnixNano(), o.pruneNext.Load(); t >= next && o.pruneNext.CompareAndSwap(next, t+int64(o.cfg.Lease)) {
		prune = o.cfg.Lease.Milliseconds()
	}
	res, err := o.run(ctx, outboxClaimScript, outboxGroup, o.cfg.Consumer, o.cfg.Lease.Milliseconds(),
		now.UnixMicro(), max, prune)
	if err != nil {
		return nil, fmt.Errorf("heedredis: outbox claim: %w", err)
	}
	out, err := decodePairs(res)
	slices.SortFunc(out, func(a, b *outbox.Entry) int {
		return cmp.Or(a.NextAt.Compare(b.NextAt), compareIDs(a.ID, b.ID))
	})
	if err != nil {
		return out, fmt.Errorf("heedredis: outbox claim: %w", err)
	}
	return out, nil
}

// Update implements [outbox.Store]. It works on an entry the caller did
// not claim too (an operator reviving a dead entry), unless another
// worker holds it: then it returns [outbox.ErrLeaseLost].
func (o *Outbox) Update(ctx context.Context, e *outbox.Entry) error {
	seq, ok := parseID(e.ID)
	if !ok {
		return outbox.ErrNotFound
	}
	enc, err := encode(e)
	if err != nil {
		return fmt.Errorf("heedredis: outbox update: %w", err)
	}
	res, err := o.run(ctx, outboxUpdateScript, e.ID, member(seq), enc, dueScore(e.NextAt), flag(e.Dead),
		o.cfg.Consumer, outboxGroup)
	if err != nil {
		return fmt.Errorf("heedredis: outbox update: %w", err)
	}
	switch res {
	case int64(1):
		return nil
	case int64(0):
		return outbox.ErrNotFound
	case int64(-1):
		return outbox.ErrLeaseLost
	}
	return fmt.Errorf("heedredis: outbox update: unexpected reply %v", res)
}

// Delete implements [outbox.Store]. It ends the entry's lease whoever
// holds it: a worker whose lease ran out may still delete the entry it
// delivered, and the worker that took it over then gets ErrNotFound from
// Update.
func (o *Outbox) Delete(ctx context.Context, id string) error {
	seq, ok := parseID(id)
	if !ok {
		return outbox.ErrNotFound
	}
	res, err := o.run(ctx, outboxDeleteScript, id, member(seq), outboxGroup)
	if err != nil {
		return fmt.Errorf("heedredis: outbox delete: %w", err)
	}
	switch res {
	case int64(1):
		return nil
	case int64(0):
		return outbox.ErrNotFound
	}
	return fmt.Errorf("heedredis: outbox delete: unexpected reply %v", res)
}

// Get implements [outbox.Store].
func (o *Outbox) Get(ctx context.Context, id string) (*outbox.Entry, error) {
	if _, ok := parseID(id); !ok {
		return nil, outbox.ErrNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	enc, err := o.rdb.HGet(ctx, o.keys[1], id).Bytes()
	if err == redis.Nil {
		return nil, outbox.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("heedredis: outbox get: %w", err)
	}
	e := new(outbox.Entry)
	if err := e.UnmarshalBinary(enc); err != nil {
		return nil, fmt.Errorf("heedredis: outbox entry %s: %w", id, err)
	}
	e.ID = id
	return e, nil
}

// List implements [outbox.Store] in one round trip. An after that is not
// an ID is an error.
func (o *Outbox) List(ctx context.Context, after string, limit int) ([]*outbox.Entry, error) {
	if limit <= 0 {
		return nil, ctx.Err()
	}
	from := "-inf"
	if after != "" {
		if _, err := strconv.ParseUint(after, 10, 64); err != nil {
			return nil, fmt.Errorf("heedredis: outbox list after %q: not an entry ID", after)
		}
		from = "(" + after
	}
	res, err := o.run(ctx, outboxListScript, from, limit)
	if err != nil {
		return nil, fmt.Errorf("heedredis: outbox list: %w", err)
	}
	out, err := decodePairs(res)
	if err != nil {
		return nil, fmt.Errorf("heedredis: outbox list: %w", err)
	}
	return out, nil
}

// Stats implements [outbox.Store] in one round trip. Pending counts the
// entries handed out and not yet reported too, and NextAt is theirs when
// they are the soonest: that is when they were due; it is rounded up to
// the microsecond, and an entry due before 1970 counts as due in 1970.
func (o *Outbox) Stats(ctx context.Context) (outbox.Stats, error) {
	res, err := o.run(ctx, outboxStatsScript)
	if err != nil {
		return outbox.Stats{}, fmt.Errorf("heedredis: outbox stats: %w", err)
	}
	v, ok := res.([]any)
	if !ok || len(v) != 4 {
		return outbox.Stats{}, fmt.Errorf("heedredis: outbox stats: unexpected reply %v", res)
	}
	all, ok1 := v[0].(int64)
	dead, ok2 := v[1].(int64)
	if !ok1 || !ok2 {
		return outbox.Stats{}, fmt.Errorf("heedredis: outbox stats: unexpected reply %v", res)
	}
	st := outbox.Stats{Pending: int(all - dead), Dead: int(dead)}
	for _, s := range v[2:] {
		s, _ := s.(string)
		if s == "" {
			continue
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return outbox.Stats{}, fmt.Errorf("heedredis: outbox stats: unexpected score %q", s)
		}
		if at := time.UnixMicro(int64(f)); st.NextAt.IsZero() || at.Before(st.NextAt) {
			st.NextAt = at
		}
	}
	return st, nil
}

// encode returns e's encoding without its ID: the ID is the entry's hash
// field, and a copy would only risk disagreeing with it.
func encode(e *outbox.Entry) ([]byte, error) {
	c := *e
	c.ID = ""
	return c.MarshalBinary()
}

// decodePairs decodes a script's ID, encoding pairs. Entries that do not
// decode are left out and named in the error.
func decodePairs(res any) ([]*outbox.Entry, error) {
	v, ok := res.([]any)
	if !ok || len(v)%2 != 0 {
		return nil, fmt.Errorf("unexpected reply %T", res)
	}
	out := make([]*outbox.Entry, 0, len(v)/2)
	var errs []error
	for i := 0; i < len(v); i += 2 {
		id, ok1 := v[i].(string)
		enc, ok2 := v[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("unexpected reply %T, %T", v[i], v[i+1])
		}
		e := new(outbox.Entry)
		if err := e.UnmarshalBinary([]byte(enc)); err != nil {
			errs = append(errs, fmt.Errorf("entry %s: %w", id, err))
			continue
		}
		e.ID = id
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

// dueScore is the score of an entry due at t: µs since the Unix epoch
// (exact in a float64 until the year 2255), rounded up so that no entry
// is claimed before its time, and 0 for times before 1970.
func dueScore(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return max(us, 0)
}

// parseID parses an entry ID, refusing any other spelling of its number
// ("007"), which would name another entry's member in the sorted sets.
func parseID(id string) (uint64, bool) {
	seq, err := strconv.ParseUint(id, 10, 64)
	return seq, err == nil && seq > 0 && strconv.FormatUint(seq, 10) == id
}

// member is an entry's member in the due and out sets: its ID zero-padded
// so that entries due at once sort in the order they were added.
func member(seq uint64) string { return fmt.Sprintf("%020d", seq) }

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// compareIDs orders decimal IDs by their numbers.
func compareIDs(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
}
