package throttle_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/throttle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newBulkhead(t testing.TB, c clock.Clock, max, maxQueue int, timeout time.Duration) *throttle.Bulkhead {
	t.Helper()
	b, err := throttle.NewBulkhead(c, max, maxQueue, timeout)
	if err != nil {
		t.Fatalf("NewBulkhead(%d, %d, %v): %v", max, maxQueue, timeout, err)
	}
	return b
}

// acquireAsync starts Acquire in a goroutine and returns the channel its
// result arrives on.
func acquireAsync(ctx context.Context, b *throttle.Bulkhead) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- b.Acquire(ctx) }()
	return ch
}

// waitResult waits (really, but briefly) for an Acquire started by
// acquireAsync.
func waitResult(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Acquire did not return", what)
		return nil
	}
}

// notReturned checks that an Acquire started by acquireAsync is still
// waiting.
func notReturned(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s: Acquire returned %v, want it still waiting", what, err)
	case <-time.After(time.Millisecond):
	}
}

// pollQueued waits, in millisecond polls, until b has n calls queued. It is
// for bulkheads without a queue timeout, whose waiters make no timer.
func pollQueued(t *testing.T, b *throttle.Bulkhead, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, q := b.InUse(); q == n {
			return
		}
		if time.Now().After(deadline) {
			_, q := b.InUse()
			t.Fatalf("%d calls queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantInUse(t *testing.T, what string, b *throttle.Bulkhead, running, queued int) {
	t.Helper()
	if r, q := b.InUse(); r != running || q != queued {
		t.Errorf("%s: InUse() = %d running, %d queued; want %d, %d", what, r, q, running, queued)
	}
}

func TestNewBulkheadValidation(t *testing.T) {
	clk := heedtest.NewClock(t0)
	tests := []struct {
		name     string
		c        clock.Clock
		max      int
		maxQueue int
		timeout  time.Duration
		wantErr  []string // substrings of the error; none for success
	}{
		{"ok", clk, 1, 0, 0, nil},
		{"ok with queue", clk, 4, 10, time.Second, nil},
		{"max 0", clk, 0, 0, 0, []string{"bulkhead of 0 calls"}},
		{"max negative", clk, -3, 0, 0, []string{"bulkhead of -3 calls"}},
		{"queue negative", clk, 1, -1, 0, []string{"queue of -1"}},
		{"timeout negative", clk, 1, 0, -time.Second, []string{"queue timeout -1s"}},
		{"nil clock", nil, 1, 0, 0, []string{"nil clock"}},
		{"all wrong", nil, 0, -1, -time.Second, []string{"bulkhead of 0 calls", "queue of -1", "queue timeout -1s", "nil clock"}},
	}
	for _, tt := range tests {
		b, err := throttle.NewBulkhead(tt.c, tt.max, tt.maxQueue, tt.timeout)
		if len(tt.wantErr) == 0 {
			if err != nil || b == nil {
				t.Errorf("%s: NewBulkhead = %v, %v; want a bulkhead", tt.name, b, err)
			}
			continue
		}
		if err == nil || b != nil {
			t.Errorf("%s: NewBulkhead = %v, %v; want an error", tt.name, b, err)
			continue
		}
		for _, s := range tt.wantErr {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", tt.name, err, s)
			}
		}
	}
}

func TestBulkheadErrorsMatchThrottled(t *testing.T) {
	for _, err := range []error{throttle.ErrQueueFull, throttle.ErrQueueTimeout} {
		if !errors.Is(err, throttle.ErrThrottled) {
			t.Errorf("%v does not match ErrThrottled", err)
		}
	}
	if errors.Is(throttle.ErrQueueFull, throttle.ErrQueueTimeout) || errors.Is(throttle.ErrQueueTimeout, throttle.ErrQueueFull) {
		t.Error("ErrQueueFull and ErrQueueTimeout match each other")
	}
}

func TestBulkheadLimitsRunning(t *testing.T) {
	ctx := context.Background()
	b := newBulkhead(t, heedtest.NewClock(t0), 3, 0, 0)
	for i := range 3 {
		if err := b.Acquire(ctx); err != nil {
			t.Fatalf("Acquire %d: %v", i, err)
		}
		wantInUse(t, "after acquire", b, i+1, 0)
	}
	if err := b.Acquire(ctx); !errors.Is(err, throttle.ErrQueueFull) {
		t.Fatalf("Acquire past the limit without a queue = %v, want ErrQueueFull", err)
	}
	wantInUse(t, "after refusal", b, 3, 0)
	b.Release()
	wantInUse(t, "after one release", b, 2, 0)
	if err := b.Acquire(ctx); err != nil {
		t.Fatalf("Acquire after a release: %v", err)
	}
	for range 3 {
		b.Release()
	}
	wantInUse(t, "after all releases", b, 0, 0)
	b.Release() // one too many: tolerated, never negative
	wantInUse(t, "after an extra release", b, 0, 0)
}

func TestBulkheadQueueFull(t *testing.T) {
	ctx := context.Background()
	clk := heedtest.NewClock(t0)
	b := newBulkhead(t, clk, 1, 2, time.Minute)
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	w1 := acquireAsync(ctx, b)
	clk.BlockUntil(1)
	w2 := acquireAsync(ctx, b)
	clk.BlockUntil(2)
	wantInUse(t, "queue full", b, 1, 2)

	// The queue is full: the next call is refused at once, in this goroutine,
	// and makes no timer.
	if err := b.Acquire(ctx); !errors.Is(err, throttle.ErrQueueFull) || !errors.Is(err, throttle.ErrThrottled) {
		t.Fatalf("Acquire with a full queue = %v, want ErrQueueFull", err)
	}
	if n := clk.Pending(); n != 2 {
		t.Errorf("%d timers pending after a refusal, want 2", n)
	}
	wantInUse(t, "after refusal", b, 1, 2)

	b.Release()
	if err := waitResult(t, "first waiter", w1); err != nil {
		t.Fatalf("first waiter: %v", err)
	}
	b.Release()
	if err := waitResult(t, "second waiter", w2); err != nil {
		t.Fatalf("second waiter: %v", err)
	}
	b.Release()
	wantInUse(t, "end", b, 0, 0)
}

func TestBulkheadFIFO(t *testing.T) {
	const waiters = 6
	ctx := context.Background()
	clk := heedtest.NewClock(t0)
	b := newBulkhead(t, clk, 1, waiters, time.Hour)
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() {
			if err := b.Acquire(ctx); err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			got <- i
		})
		clk.BlockUntil(i + 1) // waiter i is queued (its timer is set) before i+1 starts
	}
	wantInUse(t, "all queued", b, 1, waiters)
	for want := range waiters {
		b.Release() // hands the slot to the first waiter
		select {
		case i := <-got:
			if i != want {
				t.Fatalf("release %d went to waiter %d, want %d (FIFO)", want, i, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("release %d: no waiter got the slot", want)
		}
		wantInUse(t, "after hand-over", b, 1, waiters-want-1)
	}
	wg.Wait()
	b.Release()
	wantInUse(t, "end", b, 0, 0)
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers left pending, want 0 (each waiter stops its timer)", n)
	}
}

