package ratelimit_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/ratelimit"
)

// A limit of 2 requests a second, 2 at once, on loopback: the admitted
// responses and the refusal carry the quota; the refusal says when to come
// back, in Retry-After and in its problem details.
func ExampleNew() {
	clk := heedtest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) // a fixed time, for fixed output
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{{Limit: 2, Per: time.Second, Burst: 2}},
		Clock:   clk,
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello\n")
	})))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	for range 3 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.Status)
		for _, k := range []string{"RateLimit-Policy", "RateLimit", "Retry-After", "Content-Type"} {
			if v := resp.Header.Get(k); v != "" {
				fmt.Printf("  %s: %s\n", k, v)
			}
		}
		fmt.Printf("  %s", body)
	}
	// Output:
	// 200 OK
	//   RateLimit-Policy: "default";q=2;w=1
	//   RateLimit: "default";r=1;t=1
	//   Content-Type: text/plain; charset=utf-8
	//   hello
	// 200 OK
	//   RateLimit-Policy: "default";q=2;w=1
	//   RateLimit: "default";r=0;t=1
	//   Content-Type: text/plain; charset=utf-8
	//   hello
	// 429 Too Many Requests
	//   RateLimit-Policy: "default";q=2;w=1
	//   RateLimit: "default";r=0;t=1
	//   Retry-After: 1
	//   Content-Type: application/problem+json
	//   {"type":"about:blank","title":"Too Many Requests","status":429,"detail":"The limit \"default\" of 2 requests per second is used up; retry after 1 s.","policy":"default","retry_after":1.000}
}

// Two windows at once, keyed by API key (by address for requests without
// one), with refusals held so that clients land on their slots. RateLimit
// reports the window closest to refusing.
func ExampleConfig() {
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{
			{Limit: 100, Per: time.Second, Burst: 10},
			{Limit: 100_000, Per: 24 * time.Hour, Burst: 1_000},
		},
		Key:          ratelimit.ByHeader("X-Api-Key"),
		HoldRefusals: true,
	})
	if err != nil {
		panic(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/items", nil)
	req.Header.Set("X-Api-Key", "sk_test_1")
	l.Handler(http.NotFoundHandler()).ServeHTTP(rec, req)
	fmt.Println(rec.Header().Get("RateLimit-Policy"))
	fmt.Println(rec.Header().Get("RateLimit"))
	// Output:
	// "second";q=100;w=1, "day";q=100000;w=86400
	// "second";r=9;t=1
}
