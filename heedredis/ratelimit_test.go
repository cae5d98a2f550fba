package heedredis_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/ratelimit"
)

func takeOK(t *testing.T, s ratelimit.Store, key string, now time.Time, ws []ratelimit.Window, sp ratelimit.Spread) ratelimit.Decision {
	t.Helper()
	d, err := s.Take(context.Background(), key, now, ws, sp)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The store in Redis answers as MemoryStore on Redis's own clock, which
// runs on in real time while the MemoryStore is told one instant per
// phase. So the comparison is built to be exact where it can be: every
// interval, Hold, Delay and Horizon lies on a lattice of 200 ms (Horizon
// and Delay half-way between two points of it), the phases are 200 ms
// multiples apart, and each phase's calls take far less than 100 ms. Then
// every time the MemoryStore computes lies on the lattice, and Redis's
// lies at most the drift (how far Redis's clock ran past the phase's
// instant, kept from shrinking from one call to the next) before it, so no
// decision can differ: Allowed must agree exactly, the times within the
// drift, Remaining exactly (within one for a request admitted at a
// reserved slot, whose count is taken at a time that drifted too). A run
// whose drift passed 90 ms (a loaded machine) is run again on fresh keys.
func TestRateLimitStoreMatchesMemory(t *testing.T) {
	srv := redistest.Start(t)
	s := patient(t, srv, heedredis.Config{})
	ws := []ratelimit.Window{
		{Name: "second", Limit: 5, Per: time.Second, Burst: 4},  // 200 ms a token
		{Name: "minute", Limit: 30, Per: time.Minute, Burst: 6}, // 2 s a token
	}
	spreads := []ratelimit.Spread{
		{},
		{Step: time.Second, Horizon: 5*time.Second + 100*time.Millisecond},
		{Step: time.Second, Hold: 400 * time.Millisecond, Horizon: 2*time.Second + 100*time.Millisecond},
		{Step: time.Second, Hold: time.Second, Horizon: time.Minute},
		{Delay: 500 * time.Millisecond},
		{Step: time.Second, Hold: 200 * time.Millisecond, Horizon: 10*time.Second + 100*time.Millisecond, Delay: 900 * time.Millisecond},
	}
	phases := []struct {
		at    time.Duration
		calls int
	}{{0, 12}, {400 * time.Millisecond, 8}, {800 * time.Millisecond, 3}, {1200 * time.Millisecond, 10}}

	// Load the script and open a connection first: a slow first call
	// would only add to the drift.
	takeOK(t, s.RateLimitStore("warm"), "k", time.Now(), ws, ratelimit.Spread{})
	var wg sync.WaitGroup
	for si, sp := range spreads {
		wg.Go(func() {
			for attempt := range 3 {
				rs := s.RateLimitStore(fmt.Sprintf("match-%d-%d", si, attempt))
				mem := ratelimit.NewMemoryStore(0)
				start := time.Now()
				var drift time.Duration // the most Redis's clock can have run past a phase's instant, so far
				var problems []string
				for _, ph := range phases {
					// Redis's clock must not drift less than in an earlier
					// call, or a state written then would look later than
					// the MemoryStore's, not earlier: the phase starts
					// once its instant plus the drift so far has passed.
					now := start.Add(ph.at)
					time.Sleep(time.Until(now.Add(drift)))
					for i := range ph.calls {
						want := takeOK(t, mem, "k", now, ws, sp)
						got := takeOK(t, rs, "k", now, ws, sp)
						drift = max(drift, time.Since(now))
						if p := compareDecisions(got, want, now, drift); p != "" {
							problems = append(problems, fmt.Sprintf("at %v, call %d: %s", ph.at, i, p))
						}
					}
				}
				if drift > 90*time.Millisecond {
					t.Logf("spread %+v: drift %v, run again", sp, drift)
					continue
				}
				for _, p := range problems {
					t.Errorf("spread %+v (drift %v): %s", sp, drift, p)
				}
				return
			}
			t.Errorf("spread %+v: drifted past 90 ms three times; the machine is too loaded for this test", sp)
		})
	}
	wg.Wait()
}

// compareDecisions says how got (Redis) differs from want (memory) beyond
// what a drift of Redis's clock explains; "" when it does not.
func compareDecisions(got, want ratelimit.Decision, now time.Time, drift time.Duration) string {
	slack := drift + time.Microsecond // and Redis's clock counts µs
	near := func(a, b time.Time) bool {
		if a.IsZero() || b.IsZero() {
			return a.IsZero() == b.IsZero()
		}
		d := a.Sub(b)
		return d >= -slack && d <= slack
	}
	bad := got.Allowed != want.Allowed || got.N != want.N || !near(got.AdmitAt, want.AdmitAt) ||
		!near(got.ConformAt, want.ConformAt) || !near(got.RetryAt, want.RetryAt)
	for i := range want.N {
		g, w := got.States[i], want.States[i]
		off := g.Remaining - w.Remaining
		if off != 0 && (want.AdmitAt.IsZero() || off < -1 || off > 1) || g.Reset-w.Reset > slack || w.Reset-g.Reset > slack {
			bad = true
		}
	}
	if !bad {
		return ""
	}
	return fmt.Sprintf("\n  Redis:  %s\n  memory: %s", describeDecision(got, now), describeDecision(want, now))
}

func describeDecision(d ratelimit.Decision, now time.Time) string {
	off := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Sub(now).String()
	}
	return fmt.Sprintf("allowed %v admit %s conform %s retry %s states %v", d.Allowed, off(d.AdmitAt), off(d.ConformAt), off(d.RetryAt), d.Windows())
}

