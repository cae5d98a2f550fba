package shed_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/shed"
	"github.com/heed-go/heed/tier"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixed is a Config whose limit stays at n.
func fixed(n int) shed.Config {
	return shed.Config{InitialLimit: n, MinLimit: n, MaxLimit: n}
}

// gate is a handler that holds every request until it is let go: entered
// receives each request as it starts, release lets one go.
type gate struct {
	entered chan *http.Request
	release chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan *http.Request, 100), release: make(chan struct{})}
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.entered <- r
	<-g.release
	w.WriteHeader(http.StatusOK)
}

// recorded keeps the events a shedder reports.
type recorded struct {
	mu     sync.Mutex
	events []heed.Event
}

func (e *recorded) OnEvent(_ context.Context, ev heed.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

func (e *recorded) of(kind heed.EventKind) []heed.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []heed.Event
	for _, ev := range e.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// request returns a GET with the header fields kv (name, value, ...).
func request(kv ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/items?token=s3cr3t", nil)
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Set(kv[i], kv[i+1])
	}
	return r
}

// serve sends r to h and returns the response.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func mustNew(t *testing.T, cfg shed.Config) *shed.Shedder {
	t.Helper()
	s, err := shed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewNamesEveryBadField(t *testing.T) {
	_, err := shed.New(shed.Config{
		InitialLimit: -1, MinLimit: 5, MaxLimit: 3, Tolerance: math.NaN(), Smoothing: 2,
		Window: -time.Second, MinSamples: -1, BaselineWindow: -time.Second,
		QueueTarget: time.Second, QueueInterval: time.Millisecond,
		RetryShare: 1.5, CriticalHeadroom: -0.1, RetryAfter: -time.Second, RetryAfterJitter: 48 * time.Hour,
		Hooks: []heed.Hook{nil},
	})
	if err == nil {
		t.Fatal("New accepted a bad Config")
	}
	for _, field := range []string{"InitialLimit", "MinLimit", "Tolerance", "Smoothing", "Window", "MinSamples",
		"BaselineWindow", "QueueTarget", "RetryShare", "CriticalHeadroom", "RetryAfter", "RetryAfterJitter", "Hooks[0]"} {
		if !strings.Contains(err.Error(), "Config."+field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}

	for _, cfg := range []shed.Config{
		{InitialLimit: 50, MaxLimit: 20},
		{Tolerance: 1},
		{BaselineWindow: time.Second, Window: time.Second},
	} {
		if _, err := shed.New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
	for _, cfg := range []shed.Config{
		{},
		{MaxLimit: 5},                         // the default InitialLimit follows it
		{MinLimit: 50},                        // and the MinLimit
		{MaxQueue: -1},                        // no queue
		{RetryAfterJitter: -1},                // no jitter
		{ProbeInterval: -1},                   // no probes
		{RetryAfter: 1500 * time.Millisecond}, // rounded up
	} {
		if _, err := shed.New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

func TestAttempt(t *testing.T) {
	for _, c := range []struct {
		kv   []string
		want int
	}{
		{nil, 1},
		{[]string{tier.HeaderAttempt, "3"}, 3},
		{[]string{tier.HeaderAttempt, "1"}, 1},
		{[]string{tier.HeaderAttempt, "x"}, 1},
		{[]string{tier.HeaderAttempt, "-2"}, 1},
		{[]string{tier.HeaderAttempt, "99999999"}, 1},
		{[]string{"X-Envoy-Attempt-Count", "1"}, 1},
		{[]string{"X-Envoy-Attempt-Count", "2"}, 2},
		{[]string{"Grpc-Previous-Rpc-Attempts", "0"}, 1},
		{[]string{"Grpc-Previous-Rpc-Attempts", "2"}, 3},
		{[]string{"Amz-Sdk-Request", "attempt=1; max=3"}, 1},
		{[]string{"Amz-Sdk-Request", "attempt=2; max=3"}, 2},
		{[]string{"Amz-Sdk-Request", "ttl=20190101T000000Z; attempt=4; max=5"}, 4},
		{[]string{"Amz-Sdk-Request", "attempt=two"}, 1},
		{[]string{tier.HeaderAttempt, "2", "X-Envoy-Attempt-Count", "4"}, 4},
	} {
		if got := shed.Attempt(request(c.kv...)); got != c.want {
			t.Errorf("Attempt(%q) = %d, want %d", c.kv, got, c.want)
		}
	}
}

// TestRetriesShedFirst: retries (by any client's mark) may fill only
// RetryShare of the limit, first attempts all of it, critical requests
// a little more.
func TestRetriesShedFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		ev := &recorded{}
		cfg := fixed(8)
		cfg.MaxQueue = -1
		cfg.Hooks = []heed.Hook{ev}
		cfg.Priority = func(r *http.Request) shed.Priority {
			if r.Header.Get("X-Critical") != "" {
				return shed.Critical
			}
			return shed.Normal
		}
		h := mustNew(t, cfg).Handler(g)
		var wg sync.WaitGroup
		start := func(kv ...string) {
			wg.Go(func() { serve(h, request(kv...)) })
			<-g.entered
		}
		for range 6 {
			start()
		}
		// 6 of 8 in flight: RetryShare (0.75) of the limit is taken.
		retries := [][]string{
			{tier.HeaderAttempt, "2"},
			{"X-Envoy-Attempt-Count", "2"},
			{"Grpc-Previous-Rpc-Attempts", "1"},
			{"Amz-Sdk-Request", "attempt=3; max=3"},
		}
		for _, kv := range retries {
			if w := serve(h, request(kv...)); w.Code != http.StatusServiceUnavailable {
				t.Errorf("retry %q at 6 of 8 in flight: status %d, want 503", kv, w.Code)
			}
		}
		start() // first attempts still get in: 7,
		start() // 8,
		if w := serve(h, request()); w.Code != http.StatusServiceUnavailable {
			t.Errorf("first attempt past the limit: status %d, want 503", w.Code)
		}
		start("X-Critical", "1") // a critical one past the limit: 9 (headroom: 1)
		if w := serve(h, request("X-Critical", "1")); w.Code != http.StatusServiceUnavailable {
			t.Errorf("critical request past the headroom: status %d, want 503", w.Code)
		}
		close(g.release)
		wg.Wait()

		var attempts []int
		for _, e := range ev.of(heed.EventShed) {
			attempts = append(attempts, e.Attempt)
			if !errors.Is(e.Reason, shed.ErrOverloaded) || e.Err != nil || e.Status != http.StatusServiceUnavailable {
				t.Errorf("shed event: Reason %v, Err %v, Status %d", e.Reason, e.Err, e.Status)
			}
		}
		if want := []int{2, 2, 2, 3, 1, 1}; !slices.Equal(attempts, want) {
			t.Errorf("shed attempts %v, want %v", attempts, want)
		}
		if n := len(ev.of(heed.EventAdmitted)); n != 9 {
			t.Errorf("%d admitted, want 9", n)
		}
	})
}

// TestQueueServesByPriority: a slot freed goes to the queue's most urgent
// request, not its oldest; a retry waits until retries may run.
func TestQueueServesByPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		h := mustNew(t, fixed(4)).Handler(g)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { serve(h, request()) })
			<-g.entered
		}
		retry := make(chan int, 1)
		wg.Go(func() { retry <- serve(h, request(tier.HeaderAttempt, "2")).Code })
		synctest.Wait()
		wg.Go(func() { serve(h, request("X-First", "1")) })
		synctest.Wait()

		g.release <- struct{}{}
		if r := <-g.entered; r.Header.Get("X-First") == "" {
			t.Fatalf("freed slot went to %v, want the first attempt queued after the retry", r.Header)
		}
		// 4 in flight; a retry may start below 3 of 4.
		g.release <- struct{}{}
		synctest.Wait()
		select {
		case r := <-g.entered:
			t.Fatalf("%v started at 3 of 4 in flight", r.Header)
		default:
		}
		g.release <- struct{}{}
		if r := <-g.entered; r.Header.Get(tier.HeaderAttempt) != "2" {
			t.Fatalf("started %v, want the retry", r.Header)
		}
		close(g.release)
		wg.Wait()
		if code := <-retry; code != http.StatusOK {
			t.Errorf("retry: status %d", code)
		}
	})
}

