package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
)

// DefaultMaxKeys is the default bound of a [MemoryStore]: about a million
// keys, some 100-150 MB with one or two windows.
const DefaultMaxKeys = 1 << 20

// MemoryStore is the in-memory [Store]: GCRA per key and window, kept in
// shards each under its own lock, so that requests of different keys
// rarely wait for one another. Deciding a request of a known key allocates
// nothing.
//
// Memory is bounded two ways. A key whose every window is full again, and
// whose promises have all passed, holds no information (a new key would
// start the same), and is forgotten: each decision looks at two more
// entries of its shard and drops those that have held no information for
// a minute (the grace spares a client that comes back every few seconds
// the cost of a new entry each time), and a shard mostly emptied is
// compacted; [MemoryStore.Prune] forgets them all at once, grace or not,
// for shards that see no traffic. And at most MaxKeys keys are kept: MaxKeys is split evenly
// among the shards, and a new key in a full shard evicts, of a sample of 8
// of the shard's keys, the one that will be full soonest (an idle one if
// any): the key with the least information. An evicted key starts again
// with full windows, so MaxKeys should be well above the number of keys
// active within the longest window's refill time; the bound is there for a
// flood of new keys, whose one-request entries are the first evicted.
//
// A MemoryStore learns the number of windows at its first Take and refuses
// calls with another number: use one store per [Limiter].
type MemoryStore struct {
	seed     maphash.Seed
	shards   []shard
	mask     uint64
	perShard int

	once   sync.Once
	epoch  time.Time // times are kept as nanoseconds since the first Take's now
	stride int       // int64s per entry: two per window
}

// shard holds the entries of the keys hashed to it. An entry's state lives
// in flat slices indexed by its slot, so that entries cost no allocation
// of their own and the garbage collector has few pointers to follow.
type shard struct {
	mu     sync.Mutex
	index  map[string]int32 // key -> slot
	keys   []string         // slot -> key
	expire []int64          // slot -> when the entry holds no information; freeSlot when free
	state  []int64          // slot*stride...: per window, tat then ptat
	free   []int32          // free slots
	cursor int              // the next slot the sweep looks at
	_      [64]byte         // keeps neighbouring shards' locks off one cache line
}

// freeSlot marks a free slot's expiry.
const freeSlot = math.MinInt64

// idleGrace is how long the sweep leaves an entry that holds no
// information before forgetting it.
const idleGrace = int64(time.Minute)

// sampleSize is how many entries a full shard looks at to choose one to
// evict.
const sampleSize = 8

// minPerShard keeps shards from being made so small that the sampling of
// evictions is poor.
const minPerShard = 64

// NewMemoryStore returns an empty store of at most maxKeys keys
// (DefaultMaxKeys if 0 or less).
func NewMemoryStore(maxKeys int) *MemoryStore {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && n < 256 {
		n *= 2
	}
	for n > 1 && maxKeys/n < minPerShard {
		n /= 2
	}
	s := &MemoryStore{
		seed:     maphash.MakeSeed(),
		shards:   make([]shard, n),
		mask:     uint64(n - 1),
		perShard: maxKeys / n,
	}
	for i := range s.shards {
		s.shards[i].index = make(map[string]int32)
	}
	return s
}

// Len returns the number of keys the store holds.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.index)
		sh.mu.Unlock()
	}
	return n
}

