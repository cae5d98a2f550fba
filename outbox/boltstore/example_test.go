package boltstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/heed-go/heed/outbox/boltstore"
	"github.com/heed-go/heed/outbox/outboxtest"
)

// A store is one file; heed.WithOutbox takes it. Here it is used by hand,
// as a worker does.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "outbox")
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "outbox.db"), boltstore.Options{})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	ctx := context.Background()
	now := time.Now()

	e := outboxtest.NewEntry(1, now.Add(time.Minute)) // due in a minute
	if err := store.Add(ctx, e); err != nil {         // on disk when Add returns
		panic(err)
	}
	st, _ := store.Stats(ctx)
	fmt.Println("pending:", st.Pending)

	due, _ := store.Claim(ctx, now, 10)
	fmt.Println("due now:", len(due))
	due, _ = store.Claim(ctx, now.Add(time.Minute), 10)
	fmt.Println("due in a minute:", len(due), due[0].IdempotencyKey())
	store.Delete(ctx, due[0].ID) // delivered
	st, _ = store.Stats(ctx)
	fmt.Println("pending:", st.Pending)
	// Output:
	// pending: 1
	// due now: 0
	// due in a minute: 1 key-1
	// pending: 0
}
