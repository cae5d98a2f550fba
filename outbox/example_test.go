package outbox_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/heed-go/heed/outbox"
)

// Stores keep entries in this binary form; it carries the request whole.
func ExampleEntry_MarshalBinary() {
	queued := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	e := &outbox.Entry{
		ID: "7", Key: "api.example", Method: http.MethodPost, URL: "https://api.example/v1/orders",
		Header: http.Header{"Idempotency-Key": {"order-7"}}, Body: []byte(`{"sku":42}`),
		Queued: queued, Expires: queued.Add(24 * time.Hour), NextAt: queued.Add(5 * time.Minute),
		LastStatus: http.StatusServiceUnavailable,
	}
	b, err := e.MarshalBinary()
	if err != nil {
		panic(err)
	}
	var back outbox.Entry
	if err := back.UnmarshalBinary(b); err != nil {
		panic(err)
	}
	fmt.Println(back.ID, back.Method, back.URL, back.IdempotencyKey(), string(back.Body))
	fmt.Println("state at 14:01:", back.State(queued.Add(time.Minute)))
	fmt.Println("state at 14:05:", back.State(queued.Add(5*time.Minute)))
	// Output:
	// 7 POST https://api.example/v1/orders order-7 {"sku":42}
	// state at 14:01: waiting
	// state at 14:05: due
}