// Prune forgets every key that holds no information at now, and returns
// how many it forgot. The store forgets them by itself as its shards see
// traffic; Prune is for a program that wants memory back from shards that
// see none, on a ticker say.
func (s *MemoryStore) Prune(now time.Time) int {
	if s.Len() == 0 {
		return 0 // perhaps no epoch yet; with a key, its Take set it before taking a shard's lock
	}
	t := int64(now.Sub(s.epoch))
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for slot, e := range sh.expire {
			if e != freeSlot && e <= t {
				sh.drop(slot)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

var errWindows = errors.New("ratelimit: a MemoryStore serves one set of windows")

// Take decides one request of key at now; see [Store]. It never blocks
// for long and ignores ctx.
func (s *MemoryStore) Take(_ context.Context, key string, now time.Time, windows []Window, spread Spread) (Decision, error) {
	return s.take(key, now, windows, spread)
}

func (s *MemoryStore) take(key string, now time.Time, windows []Window, spread Spread) (Decision, error) {
	if len(windows) == 0 || len(windows) > MaxWindows {
		return Decision{}, fmt.Errorf("ratelimit: %d windows, want 1 to %d", len(windows), MaxWindows)
	}
	s.once.Do(func() { s.epoch, s.stride = now, 2*len(windows) })
	if 2*len(windows) != s.stride {
		return Decision{}, fmt.Errorf("%w: %d windows, then %d", errWindows, s.stride/2, len(windows))
	}
	t := int64(now.Sub(s.epoch))
	sh := &s.shards[maphash.String(s.seed, key)&s.mask]
	sh.mu.Lock()
	d, conform, retry := sh.take(s, key, t, windows, spread)
	sh.mu.Unlock()
	if d.Allowed && conform > t {
		d.AdmitAt = now.Add(time.Duration(conform - t))
	} else if !d.Allowed {
		d.ConformAt = now.Add(time.Duration(conform - t))
		d.RetryAt = now.Add(time.Duration(retry - t))
	}
	return d, nil
}

// take decides under the shard's lock, with times as nanoseconds since the
// store's epoch; a refusal's earliest conforming time and return slot come
// back in the same terms, and so does a reservation's slot (conform, later
// than now, with the request allowed).
func (sh *shard) take(s *MemoryStore, key string, now int64, windows []Window, spread Spread) (d Decision, conform, retry int64) {
	slot, ok := sh.index[key]
	if !ok {
		slot = sh.insert(s, key, now)
	}
	stride := s.stride
	st := sh.state[int(slot)*stride : int(slot)*stride+stride]
	d.N = len(windows)

	// The request conforms when, in every window, the theoretical arrival
	// time is within the tolerance of now.
	conform = now
	for i := range windows {
		w := &windows[i]
		tat := max(st[2*i], now)
		conform = max(conform, tat-int64(w.Tolerance()))
	}
	// A request that would conform within the spread's Delay is admitted
	// at that instant: it takes its unit as a request arriving then would,
	// and its quota is reported as at that instant.
	d.Allowed = conform <= now || conform-now <= int64(spread.Delay)
	at := now
	if d.Allowed {
		at = conform
	}
	exp := now
	for i := range windows {
		w := &windows[i]
		iv, tol := int64(w.Interval()), int64(w.Tolerance())
		tat := max(st[2*i], at)
		if d.Allowed {
			tat += iv
			st[2*i] = tat
		}
		d.States[i] = state(tat, at, iv, tol, w.Burst)
		exp = max(exp, tat, st[2*i+1])
	}
	if !d.Allowed {
		retry = conform
		if spread.Step > 0 {
			retry = promise(st, now, conform, windows, spread)
			for i := range windows {
				exp = max(exp, st[2*i+1])
			}
		}
	}
	sh.expire[slot] = exp
	sh.sweep(s, now)
	return d, conform, retry
}

// state is a window's quota at now given its theoretical arrival time.
func state(tat, now, iv, tol, burst int64) WindowState {
	ws := WindowState{Remaining: burst}
	if tat > now {
		ws.Reset = time.Duration(tat - now)
		if room := now + tol - tat; room >= 0 {
			ws.Remaining = min(room/iv+1, burst)
		} else {
			ws.Remaining = 0
		}
	}
	return ws
}

// promise gives a refused request its return slot and records it: the
// earliest instant the windows and the promises already made leave room
// for, moved onto the spread's grid. The promises are a second GCRA per
// window (ptat) over the real one: a slot at x conforms to it when
// max(ptat, tat) - tolerance <= x in every window, and then moves ptat to
// max(ptat, tat, x) + interval. So at most Burst promises share an
// instant, as many as the bucket can absorb there, and later ones are
// spaced by the interval; on the whole-second grid, at most what the
// bucket holds at each second is promised that second.
func promise(st []int64, now, conform int64, windows []Window, spread Spread) int64 {
	y := conform
	for i := range windows {
		w := &windows[i]
		base := max(st[2*i+1], st[2*i], now)
		y = max(y, base-int64(w.Tolerance()))
	}
	record := true
	if horizon := conform + int64(spread.Horizon); y > horizon {
		y, record = horizon, false
	}
	x := onGrid(now, y, int64(spread.Step), int64(spread.Hold))
	if record {
		for i := range windows {
			base := max(st[2*i+1], st[2*i], now)
			st[2*i+1] = max(base, x) + int64(windows[i].Interval())
		}
	}
	return x
}

// onGrid returns the earliest instant from y on that lies at
// now + k*step + h, for a whole k and h in [0, hold].
func onGrid(now, y, step, hold int64) int64 {
	if y <= now {
		return now
	}
	o := y - now
	k := o / step
	if o-k*step <= hold {
		return y
	}
	return now + (k+1)*step
}

// insert makes an entry for key, full in every window, evicting one if
// the shard is full.
func (sh *shard) insert(s *MemoryStore, key string, now int64) int32 {
	if len(sh.index) >= s.perShard {
		sh.evict(now)
	}
	var slot int32
	if n := len(sh.free); n > 0 {
		slot = sh.free[n-1]
		sh.free = sh.free[:n-1]
	} else {
		slot = int32(len(sh.keys))
		sh.keys = append(sh.keys, "")
		sh.expire = append(sh.expire, 0)
		for range s.stride {
			sh.state = append(sh.state, 0)
		}
	}
	// The key is often a piece of a larger string (a header's value):
	// keep only its own bytes.
	key = strings.Clone(key)
	sh.keys[slot] = key
	sh.expire[slot] = now
	st := sh.state[int(slot)*s.stride : int(slot+1)*s.stride]
	for i := range st {
		st[i] = now
	}
	sh.index[key] = slot
	return slot
}

// evict drops, of sampleSize entries from the cursor on, the one that
// will be full soonest.
func (sh *shard) evict(now int64) {
	best, bestExp := -1, int64(math.MaxInt64)
	c, seen := sh.cursor, 0
	for range len(sh.keys) {
		if c >= len(sh.keys) {
			c = 0
		}
		e := sh.expire[c]
		c++
		if e == freeSlot {
			continue
		}
		if e < bestExp {
			best, bestExp = c-1, e
			if e <= now {
				break // holds no information: nothing is lost
			}
		}
		if seen++; seen == sampleSize {
			break
		}
	}
	sh.cursor = c
	if best >= 0 {
		sh.drop(best)
	}
}

func (sh *shard) drop(slot int) {
	delete(sh.index, sh.keys[slot])
	sh.keys[slot] = ""
	sh.expire[slot] = freeSlot
	sh.free = append(sh.free, int32(slot))
}

// sweep looks at the next two entries and forgets those that have held
// no information for idleGrace. When the cursor comes round, a shard whose live
// entries fill under a quarter of its slots is compacted, so that the
// memory a flood of keys took is given back.
func (sh *shard) sweep(s *MemoryStore, now int64) {
	for range 2 {
		if sh.cursor >= len(sh.keys) {
			sh.cursor = 0
			if len(sh.keys) >= 256 && 4*len(sh.index) < len(sh.keys) {
				sh.compact(s)
			}
			return
		}
		if e := sh.expire[sh.cursor]; e != freeSlot && e <= now-idleGrace {
			sh.drop(sh.cursor)
		}
		sh.cursor++
	}
}

// compact moves the live entries into new, smaller slices and map.
func (sh *shard) compact(s *MemoryStore) {
	n := len(sh.index)
	index := make(map[string]int32, n)
	keys := make([]string, 0, n)
	expire := make([]int64, 0, n)
	state := make([]int64, 0, n*s.stride)
	for slot, key := range sh.keys {
		if sh.expire[slot] == freeSlot {
			continue
		}
		index[key] = int32(len(keys))
		keys = append(keys, key)
		expire = append(expire, sh.expire[slot])
		state = append(state, sh.state[slot*s.stride:(slot+1)*s.stride]...)
	}
	sh.index, sh.keys, sh.expire, sh.state, sh.free, sh.cursor = index, keys, expire, state, nil, 0
}
