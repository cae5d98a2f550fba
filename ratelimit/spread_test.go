package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed/ratelimit"
)

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

// stormResult is what exactly obedient clients met.
type stormResult struct {
	again    int64         // refusals after the first, of clients that came back when told
	last     time.Duration // when the last client was admitted
	told     map[int]int   // how many were told each Retry-After
	maxFirst time.Duration // the longest a first refusal took to arrive (its hold)
}

// storm runs, in a synctest bubble, n clients that all arrive at once at
// one key of 100/s with a burst of 10, and each obey every Retry-After
// exactly: they come back Retry-After seconds after the refusal reaches
// them, no sooner and no later.
func storm(t *testing.T, cfg ratelimit.Config, n int) stormResult {
	t.Helper()
	var res stormResult
	synctest.Test(t, func(t *testing.T) {
		cfg.Windows = []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 10}}
		cfg.Key = func(*http.Request) string { return "api" } // one limit shared by every client
		l, err := ratelimit.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		h := l.Handler(ok)
		start := time.Now()
		var (
			again atomic.Int64
			mu    sync.Mutex
			wg    sync.WaitGroup
		)
		res.told = map[int]int{}
		for range n {
			wg.Go(func() {
				for refusals := 0; ; refusals++ {
					sent := time.Now()
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
					if rec.Code == http.StatusOK {
						mu.Lock()
						res.last = max(res.last, time.Since(start))
						mu.Unlock()
						return
					}
					if rec.Code != http.StatusTooManyRequests {
						t.Errorf("status %d", rec.Code)
						return
					}
					ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
					if err != nil || ra < 0 {
						t.Errorf("Retry-After %q", rec.Header().Get("Retry-After"))
						return
					}
					if refusals > 0 {
						again.Add(1)
					} else {
						mu.Lock()
						res.told[ra]++
						res.maxFirst = max(res.maxFirst, time.Since(sent))
						mu.Unlock()
					}
					if refusals > 20 {
						t.Error("refused 20 times")
						return
					}
					time.Sleep(time.Duration(ra) * time.Second)
				}
			})
		}
		wg.Wait()
		res.again = again.Load()
	})
	return res
}

// Sixty clients arrive together at 100/s, burst 10: ten are admitted and
// fifty refused in the same instant, and all obey Retry-After exactly.
//
// Told the earliest conforming time rounded up, all fifty come back at 1 s
// and forty are refused again, then thirty, ... Spread over whole seconds,
// ten come back each second and none is refused again. Held to their
// slots, they come back 10 ms apart and all are served within half a
// second.
func TestSpreadStorm(t *testing.T) {
	plain := storm(t, ratelimit.Config{NoSpread: true}, 60)
	rounded := storm(t, ratelimit.Config{}, 60)
	held := storm(t, ratelimit.Config{HoldRefusals: true}, 60)
	heldShort := storm(t, ratelimit.Config{HoldRefusals: true, MaxHold: 250 * time.Millisecond}, 60)
	t.Logf("plain:      refused again %3d, last served at %v, told %v", plain.again, plain.last, plain.told)
	t.Logf("rounded:    refused again %3d, last served at %v, told %v", rounded.again, rounded.last, rounded.told)
	t.Logf("held:       refused again %3d, last served at %v, told %v, longest hold %v", held.again, held.last, held.told, held.maxFirst)
	t.Logf("held 250ms: refused again %3d, last served at %v, told %v, longest hold %v", heldShort.again, heldShort.last, heldShort.told, heldShort.maxFirst)

	if plain.again != 40+30+20+10 || plain.told[1] != 50 {
		t.Errorf("plain Retry-After: refused again %d, told %v; want 100 and all fifty told 1", plain.again, plain.told)
	}
	if rounded.again != 0 || rounded.last != 5*time.Second {
		t.Errorf("rounded: refused again %d, last served at %v; want 0 and 5s", rounded.again, rounded.last)
	}
	for s := 1; s <= 5; s++ {
		if rounded.told[s] != 10 {
			t.Errorf("rounded: %d told %d s, want 10 a second (the burst): %v", rounded.told[s], s, rounded.told)
		}
	}
	if held.again != 0 || held.last != 500*time.Millisecond || held.told[0] != 50 || held.maxFirst > time.Second {
		t.Errorf("held: refused again %d, last served at %v, told %v, hold %v; want 0, 500ms, all told 0, hold under 1s",
			held.again, held.last, held.told, held.maxFirst)
	}
	if heldShort.again != 0 || heldShort.maxFirst > 250*time.Millisecond {
		t.Errorf("held 250ms: refused again %d, longest hold %v", heldShort.again, heldShort.maxFirst)
	}
	if !(heldShort.last < rounded.last && heldShort.last > held.last) {
		t.Errorf("held 250ms served the last at %v: want between held (%v) and rounded (%v)", heldShort.last, held.last, rounded.last)
	}
}

