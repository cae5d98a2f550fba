package ratelimit_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed/ratelimit"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// at is t0 plus d, the virtual time of these tests.
func at(d time.Duration) time.Time { return t0.Add(d) }

func take(t *testing.T, s ratelimit.Store, key string, now time.Time, ws []ratelimit.Window, sp ratelimit.Spread) ratelimit.Decision {
	t.Helper()
	d, err := s.Take(context.Background(), key, now, ws, sp)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Two windows at once: a request is admitted only when both admit it, and
// a refused request takes from neither.
func TestWindowsAllMustAdmit(t *testing.T) {
	ws := []ratelimit.Window{
		{Name: "fast", Limit: 10, Per: time.Second, Burst: 2},     // 100 ms a token
		{Name: "slow", Limit: 3, Per: 10 * time.Second, Burst: 3}, // 3.33 s a token
	}
	s := ratelimit.NewMemoryStore(0)
	type want struct {
		ok         bool
		fast, slow int64
	}
	steps := []struct {
		at time.Duration
		want
	}{
		{0, want{true, 1, 2}},
		{0, want{true, 0, 1}},
		{0, want{false, 0, 1}},                      // fast refuses; slow keeps its 1
		{100 * time.Millisecond, want{true, 0, 0}},  // fast refilled one
		{200 * time.Millisecond, want{false, 1, 0}}, // slow refuses; fast keeps its 1
		{250 * time.Millisecond, want{false, 1, 0}}, // and again: nothing taken
	}
	for i, st := range steps {
		d := take(t, s, "k", at(st.at), ws, ratelimit.Spread{})
		got := want{d.Allowed, d.States[0].Remaining, d.States[1].Remaining}
		if got != st.want || d.N != 2 {
			t.Fatalf("step %d at %v: got %+v (N %d), want %+v", i, st.at, got, d.N, st.want)
		}
	}
	// Slow's theoretical arrival time is 3 intervals on (10 s), its
	// tolerance 2 intervals: the next request conforms at 10/3 s.
	d := take(t, s, "k", at(time.Second), ws, ratelimit.Spread{})
	iv := ws[1].Interval()
	if want := at(3*iv - 2*iv); d.Allowed || !d.ConformAt.Equal(want) || !d.RetryAt.Equal(want) {
		t.Fatalf("refused by slow: allowed %v, conform %v retry %v, want %v", d.Allowed, d.ConformAt, d.RetryAt, want)
	}
	if d.States[1].Reset != 3*iv-time.Second {
		t.Fatalf("slow's reset %v, want %v", d.States[1].Reset, 3*iv-time.Second)
	}
	if d := take(t, s, "k", at(3*iv-2*iv), ws, ratelimit.Spread{}); !d.Allowed {
		t.Fatalf("at the conforming time: refused")
	}
}

// A key refused a thousand times is admitted at the time it was first
// told, exactly: refusals consume nothing.
func TestRefusalConsumesNothing(t *testing.T) {
	ws := []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 10}}
	s := ratelimit.NewMemoryStore(0)
	for range 10 {
		if !take(t, s, "k", t0, ws, ratelimit.Spread{}).Allowed {
			t.Fatal("burst refused")
		}
	}
	first := take(t, s, "k", t0, ws, ratelimit.Spread{})
	if first.Allowed || !first.ConformAt.Equal(at(10*time.Millisecond)) {
		t.Fatalf("after the burst: allowed %v, conform at %v", first.Allowed, first.ConformAt.Sub(t0))
	}
	for i := range 1000 {
		d := take(t, s, "k", at(time.Duration(i)*time.Microsecond), ws, ratelimit.Spread{})
		if d.Allowed || !d.ConformAt.Equal(first.ConformAt) {
			t.Fatalf("refusal %d: allowed %v, conform %v", i, d.Allowed, d.ConformAt.Sub(t0))
		}
	}
	if d := take(t, s, "k", first.ConformAt, ws, ratelimit.Spread{}); !d.Allowed || d.States[0].Remaining != 0 {
		t.Fatalf("at the conforming time: allowed %v, remaining %d", d.Allowed, d.States[0].Remaining)
	}
}

// The remaining count and reset of one window through a burst and its
// refill: r is the tokens left, t the time until the bucket is full.
func TestRemainingAndReset(t *testing.T) {
	ws := []ratelimit.Window{{Limit: 4, Per: time.Second, Burst: 4}} // 250 ms a token
	s := ratelimit.NewMemoryStore(0)
	for i, w := range []struct {
		at     time.Duration
		ok     bool
		remain int64
		reset  time.Duration
	}{
		{0, true, 3, 250 * time.Millisecond},
		{0, true, 2, 500 * time.Millisecond},
		{0, true, 1, 750 * time.Millisecond},
		{0, true, 0, time.Second},
		{0, false, 0, time.Second},
		{100 * time.Millisecond, false, 0, 900 * time.Millisecond},
		{250 * time.Millisecond, true, 0, time.Second},
		{2 * time.Second, true, 3, 250 * time.Millisecond}, // full again, then one taken
	} {
		d := take(t, s, "k", at(w.at), ws, ratelimit.Spread{})
		if d.Allowed != w.ok || d.States[0].Remaining != w.remain || d.States[0].Reset != w.reset {
			t.Fatalf("step %d: got %v r=%d t=%v, want %v r=%d t=%v", i, d.Allowed, d.States[0].Remaining, d.States[0].Reset, w.ok, w.remain, w.reset)
		}
	}
}