// Two instances, each with its own client, share one limit per client
// key: between them they get the burst, no more; another key and another
// name have limits of their own. The state is one key per client key,
// under the package's hash tag, and expires once it holds nothing.
func TestRateLimitStoreShared(t *testing.T) {
	srv := redistest.Start(t)
	rdb := patientClient(t, srv)
	a := store(t, rdb, patientConfig(t, heedredis.Config{Prefix: "shop"})).RateLimitStore("api")
	b := patient(t, srv, heedredis.Config{Prefix: "shop"}).RateLimitStore("api")
	other := patient(t, srv, heedredis.Config{Prefix: "shop"}).RateLimitStore("upload")
	ws := []ratelimit.Window{{Limit: 10, Per: time.Minute, Burst: 5}} // 6 s a token: nothing refills during the test
	sp := ratelimit.Spread{Step: time.Second, Horizon: time.Minute}
	admitted := 0
	for i := range 10 {
		s := a
		if i%2 == 1 {
			s = b
		}
		d := takeOK(t, s, "client-1", time.Now(), ws, sp)
		if d.Allowed {
			admitted++
			if i >= 5 {
				t.Errorf("request %d admitted after the burst", i)
			}
		} else if d.RetryAt.Before(d.ConformAt) || d.ConformAt.IsZero() {
			t.Errorf("refusal %d: conform %v, retry %v", i, d.ConformAt, d.RetryAt)
		}
	}
	if admitted != 5 {
		t.Errorf("%d admitted by two instances, want the burst of 5", admitted)
	}
	if d := takeOK(t, b, "client-2", time.Now(), ws, sp); !d.Allowed || d.States[0].Remaining != 4 {
		t.Errorf("another key: %+v", d)
	}
	if d := takeOK(t, other, "client-1", time.Now(), ws, sp); !d.Allowed || d.States[0].Remaining != 4 {
		t.Errorf("another name: %+v", d)
	}
	takeOK(t, a, "a{b}", time.Now(), ws, sp)

	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"shop:{client-1}:ratelimit:api": true, "shop:{client-2}:ratelimit:api": true,
		"shop:{client-1}:ratelimit:upload": true, "shop:{a(b)}:ratelimit:api": true}
	if len(keys) != len(want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("keys %v, want %v", keys, want)
		}
		// client-1 holds 5 tokens' worth (30 s) and five promises, the
		// last a minute out; the others one token (6 s). A second of
		// margin.
		lo, hi := 5*time.Second, 7*time.Second
		if k == "shop:{client-1}:ratelimit:api" {
			lo, hi = 58*time.Second, 61*time.Second
		}
		if ttl := rdb.PTTL(ctx, k).Val(); ttl < lo || ttl > hi {
			t.Errorf("%s expires in %v, want %v to %v", k, ttl, lo, hi)
		}
	}
}

