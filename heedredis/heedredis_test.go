package heedredis_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/internal/outboxcrash"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{}) // the fault tests make go-redis log every refused dial
	if c, ok := outboxcrash.ChildConfig(); ok {
		os.Exit(worker(c))
	}
	goleak.VerifyTestMain(m)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func store(t *testing.T, rdb redis.UniversalClient, cfg heedredis.Config) *heedredis.Store {
	t.Helper()
	s, err := heedredis.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// patient is for the tests of what heedredis does while Redis is healthy:
// a Store on its own patientClient, whose calls give up only after 10 s,
// far beyond any round trip to a live Redis however loaded the machine is
// (the Store gives up after 50 ms by default, and -race on a busy machine
// can take that long). A call that timed out would put its key on the
// instance's local state (a local limit of the whole rate, a local budget,
// its own pace and breaker), the fallback TestFaults and
// TestFleetSurvivesRedisKilled cover; elsewhere it would be mistaken for
// the shared state's rule, so a fault fails the test with its cause.
func patient(t *testing.T, srv *redistest.Server, cfg heedredis.Config) *heedredis.Store {
	t.Helper()
	return store(t, patientClient(t, srv), patientConfig(t, cfg))
}

// patientConfig is cfg with patient's timeout and fault check.
func patientConfig(t *testing.T, cfg heedredis.Config) heedredis.Config {
	cfg.Timeout = 10 * time.Second
	cfg.OnFault = func(key string, err error) {
		t.Errorf("Redis failed for %q, so the instance left the shared state for its own: %v", key, err)
	}
	return cfg
}

// patientClient is a client of srv whose own timeouts are 10 s, so that
// only its calls' contexts bound them (redistest's client gives up after
// 100 ms, which a loaded machine can take).
func patientClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 10 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxRetries: -1,
		ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Three instances share one limit: within a second they get the burst and
// a second's worth of slots between them, no more.
func TestLimiterSharesOneLimit(t *testing.T) {
	srv := redistest.Start(t)
	var lims []*heedredis.Limiter
	for range 3 {
		l, err := patient(t, srv, heedredis.Config{}).Limiter("api", 100, 5)
		if err != nil {
			t.Fatal(err)
		}
		lims = append(lims, l)
	}
	now := time.Now()
	deadline := now.Add(time.Second)
	start := time.Now()
	got, refused := 0, 0
	for refused < 3 {
		refused = 0
		for _, l := range lims {
			if at, ok := l.ReserveBefore(now, deadline); ok {
				if at.Before(now) || at.After(deadline) {
					t.Fatalf("slot at %v outside [now, now+1s]", at.Sub(now))
				}
				got++
			} else {
				refused++
			}
		}
	}
	// 5 at once, then one per 10 ms: 105 within the second, less the
	// slots leased but refused at the edge. The slots are placed by
	// Redis's clock, which runs on while the loop asks: the bucket refills
	// for that long too.
	most := 105 + int(time.Since(start)/(10*time.Millisecond)) + 1
	if got < 95 || got > most {
		t.Errorf("%d slots within a second for 3 instances, want 95 to %d", got, most)
	}
}

func TestLimiterRefusesPastTheDeadline(t *testing.T) {
	srv := redistest.Start(t)
	l, _ := patient(t, srv, heedredis.Config{Lease: 1}).Limiter("slow", 1, 1)
	now := time.Now()
	if at, ok := l.ReserveBefore(now, now); !ok || at != now {
		t.Fatalf("first: %v %v", at, ok)
	}
	at, ok := l.ReserveBefore(now, now)
	if ok || at.Sub(now) < 900*time.Millisecond || at.Sub(now) > 1100*time.Millisecond {
		t.Errorf("second: %v %v, want a refusal naming about 1s from now", at.Sub(now), ok)
	}
}

// The fleet's retries share one budget: requests counted by one instance
// pay for retries of another.
func TestBudgetShared(t *testing.T) {
	srv := redistest.Start(t)
	cfg := budget.RatioConfig{Percent: 0.5, MinPerSecond: 0.0001, Window: 10 * time.Second}
	a, _ := patient(t, srv, heedredis.Config{}).Budget("api", cfg)
	sb := patient(t, srv, heedredis.Config{})
	b, _ := sb.Budget("api", cfg)
	for range 10 {
		a.Request()
	}
	now := time.Now()
	if !a.Withdraw(now) { // sends the 10 requests along
		t.Fatal("first retry refused")
	}
	granted := 1
	for range 10 {
		if b.Withdraw(now) {
			granted++
		}
	}
	if granted != 5 {
		t.Errorf("%d retries granted for 10 requests at 50%%, want 5", granted)
	}
}

// Keys carry the prefix and a hash tag, and expire.
func TestKeys(t *testing.T) {
	srv := redistest.Start(t)
	rdb := patientClient(t, srv)
	s := store(t, rdb, patientConfig(t, heedredis.Config{Prefix: "shop"}))
	l, _ := s.Limiter("api.example.com", 10, 1)
	b, _ := s.Budget("api.example.com", budget.RatioConfig{})
	l.Allow(time.Now())
	b.Request()
	b.Withdraw(time.Now())
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"shop:{api.example.com}:rate": true, "shop:{api.example.com}:budget": true}
	if len(keys) != 2 || !want[keys[0]] || !want[keys[1]] {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > 2*time.Minute {
			t.Errorf("%s expires in %v", k, ttl)
		}
	}
}

