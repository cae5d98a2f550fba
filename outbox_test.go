package heed_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/outboxtest"
)

// dedupAPI is an in-memory API that deduplicates writes by their
// Idempotency-Key, as Stripe's does: the first request with a key takes
// effect, a later one with the same key gets the first one's answer.
type dedupAPI struct {
	mu      sync.Mutex
	answer  func(key string) (int, http.Header) // the answer to a request with this key, while set
	effects map[string]int                      // Idempotency-Key -> effects
	bodies  map[string][]string                 // Idempotency-Key -> the bodies received
	auth    []string                            // Authorization of each request
	n       int
}

func newDedupAPI() *dedupAPI {
	return &dedupAPI{effects: map[string]int{}, bodies: map[string][]string{}}
}

// down makes the API answer status (with header h) to every request until up.
func (a *dedupAPI) down(status int, h http.Header) {
	a.mu.Lock()
	a.answer = func(string) (int, http.Header) { return status, h }
	a.mu.Unlock()
}

func (a *dedupAPI) answerBy(f func(key string) (int, http.Header)) {
	a.mu.Lock()
	a.answer = f
	a.mu.Unlock()
}

func (a *dedupAPI) up() {
	a.mu.Lock()
	a.answer = nil
	a.mu.Unlock()
}

func (a *dedupAPI) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func (a *dedupAPI) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	key := req.Header.Get("Idempotency-Key")
	a.bodies[key] = append(a.bodies[key], string(body))
	a.auth = append(a.auth, req.Header.Get("Authorization"))
	status, h := http.StatusCreated, http.Header{}
	if a.answer != nil {
		status, h = a.answer(key)
	} else {
		a.effects[key]++
	}
	return &http.Response{StatusCode: status, Header: h.Clone(), Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
}

func outboxPolicy(t *testing.T, api http.RoundTripper, store outbox.Store, opts ...heed.Option) *heed.Policy {
	t.Helper()
	o := heed.Outbox{Store: store}
	p, err := heed.NewPolicy(append([]heed.Option{heed.WithBase(api), heed.WithOutbox(o), heed.WithLogger(nil)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func post(ctx context.Context, p *heed.Policy, key, body string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.example/v1/orders?token=s3cret", strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	return p.Transport().RoundTrip(req)
}

func TestOutboxQueuesAFailedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, store := newDedupAPI(), new(outboxtest.Memory)
		api.down(http.StatusServiceUnavailable, http.Header{"Retry-After": {"2"}})
		var events []heed.Event
		p := outboxPolicy(t, api, store, heed.WithHook(heed.HookFunc(func(_ context.Context, e heed.Event) {
			if e.Kind == heed.EventQueued {
				events = append(events, e)
			}
		})))
		start := time.Now()
		resp, err := post(context.Background(), p, "order-1", `{"sku":42}`)
		if resp != nil {
			t.Fatalf("a queued call returned a response (%d)", resp.StatusCode)
		}
		var qe *heed.QueuedError
		if !errors.Is(err, heed.ErrQueued) || !errors.As(err, &qe) {
			t.Fatalf("err = %v, want ErrQueued", err)
		}
		if !errors.Is(err, heed.ErrAttemptsExhausted) {
			t.Errorf("the queued error hides the failure's reason: %v", err)
		}
		if qe.ID == "" || !qe.NextAt.After(start) {
			t.Errorf("QueuedError{ID %q, NextAt %v}: want an ID and a time after %v", qe.ID, qe.NextAt, start)
		}
		if !strings.Contains(err.Error(), "queued as entry "+qe.ID) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error text %q", err)
		}
		e, gerr := store.Get(context.Background(), qe.ID)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if e.Method != http.MethodPost || e.URL != "https://api.example/v1/orders?token=s3cret" || string(e.Body) != `{"sku":42}` ||
			e.IdempotencyKey() != "order-1" || e.Header.Get("Content-Type") != "application/json" || e.Key != "api.example" {
			t.Errorf("stored entry %+v", e)
		}
		if !e.NextAt.Equal(qe.NextAt) || e.LastStatus != http.StatusServiceUnavailable || !e.Expires.Equal(e.Queued.Add(24*time.Hour)) {
			t.Errorf("entry NextAt %v (error says %v), LastStatus %d, Expires %v (queued %v)", e.NextAt, qe.NextAt, e.LastStatus, e.Expires, e.Queued)
		}
		if len(events) != 1 || events[0].Entry != qe.ID || !events[0].NextAt.Equal(qe.NextAt) || events[0].Err != nil {
			t.Errorf("EventQueued events: %+v", events)
		}
		if api.requests() != 6 {
			t.Errorf("%d attempts before queueing, want the policy's 6", api.requests())
		}
	})
}