// TestFullQueueEvictsLowerPriority: a first attempt finding the queue full
// of retries takes the newest one's place.
func TestFullQueueEvictsLowerPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		ev := &recorded{}
		cfg := fixed(1)
		cfg.MaxQueue = 1
		cfg.Hooks = []heed.Hook{ev}
		h := mustNew(t, cfg).Handler(g)
		var wg sync.WaitGroup
		wg.Go(func() { serve(h, request()) })
		<-g.entered
		codes := make(chan int, 3)
		wg.Go(func() { codes <- serve(h, request(tier.HeaderAttempt, "2")).Code })
		synctest.Wait()
		wg.Go(func() { codes <- serve(h, request()).Code }) // takes the retry's place
		synctest.Wait()
		if code := <-codes; code != http.StatusServiceUnavailable {
			t.Fatalf("evicted retry: status %d, want 503", code)
		}
		if code := serve(h, request(tier.HeaderAttempt, "2")).Code; code != http.StatusServiceUnavailable {
			t.Errorf("retry finding the queue full of first attempts: status %d, want 503", code)
		}
		close(g.release)
		wg.Wait()
		if code := <-codes; code != http.StatusOK {
			t.Errorf("queued first attempt: status %d, want 200", code)
		}
		shed := ev.of(heed.EventShed)
		if len(shed) != 2 || shed[0].Attempt != 2 || !errors.Is(shed[0].Reason, shed_ErrOverloaded) {
			t.Errorf("shed events %+v", shed)
		}
	})
}

