package throttle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heed-go/heed/clock"
)

// Errors a Bulkhead refuses a call with; both match ErrThrottled.
var (
	ErrQueueFull    = fmt.Errorf("%w: concurrency limit reached and queue full", ErrThrottled)
	ErrQueueTimeout = fmt.Errorf("%w: queued past the queue timeout", ErrThrottled)
)

// Bulkhead limits how many calls run at once. Calls past the limit wait in
// a bounded first-in, first-out queue, for at most a queue timeout. It is
// safe for concurrent use; a call that gets a slot at once allocates
// nothing.
type Bulkhead struct {
	clock    clock.Clock
	max      int
	maxQueue int
	timeout  time.Duration

	mu      sync.Mutex
	running int
	waiters []*waiter
}

type waiter struct {
	ready chan struct{} // closed when a slot is handed over
	done  bool          // handed a slot, or gave up; guarded by Bulkhead.mu
}

// NewBulkhead returns a bulkhead of max concurrent calls, a queue of
// maxQueue waiting calls (0: no queue) and a queue timeout (0: only the
// caller's context bounds the wait).
func NewBulkhead(c clock.Clock, max, maxQueue int, timeout time.Duration) (*Bulkhead, error) {
	var errs []error
	if max < 1 {
		errs = append(errs, fmt.Errorf("throttle: bulkhead of %d calls: need at least 1", max))
	}
	if maxQueue < 0 {
		errs = append(errs, fmt.Errorf("throttle: queue of %d: must not be negative", maxQueue))
	}
	if timeout < 0 {
		errs = append(errs, fmt.Errorf("throttle: queue timeout %v: must not be negative", timeout))
	}
	if c == nil {
		errs = append(errs, errors.New("throttle: nil clock"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Bulkhead{clock: c, max: max, maxQueue: maxQueue, timeout: timeout}, nil
}

// Acquire takes a slot, waiting in the queue if need be. On success the
// caller must call Release once the call is done. It fails with ErrQueueFull
// at once when the queue is full, with ErrQueueTimeout when the wait ran
// past the queue timeout, and with the context's error when the context
// ended first.
func (b *Bulkhead) Acquire(ctx context.Context) error {
	b.mu.Lock()
	if b.running < b.max && len(b.waiters) == 0 {
		b.running++
		b.mu.Unlock()
		return nil
	}
	if len(b.waiters) >= b.maxQueue {
		b.mu.Unlock()
		return ErrQueueFull
	}
	w := &waiter{ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()

	var expired <-chan time.Time
	if b.timeout > 0 {
		t := b.clock.NewTimer(b.timeout)
		defer t.Stop()
		expired = t.C()
	}
	select {
	case <-w.ready:
		return nil
	case <-expired:
		return b.abandon(w, ErrQueueTimeout)
	case <-ctx.Done():
		return b.abandon(w, context.Cause(ctx))
	}
}

// TryAcquire takes a slot only if one is free and no call is queued for
// one; it never waits. It reports whether the caller holds a slot, which it
// must then Release. Heed's hedges use it: a hedge is worth sending only
// when it does not have to queue.
func (b *Bulkhead) TryAcquire() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running < b.max && len(b.waiters) == 0 {
		b.running++
		return true
	}
	return false
}

// abandon takes w out of the queue, unless a slot was handed to it in the
// meantime, which it then keeps.
func (b *Bulkhead) abandon(w *waiter, err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.done {
		return nil // the slot arrived just now: the caller has it
	}
	w.done = true
	for i, x := range b.waiters {
		if x == w {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			break
		}
	}
	return err
}

// Release gives back a slot taken by Acquire, to the first waiter if any.
func (b *Bulkhead) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		if w.done {
			continue
		}
		w.done = true
		close(w.ready)
		return // the slot passes to w: running stays the same
	}
	if b.running > 0 {
		b.running--
	}
}

// InUse returns the calls running and the calls waiting.
func (b *Bulkhead) InUse() (running, queued int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running, len(b.waiters)
}
