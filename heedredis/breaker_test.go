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
)

// One instance's trip opens the key's breaker in the whole fleet; after
// the open time one probe goes for the fleet; a failed probe reopens it
// everywhere, a successful one closes it everywhere.
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
	settings := breaker.Settings{ConsecutiveFailures: 3, OpenTimeout: 300 * time.Millisecond}
	var clients []*http.Client
	for range 3 {
		s := store(t, srv.Client(t), heedredis.Config{})
		c, _ := instance(t, srv, heedredis.Config{}, heed.WithMaxAttempts(1), heed.WithBreaker(settings),
			heed.WithBreakerFleet(s.BreakerFleets()), heed.WithoutPacing())
		clients = append(clients, c)
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
	// fails: the fleet reopens for twice as long.
	time.Sleep(settings.OpenTimeout + 50*time.Millisecond)
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
	time.Sleep(settings.OpenTimeout + 50*time.Millisecond) // open for 600 ms now: not yet
	probeRound()
	if n := hits.Load(); n != 4 {
		t.Errorf("%d hits while the fleet is open for longer, want 4", n)
	}

	// Healthy again: one probe succeeds and closes the fleet's breakers.
	healthy.Store(true)
	time.Sleep(2*settings.OpenTimeout + 50*time.Millisecond)
	probeRound()
	deadline := time.Now().Add(2 * time.Second)
	for _, c := range clients {
		for call(c) != nil {
			if time.Now().After(deadline) {
				t.Fatal("an instance's breaker did not close after the fleet's probe succeeded")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
