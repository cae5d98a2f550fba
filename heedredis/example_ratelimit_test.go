package heedredis_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/ratelimit"
)

// Two instances of an API share one server-side limit per client: 2
// requests a minute, 2 at once. The client's first request goes to one
// instance, the second to the other, and the third, back on the first,
// is refused: the limit is the fleet's, not each instance's.
func ExampleStore_RateLimitStore() {
	tb := &exampleTB{}
	defer tb.done()
	redisServer := redistest.Start(tb) // a real redis-server on loopback

	var instances []string
	for range 2 { // two instances, each with its own connection to Redis
		store, err := heedredis.New(redisServer.Client(tb), heedredis.Config{FallbackShare: 1.0 / 2})
		if err != nil {
			panic(err)
		}
		defer store.Close()
		l, err := ratelimit.New(ratelimit.Config{
			Windows: []ratelimit.Window{{Limit: 2, Per: time.Minute, Burst: 2}},
			Key:     ratelimit.ByHeader("X-Api-Key"),
			Store:   store.RateLimitStore("api"),
		})
		if err != nil {
			panic(err)
		}
		srv := httptest.NewServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello\n")
		})))
		defer srv.Close()
		instances = append(instances, srv.URL)
	}

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for i := range 3 {
		req, _ := http.NewRequest("GET", instances[i%2], nil)
		req.Header.Set("X-Api-Key", "client-7")
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Printf("instance %d: %s, RateLimit: %s", i%2, resp.Status, resp.Header.Get("RateLimit"))
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			fmt.Printf(", Retry-After: %s", ra)
		}
		fmt.Println()
	}
	// Output:
	// instance 0: 200 OK, RateLimit: "default";r=1;t=30
	// instance 1: 200 OK, RateLimit: "default";r=0;t=60
	// instance 0: 429 Too Many Requests, RateLimit: "default";r=0;t=60, Retry-After: 30
}