func TestOutboxNeverQueues(t *testing.T) {
	certErr := &tls.CertificateVerificationError{Err: errors.New("x509: certificate signed by unknown authority")}
	for _, tc := range []struct {
		name   string
		method string
		key    string
		status int           // the API's answer, 0 for an error
		err    error         // the transport's error
		body   string        // default a small JSON body
		opts   []heed.Option // beside WithOutbox
		cancel bool          // the caller gives up while waiting
	}{
		{name: "GET", method: http.MethodGet, status: 503},
		{name: "POST without a key", method: http.MethodPost, status: 503},
		{name: "PUT without a key", method: http.MethodPut, status: 503},
		{name: "400", method: http.MethodPost, key: "k", status: 400},
		{name: "404", method: http.MethodPost, key: "k", status: 404},
		{name: "422", method: http.MethodPost, key: "k", status: 422},
		{name: "501", method: http.MethodPost, key: "k", status: 501},
		{name: "certificate", method: http.MethodPost, key: "k", err: certErr},
		{name: "caller gone", method: http.MethodPost, key: "k", status: 503, cancel: true},
		{name: "body over MaxBody", method: http.MethodPost, key: "k", status: 503, body: strings.Repeat("x", 2<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := new(outboxtest.Memory)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
					if req.Body != nil {
						io.Copy(io.Discard, req.Body)
						req.Body.Close()
					}
					if tc.cancel {
						// The caller goes away during the first attempt:
						// whatever the backoff draws, nobody waits when the
						// call ends.
						cancel()
					}
					if tc.err != nil {
						return nil, tc.err
					}
					return &http.Response{StatusCode: tc.status, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
				})
				var failed []heed.Event
				p := outboxPolicy(t, base, store, append(tc.opts, heed.WithHook(heed.HookFunc(func(_ context.Context, e heed.Event) {
					if e.Kind == heed.EventQueued {
						failed = append(failed, e)
					}
				})))...)
				body := tc.body
				if body == "" {
					body = `{"a":1}`
				}
				var rd io.Reader = strings.NewReader(body)
				if tc.method == http.MethodGet {
					rd = nil
				}
				req, _ := http.NewRequestWithContext(ctx, tc.method, "https://api.example/v1/x", rd)
				if tc.key != "" {
					req.Header.Set("Idempotency-Key", tc.key)
				}
				resp, err := p.Transport().RoundTrip(req)
				if errors.Is(err, heed.ErrQueued) {
					t.Fatalf("queued: %v", err)
				}
				if resp != nil {
					resp.Body.Close()
				}
				if resp == nil && err == nil {
					t.Fatal("neither a response nor an error")
				}
				if st, _ := store.Stats(context.Background()); st.Pending+st.Dead != 0 {
					t.Errorf("the store holds %+v", st)
				}
				if tc.name == "body over MaxBody" && (len(failed) != 1 || failed[0].Err == nil) {
					t.Errorf("a write that qualified but could not be kept must be reported: %+v", failed)
				}
			})
		})
	}
}

func TestOutboxQueuesWithAnAutomaticKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, store := newDedupAPI(), new(outboxtest.Memory)
		api.down(http.StatusBadGateway, nil)
		p := outboxPolicy(t, api, store, heed.WithAutoIdempotencyKey())
		_, err := post(context.Background(), p, "", `{"n":1}`)
		var qe *heed.QueuedError
		if !errors.As(err, &qe) {
			t.Fatalf("err = %v, want queued", err)
		}
		e, _ := store.Get(context.Background(), qe.ID)
		sent := api.bodies[e.IdempotencyKey()]
		if e.IdempotencyKey() == "" || len(sent) != 3 { // 502 is tried 3 times
			t.Fatalf("stored key %q; the API saw that key on %d attempts", e.IdempotencyKey(), len(sent))
		}
	})
}

