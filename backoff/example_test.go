package backoff_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/heed-go/heed/backoff"
)

// The schedule without jitter: every client that failed together retries
// together.
func ExampleExponential() {
	b := backoff.Exponential(100*time.Millisecond, time.Second)
	for n := range 6 {
		fmt.Println(b.Delay(n, 0, 0))
	}
	// Output:
	// 100ms
	// 200ms
	// 400ms
	// 800ms
	// 1s
	// 1s
}

// Full jitter draws each wait uniformly under the exponential ceiling. A
// seeded source makes the sequence reproducible.
func ExampleFull() {
	b := backoff.Full(100*time.Millisecond, 10*time.Second)
	r := rand.New(rand.NewPCG(42, 42))
	for n := range 4 {
		d := b.Delay(n, 0, r.Float64())
		fmt.Printf("retry %d: ceiling %v, waited %v\n", n, b.Ceiling(n), d.Round(time.Millisecond))
	}
	// Output:
	// retry 0: ceiling 100ms, waited 31ms
	// retry 1: ceiling 200ms, waited 77ms
	// retry 2: ceiling 400ms, waited 345ms
	// retry 3: ceiling 800ms, waited 345ms
}

// Decorrelated jitter grows from the previous wait rather than the retry
// number.
func ExampleDecorrelated() {
	b := backoff.Decorrelated(5*time.Millisecond, 2*time.Second)
	var prev time.Duration
	for _, u := range []float64{0.5, 0.5, 0.5, 0.5} {
		prev = b.Delay(0, prev, u)
		fmt.Println(prev)
	}
	// Output:
	// 10ms
	// 17.5ms
	// 28.75ms
	// 45.625ms
}
