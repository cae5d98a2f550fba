package heedredis_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/heedtest"
)

// One instance's trip opens the key's breaker in the whole fleet; after
// the open time one probe goes for the fleet; a failed probe reopens it
// everywhere, a successful one closes it everywhere.
//
// The breakers read the time from a fake clock, so the open times, the
// fleet's BreakerRefresh and the probe rounds are exact however loaded the
// machine is, and the test sleeps for no real time. Redis's own clock
// still runs: it expires the probe claim after the open time (30 s here,
// far longer than a probe takes; every probe's outcome frees the claim
// anyway). Each Store is patient: a Redis call that timed out would let
// its instance probe on its own (documented fallback), which is not the
// fleet's rule under test.
func TestBreakerFleet(t *testing.T) {
	srv := redistest.Start(t)
	var healthy atomic.Bool
	var hits atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer api.Close()
	clk := heedtest.NewClock(time.Now())
	settings := breaker.Settings{ConsecutiveFailures: 3, OpenTimeout: 30 * time.Second}
	var clients []*http.Client
	for range 3 {
		clients = append(clients, instance(t, heed.WithMaxAttempts(1), heed.WithBreaker(settings),
			heed.WithBreakerFleet(patient(t, srv, heedredis.Config{}).BreakerFleets()), heed.WithClock(clk), heed.WithLimits(heed.Limits{NoPacing: true})))
	}
	call := func(c *http.Client) error {
		resp, err := c.Get(api.URL)
		if err == nil {
			drain(resp)
		}
		return err
	}
	for range 3 { // instance 0 trips
		call(clients[0])
	}
	if n := hits.Load(); n != 3 {
		t.Fatalf("%d hits, want 3", n)
	}
	for i, c := range clients[1:] {
		if err := call(c); !errors.Is(err, heed.ErrBreakerOpen) {
			t.Errorf("instance %d: %v, want the fleet's open breaker", i+1, err)
		}
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("%d hits after the trip, want still 3", n)
	}

	// After the open time: all three call at once, one probe goes out, and
	// fails: the fleet reopens for twice as long. The probe's failure is in
	// Redis before it returns, so an instance that read the fleet's state
	// before it, and claims the probe after, is refused too: one probe,
	// whatever the order.
	clk.Advance(settings.OpenTimeout + time.Second)
	probeRound := func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() { call(c) })
		}
		wg.Wait()
	}
	probeRound()
	if n := hits.Load(); n != 4 {
		t.Fatalf("%d hits after the first probe round, want 4: one probe for the fleet", n)
	}
	clk.Advance(settings.OpenTimeout + time.Second) // open for 60 s now: not yet
	probeRound()
	if n := hits.Load(); n != 4 {
		t.Errorf("%d hits while the fleet is open for longer, want 4", n)
	}

	// Healthy again: one probe succeeds and closes the fleet's breakers. An
	// instance still half-open sends its own probe at its next call (the
	// claim is free again), which succeeds: a few calls each at most.
	healthy.Store(true)
	clk.Advance(settings.OpenTimeout)
	probeRound()
	for i, c := range clients {
		err := call(c)
		for try := 0; err != nil && try < 3; try++ {
			clk.Advance(heedredis.BreakerRefresh)
			err = call(c)
		}
		if err != nil {
			t.Fatalf("instance %d: breaker not closed after the fleet's probe succeeded: %v", i, err)
		}
	}
}
