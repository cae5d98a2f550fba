package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/ratelimit"
)

// served is a handler that records, in virtual time since start, when it
// was called.
type served struct {
	start time.Time
	mu    sync.Mutex
	at    []time.Duration
}

func (s *served) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.at = append(s.at, time.Since(s.start))
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *served) times() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(slices.Values(s.at))
}

// send serves one request on its own goroutine and waits until it has
// finished or blocks (waiting for its slot), so that requests are decided
// in the order they are sent.
func send(h http.Handler, ctx context.Context) (*httptest.ResponseRecorder, <-chan struct{}) {
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	}()
	synctest.Wait()
	return rec, done
}

// The Store reserves a slot within Delay: the request is admitted as at
// its slot, and the next queues behind it.
func TestMemoryStoreDelay(t *testing.T) {
	ws := []ratelimit.Window{{Limit: 10, Per: time.Second, Burst: 2}} // 100 ms a token
	s := ratelimit.NewMemoryStore(0)
	sp := ratelimit.Spread{Delay: 150 * time.Millisecond}
	for i, want := range []time.Duration{0, 0, 100 * time.Millisecond} {
		d := take(t, s, "k", at(0), ws, sp)
		if !d.Allowed || want == 0 && !d.AdmitAt.IsZero() || want > 0 && d.AdmitAt != at(want) {
			t.Fatalf("request %d: allowed %v at %v, want at %v", i, d.Allowed, d.AdmitAt, at(want))
		}
	}
	// As at its slot (100 ms), the third left the bucket empty, full
	// again 200 ms later.
	d := take(t, s, "k", at(0), ws, ratelimit.Spread{})
	if d.Allowed || d.ConformAt != at(200*time.Millisecond) {
		t.Fatalf("the fourth without Delay: allowed %v, conforms at %v; want refused, 200ms", d.Allowed, d.ConformAt)
	}
	d = take(t, s, "k", at(0), ws, sp)
	if d.Allowed || !d.AdmitAt.IsZero() || d.ConformAt != at(200*time.Millisecond) {
		t.Fatalf("the fourth, 200 ms out with a Delay of 150: allowed %v at %v", d.Allowed, d.AdmitAt)
	}
	d = take(t, s, "k", at(50*time.Millisecond), ws, sp)
	if !d.Allowed || d.AdmitAt != at(200*time.Millisecond) || d.States[0].Remaining != 0 || d.States[0].Reset != 200*time.Millisecond {
		t.Fatalf("the fourth at 50ms: allowed %v at %v, state %+v", d.Allowed, d.AdmitAt, d.States[0])
	}
}

// A burst of 50 at 100/s, burst 10, with a MaxDelay of a second: ten are
// served at once and the forty others each at its slot, 10 ms apart; none
// is refused, and each delayed admission's event carries its wait.
func TestDelayBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu    sync.Mutex
			waits []time.Duration
		)
		hook := heed.HookFunc(func(_ context.Context, e heed.Event) {
			mu.Lock()
			defer mu.Unlock()
			if e.Kind != heed.EventAdmitted {
				t.Errorf("event %v", e.Kind)
			}
			waits = append(waits, e.Wait)
		})
		l, err := ratelimit.New(ratelimit.Config{
			Windows:  []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 10}},
			Key:      func(*http.Request) string { return "api" },
			MaxDelay: time.Second,
			Hooks:    []heed.Hook{hook},
		})
		if err != nil {
			t.Fatal(err)
		}
		s := &served{start: time.Now()}
		h := l.Handler(s)
		var wg sync.WaitGroup
		var refused atomic.Int64
		for range 50 {
			wg.Go(func() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				if rec.Code != http.StatusOK {
					refused.Add(1)
				}
				if rec.Header().Get("RateLimit") == "" || rec.Header().Get("RateLimit-Policy") == "" {
					t.Errorf("no quota fields: %v", rec.Header())
				}
			})
		}
		wg.Wait()
		var want []time.Duration
		for k := range 50 {
			want = append(want, time.Duration(max(0, k-9))*10*time.Millisecond)
		}
		if got := s.times(); refused.Load() != 0 || !slices.Equal(got, want) {
			t.Fatalf("refused %d, served at %v; want none refused, served at %v", refused.Load(), got, want)
		}
		slices.Sort(waits)
		if !slices.Equal(waits, want) {
			t.Fatalf("events' waits %v, want %v", waits, want)
		}
	})
}