func TestBadConfig(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	for _, cfg := range []heedredis.Config{{Prefix: "a{b}"}, {Lease: -1}, {Timeout: -1}, {FallbackShare: 2}} {
		if s, err := heedredis.New(rdb, cfg); err == nil {
			s.Close()
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := heedredis.New(nil, heedredis.Config{}); err == nil {
		t.Error("nil client accepted")
	}
	deaf := redis.NewClient(&redis.Options{Addr: srv.Addr}) // ContextTimeoutEnabled left off
	defer deaf.Close()
	if _, err := heedredis.New(deaf, heedredis.Config{}); err == nil || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Errorf("a client ignoring context deadlines: %v", err)
	}
	s := store(t, rdb, heedredis.Config{})
	for _, bad := range []struct {
		rate  float64
		burst int
		key   string
	}{{0, 1, "k"}, {-1, 1, "k"}, {1, 0, "k"}, {1e9, 1, "k"}} {
		if _, err := s.Limiter(bad.key, bad.rate, bad.burst); err == nil {
			t.Errorf("Limiter(%q, %v, %d) accepted", bad.key, bad.rate, bad.burst)
		}
	}
}

// faults records fault and recovery callbacks.
type faults struct {
	mu         sync.Mutex
	down, back int
}

func (f *faults) config(cfg heedredis.Config) heedredis.Config {
	cfg.OnFault = func(string, error) { f.mu.Lock(); f.down++; f.mu.Unlock() }
	cfg.OnRecover = func(string) { f.mu.Lock(); f.back++; f.mu.Unlock() }
	return cfg
}

func (f *faults) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down, f.back
}

// deadlines is a go-redis hook that checks what bounds a call's wait on a
// Redis that does not answer: every command must carry a context deadline
// no further than max from its start. It checks the calls, not a
// stopwatch: on a loaded machine a call takes its timeout plus however
// long the machine takes to run the caller again, which says nothing of
// the code. (go-redis honours the deadline with ContextTimeoutEnabled,
// which New requires: TestBadConfig.)
type deadlines struct {
	max       time.Duration
	mu        sync.Mutex
	calls     int
	unbounded []string
}

// watch checks the deadlines of rdb's calls against max.
func watch(rdb *redis.Client, max time.Duration) *deadlines {
	d := &deadlines{max: max}
	rdb.AddHook(d)
	return d
}

func (d *deadlines) DialHook(next redis.DialHook) redis.DialHook { return next }

func (d *deadlines) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		d.saw(ctx, cmd.Name())
		return next(ctx, cmd)
	}
}

func (d *deadlines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		d.saw(ctx, "pipeline")
		return next(ctx, cmds)
	}
}

func (d *deadlines) saw(ctx context.Context, name string) {
	dl, ok := ctx.Deadline()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if !ok {
		d.unbounded = append(d.unbounded, name+" without a deadline")
	} else if left := time.Until(dl); left > d.max {
		d.unbounded = append(d.unbounded, fmt.Sprintf("%s with %v left", name, left))
	}
}

// check fails t unless calls were made, each within its bound.
func (d *deadlines) check(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.calls == 0 {
		t.Error("no Redis call made")
	}
	if len(d.unbounded) > 0 {
		t.Errorf("%d of %d Redis calls not bounded by the %v timeout; the first: %s", len(d.unbounded), d.calls, d.max, d.unbounded[0])
	}
}

