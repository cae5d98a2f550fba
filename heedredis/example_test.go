package heedredis_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
)

// exampleTB runs a test Redis for an example, stopped by done.
type exampleTB struct{ cleanups []func() }

func (e *exampleTB) Helper()                   {}
func (e *exampleTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (e *exampleTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (e *exampleTB) Cleanup(f func())          { e.cleanups = append(e.cleanups, f) }
func (e *exampleTB) done() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// Two instances of a service share one limit of 5 requests a second,
// burst 5: between them, 5 go at once and the rest must wait their turn.
func Example() {
	tb := &exampleTB{}
	defer tb.done()
	redisServer := redistest.Start(tb) // a real redis-server on loopback

	var served atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer api.Close()

	var clients []*http.Client
	for range 2 { // two instances, each with its own connection to Redis
		store, err := heedredis.New(redisServer.Client(tb), heedredis.Config{Lease: 1})
		if err != nil {
			panic(err)
		}
		defer store.Close()
		limits, err := store.KeyLimits(5, 5)
		if err != nil {
			panic(err)
		}
		budgets, err := store.Budgets(budget.RatioConfig{})
		if err != nil {
			panic(err)
		}
		t, err := heed.New(heed.WithLogger(nil), heed.WithKeyLimits(limits), heed.WithRetryBudget(budgets),
			heed.WithMaxWait(time.Millisecond)) // refuse rather than wait, to show the shared limit at once
		if err != nil {
			panic(err)
		}
		clients = append(clients, &http.Client{Transport: t})
	}
	refused := 0
	for i := range 8 {
		resp, err := clients[i%2].Get(api.URL)
		if err != nil {
			refused++
			continue
		}
		resp.Body.Close()
	}
	fmt.Println("served", served.Load(), "refused", refused)
	// Output: served 5 refused 3
}
