package bench

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
)

// counting counts the commands a Redis client sends (a script run counts
// once, as one round trip).
type counting struct{ n atomic.Int64 }

func (c *counting) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counting) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *counting) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// BenchmarkRedisLimiter measures a rate-limit decision against a real
// redis-server on loopback, one key, a limit far above the load (so every
// decision admits): heed's leased GCRA beside go-redis/redis_rate's GCRA,
// which asks Redis for every request. It reports the p50 and p99 decision
// latency and the Redis round trips per decision:
//
//	go test -run xxx -bench RedisLimiter -benchtime 20000x
func BenchmarkRedisLimiter(b *testing.B) {
	srv := redistest.Start(b)
	for _, c := range []struct {
		name   string
		decide func(rdb *redis.Client) func() bool
	}{
		{"heed", func(rdb *redis.Client) func() bool {
			s, err := heedredis.New(rdb, heedredis.Config{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			l, err := s.Limiter("bench-heed", 1e6, 1000)
			if err != nil {
				b.Fatal(err)
			}
			return func() bool { return l.Allow(time.Now()) }
		}},
		{"redis_rate", func(rdb *redis.Client) func() bool {
			l := redis_rate.NewLimiter(rdb)
			limit := redis_rate.Limit{Rate: 1_000_000, Burst: 1000, Period: time.Second}
			return func() bool {
				res, err := l.Allow(context.Background(), "bench-redis-rate", limit)
				return err == nil && res.Allowed > 0
			}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var cnt counting
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
			defer rdb.Close()
			rdb.AddHook(&cnt)
			decide := c.decide(rdb)
			decide() // load the script
			cnt.n.Store(0)
			lat := make([]time.Duration, 0, b.N)
			admitted := 0
			for b.Loop() {
				start := time.Now()
				if decide() {
					admitted++
				}
				lat = append(lat, time.Since(start))
			}
			if admitted != len(lat) {
				b.Fatalf("%d of %d admitted under a limit far above the load", admitted, len(lat))
			}
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1000 }
			b.ReportMetric(q(0.5), "p50-µs")
			b.ReportMetric(q(0.99), "p99-µs")
			b.ReportMetric(float64(cnt.n.Load())/float64(len(lat)), "redis-calls/op")
		})
	}
}