func TestReplayDeliversOnceWithTheSameKeyAndBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, store := newDedupAPI(), new(outboxtest.Memory)
		api.down(http.StatusServiceUnavailable, nil)
		var kinds []heed.EventKind
		var mu sync.Mutex
		p := outboxPolicy(t, api, store, heed.WithHook(heed.HookFunc(func(_ context.Context, e heed.Event) {
			switch e.Kind {
			case heed.EventQueued, heed.EventReplayed, heed.EventDelivered, heed.EventDead:
				mu.Lock()
				kinds = append(kinds, e.Kind)
				mu.Unlock()
			}
		})))
		const n = 20
		for i := range n {
			if _, err := post(context.Background(), p, "k"+string(rune('a'+i)), `{"i":`+string(rune('a'+i))+`}`); !errors.Is(err, heed.ErrQueued) {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		// Still down at the first replay: every entry is rescheduled.
		time.Sleep(time.Hour)
		res, err := p.ReplayDue(context.Background())
		if err != nil || res.Delivered != 0 || res.Rescheduled+res.Deferred != n {
			t.Fatalf("replay while down: %+v, %v", res, err)
		}
		// Once up, the open breaker lets a probe through, then the rest.
		api.up()
		delivered := 0
		for range 5 {
			time.Sleep(time.Hour)
			res, err = p.ReplayDue(context.Background())
			if err != nil || res.Dead != 0 {
				t.Fatalf("replay once up: %+v, %v", res, err)
			}
			delivered += res.Delivered
		}
		if delivered != n {
			t.Fatalf("%d delivered, want %d", delivered, n)
		}
		if st, _ := store.Stats(context.Background()); st.Pending != 0 || st.Dead != 0 {
			t.Errorf("store after delivery: %+v", st)
		}
		for key, bodies := range api.bodies {
			if api.effects[key] != 1 {
				t.Errorf("key %s took effect %d times", key, api.effects[key])
			}
			for _, b := range bodies {
				if b != bodies[0] {
					t.Errorf("key %s: bodies differ across sends: %q", key, bodies)
				}
			}
		}
		if st, _ := store.Stats(context.Background()); st.Pending+st.Dead != 0 {
			t.Errorf("replays were queued again: %+v", st)
		}
		mu.Lock()
		defer mu.Unlock()
		count := map[heed.EventKind]int{}
		for _, k := range kinds {
			count[k]++
		}
		if count[heed.EventQueued] != n || count[heed.EventDelivered] != n || count[heed.EventDead] != 0 {
			t.Errorf("events %v", count)
		}
	})
}

func TestReplayObeysRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, store := newDedupAPI(), new(outboxtest.Memory)
		api.down(http.StatusServiceUnavailable, nil)
		p := outboxPolicy(t, api, store, heed.WithoutBreaker())
		for _, k := range []string{"a", "b", "c"} {
			if _, err := post(context.Background(), p, k, "{}"); !errors.Is(err, heed.ErrQueued) {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Hour)
		api.down(http.StatusTooManyRequests, http.Header{"Retry-After": {"600"}})
		before := api.requests()
		res, err := p.ReplayDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if sent := api.requests() - before; sent < 1 || res.Rescheduled != sent || res.Deferred != 3-sent {
			t.Errorf("a 429 with Retry-After: 600 should hold the key's other entries: %d sent, %+v", sent, res)
		}
		now := time.Now()
		list, _ := store.List(context.Background(), "", 10)
		for _, e := range list {
			if e.NextAt.Before(now.Add(600 * time.Second)) {
				t.Errorf("entry %s due at %v, before the server's 600 s", e.ID, e.NextAt.Sub(now))
			}
		}
		api.up()
		time.Sleep(599 * time.Second)
		if res, _ := p.ReplayDue(context.Background()); res != (heed.ReplayResult{}) {
			t.Errorf("replayed before Retry-After ran out: %+v", res)
		}
		time.Sleep(time.Hour)
		if res, _ := p.ReplayDue(context.Background()); res.Delivered != 3 {
			t.Errorf("after the wait: %+v", res)
		}
	})
}

func TestReplayObeysTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, store := newDedupAPI(), new(outboxtest.Memory)
		api.down(http.StatusServiceUnavailable, nil)
		// One send at a time: with two at once, both may pass the closed
		// breaker before the first's failure trips it (as live calls
		// would), and which does is up to the scheduler.
		p := outboxPolicy(t, api, store, heed.WithMaxAttempts(1), heed.WithoutRetryBudget(),
			heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 3, OpenTimeout: 10 * time.Minute}),
			heed.WithOutbox(heed.Outbox{Store: store, Concurrency: 1}))
		for _, k := range []string{"a", "b"} { // two failures: the breaker stays closed
			if _, err := post(context.Background(), p, k, "{}"); !errors.Is(err, heed.ErrQueued) || errors.Is(err, heed.ErrBreakerOpen) {
				t.Fatalf("err = %v, want queued with the breaker closed", err)
			}
		}
		time.Sleep(time.Minute)
		sent := api.requests()
		res, err := p.ReplayDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// The first replay's 503 trips the breaker; the second is refused
		// by it, unsent, and waits out the open time.
		if got := api.requests() - sent; got != 1 || res.Rescheduled != 1 || res.Deferred != 1 {
			t.Fatalf("%d sent, %+v; want 1 sent, 1 rescheduled, 1 deferred", got, res)
		}
		list, _ := store.List(context.Background(), "", 10)
		var deferred *outbox.Entry
		for _, e := range list {
			if e.Replays == 0 {
				deferred = e
			}
		}
		if deferred == nil || deferred.NextAt.Before(time.Now().Add(10*time.Minute-time.Second)) {
			t.Fatalf("the refused entry should wait for the breaker's 10 minutes: %+v", deferred)
		}
		// A call refused by the open breaker is queued for when it reopens.
		_, err = post(context.Background(), p, "c", "{}")
		var qe *heed.QueuedError
		if !errors.As(err, &qe) || !errors.Is(err, heed.ErrBreakerOpen) || qe.NextAt.Before(qe.Failure.RetryAt) {
			t.Fatalf("err = %v, want queued until the breaker reopens", err)
		}
		api.up()
		delivered := 0
		for range 4 {
			time.Sleep(time.Hour)
			res, _ := p.ReplayDue(context.Background())
			delivered += res.Delivered
		}
		if delivered != 3 {
			t.Errorf("%d delivered after the breaker's open time, want 3", delivered)
		}
	})
}

func TestReplayTurnsEntriesDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, store := newDedupAPI(), new(outboxtest.Memory)
		api.down(http.StatusServiceUnavailable, nil)
		var dead []heed.Event
		var mu sync.Mutex
		p, err := heed.NewPolicy(heed.WithBase(api), heed.WithLogger(nil), heed.WithoutBreaker(),
			heed.WithOutbox(heed.Outbox{Store: store, TTL: 2 * time.Hour}),
			heed.WithHook(heed.HookFunc(func(_ context.Context, e heed.Event) {
				if e.Kind == heed.EventDead {
					mu.Lock()
					dead = append(dead, e)
					mu.Unlock()
				}
			})))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"expires", "refused"} {
			if _, err := post(context.Background(), p, k, "{}"); !errors.Is(err, heed.ErrQueued) {
				t.Fatal(err)
			}
		}
		api.answerBy(func(key string) (int, http.Header) {
			if key == "refused" {
				return http.StatusUnprocessableEntity, nil // refused for good
			}
			return http.StatusServiceUnavailable, nil
		})
		ctx := context.Background()
		for range 10 { // five hours of replays; the TTL is two
			time.Sleep(30 * time.Minute)
			if _, err := p.ReplayDue(ctx); err != nil {
				t.Fatal(err)
			}
		}
		st, _ := store.Stats(ctx)
		if st.Dead != 2 || st.Pending != 0 {
			t.Fatalf("stats %+v, want both entries dead and kept", st)
		}
		list, _ := store.List(ctx, "", 10)
		for _, e := range list {
			switch e.IdempotencyKey() {
			case "refused":
				if e.LastStatus != http.StatusUnprocessableEntity || e.Replays != 1 {
					t.Errorf("refused entry: status %d after %d replays", e.LastStatus, e.Replays)
				}
			case "expires":
				if e.Replays < 2 || e.LastStatus != http.StatusServiceUnavailable {
					t.Errorf("expired entry: status %d after %d replays", e.LastStatus, e.Replays)
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		reasons := map[error]int{}
		for _, e := range dead {
			reasons[e.Reason]++
		}
		if len(dead) != 2 || reasons[heed.ErrExpired] != 1 || reasons[heed.ErrNotRetryable] != 1 {
			t.Errorf("EventDead events: %+v", dead)
		}
		if res, _ := p.ReplayDue(ctx); res != (heed.ReplayResult{}) {
			t.Errorf("dead entries were replayed: %+v", res)
		}
	})
}

