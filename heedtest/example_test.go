package heedtest_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/heed-go/heed/heedtest"
)

// A server that is overloaded once, asks to be retried in 3 seconds, and
// then answers. In a test, pass t instead of nil and leave the closing to
// NewServer.
func ExampleNewServer() {
	srv := heedtest.NewServer(nil, []heedtest.Step{
		heedtest.RetryAfter(http.StatusServiceUnavailable, 3),
		heedtest.OK("hello"),
	})
	defer srv.Close()

	client := srv.Client()
	for range 2 {
		resp, err := client.Get(srv.URL + "/greeting")
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d Retry-After=%q body=%q\n", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for _, r := range srv.Requests() {
		fmt.Println(r.Method, r.URL, "answered by step", r.Step)
	}
	// Output:
	// 503 Retry-After="3" body=""
	// 200 Retry-After="" body="hello"
	// GET /greeting answered by step 0
	// GET /greeting answered by step 1
}

// The same kind of script in memory: a connection reset, then an answer.
func ExampleNewTransport() {
	tr := heedtest.NewTransport([]heedtest.Step{
		{Reset: true},
		heedtest.OK(`{"id":7}`),
	})
	client := &http.Client{Transport: tr}

	for range 2 {
		resp, err := client.Post("https://api.example/items", "application/json", strings.NewReader(`{"name":"x"}`))
		if err != nil {
			fmt.Println("reset:", errors.Is(err, syscall.ECONNRESET))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	fmt.Printf("%d requests, last body %s\n", tr.Count(), tr.Requests()[1].Body)
	// Output:
	// reset: true
	// 200 {"id":7}
	// 2 requests, last body {"name":"x"}
}

// A Delay on a fake clock takes no real time. AutoAdvance moves the clock
// as soon as the step starts waiting.
func ExampleDelayOn() {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := heedtest.NewClock(start).AutoAdvance()
	tr := heedtest.NewTransport([]heedtest.Step{{Delay: 90 * time.Second, Body: "slow"}}, heedtest.DelayOn(clk))

	resp, err := (&http.Client{Transport: tr}).Get("https://api.example/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body), "after", clk.Now().Sub(start))
	// Output:
	// slow after 1m30s
}
