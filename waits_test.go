package heed_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
)

// Every wait a call makes is bounded as documented: a hint plus at most
// 2 s of jitter; the retry's wait and the pacer's slot together at most
// the cap (60 s); and a call without a deadline at most the cap in all.
// Before, a 429 with Retry-After: 10 was waited 11.6-19.7 s, and a 503
// with Retry-After: 0 and a quota of one request per 110 s made one call
// wait 4 min 25 s: up to 60 s of jitter and a 55.8 s slot per retry.
func TestWaitsStayWithinTheirCaps(t *testing.T) {
	t.Run("Retry-After: 10", func(t *testing.T) {
		for range 20 {
			srv := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(429, 10), heedtest.OK("")})
			c, clk := client(t)
			start := clk.Now()
			resp, _, err := get(t, c, srv.URL)
			if err != nil || resp.StatusCode != 200 {
				t.Fatal(resp, err)
			}
			if waited := clk.Now().Sub(start); waited < 10*time.Second || waited > 12*time.Second {
				t.Fatalf("waited %v for a Retry-After of 10 s, want 10-12 s", waited)
			}
		}
	})
	t.Run("one request per 110 s", func(t *testing.T) {
		step := heedtest.Step{Status: 503, Header: http.Header{
			"Retry-After":      {"0"},
			"Ratelimit-Policy": {`"x";q=1;w=110`},
			"Ratelimit":        {`"x";r=0;t=110`},
		}}
		srv := heedtest.NewServer(t, []heedtest.Step{step})
		c, clk := client(t)
		start := clk.Now()
		_, err := c.Get(srv.URL)
		var he *heed.Error
		if !errors.As(err, &he) {
			t.Fatalf("err = %v", err)
		}
		if waited := clk.Now().Sub(start); waited > heed.DefaultMaxWait {
			t.Fatalf("the call waited %v in all, want at most %v", waited, heed.DefaultMaxWait)
		}
		var prev time.Time
		for _, a := range he.Attempts {
			if !prev.IsZero() && a.Start.Sub(prev) > heed.DefaultMaxWait {
				t.Fatalf("attempts %v apart, want at most %v", a.Start.Sub(prev), heed.DefaultMaxWait)
			}
			prev = a.Start
		}
		t.Logf("%d attempts, %v in all, ended by %v", len(he.Attempts), clk.Now().Sub(start), he.Reason)
	})
}
