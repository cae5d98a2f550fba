package heedredis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/ratelimit"
)

// virtualClockScript is the rate-limit script with Redis's TIME replaced
// by a time the test passes after the script's own arguments (seconds,
// microseconds), so that it can be given exactly the instants a
// MemoryStore is.
var virtualClockScript = func() *redis.Script {
	const clock = "redis.call('TIME')"
	if strings.Count(rateLimitLua, clock) != 1 {
		panic("the rate-limit script no longer reads TIME once")
	}
	return redis.NewScript(strings.Replace(rateLimitLua, clock, "{ARGV[#ARGV - 1], ARGV[#ARGV]}", 1))
}()

// The script decides exactly as MemoryStore: the same Decision, to the
// nanosecond, for random sequences of requests of several keys, at random
// instants, against one to three windows (intervals of whole and odd
// nanoseconds), with spreads of every kind and the Delay of a Limiter
// whose waiting room fills now and then. Only the clock is the test's
// (TestRateLimitStoreMatchesMemory compares them on Redis's own).
func TestRateLimitScriptMatchesMemoryStore(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 10 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	s, err := New(rdb, Config{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	windowSets := [][]ratelimit.Window{
		{{Limit: 10, Per: time.Second, Burst: 2}},
		{{Limit: 7, Per: time.Second, Burst: 3}, {Limit: 100, Per: time.Minute, Burst: 10}}, // 142857143 ns: odd
		{{Limit: 50, Per: time.Second, Burst: 5}, {Limit: 200, Per: 10 * time.Second, Burst: 20}, {Limit: 1000, Per: time.Hour, Burst: 30}},
	}
	spreads := []ratelimit.Spread{
		{},
		{Step: time.Second, Horizon: time.Minute},
		{Step: time.Second, Hold: 250 * time.Millisecond, Horizon: 3 * time.Second},
		{Step: time.Second, Hold: time.Second, Horizon: time.Minute},
		{Step: time.Second, Hold: time.Second, Horizon: 300 * time.Millisecond},
		{Delay: 300 * time.Millisecond},
		{Step: time.Second, Hold: 100 * time.Millisecond, Horizon: 10 * time.Second, Delay: 500 * time.Millisecond},
	}
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	calls := 0
	// Instants on a grid of 10 ms make the boundaries meet (a request
	// conforming exactly at the Delay, a slot exactly on the grid or at
	// the Hold); instants of any microsecond, the rest.
	for _, grain := range []time.Duration{time.Microsecond, 10 * time.Millisecond} {
		for wi, ws := range windowSets {
			for si, sp := range spreads {
				exact(t, s, grain, wi, ws, si, sp, t0)
				calls += 200
			}
		}
	}
	t.Logf("%d decisions identical", calls)
}

// exact compares 200 decisions of a RateLimitStore on the virtual clock
// with a MemoryStore's.
func exact(t *testing.T, s *Store, grain time.Duration, wi int, ws []ratelimit.Window, si int, sp ratelimit.Spread, t0 time.Time) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(wi), uint64(si)))
	r := s.RateLimitStore(fmt.Sprintf("exact-%v-%d-%d", grain, wi, si))
	r.script, r.margin = virtualClockScript, time.Hour // the keys must not expire in real time while virtual time stands still
	mem := ratelimit.NewMemoryStore(0)
	now := t0
	key, flood := "0", 0
	for i := range 200 {
		if flood > 0 {
			flood-- // a client hammering at one instant, until its promises reach the horizon
		} else {
			switch x := rng.IntN(20); {
			case x < 7: // at once
			case x < 17:
				now = now.Add(time.Duration(rng.IntN(80_000)) * time.Microsecond).Truncate(grain)
			case x < 19:
				now = now.Add(time.Duration(rng.IntN(3_000_000)) * time.Microsecond).Truncate(grain)
			default:
				flood = 40
			}
			key = strconv.Itoa(rng.IntN(3))
		}
		spread := sp
		if spread.Delay > 0 && rng.IntN(5) == 0 {
			spread.Delay = 0 // the Limiter's waiting room is full
		}
		want, err := mem.Take(context.Background(), key, now, ws, spread)
		if err != nil {
			t.Fatal(err)
		}
		args, _, err := r.args(ws, spread)
		if err != nil {
			t.Fatal(err)
		}
		args = append(slices.Clip(args), strconv.FormatInt(now.Unix(), 10), strconv.Itoa(now.Nanosecond()/1000))
		got, err := r.remote(context.Background(), key, now, args, len(ws))
		if err != nil {
			t.Fatal(err)
		}
		if !sameDecision(got, want) {
			t.Fatalf("grain %v, windows %d, spread %+v, call %d (key %s at %v):\nRedis:  %s\nmemory: %s",
				grain, wi, spread, i, key, now.Sub(t0), describe(got, now), describe(want, now))
		}
	}
}

func sameDecision(a, b ratelimit.Decision) bool {
	return a.Allowed == b.Allowed && a.AdmitAt.Equal(b.AdmitAt) && a.ConformAt.Equal(b.ConformAt) &&
		a.RetryAt.Equal(b.RetryAt) && a.N == b.N && a.States == b.States
}

// describe shows a Decision with its times as offsets from now.
func describe(d ratelimit.Decision, now time.Time) string {
	off := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Sub(now).String()
	}
	return fmt.Sprintf("allowed %v admit %s conform %s retry %s states %v", d.Allowed, off(d.AdmitAt), off(d.ConformAt), off(d.RetryAt), d.Windows())
}

// The rate limit's keys are the package's: redisKey's fast path gives what
// Store.redisKey gives.
func TestRateLimitRedisKey(t *testing.T) {
	s := &Store{cfg: Config{Prefix: "p"}}
	for _, name := range []string{"", "api"} {
		r := s.RateLimitStore(name)
		for _, key := range []string{"", "203.0.113.9", "a{b}c", "}{", "key with spaces", "ключ"} {
			if got, want := r.redisKey(key), s.redisKey(key, r.kind); got != want {
				t.Errorf("name %q, key %q: %q, want %q", name, key, got, want)
			}
		}
	}
}
