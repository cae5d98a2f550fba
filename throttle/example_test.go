package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/throttle"
)

func ExampleLimiter() {
	// Two events a second, no burst. Reservations made at the same moment
	// are spread out half a second apart.
	l, err := throttle.NewLimiter(2, 1)
	if err != nil {
		panic(err)
	}
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for range 3 {
		fmt.Println(l.Reserve(start).Sub(start))
	}
	// Output:
	// 0s
	// 500ms
	// 1s
}

func ExampleLimiter_ReserveBefore() {
	l, _ := throttle.NewLimiter(2, 1)
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	l.Reserve(start)
	// The next slot is at +500ms: too late for a deadline at +200ms, and
	// nothing is reserved.
	at, ok := l.ReserveBefore(start, start.Add(200*time.Millisecond))
	fmt.Println(at.Sub(start), ok)
	at, ok = l.ReserveBefore(start, start.Add(time.Second))
	fmt.Println(at.Sub(start), ok)
	// Output:
	// 500ms false
	// 500ms true
}

func ExampleBulkhead() {
	// Two calls at once, no queue.
	b, err := throttle.NewBulkhead(clock.Real(), 2, 0, 0)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		err := b.Acquire(ctx)
		fmt.Printf("call %d: %v (throttled: %v)\n", i, err, errors.Is(err, throttle.ErrThrottled))
	}
	running, queued := b.InUse()
	fmt.Println("running:", running, "queued:", queued)
	b.Release()
	b.Release()
	// Output:
	// call 1: <nil> (throttled: false)
	// call 2: <nil> (throttled: false)
	// call 3: throttled: concurrency limit reached and queue full (throttled: true)
	// running: 2 queued: 0
}

func ExamplePacer() {
	p := throttle.NewPacer(throttle.PacerConfig{})
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

	// Until the server pushes back, requests go at once.
	at, _ := p.Reserve(now, time.Time{})
	fmt.Println("inactive:", at.Sub(now))

	// A 429 with Retry-After: 2 starts pacing at one request per 2 s, the
	// first slot one interval away.
	p.Observe(throttle.Signal{
		Now: now, Sent: now.Add(-50 * time.Millisecond),
		Throttled: true, RetryAfter: 2 * time.Second, HasRetryAfter: true,
	})
	fmt.Println("interval:", p.Interval())
	prev := now
	for i := 1; i <= 3; i++ {
		at, _ := p.Reserve(now, time.Time{})
		fmt.Printf("request %d at +%v (%v after the previous)\n", i, at.Sub(now), at.Sub(prev))
		prev = at
	}
	// Output:
	// inactive: 0s
	// interval: 2s
	// request 1 at +2s (2s after the previous)
	// request 2 at +4s (2s after the previous)
	// request 3 at +6s (2s after the previous)
}
