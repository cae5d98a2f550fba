package heed_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/outbox/boltstore"
)

// A write the API could not take is kept in the outbox and sent again
// once it is back, with the same Idempotency-Key.
func ExampleWithOutbox() {
	var up atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Println("the API took order", r.Header.Get("Idempotency-Key"))
		w.WriteHeader(http.StatusCreated)
	}))
	defer api.Close()

	dir, _ := os.MkdirTemp("", "outbox")
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "outbox.db"), boltstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	policy, err := heed.NewPolicy(
		heed.WithOutbox(heed.Outbox{Store: store, Backoff: backoff.Full(10*time.Millisecond, time.Minute)}),
		heed.WithMaxAttempts(2), heed.WithBackoff(backoff.Constant(10*time.Millisecond)), heed.WithLogger(nil))
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: policy.Transport()}

	req, _ := http.NewRequest(http.MethodPost, api.URL+"/v1/orders", strings.NewReader(`{"sku":42}`))
	req.Header.Set("Idempotency-Key", "order-7")
	_, err = client.Do(req)
	var queued *heed.QueuedError
	if errors.As(err, &queued) {
		fmt.Println("saved as entry", queued.ID, "- we will send it later")
	}

	up.Store(true)
	// In a service: go policy.Replay(ctx). Here, one pass, once it is due.
	for {
		res, err := policy.ReplayDue(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		if res.Delivered > 0 {
			fmt.Println("delivered:", res.Delivered)
			break
		}
		st, _ := store.Stats(context.Background())
		time.Sleep(time.Until(st.NextAt))
	}
	// Output:
	// saved as entry 1 - we will send it later
	// the API took order order-7
	// delivered: 1
}