var shed_ErrOverloaded = shed.ErrOverloaded

// TestDeadlinePassedIsNotStarted: a request whose caller has no time left
// is answered 503 without reaching the handler.
func TestDeadlinePassedIsNotStarted(t *testing.T) {
	ev := &recorded{}
	called := 0
	h := mustNew(t, shed.Config{Hooks: []heed.Hook{ev}}).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called++
	}))

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		name  string
		r     *http.Request
		cause error
	}{
		{"Heed-Timeout 0", request(tier.HeaderTimeout, "0"), nil},
		{"Heed-Timeout negative", request(tier.HeaderTimeout, "-20"), nil},
		{"context canceled", request().WithContext(canceled), context.Canceled},
		{"context past its deadline", request().WithContext(expired), context.DeadlineExceeded},
	} {
		w := serve(h, c.r)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "" ||
			!strings.Contains(w.Body.String(), shed.ProblemDeadline) {
			t.Errorf("%s: status %d, Retry-After %q, body %s", c.name, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
		evs := ev.of(heed.EventShed)
		e := evs[len(evs)-1]
		if !errors.Is(e.Err, shed.ErrDeadline) || !errors.Is(e.Reason, shed.ErrDeadline) || e.Wait != 0 ||
			c.cause != nil && !errors.Is(e.Err, c.cause) {
			t.Errorf("%s: event Err %v, Reason %v, Wait %v", c.name, e.Err, e.Reason, e.Wait)
		}
	}
	if called != 0 {
		t.Errorf("handler called %d times", called)
	}

	// Time left, or a Heed-Timeout that is not a number: served.
	for _, v := range []string{"1", "5000", "soon"} {
		if w := serve(h, request(tier.HeaderTimeout, v)); w.Code != http.StatusOK {
			t.Errorf("Heed-Timeout %q: status %d", v, w.Code)
		}
	}
	if called != 3 {
		t.Errorf("handler called %d times, want 3", called)
	}
}

// TestDeadlinePassesInQueue: a queued request whose Heed-Timeout runs out
// leaves the queue then, not started; it met an overload, so it is told
// Retry-After.
func TestDeadlinePassesInQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		ev := &recorded{}
		cfg := fixed(1)
		cfg.Hooks = []heed.Hook{ev}
		h := tier.Middleware(mustNew(t, cfg).Handler(g))
		var wg sync.WaitGroup
		wg.Go(func() { serve(h, request()) })
		<-g.entered

		start := time.Now()
		w := serve(h, request(tier.HeaderTimeout, "30"))
		if waited := time.Since(start); waited != 30*time.Millisecond {
			t.Errorf("waited %v in the queue, want the 30 ms left", waited)
		}
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
			!strings.Contains(w.Body.String(), shed.ProblemDeadline) {
			t.Errorf("status %d, Retry-After %q, body %s", w.Code, w.Header().Get("Retry-After"), w.Body)
		}
		close(g.release)
		wg.Wait()
		e := ev.of(heed.EventShed)
		if len(e) != 1 || !errors.Is(e[0].Err, shed.ErrDeadline) || e[0].Wait < time.Second || e[0].Duration != 30*time.Millisecond {
			t.Errorf("shed events %+v", e)
		}
	})
}

