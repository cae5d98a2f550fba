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
	_, at, _ := p.Take(now, time.Time{})
	fmt.Println("inactive:", at.Sub(now))

	// A 429 with Retry-After: 2 starts pacing at one request per 2 s. The
	// first turn comes one to two intervals later; Draw picks where, so
	// that clients the server refused together start out of step.
	p.Observe(throttle.Signal{
		Now: now, Sent: now.Add(-50 * time.Millisecond),
		Throttled: true, RetryAfter: 2 * time.Second, HasRetryAfter: true, Draw: 0.5,
	})
	fmt.Println("interval:", p.Interval())
	var places []throttle.Place
	for i := 1; i <= 3; i++ {
		pl, at, _ := p.Take(now, time.Time{})
		places = append(places, pl)
		fmt.Printf("request %d: turn at +%v\n", i, at.Sub(now))
	}

	// The answer to another request sent before pacing began arrives: the
	// client may have the server to itself, and the pace rises. The
	// requests already waiting move up with it.
	p.Observe(throttle.Signal{Now: now.Add(100 * time.Millisecond), Sent: now.Add(-40 * time.Millisecond)})
	fmt.Println("interval:", p.Interval())
	for i, pl := range places {
		at, _ := p.Turn(pl, now.Add(100*time.Millisecond), time.Time{})
		fmt.Printf("request %d: turn at +%v\n", i+1, at.Sub(now))
	}
	// Output:
	// inactive: 0s
	// interval: 2s
	// request 1: turn at +3s
	// request 2: turn at +5s
	// request 3: turn at +7s
	// interval: 1s
	// request 1: turn at +1.5s
	// request 2: turn at +2.5s
	// request 3: turn at +3.5s
}