// Redis paused: the first call gives up within the timeout (every call
// carries a deadline within it: deadlines) and falls back to the local
// windows, FallbackShare of the limit, without an error; OnFault is told
// once, with the store's kind; for Retry no call asks Redis, and after it
// one call at a time does, however many come. Resumed: back on Redis,
// OnRecover. A key of the wrong type in Redis is a fault, not an error.
func TestRateLimitStoreFaults(t *testing.T) {
	srv := redistest.Start(t)
	var fs faults
	var faultKey atomic.Value
	cfg := fs.config(heedredis.Config{Timeout: 50 * time.Millisecond, Retry: 300 * time.Millisecond, FallbackShare: 0.25})
	onFault := cfg.OnFault
	cfg.OnFault = func(key string, err error) { faultKey.Store(key); onFault(key, err) }
	rdb := srv.Client(t)
	calls := watch(rdb, cfg.Timeout)
	var scripts scriptCalls
	rdb.AddHook(&scripts)
	rs := store(t, rdb, cfg).RateLimitStore("")
	ws := []ratelimit.Window{{Limit: 10, Per: time.Second, Burst: 40}} // locally: 2.5 a second, burst 10
	sp := ratelimit.Spread{Step: time.Second, Horizon: time.Minute}
	if d := takeOK(t, rs, "warm", time.Now(), ws, sp); !d.Allowed {
		t.Fatal("refused with Redis up")
	}

	srv.Pause()
	start := time.Now()
	takeOK(t, rs, "first", start, ws, sp)
	first := time.Since(start)
	if down, _ := fs.counts(); down != 1 || faultKey.Load() != "ratelimit" {
		t.Fatalf("%d faults reported (key %v), want 1 (ratelimit)", down, faultKey.Load())
	}
	before := scripts.n.Load()
	// Locally the key x has 10 tokens, which refill every 400 ms. (At
	// the fault's instant: within Retry of it however slow the machine.)
	now := start
	admitted := 0
	for range 20 {
		d := takeOK(t, rs, "x", now, ws, sp)
		if d.Allowed {
			admitted++
		} else if d.ConformAt.Sub(now) != 400*time.Millisecond {
			t.Errorf("a local refusal conforms %v later, want 400ms", d.ConformAt.Sub(now))
		}
	}
	if admitted != 10 {
		t.Errorf("%d admitted locally at once, want 10 (a quarter of the burst)", admitted)
	}
	if during := scripts.n.Load() - before; during != 0 {
		t.Errorf("%d calls to Redis within Retry of the fault", during)
	}

	// After Retry, 8 callers hammer for 400 ms: one asks Redis (and waits
	// out the timeout), the others decide locally.
	time.Sleep(cfg.Retry)
	var wg sync.WaitGroup
	hammer := time.Now().Add(400 * time.Millisecond)
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(hammer) {
				takeOK(t, rs, "y", time.Now(), ws, sp)
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	if probes := scripts.n.Load() - before; probes < 1 || probes > 3 {
		t.Errorf("%d calls to Redis in 400 ms of 8 callers, Retry 300 ms: want one probe at a time (1 to 3)", probes)
	}
	t.Logf("first call with Redis paused took %v (timeout %v); %d probes while it stayed paused", first.Round(time.Millisecond), cfg.Timeout, scripts.n.Load()-before)

	srv.Resume()
	waitFor(t, "back on Redis", func() bool {
		takeOK(t, rs, "z", time.Now(), ws, sp)
		_, back := fs.counts()
		return back == 1
	})
	if n, err := patientClient(t, srv).Exists(context.Background(), "heed:{z}:ratelimit").Result(); err != nil || n != 1 {
		t.Errorf("the key is not in Redis once back: %d, %v", n, err)
	}
	calls.check(t)

	// The wrong type where the key's state should be.
	if err := patientClient(t, srv).HSet(context.Background(), "heed:{junk}:ratelimit", "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	if d := takeOK(t, rs, "junk", time.Now(), ws, sp); !d.Allowed {
		t.Error("the fallback refused the first request of a key")
	}
	if down, _ := fs.counts(); down != 2 {
		t.Errorf("the wrong type in Redis: %d faults, want a second", down)
	}
}

// scriptCalls counts the scripts a client runs (a probe of a paused Redis
// also sends the HELLO of a new connection).
type scriptCalls struct{ n atomic.Int64 }

func (c *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// With FailClosed, a store that cannot reach Redis refuses, telling the
// client to come back after Retry, without an error (which would let the
// request through).
func TestRateLimitStoreFailClosed(t *testing.T) {
	srv := redistest.Start(t)
	rs := store(t, srv.Client(t), heedredis.Config{FailClosed: true, Timeout: 50 * time.Millisecond, Retry: 700 * time.Millisecond}).RateLimitStore("")
	ws := []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 10}, {Limit: 1000, Per: time.Hour, Burst: 100}}
	if d := takeOK(t, rs, "k", time.Now(), ws, ratelimit.Spread{}); !d.Allowed {
		t.Fatal("refused with Redis up")
	}
	srv.Pause()
	defer srv.Resume()
	for i := range 3 {
		now := time.Now()
		d := takeOK(t, rs, "k", now, ws, ratelimit.Spread{Step: time.Second, Horizon: time.Minute})
		if d.Allowed || d.RetryAt.Sub(now) != 700*time.Millisecond || !d.ConformAt.Equal(d.RetryAt) || d.N != 2 || d.States[1].Remaining != 0 {
			t.Errorf("call %d with Redis paused: %s", i, describeDecision(d, now))
		}
	}
}