func TestBulkheadQueueTimeout(t *testing.T) {
	ctx := context.Background()
	clk := heedtest.NewClock(t0)
	b := newBulkhead(t, clk, 1, 1, 5*time.Second)
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	w := acquireAsync(ctx, b)
	clk.BlockUntil(1)
	clk.Advance(5*time.Second - time.Nanosecond)
	notReturned(t, "just before the timeout", w)
	wantInUse(t, "just before the timeout", b, 1, 1)

	clk.Advance(time.Nanosecond)
	err := waitResult(t, "at the timeout", w)
	if !errors.Is(err, throttle.ErrQueueTimeout) || !errors.Is(err, throttle.ErrThrottled) {
		t.Fatalf("Acquire past the queue timeout = %v, want ErrQueueTimeout", err)
	}
	wantInUse(t, "after the timeout", b, 1, 0)

	// The slot it gave up is not handed to it: the release frees it.
	b.Release()
	wantInUse(t, "after release", b, 0, 0)
}

func TestBulkheadContextCancel(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Minute} {
		t.Run("timeout="+timeout.String(), func(t *testing.T) {
			clk := heedtest.NewClock(t0)
			b := newBulkhead(t, clk, 1, 1, timeout)
			if err := b.Acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			w := acquireAsync(ctx, b)
			if timeout > 0 {
				clk.BlockUntil(1)
			} else {
				pollQueued(t, b, 1)
			}
			cancel()
			if err := waitResult(t, "cancelled", w); !errors.Is(err, context.Canceled) {
				t.Fatalf("Acquire after cancel = %v, want context.Canceled", err)
			}
			wantInUse(t, "after cancel", b, 1, 0)
			if n := clk.Pending(); n != 0 {
				t.Errorf("%d timers pending after the wait ended, want 0", n)
			}
			b.Release()
			wantInUse(t, "after release", b, 0, 0)
		})
	}
}

