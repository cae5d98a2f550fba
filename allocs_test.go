package heed_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/heed-go/heed"
)

// resettable is a request body without GetBody (its type is hidden from
// net/http), reset before each call instead of allocated.
type resettable struct{ r bytes.Reader }

func (b *resettable) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *resettable) Close() error               { return nil }

// The allocations each configuration people run costs over the bare
// transport, checked on every run so that a change cannot slow one of
// these paths silently (the time they cost is measured in bench/).
func TestHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled objects at random")
	}
	small := []byte(`{"id":42,"name":"heed"}`)
	payload := bytes.Repeat([]byte("x"), 64)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	get := func(ctx context.Context) func() (*http.Request, func()) {
		return func() (*http.Request, func()) {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.example/v1/items/42", nil)
			return req, func() {}
		}
	}
	post := func() (*http.Request, func()) {
		body := &resettable{}
		req, _ := http.NewRequest("POST", "http://api.example/v1/orders", body)
		req.Header.Set("Idempotency-Key", "k-1")
		req.ContentLength = int64(len(payload))
		return req, func() { body.r.Reset(payload); req.Body = body }
	}
	hook := heed.HookFunc(func(context.Context, heed.Event) {})
	for _, tc := range []struct {
		name    string
		body    []byte
		request func() (*http.Request, func())
		opts    []heed.Option
		over    float64 // the most allocations over bare
		ignores bool    // the base neither reads nor closes the request body
	}{
		{"GET", small, get(context.Background()), nil, 1, false},
		{"GET with a deadline", small, get(ctx), nil, 3, false},
		{"POST without GetBody, with a key", small, post, nil, 2, false},
		{"POST to a base that ignores the body", small, post, nil, 2, true},
		{"hedging, first copy wins", small, get(context.Background()), []heed.Option{heed.WithHedging(heed.HedgeConfig{})}, 6, false},
		{"stale store", small, get(context.Background()), []heed.Option{heed.WithStaleIfError(heed.StaleConfig{})}, 2, false},
		{"stale store, 4 KiB", bytes.Repeat([]byte("heed"), 1024), get(context.Background()), []heed.Option{heed.WithStaleIfError(heed.StaleConfig{})}, 2, false},
		{"everything on", small, get(context.Background()), []heed.Option{
			heed.WithLimits(heed.Limits{Rate: 1e9, Burst: 1000, Concurrency: 1000}), heed.WithHook(hook),
			heed.WithHedging(heed.HedgeConfig{}), heed.WithStaleIfError(heed.StaleConfig{}),
		}, 7, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := &canned{body: tc.body, ignoreBody: tc.ignores}
			tr, err := heed.New(append([]heed.Option{heed.WithBase(base)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			req, reset := tc.request()
			call := func(rt http.RoundTripper) func() {
				return func() {
					reset()
					resp, err := rt.RoundTrip(req)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			for range 50 { // the hedge delay's estimate warms up
				call(tr)()
			}
			bare := testing.AllocsPerRun(500, call(base))
			withHeed := testing.AllocsPerRun(500, call(tr))
			if withHeed > bare+tc.over {
				t.Errorf("heed allocates %.1f objects per request, bare %.0f: more than %.0f over", withHeed, bare, tc.over)
			}
		})
	}
}