func TestReplayScrubsAndPrepares(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, store := newDedupAPI(), new(outboxtest.Memory)
		api.down(http.StatusServiceUnavailable, nil)
		p, err := heed.NewPolicy(heed.WithBase(api), heed.WithLogger(nil), heed.WithOutbox(heed.Outbox{
			Store: store,
			Scrub: func(h http.Header) { h.Del("Authorization") },
			Prepare: func(_ context.Context, req *http.Request) error {
				req.Header.Set("Authorization", "Bearer fresh")
				return nil
			},
		}))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, "https://api.example/v1/orders", strings.NewReader("{}"))
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Authorization", "Bearer old")
		_, err = p.Transport().RoundTrip(req)
		var qe *heed.QueuedError
		if !errors.As(err, &qe) {
			t.Fatal(err)
		}
		if e, _ := store.Get(context.Background(), qe.ID); e.Header.Get("Authorization") != "" {
			t.Errorf("stored credentials: %q", e.Header.Get("Authorization"))
		}
		if req.Header.Get("Authorization") != "Bearer old" {
			t.Error("Scrub changed the caller's header")
		}
		api.up()
		time.Sleep(time.Hour)
		if res, _ := p.ReplayDue(context.Background()); res.Delivered != 1 {
			t.Fatalf("replay: %+v", res)
		}
		if last := api.auth[len(api.auth)-1]; last != "Bearer fresh" {
			t.Errorf("the replay sent Authorization %q", last)
		}
	})
}

func TestReplayRunsUntilItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, store := newDedupAPI(), new(outboxtest.Memory)
		api.down(http.StatusServiceUnavailable, nil)
		p := outboxPolicy(t, api, store, heed.WithoutBreaker())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- p.Replay(ctx) }()
		for i := range 5 {
			if _, err := post(context.Background(), p, "k"+string(rune('0'+i)), "{}"); !errors.Is(err, heed.ErrQueued) {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Minute)
		api.up()
		time.Sleep(time.Hour)
		synctest.Wait()
		if st, _ := store.Stats(context.Background()); st.Pending != 0 {
			t.Errorf("an hour after the API came back, %d entries wait", st.Pending)
		}
		if len(api.effects) != 5 {
			t.Errorf("%d writes took effect, want 5", len(api.effects))
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Replay returned %v", err)
		}
	})
}

func TestOutboxSettingsAreChecked(t *testing.T) {
	_, err := heed.NewPolicy(heed.WithOutbox(heed.Outbox{TTL: -1, MaxBody: -1, Concurrency: -2, Poll: -1}))
	for _, want := range []string{"nil Store", "TTL", "MaxBody", "Concurrency", "Poll"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	p, _ := heed.NewPolicy()
	if err := p.Replay(context.Background()); err == nil {
		t.Error("Replay under a policy without an outbox returned nil")
	}
	if _, err := p.ReplayDue(context.Background()); err == nil {
		t.Error("ReplayDue under a policy without an outbox returned nil")
	}
}