func TestBulkheadContextCause(t *testing.T) {
	clk := heedtest.NewClock(t0)
	b := newBulkhead(t, clk, 1, 1, time.Minute)
	if err := b.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	cause := errors.New("caller gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	w := acquireAsync(ctx, b)
	clk.BlockUntil(1)
	cancel(cause)
	if err := waitResult(t, "cancelled with cause", w); !errors.Is(err, cause) {
		t.Fatalf("Acquire after cancel(cause) = %v, want the cause", err)
	}
	b.Release()
	wantInUse(t, "end", b, 0, 0)
}

func TestBulkheadReleaseHandsOver(t *testing.T) {
	ctx := context.Background()
	b := newBulkhead(t, heedtest.NewClock(t0), 2, 1, 0)
	for range 2 {
		if err := b.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	w := acquireAsync(ctx, b)
	pollQueued(t, b, 1)
	b.Release()
	if err := waitResult(t, "waiter", w); err != nil {
		t.Fatalf("waiter: %v", err)
	}
	// The slot passed straight to the waiter: still two running, and a new
	// caller cannot slip in ahead.
	wantInUse(t, "after hand-over", b, 2, 0)
	w2 := acquireAsync(ctx, b)
	pollQueued(t, b, 1)
	if err := b.Acquire(ctx); !errors.Is(err, throttle.ErrQueueFull) {
		t.Errorf("Acquire with a slot-less bulkhead and a full queue = %v, want ErrQueueFull", err)
	}
	b.Release()
	if err := waitResult(t, "second waiter", w2); err != nil {
		t.Fatal(err)
	}
	b.Release()
	b.Release()
	wantInUse(t, "end", b, 0, 0)
}

// TestBulkheadGiveUpRace: a waiter whose queue timeout (or context) ends at
// the same moment as a release hands it the slot either keeps the slot
// (Acquire returns nil) or leaves it to be freed; the slot is never lost nor
// counted twice.
func TestBulkheadGiveUpRace(t *testing.T) {
	const rounds = 300
	var kept, gaveUp int
	for i := range rounds {
		clk := heedtest.NewClock(t0)
		b := newBulkhead(t, clk, 1, 1, time.Second)
		if err := b.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := acquireAsync(ctx, b)
		clk.BlockUntil(1)
		var wg sync.WaitGroup
		wg.Go(b.Release)
		if i%2 == 0 {
			wg.Go(func() { clk.Advance(time.Second) })
		} else {
			wg.Go(cancel)
		}
		err := waitResult(t, "racing waiter", w)
		wg.Wait()
		cancel()
		switch {
		case err == nil:
			kept++
			wantInUse(t, "kept the slot", b, 1, 0)
			b.Release()
		case errors.Is(err, throttle.ErrQueueTimeout) || errors.Is(err, context.Canceled):
			gaveUp++
		default:
			t.Fatalf("round %d: Acquire = %v", i, err)
		}
		if r, q := b.InUse(); r != 0 || q != 0 {
			t.Fatalf("round %d (err %v): InUse() = %d, %d after all releases, want 0, 0", i, err, r, q)
		}
		// The bulkhead still works: a slot is there at once.
		if err := b.Acquire(context.Background()); err != nil {
			t.Fatalf("round %d: Acquire after the race: %v", i, err)
		}
		b.Release()
	}
	t.Logf("%d rounds: waiter kept the slot %d times, gave up %d times", rounds, kept, gaveUp)
}

// TestBulkheadManyGoroutines: 1000 goroutines never run more than max at
// once, and every slot is given back.
func TestBulkheadManyGoroutines(t *testing.T) {
	const (
		goroutines = 1000
		max        = 8
	)
	b := newBulkhead(t, heedtest.NewClock(t0), max, goroutines, 0)
	var (
		running, peak atomic.Int64
		wg            sync.WaitGroup
	)
	for range goroutines {
		wg.Go(func() {
			if err := b.Acquire(context.Background()); err != nil {
				t.Errorf("Acquire: %v", err)
				return
			}
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			runtime.Gosched()
			running.Add(-1)
			b.Release()
		})
	}
	wg.Wait()
	if p := peak.Load(); p > max || p < 1 {
		t.Errorf("peak of %d running at once, want 1..%d", p, max)
	}
	wantInUse(t, "end", b, 0, 0)
	t.Logf("peak %d of %d", peak.Load(), max)
}

// TestBulkheadManyGoroutinesGivingUp mixes waiters that get a slot with
// waiters whose context ends, and checks no slot is lost.
func TestBulkheadManyGoroutinesGivingUp(t *testing.T) {
	const (
		goroutines = 1000
		max        = 4
	)
	b := newBulkhead(t, heedtest.NewClock(t0), max, goroutines, 0)
	var (
		running, over, ok, ended atomic.Int64
		wg                       sync.WaitGroup
	)
	for i := range goroutines {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%3 == 0 {
				go cancel() // gives up at about the time it queues
			}
			if err := b.Acquire(ctx); err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Acquire: %v", err)
				}
				ended.Add(1)
				return
			}
			ok.Add(1)
			if running.Add(1) > max {
				over.Add(1)
			}
			runtime.Gosched()
			running.Add(-1)
			b.Release()
		})
	}
	wg.Wait()
	if over.Load() > 0 {
		t.Errorf("more than %d ran at once %d times", max, over.Load())
	}
	wantInUse(t, "end", b, 0, 0)
	t.Logf("%d acquired, %d gave up", ok.Load(), ended.Load())
}