// A request whose slot lies beyond MaxDelay is refused at once, with the
// usual fields, and takes no slot.
func TestDelayBeyondMaxDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := ratelimit.New(ratelimit.Config{
			Windows:  []ratelimit.Window{{Limit: 10, Per: time.Second, Burst: 1}}, // 100 ms a token
			Key:      func(*http.Request) string { return "api" },
			MaxDelay: 250 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		s := &served{start: time.Now()}
		h := l.Handler(s)
		var dones []<-chan struct{}
		for range 3 { // at once, at 100 ms and at 200 ms
			_, done := send(h, context.Background())
			dones = append(dones, done)
		}
		rec, done := send(h, context.Background()) // its slot, 300 ms, is too far
		<-done
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" ||
			rec.Header().Get("RateLimit") != `"default";r=0;t=1` || rec.Header().Get("RateLimit-Policy") != `"default";q=10;w=1` ||
			rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("beyond MaxDelay: %d %v", rec.Code, rec.Header())
		}
		if el := time.Since(s.start); el != 0 {
			t.Fatalf("refused after %v, want at once", el)
		}
		for _, d := range dones {
			<-d
		}
		if got, want := s.times(), []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}; !slices.Equal(got, want) {
			t.Fatalf("served at %v, want %v", got, want)
		}
		// The refusal took no slot: at 200 ms, the next is delayed to 300.
		_, done = send(h, context.Background())
		<-done
		if got := s.times(); got[len(got)-1] != 300*time.Millisecond {
			t.Fatalf("served at %v, want the last at 300ms", got)
		}
	})
}

// A client that gives up while waiting leaves at once with nothing
// written and its handler never called; its slot is not given back.
func TestDelayClientGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := ratelimit.New(ratelimit.Config{
			Windows:  []ratelimit.Window{{Limit: 2, Per: time.Second, Burst: 1}}, // 500 ms a token
			Key:      func(*http.Request) string { return "api" },
			MaxDelay: 2 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		s := &served{start: time.Now()}
		h := l.Handler(s)
		_, done := send(h, context.Background())
		<-done
		ctx, cancel := context.WithCancel(context.Background())
		rec, done := send(h, ctx) // its slot is at 500 ms
		time.Sleep(100 * time.Millisecond)
		cancel()
		<-done
		if el := time.Since(s.start); el != 100*time.Millisecond || rec.Body.Len() != 0 || rec.Code != 200 /* unwritten */ || len(rec.Header().Get("Retry-After")) != 0 {
			t.Fatalf("gone after %v, %d bytes written, fields %v", el, rec.Body.Len(), rec.Header())
		}
		if got := s.times(); len(got) != 1 {
			t.Fatalf("served at %v, want the first only", got)
		}
		// The slot at 500 ms stays taken: the next request queues behind
		// it, at 1 s.
		_, done = send(h, context.Background())
		<-done
		if got := s.times(); !slices.Equal(got, []time.Duration{0, time.Second}) {
			t.Fatalf("served at %v, want 0 and 1s", got)
		}
	})
}

// Once MaxWaiting requests wait, the next is refused as without MaxDelay
// and takes no slot; when they have been served, requests wait again.
func TestDelayMaxWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := ratelimit.New(ratelimit.Config{
			Windows:    []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 1}}, // 10 ms a token
			Key:        func(*http.Request) string { return "api" },
			MaxDelay:   time.Second,
			MaxWaiting: 3,
		})
		if err != nil {
			t.Fatal(err)
		}
		s := &served{start: time.Now()}
		h := l.Handler(s)
		var dones []<-chan struct{}
		for range 4 { // one at once, three waiting: 10, 20, 30 ms
			_, done := send(h, context.Background())
			dones = append(dones, done)
		}
		rec, done := send(h, context.Background())
		<-done
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("the fourth waiting: %d, Retry-After %q; want 429 and 1", rec.Code, rec.Header().Get("Retry-After"))
		}
		for _, d := range dones {
			<-d
		}
		if got, want := s.times(), []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond}; !slices.Equal(got, want) {
			t.Fatalf("served at %v, want %v", got, want)
		}
		// None wait now (30 ms): the next waits for 40 ms, the refused one
		// having taken no slot.
		_, done = send(h, context.Background())
		<-done
		if got := s.times(); got[len(got)-1] != 40*time.Millisecond {
			t.Fatalf("served at %v, want the last at 40ms", got)
		}
	})
}