// TestQueueAbsorbsBurst: requests past the limit wait for a slot rather
// than being refused, as long as the queue does not stand.
func TestQueueAbsorbsBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ev := &recorded{}
		cfg := fixed(2)
		cfg.Hooks = []heed.Hook{ev}
		h := mustNew(t, cfg).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(20 * time.Millisecond)
		}))
		var wg sync.WaitGroup
		codes := make(chan int, 4)
		for range 4 { // twice the limit at once
			wg.Go(func() { codes <- serve(h, request()).Code })
		}
		wg.Wait()
		close(codes)
		for code := range codes {
			if code != http.StatusOK {
				t.Errorf("status %d, want every request of the burst served", code)
			}
		}
		var waits []time.Duration
		for _, e := range ev.of(heed.EventAdmitted) {
			waits = append(waits, e.Wait)
		}
		slices.Sort(waits)
		if want := []time.Duration{0, 0, 20 * time.Millisecond, 20 * time.Millisecond}; !slices.Equal(waits, want) {
			t.Errorf("queue waits %v, want %v", waits, want)
		}
	})
}

// TestQueueShedsBySojourn: once the queue has stayed non-empty for a
// QueueInterval, a request that waits longer than QueueTarget is shed; no
// request ever waits longer than QueueInterval.
func TestQueueShedsBySojourn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ev := &recorded{}
		cfg := fixed(1)
		cfg.MaxQueue = 100
		cfg.MinSamples = 1 << 20 // no baseline: the configured target and interval hold
		cfg.Hooks = []heed.Hook{ev}
		h := mustNew(t, cfg).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(60 * time.Millisecond)
		}))
		// A request every 10 ms, each taking 60 ms: six times what the
		// handler serves, for 600 ms.
		begin := time.Now()
		var wg sync.WaitGroup
		for range 60 {
			wg.Go(func() { serve(h, request()) })
			time.Sleep(10 * time.Millisecond)
		}
		wg.Wait()

		admitted := ev.of(heed.EventAdmitted)
		var burst, late int
		for _, e := range admitted {
			enqueued := e.Time.Add(-e.Wait).Sub(begin)
			switch {
			case e.Wait > 100*time.Millisecond:
				t.Errorf("a request enqueued at %v waited %v, past QueueInterval", enqueued, e.Wait)
			case enqueued > 110*time.Millisecond && e.Wait > 5*time.Millisecond:
				late++
				t.Errorf("a request enqueued at %v, in a standing queue, waited %v, past QueueTarget", enqueued, e.Wait)
			case e.Wait > 5*time.Millisecond:
				burst++
			}
		}
		if burst == 0 {
			t.Error("no request waited past QueueTarget while the queue absorbed the burst")
		}
		queueShed := 0
		for _, e := range ev.of(heed.EventShed) {
			if !errors.Is(e.Reason, shed.ErrQueueTimeout) {
				t.Errorf("shed for %v, want ErrQueueTimeout", e.Reason)
			}
			queueShed++
		}
		// The handler serves about 10 of the 60; the rest is shed by
		// sojourn, none refused for a full queue.
		if queueShed < 40 || len(admitted) < 9 {
			t.Errorf("%d admitted, %d shed by sojourn", len(admitted), queueShed)
		}
	})
}

