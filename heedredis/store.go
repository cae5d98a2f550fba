package heedredis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config configures a Store. The zero value of a field means its default.
type Config struct {
	// Prefix starts every Redis key heed writes. Default "heed".
	Prefix string
	// Timeout bounds every Redis call. Default 50 ms: a request never
	// waits longer than this for Redis.
	Timeout time.Duration
	// Lease is how many rate-limit slots one round trip reserves for an
	// instance. Default 8: a busy instance calls Redis once per 8
	// requests; the fleet can run ahead of the limit by at most Lease
	// slots per instance, and only within MaxStale (see the docs).
	Lease int
	// MaxStale is how long after its time a leased slot may still be used;
	// older ones are dropped unused. Default 100 ms.
	MaxStale time.Duration
	// Retry is how long an instance keeps to its local state after Redis
	// failed, before it asks Redis again. Default 1 s.
	Retry time.Duration
	// FailClosed refuses requests (heed returns ErrThrottled, and the
	// budget refuses retries) while Redis cannot be reached, instead of
	// falling back to the instance's local state.
	FailClosed bool
	// FallbackShare is the share of a shared rate limit an instance keeps
	// to on its own while Redis cannot be reached. Default 1 (the whole
	// limit, right for one instance); a fleet of N should set 1/N.
	FallbackShare float64
	// OnFault is called when a key leaves Redis for its local state
	// (err says why), and OnRecover when it is back on Redis. Both may be
	// nil; they are called outside any lock.
	OnFault   func(key string, err error)
	OnRecover func(key string)
	// Logger, if set, logs faults (Warn) and recoveries (Info).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "heed"
	}
	if c.Timeout == 0 {
		c.Timeout = 50 * time.Millisecond
	}
	if c.Lease == 0 {
		c.Lease = 8
	}
	if c.MaxStale == 0 {
		c.MaxStale = 100 * time.Millisecond
	}
	if c.Retry == 0 {
		c.Retry = time.Second
	}
	if c.FallbackShare == 0 {
		c.FallbackShare = 1
	}
}

func (c Config) validate() error {
	var errs []error
	if strings.ContainsAny(c.Prefix, "{}") {
		errs = append(errs, fmt.Errorf("prefix %q must not hold braces: heed adds the hash tag", c.Prefix))
	}
	if c.Timeout < 0 || c.MaxStale < 0 || c.Retry < 0 {
		errs = append(errs, fmt.Errorf("timeout %v, max stale %v and retry %v must not be negative", c.Timeout, c.MaxStale, c.Retry))
	}
	if c.Lease < 1 || c.Lease > 1000 {
		errs = append(errs, fmt.Errorf("lease %d: want 1 to 1000", c.Lease))
	}
	if !(c.FallbackShare > 0 && c.FallbackShare <= 1) {
		errs = append(errs, fmt.Errorf("fallback share %v: want (0, 1]", c.FallbackShare))
	}
	return errors.Join(errs...)
}

// Store keeps heed's per-key state in Redis for a fleet of instances: a
// rate limit ([Store.Limiter]) and a retry budget ([Store.Budget]). One
// Store per instance (per Redis client) is enough; it is safe for
// concurrent use.
type Store struct {
	rdb redis.UniversalClient
	cfg Config

	id   string // this instance, in the fleet's shared pace
	kick chan struct{}

	mu      sync.Mutex
	budgets []*Budget // flushed by the background loop
	paces   []*Pace   // published by the background loop
	stop    chan struct{}
	done    chan struct{}
}

// usable checks a client and a config's validation, in that order; held
// says what a client that ignores deadlines would hold up.
func usable(rdb redis.UniversalClient, invalid error, held string) error {
	switch {
	case rdb == nil:
		return errors.New("heedredis: nil Redis client")
	case invalid != nil:
		return fmt.Errorf("heedredis: %w", invalid)
	case !honoursContext(rdb):
		return errors.New("heedredis: the Redis client ignores context deadlines, so a slow Redis would hold " + held + "; set ContextTimeoutEnabled: true in its options")
	}
	return nil
}

// New returns a Store on rdb: a single server, Sentinel or Cluster client.
// Close stops its background flushing.
func New(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	cfg.defaults()
	if err := usable(rdb, cfg.validate(), "requests past Config.Timeout"); err != nil {
		return nil, err
	}
	s := &Store{rdb: rdb, cfg: cfg, id: newInstanceID(), kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go s.flushLoop()
	return s, nil
}

// honoursContext reports whether rdb bounds its calls by their context's
// deadline (go-redis does only with ContextTimeoutEnabled). Clients of
// other types are taken to.
func honoursContext(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

// Close stops the Store's background work and flushes what it counted.
// It does not close the Redis client.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	<-s.done
	return nil
}

// redisKey is the key of kind for key: the prefix and key inside a hash
// tag, so every key of one heed key lives in one Cluster slot. The empty
// key (heed.Do's default) is "-"; braces in a key would end the hash tag
// early, so they become parentheses.
func (s *Store) redisKey(key, kind string) string {
	if key == "" {
		key = "-"
	}
	key = strings.NewReplacer("{", "(", "}", ")").Replace(key)
	return s.cfg.Prefix + ":{" + key + "}:" + kind
}

// call runs a script under the Store's timeout.
func (s *Store) call(script *redis.Script, keys []string, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	return script.Run(ctx, s.rdb, keys, args...).Result()
}

// fault tracks whether a key is on Redis or on its local state.
type fault struct {
	until time.Time // local state until then
	down  bool
}

// failed records a Redis failure at now; it reports whether the key just
// left Redis.
func (f *fault) failed(now time.Time, retry time.Duration) bool {
	f.until = now.Add(retry)
	left := !f.down
	f.down = true
	return left
}

// succeeded records a Redis success; it reports whether the key just came
// back.
func (f *fault) succeeded() bool {
	back := f.down
	f.down, f.until = false, time.Time{}
	return back
}

func (s *Store) reportFault(key string, err error) {
	if s.cfg.OnFault != nil {
		s.cfg.OnFault(key, err)
	}
	if s.cfg.Logger != nil {
		s.cfg.Logger.Warn("heedredis: Redis failed; using local state", slog.String("key", key), slog.String("error", err.Error()))
	}
}

func (s *Store) reportRecover(key string) {
	if s.cfg.OnRecover != nil {
		s.cfg.OnRecover(key)
	}
	if s.cfg.Logger != nil {
		s.cfg.Logger.Info("heedredis: Redis is back; using shared state", slog.String("key", key))
	}
}