// Keys are kept apart.
func TestKeysApart(t *testing.T) {
	ws := []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 1}}
	s := ratelimit.NewMemoryStore(0)
	for i := range 100 {
		if !take(t, s, "k"+strconv.Itoa(i), t0, ws, ratelimit.Spread{}).Allowed {
			t.Fatalf("key %d refused", i)
		}
	}
	if take(t, s, "k7", t0, ws, ratelimit.Spread{}).Allowed {
		t.Fatal("k7 admitted twice")
	}
	if s.Len() != 100 {
		t.Fatalf("Len %d, want 100", s.Len())
	}
}

// A key whose windows are full again is forgotten as its shard sees
// traffic, and by Prune; a key still refilling is kept.
func TestIdleKeysForgotten(t *testing.T) {
	ws := []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 1}}
	s := ratelimit.NewMemoryStore(100) // one shard
	for i := range 100 {
		take(t, s, "idle"+strconv.Itoa(i), t0, ws, ratelimit.Spread{})
	}
	if s.Len() != 100 {
		t.Fatalf("Len %d, want 100", s.Len())
	}
	// One active key: its decisions sweep the shard, sparing the idle
	// keys for the grace of a minute.
	for i := range 30 {
		take(t, s, "active", at(2*time.Second+time.Duration(i)*time.Second), ws, ratelimit.Spread{})
	}
	if n := s.Len(); n != 100 { // 99 idle keys (one made room for the active one) and it
		t.Fatalf("Len %d within the grace, want 100", n)
	}
	for i := range 60 {
		take(t, s, "active", at(time.Minute+2*time.Second+time.Duration(i)*time.Second), ws, ratelimit.Spread{})
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("Len %d after the sweep, want 1 (the active key)", n)
	}

	big := ratelimit.NewMemoryStore(0)
	for i := range 1000 {
		take(t, big, "idle"+strconv.Itoa(i), t0, ws, ratelimit.Spread{})
	}
	take(t, big, "busy", t0, []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 1}}, ratelimit.Spread{})
	take(t, big, "busy", t0, []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 1}}, ratelimit.Spread{}) // refused
	if n := big.Prune(at(999 * time.Millisecond)); n != 0 {
		t.Fatalf("Prune before the refill forgot %d", n)
	}
	if n := big.Prune(at(time.Second)); n != 1001 {
		t.Fatalf("Prune forgot %d, want 1001", n)
	}
	if big.Len() != 0 {
		t.Fatalf("Len %d after Prune", big.Len())
	}
}

// A key with promises outstanding is kept until they pass.
func TestPromisesKeepKey(t *testing.T) {
	ws := []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 1}}
	sp := ratelimit.Spread{Step: time.Second, Horizon: time.Minute}
	s := ratelimit.NewMemoryStore(0)
	take(t, s, "k", t0, ws, sp)
	var last ratelimit.Decision
	for range 5 {
		last = take(t, s, "k", t0, ws, sp)
	}
	if !last.RetryAt.Equal(at(5 * time.Second)) {
		t.Fatalf("fifth refusal promised %v, want 5s", last.RetryAt.Sub(t0))
	}
	if n := s.Prune(at(3 * time.Second)); n != 0 {
		t.Fatalf("Prune forgot a key with promises ahead")
	}
	if n := s.Prune(at(6 * time.Second)); n != 1 {
		t.Fatalf("Prune forgot %d after the promises passed, want 1", n)
	}
}

// MaxKeys bounds the store under a flood of new keys, and the flood's
// one-request keys go first: a busy key keeps its state.
func TestMaxKeys(t *testing.T) {
	ws := []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 100}}
	s := ratelimit.NewMemoryStore(100)
	for range 50 {
		take(t, s, "busy", t0, ws, ratelimit.Spread{})
	}
	for i := range 5000 {
		take(t, s, "flood"+strconv.Itoa(i), t0, ws, ratelimit.Spread{})
		if n := s.Len(); n > 100 {
			t.Fatalf("after %d new keys: Len %d > MaxKeys 100", i+1, n)
		}
	}
	if d := take(t, s, "busy", t0, ws, ratelimit.Spread{}); d.States[0].Remaining != 49 {
		t.Fatalf("busy key's remaining %d, want 49: its state was evicted", d.States[0].Remaining)
	}
	// Larger stores are split in shards; the bound holds in all.
	s = ratelimit.NewMemoryStore(5000)
	for i := range 20000 {
		take(t, s, "flood"+strconv.Itoa(i), t0, ws, ratelimit.Spread{})
	}
	if n := s.Len(); n > 5000 || n < 2500 {
		t.Fatalf("Len %d, want at most 5000 and most of it used", n)
	}
}

// A MemoryStore serves one set of windows.
func TestMemoryStoreWindowCount(t *testing.T) {
	s := ratelimit.NewMemoryStore(0)
	one := []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 1}}
	take(t, s, "k", t0, one, ratelimit.Spread{})
	if _, err := s.Take(context.Background(), "k", t0, append(one, one...), ratelimit.Spread{}); err == nil {
		t.Fatal("two windows after one: no error")
	}
	if _, err := s.Take(context.Background(), "k", t0, nil, ratelimit.Spread{}); err == nil {
		t.Fatal("no windows: no error")
	}
}

// Many goroutines on one key at one instant: exactly the burst is
// admitted.
func TestConcurrentTakes(t *testing.T) {
	ws := []ratelimit.Window{{Limit: 1000, Per: time.Second, Burst: 500}}
	s := ratelimit.NewMemoryStore(0)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				d, err := s.Take(context.Background(), "shared", t0, ws, ratelimit.Spread{Step: time.Second, Horizon: time.Minute})
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
				// and keys of their own, across the shards
				s.Take(context.Background(), strconv.Itoa(g)+"/"+strconv.Itoa(i), t0, ws, ratelimit.Spread{})
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != 500 {
		t.Fatalf("admitted %d, want the burst of 500", n)
	}
}
