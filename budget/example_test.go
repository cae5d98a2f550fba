package budget_test

import (
	"fmt"
	"time"

	"github.com/heed-go/heed/budget"
)

// During a sustained failure, a 20% budget lets 200 of 1,000 requests
// retry, and no more.
func ExampleRatio() {
	b, _ := budget.NewRatio(budget.RatioConfig{Percent: 0.2, Window: 10 * time.Second})
	now := time.Now()
	allowed := 0
	for range 1000 {
		b.Request()
		if b.Withdraw(now) { // every request failed and wants a retry
			allowed++
		}
	}
	fmt.Println(allowed, "retries for 1000 requests")
	// Output: 200 retries for 1000 requests
}

// gRPC-style throttling: failures drain the bucket, successes refill it.
func ExampleTokenBucket() {
	b, _ := budget.NewTokenBucket(budget.TokenBucketConfig{Max: 10, Ratio: 0.5})
	for range 5 {
		b.Outcome(true)
	}
	fmt.Println(b.Tokens(), b.Withdraw(time.Now()))
	b.Outcome(false)
	b.Outcome(false)
	fmt.Println(b.Tokens(), b.Withdraw(time.Now()))
	// Output:
	// 5 false
	// 6 true
}