// Windows a store cannot serve are errors, as in MemoryStore; a client it
// cannot bound is refused by New.
func TestRateLimitStoreBadInput(t *testing.T) {
	srv := redistest.Start(t)
	rs := patient(t, srv, heedredis.Config{}).RateLimitStore("")
	w := ratelimit.Window{Limit: 10, Per: time.Second, Burst: 1}
	ctx := context.Background()
	if _, err := rs.Take(ctx, "k", time.Now(), nil, ratelimit.Spread{}); err == nil {
		t.Error("no windows accepted")
	}
	if _, err := rs.Take(ctx, "k", time.Now(), make([]ratelimit.Window, ratelimit.MaxWindows+1), ratelimit.Spread{}); err == nil {
		t.Error("too many windows accepted")
	}
	takeOK(t, rs, "k", time.Now(), []ratelimit.Window{w}, ratelimit.Spread{})
	if _, err := rs.Take(ctx, "k", time.Now(), []ratelimit.Window{w, w}, ratelimit.Spread{}); err == nil || !strings.Contains(err.Error(), "1 windows, then 2") {
		t.Errorf("another number of windows: %v", err)
	}
	if _, err := heedredis.New(nil, heedredis.Config{}); err == nil || !strings.Contains(err.Error(), "nil Redis client") {
		t.Errorf("nil client: %v", err)
	}
	deaf := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer deaf.Close()
	if _, err := heedredis.New(deaf, heedredis.Config{}); err == nil || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Errorf("a client ignoring deadlines: %v", err)
	}
}