// Redis stopped, paused or answering garbage: the limiter and the budget
// answer from local state, each Redis call bounded by the timeout (checked
// on the calls: deadlines), report the fault once, and return to Redis
// when it is back.
func TestFaults(t *testing.T) {
	srv := redistest.Start(t)
	var fs faults
	cfg := fs.config(heedredis.Config{Timeout: 50 * time.Millisecond, Retry: 200 * time.Millisecond, Lease: 1})
	rdb := srv.Client(t)
	calls := watch(rdb, cfg.Timeout)
	s := store(t, rdb, cfg)
	l, _ := s.Limiter("api", 1000, 10)
	b, _ := s.Budget("api", budget.RatioConfig{})

	var longest time.Duration
	timed := func(f func() bool) bool {
		start := time.Now()
		ok := f()
		longest = max(longest, time.Since(start))
		return ok
	}
	if !l.Allow(time.Now()) {
		t.Fatal("refused with Redis up")
	}

	for _, fault := range []struct {
		name        string
		break_, fix func()
	}{
		{"stopped", srv.Stop, srv.Restart},
		{"paused", srv.Pause, srv.Resume},
	} {
		fault.break_()
		for range 5 {
			if !timed(func() bool { return l.Allow(time.Now()) }) {
				t.Errorf("%s: the local limit refused", fault.name)
			}
			b.Request()
			timed(func() bool { return b.Withdraw(time.Now()) })
		}
		down, back := fs.counts()
		fault.fix()
		// Back on Redis at the first call after Retry that Redis answers
		// within the timeout: on a loaded machine not always the first.
		waitFor(t, fault.name+": back on Redis", func() bool {
			if !l.Allow(time.Now()) {
				t.Errorf("%s: refused after Redis came back", fault.name)
			}
			b.Withdraw(time.Now())
			_, back2 := fs.counts()
			return back2 > back
		})
		if down2, _ := fs.counts(); down2 < down || down == 0 {
			t.Errorf("%s: faults %d then %d", fault.name, down, down2)
		}
	}
	t.Logf("longest decision with Redis down: %v (timeout %v)", longest.Round(time.Millisecond), cfg.Timeout)
	calls.check(t)

	// Garbage where the budget's hash should be: a fault, not a panic.
	ctx := context.Background()
	if err := patientClient(t, srv).Set(ctx, "heed:{junk}:budget", "garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	jb, _ := s.Budget("junk", budget.RatioConfig{})
	jb.Request()
	jb.Withdraw(time.Now())
	if down, _ := fs.counts(); down < 3 {
		t.Errorf("garbage in Redis: %d faults reported, want a third", down)
	}
}

func TestFailClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := store(t, srv.Client(t), heedredis.Config{FailClosed: true, Lease: 1})
	l, _ := s.Limiter("api", 1000, 10)
	b, _ := s.Budget("api", budget.RatioConfig{})
	srv.Stop()
	if l.Allow(time.Now()) {
		t.Error("the limiter let a request go with Redis down and FailClosed")
	}
	b.Request()
	if b.Withdraw(time.Now()) {
		t.Error("the budget granted a retry with Redis down and FailClosed")
	}
}

// Switching to the local fallback never books a moment the fleet's
// schedule already gave: the callers asleep on leased slots still send at
// them, so the first local slot comes after the last leased one. Before,
// the local limiter started fresh, and a fleet with queued callers sent up
// to twice its limit while the queue drained (about a hundred 429s per
// Redis fault at 8 instances x 16 callers, 200 req/s).
func TestFallbackAfterLeasedSlots(t *testing.T) {
	srv := redistest.Start(t)
	s := store(t, srv.Client(t), heedredis.Config{Timeout: 50 * time.Millisecond, Retry: time.Minute, FallbackShare: 1, Lease: 1})
	l, _ := s.Limiter("queued", 100, 1)
	now := time.Now()
	var last time.Time
	for range 20 { // 20 callers queue: slots up to about 200 ms ahead
		at, ok := l.ReserveBefore(now, time.Time{})
		if !ok {
			t.Fatal("refused with Redis up")
		}
		last = later(last, at)
	}
	srv.Stop()
	at, ok := l.ReserveBefore(now, time.Time{})
	if !ok {
		t.Fatal("the local fallback refused")
	}
	if at.Before(last) {
		t.Fatalf("the first local slot is %v before the last leased one", last.Sub(at))
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
