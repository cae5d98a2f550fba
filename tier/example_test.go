package tier_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/tier"
)

// A tier closest to a failure retries it and says so; the caller does not
// retry it again.
func ExampleMiddleware() {
	down := heedtest.NewServer(nil, []heedtest.Step{heedtest.Status(503)})
	defer down.Close()

	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	inner, _ := heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil))
	mid := httptest.NewServer(tier.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", down.URL, nil)
		resp, err := inner.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	})))
	defer mid.Close()

	outer, _ := heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil))
	resp, err := outer.Get(mid.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get(tier.HeaderRetried))
	fmt.Println("attempts by the caller:", len(heed.Attempts(resp)))
	fmt.Println("requests to the failing service:", down.Count())
	// Output:
	// 503 exhausted
	// attempts by the caller: 1
	// requests to the failing service: 6
}