// Refusals at different instants each get slots on their own grid of
// whole seconds, and the promises of one instant make room for none
// already made: three waves of refusals, all obeying, none refused twice.
func TestSpreadWaves(t *testing.T) {
	for _, mode := range []string{"plain", "rounded", "held"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l, err := ratelimit.New(ratelimit.Config{
					Windows:      []ratelimit.Window{{Limit: 20, Per: time.Second, Burst: 5}},
					Key:          func(*http.Request) string { return "api" },
					NoSpread:     mode == "plain",
					HoldRefusals: mode == "held",
				})
				if err != nil {
					t.Fatal(err)
				}
				h := l.Handler(ok)
				var again, served atomic.Int64
				var wg sync.WaitGroup
				for range 3 {
					for range 15 {
						wg.Go(func() {
							for n := 0; ; n++ {
								rec := httptest.NewRecorder()
								h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
								if rec.Code == http.StatusOK {
									served.Add(1)
									return
								}
								if n > 0 {
									again.Add(1)
								}
								ra, _ := strconv.Atoi(rec.Header().Get("Retry-After"))
								time.Sleep(time.Duration(ra) * time.Second)
							}
						})
					}
					time.Sleep(330 * time.Millisecond)
				}
				wg.Wait()
				t.Logf("%s: refused again %d", mode, again.Load())
				switch {
				case served.Load() != 45:
					t.Errorf("served %d, want 45", served.Load())
				case mode == "plain" && again.Load() == 0:
					t.Errorf("plain Retry-After: none refused again; the waves do not collide")
				case mode != "plain" && again.Load() != 0:
					t.Errorf("refused again %d, want 0", again.Load())
				}
			})
		})
	}
}

// A client that ignores Retry-After and hammers cannot push its key's
// schedule past the horizon.
func TestSpreadHorizon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := ratelimit.New(ratelimit.Config{
			Windows:       []ratelimit.Window{{Limit: 10, Per: time.Second, Burst: 1}},
			Key:           func(*http.Request) string { return "api" },
			SpreadHorizon: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		h := l.Handler(ok)
		most := 0
		for range 1000 {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code == http.StatusTooManyRequests {
				ra, _ := strconv.Atoi(rec.Header().Get("Retry-After"))
				most = max(most, ra)
			}
		}
		if most != 6 { // the horizon past the conforming time (100 ms), on the whole-second grid
			t.Fatalf("longest Retry-After %d s, want 6", most)
		}
		// The flood's promises do not outlive the horizon: after it, a
		// request is admitted, and a refusal is promised a near slot.
		time.Sleep(6 * time.Second)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("after the horizon: %d", rec.Code)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if got := rec.Header().Get("Retry-After"); got != "1" {
			t.Fatalf("a refusal after the horizon told %q, want 1", got)
		}
	})
}

// A held refusal whose client goes away writes nothing and lets go at
// once.
func TestHoldClientGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := ratelimit.New(ratelimit.Config{
			Windows:      []ratelimit.Window{{Limit: 2, Per: time.Second, Burst: 1}},
			Key:          func(*http.Request) string { return "api" },
			HoldRefusals: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		h := l.Handler(ok)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		req := httptest.NewRequest("GET", "/", nil)
		ctx, cancel := context.WithCancel(req.Context())
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		start := time.Now()
		go func() {
			h.ServeHTTP(rec, req.WithContext(ctx))
			close(done)
		}()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		cancel()
		<-done
		if el := time.Since(start); el != 100*time.Millisecond || rec.Body.Len() != 0 || rec.Code != 200 /* unwritten */ {
			t.Fatalf("gone after %v with %d bytes written", el, rec.Body.Len())
		}
	})
}
