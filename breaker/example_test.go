package breaker_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/heed-go/heed/breaker"
)

func Example() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	b, _ := breaker.New(breaker.Settings{
		ConsecutiveFailures: 3,
		OpenTimeout:         10 * time.Second,
		OnStateChange: func(c breaker.Change) {
			fmt.Println("breaker:", c.From, "->", c.To)
		},
	})
	for range 3 {
		t, _ := b.Allow(now)
		b.Record(t, now, breaker.Failure)
	}
	var open *breaker.OpenError
	if _, err := b.Allow(now); errors.As(err, &open) {
		fmt.Println("refused until", open.Until.Format(time.TimeOnly))
	}
	later := now.Add(10 * time.Second)
	probe, _ := b.Allow(later)
	b.Record(probe, later, breaker.Success)
	// Output:
	// breaker: closed -> open
	// refused until 12:00:10
	// breaker: open -> half_open
	// breaker: half_open -> closed
}