func TestBulkheadAcquireAllocs(t *testing.T) {
	b := newBulkhead(t, heedtest.NewClock(t0), 1, 0, time.Second)
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() {
		if err := b.Acquire(ctx); err != nil {
			panic(err)
		}
		b.Release()
	}); n != 0 {
		t.Errorf("Acquire with a free slot and Release allocate %v times, want 0", n)
	}
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if err := b.Acquire(ctx); err != throttle.ErrQueueFull {
			panic(err)
		}
	}); n != 0 {
		t.Errorf("a refused Acquire allocates %v times, want 0", n)
	}
	b.Release()
}

func TestBulkheadTryAcquire(t *testing.T) {
	ctx := context.Background()
	clk := heedtest.NewClock(t0)
	b := newBulkhead(t, clk, 2, 1, time.Minute)
	for i := range 2 {
		if !b.TryAcquire() {
			t.Fatalf("TryAcquire refused free slot %d", i+1)
		}
	}
	if b.TryAcquire() {
		t.Fatal("TryAcquire took a slot past the limit")
	}
	wantInUse(t, "full", b, 2, 0)

	// A queued call has the first claim on a freed slot: TryAcquire does
	// not jump the queue.
	w := acquireAsync(ctx, b)
	clk.BlockUntil(1)
	if b.TryAcquire() {
		t.Fatal("TryAcquire jumped the queue")
	}
	b.Release()
	if err := waitResult(t, "waiter", w); err != nil {
		t.Fatal(err)
	}
	wantInUse(t, "slot handed to the waiter", b, 2, 0)
	b.Release()
	if !b.TryAcquire() {
		t.Fatal("TryAcquire refused a slot freed with no one queued")
	}
	b.Release()
	b.Release()
	wantInUse(t, "end", b, 0, 0)
}
