package heed_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/heedtest"
)

func TestPolicyStats(t *testing.T) {
	tr, err := heed.New(heed.WithBase(heedtest.NewTransport([]heedtest.Step{heedtest.Status(503)})), heed.WithLogger(nil),
		heed.WithMaxAttempts(1), heed.WithBreaker(breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Minute}),
		heed.WithKeyLimits(func(key string) heed.Limits {
			if key == "b.test" {
				return heed.Limits{Concurrency: 2}
			}
			return heed.Limits{}
		}))
	if err != nil {
		t.Fatal(err)
	}
	if s := tr.Policy().Stats(); len(s) != 0 {
		t.Fatalf("stats before any request: %+v", s)
	}
	c := &http.Client{Transport: tr}
	for _, u := range []string{"http://b.test/", "http://a.test/"} {
		if resp, err := c.Get(u); err == nil {
			resp.Body.Close()
		}
	}
	s := tr.Policy().Stats()
	if len(s) != 2 || s[0].Key != "a.test" || s[1].Key != "b.test" {
		t.Fatalf("stats %+v, want a.test then b.test", s)
	}
	for _, k := range s {
		if !k.HasBreaker || k.Breaker != breaker.Open || k.InFlight != 0 || k.Queued != 0 || k.Pacing {
			t.Errorf("%+v, want an open breaker and nothing in flight", k)
		}
	}
}

func TestPolicyStatsWithoutBreaker(t *testing.T) {
	tr, _ := heed.New(heed.WithBase(heedtest.NewTransport(nil)), heed.WithLogger(nil), heed.WithoutBreaker())
	resp, err := (&http.Client{Transport: tr}).Get("http://a.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := tr.Policy().Stats(); len(s) != 1 || s[0].HasBreaker {
		t.Errorf("stats %+v, want one key without a breaker", s)
	}
}