// TestPanicFreesSlot: a handler that panics gives its slot back.
func TestPanicFreesSlot(t *testing.T) {
	s := mustNew(t, fixed(1))
	h := s.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	func() {
		defer func() {
			if recover() != http.ErrAbortHandler {
				t.Error("the handler's panic did not go through")
			}
		}()
		serve(h, request())
	}()
	if st := s.Stats(); st.InFlight != 0 {
		t.Errorf("%d in flight after a panic", st.InFlight)
	}
}

// TestEvents: the events carry the request's class, method, redacted URL,
// attempt and waits; a hook may call back into the shedder.
func TestEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s *shed.Shedder
		ev := &recorded{}
		cfg := fixed(1)
		cfg.MaxQueue = -1
		cfg.RetryAfter, cfg.RetryAfterJitter = 2*time.Second, -1
		cfg.Class = func(r *http.Request) string { return "items" }
		cfg.Hooks = []heed.Hook{ev, heed.HookFunc(func(ctx context.Context, e heed.Event) { s.Stats() })}
		s = mustNew(t, cfg)
		g := newGate()
		h := s.Handler(g)
		var wg sync.WaitGroup
		wg.Go(func() { serve(h, request(tier.HeaderAttempt, "2", "X-Envoy-Attempt-Count", "3")) })
		<-g.entered
		if w := serve(h, request()); w.Header().Get("Retry-After") != "2" {
			t.Errorf("Retry-After %q, want 2 without jitter", w.Header().Get("Retry-After"))
		}
		close(g.release)
		wg.Wait()

		a, sh := ev.of(heed.EventAdmitted), ev.of(heed.EventShed)
		if len(a) != 1 || len(sh) != 1 {
			t.Fatalf("events %+v", ev.events)
		}
		for _, e := range []heed.Event{a[0], sh[0]} {
			if e.Key != "items" || e.Method != http.MethodGet || e.URL.String() != "/items?token=REDACTED" || e.Time.IsZero() {
				t.Errorf("%v event: Key %q, Method %q, URL %v, Time %v", e.Kind, e.Key, e.Method, e.URL, e.Time)
			}
		}
		if a[0].Attempt != 3 || a[0].Status != 0 || a[0].Wait != 0 {
			t.Errorf("admitted: %+v", a[0])
		}
		if sh[0].Attempt != 1 || sh[0].Status != 503 || sh[0].Wait != 2*time.Second || sh[0].Err != nil {
			t.Errorf("shed: %+v", sh[0])
		}
	})
}

func TestDefaultClass(t *testing.T) {
	ev := &recorded{}
	serve(mustNew(t, shed.Config{Hooks: []heed.Hook{ev}}).Handler(http.NotFoundHandler()), request())
	if e := ev.of(heed.EventAdmitted); len(e) != 1 || e[0].Key != "default" {
		t.Errorf("events %+v", e)
	}
}

// TestRetryAfterSpread: Retry-After is RetryAfter plus a whole number of
// seconds up to RetryAfterJitter, and does vary.
func TestRetryAfterSpread(t *testing.T) {
	cfg := fixed(1)
	cfg.MaxQueue = -1
	s := mustNew(t, cfg)
	g := newGate()
	h := s.Handler(g)
	var wg sync.WaitGroup
	wg.Go(func() { serve(h, request()) })
	<-g.entered
	seen := map[string]int{}
	for range 200 {
		seen[serve(h, request()).Header().Get("Retry-After")]++
	}
	close(g.release)
	wg.Wait()
	for v := range seen {
		if v != "1" && v != "2" && v != "3" {
			t.Errorf("Retry-After %q, want 1 to 3", v)
		}
	}
	if len(seen) < 3 {
		t.Errorf("Retry-After took the values %v, want all of 1, 2 and 3", seen)
	}
}
