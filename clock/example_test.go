package clock_test

import (
	"fmt"
	"time"

	"github.com/heed-go/heed/clock"
)

func ExampleSleep() {
	c := clock.Real()
	done := make(chan struct{})
	close(done) // the caller gave up: the sleep ends at once
	fmt.Println(clock.Sleep(c, time.Hour, done))
	// Output: false
}