// The middleware on a RateLimitStore, on loopback, writes what it writes
// on a MemoryStore: the same statuses, IETF fields, Retry-After and
// problem details, request after request. With MaxDelay, a request is
// held to its reserved slot.
func TestRateLimitStoreMiddleware(t *testing.T) {
	srv := redistest.Start(t)
	s := patient(t, srv, heedredis.Config{})
	ws := []ratelimit.Window{{Limit: 2, Per: time.Second, Burst: 2}, {Limit: 100, Per: time.Hour, Burst: 3}}
	serve := func(cfg ratelimit.Config) string {
		t.Helper()
		cfg.Key = func(*http.Request) string { return "client" }
		l, err := ratelimit.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })))
		t.Cleanup(ts.Close)
		return ts.URL
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(url string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	// show gives a response's status, fields and body, and apart the body's
	// retry_after: the time from the refusal's writing to its slot, to
	// the millisecond, which says how long the writing took as much as
	// where the slot is.
	show := func(resp *http.Response, body string) (string, float64) {
		var b strings.Builder
		fmt.Fprintf(&b, "%d", resp.StatusCode)
		for _, k := range []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "Content-Type"} {
			fmt.Fprintf(&b, " | %s: %s", k, resp.Header.Get(k))
		}
		var wait float64
		if before, after, ok := strings.Cut(body, `"retry_after":`); ok {
			end := strings.IndexByte(after, '}')
			wait, _ = strconv.ParseFloat(after[:end], 64)
			body = before + `"retry_after":…` + after[end:]
		}
		return b.String() + " | " + body, wait
	}

	inRedis := serve(ratelimit.Config{Windows: ws, Store: s.RateLimitStore("e2e"), LegacyHeaders: true})
	inMemory := serve(ratelimit.Config{Windows: ws, LegacyHeaders: true})
	statuses := ""
	for i := range 5 {
		got, gotWait := show(get(inRedis))
		want, wantWait := show(get(inMemory))
		statuses += got[:3] + " "
		if got != want || math.Abs(gotWait-wantWait) > 0.05 {
			t.Errorf("request %d:\nRedis:  %s (retry_after %.3f)\nmemory: %s (retry_after %.3f)", i, got, gotWait, want, wantWait)
		}
	}
	if statuses != "200 200 429 429 429 " {
		t.Errorf("statuses %s, want two admitted and the rest refused", statuses)
	}
	resp, body := get(inRedis)
	if !strings.Contains(body, `"status":429`) || resp.Header.Get("RateLimit") != `"second";r=0;t=1` {
		t.Errorf("refusal: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	// A request whose slot is 500 ms out waits for it.
	delayed := serve(ratelimit.Config{Windows: []ratelimit.Window{{Limit: 2, Per: time.Second, Burst: 1}}, Store: s.RateLimitStore("delay"), MaxDelay: 600 * time.Millisecond})
	get(delayed)
	start := time.Now()
	resp, _ = get(delayed)
	if el := time.Since(start); resp.StatusCode != http.StatusOK || el < 450*time.Millisecond || el > 2*time.Second {
		t.Errorf("the second request: %d after %v, want 200 after about 500ms", resp.StatusCode, el)
	}
}

// Four instances, each its own Limiter, Store and Redis client behind its
// own loopback server, are offered ten times the limit by 100 clients
// (round-robin over the instances, one client key) for 2 s: the servers
// admit what the limit allows in that time (rate x 2 s + burst), within
// 5%. bench's TestFleetRateLimitAccuracy runs the same for a minute.
func TestRateLimitFleetAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("2 s of traffic")
	}
	srv := redistest.Start(t)
	const (
		instances = 4
		clients   = 100
		rate      = 200
		burst     = 20
		run       = 2 * time.Second
	)
	var admitted, late, firstAdmit atomic.Int64 // firstAdmit: the first admission a server saw, ns since start
	var start, end time.Time
	var urls []string
	for range instances {
		rs := patient(t, srv, heedredis.Config{}).RateLimitStore("fleet")
		l, err := ratelimit.New(ratelimit.Config{
			Windows: []ratelimit.Window{{Limit: rate, Per: time.Second, Burst: burst}},
			Key:     func(*http.Request) string { return "one-key" },
			Store:   rs,
		})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if now := time.Now(); now.Before(end) {
				admitted.Add(1)
				firstAdmit.CompareAndSwap(0, int64(now.Sub(start)))
			} else {
				late.Add(1)
			}
		})))
		defer ts.Close()
		urls = append(urls, ts.URL)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	// Each client sends every clients/(10 x rate) = 50 ms, the clients
	// evenly staggered.
	period := time.Duration(clients) * time.Second / (10 * rate)
	var sent, refused, failed atomic.Int64
	start = time.Now()
	end = start.Add(run)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for next := start.Add(period * time.Duration(c) / clients); next.Before(end); next = next.Add(period) {
				time.Sleep(time.Until(next))
				resp, err := client.Get(urls[c%instances])
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent.Add(1)
				if resp.StatusCode == http.StatusTooManyRequests {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// What the limit allows in the time the servers saw: from the first
	// admission (the bucket full) to the end.
	seen := run - time.Duration(firstAdmit.Load())
	allowed := burst + rate*seen.Seconds()
	got := float64(admitted.Load())
	errPct := (got - allowed) / allowed * 100
	t.Logf("offered %d (%.0f/s, %.1fx the limit), admitted %.0f in %v (+%d after), allowed %.1f: %+.2f%%; %d refused, %d failed",
		sent.Load(), float64(sent.Load())/run.Seconds(), float64(sent.Load())/run.Seconds()/rate, got, seen.Round(time.Millisecond), late.Load(), allowed, errPct, refused.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
	if errPct > 5 || errPct < -5 {
		t.Errorf("admitted %.0f, the limit allows %.0f: %+.2f%%, want within 5%%", got, allowed, errPct)
	}
}

// BenchmarkRateLimitStoreTake is one decision of a RateLimitStore against
// a real redis-server on loopback: a key under its limit (admitted, the
// state written), over it (refused with a return slot; once the schedule
// reaches the horizon nothing is written), and admitted from 8 callers
// at once. redis-µs/op is the script's time inside Redis (its
// commandstats), what a fleet's decisions cost the one Redis they share:
//
//	cd heedredis && go test -run xxx -bench RateLimitStoreTake -benchmem .
func BenchmarkRateLimitStoreTake(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	s, err := heedredis.New(rdb, heedredis.Config{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	spread := ratelimit.Spread{Step: time.Second, Horizon: time.Minute}
	for _, c := range []struct {
		name     string
		windows  []ratelimit.Window
		parallel bool
		allowed  bool
	}{
		{"admitted", []ratelimit.Window{{Limit: 1_000_000, Per: time.Second, Burst: 1000}}, false, true},
		{"admitted-3-windows", []ratelimit.Window{{Limit: 1_000_000, Per: time.Second, Burst: 1000}, {Limit: 1e9, Per: time.Hour, Burst: 1e6}, {Limit: 1e10, Per: 24 * time.Hour, Burst: 1e7}}, false, true},
		{"refused", []ratelimit.Window{{Limit: 1, Per: time.Hour, Burst: 1}}, false, false},
		{"admitted-parallel", []ratelimit.Window{{Limit: 1_000_000, Per: time.Second, Burst: 1000}}, true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			rs := s.RateLimitStore(c.name)
			ctx := context.Background()
			take := func() bool {
				d, err := rs.Take(ctx, "203.0.113.9", time.Now(), c.windows, spread)
				if err != nil {
					b.Fatal(err)
				}
				return d.Allowed
			}
			take() // loads the script; takes the one token of "refused"
			if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			var wrong atomic.Int64
			b.ReportAllocs()
			if c.parallel {
				b.SetParallelism(4) // 8 callers on 2 CPUs
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if take() != c.allowed {
							wrong.Add(1)
						}
					}
				})
			} else {
				for b.Loop() {
					if take() != c.allowed {
						wrong.Add(1)
					}
				}
			}
			if wrong.Load() > 0 {
				b.Fatalf("%d decisions not as expected (allowed %v)", wrong.Load(), c.allowed)
			}
			b.ReportMetric(scriptMicros(b, rdb), "redis-µs/op")
		})
	}
}

// scriptMicros returns the mean time Redis spent in EVALSHA since its
// statistics were reset.
func scriptMicros(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:"); ok {
			for field := range strings.SplitSeq(rest, ",") {
				if v, ok := strings.CutPrefix(field, "usec_per_call="); ok {
					f, err := strconv.ParseFloat(v, 64)
					if err != nil {
						b.Fatal(err)
					}
					return f
				}
			}
		}
	}
	b.Fatalf("no evalsha in %q", info)
	return 0
}
