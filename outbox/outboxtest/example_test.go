package outboxtest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/outbox/outboxtest"
)

type down struct{}

func (down) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

// Memory stands in for a durable store in tests of code that queues
// writes.
func ExampleMemory() {
	store := new(outboxtest.Memory)
	p, _ := heed.NewPolicy(heed.WithBase(down{}), heed.WithMaxAttempts(1), heed.WithLogger(nil),
		heed.WithOutbox(heed.Outbox{Store: store}))
	req, _ := http.NewRequest(http.MethodPost, "https://api.example/v1/orders", strings.NewReader("{}"))
	req.Header.Set("Idempotency-Key", "order-1")
	_, err := p.Transport().RoundTrip(req)
	fmt.Println(errors.Is(err, heed.ErrQueued))
	list, _ := store.List(context.Background(), "", 10)
	fmt.Println(len(list), list[0].IdempotencyKey(), list[0].LastStatus)
	// Output:
	// true
	// 1 order-1 503
}
