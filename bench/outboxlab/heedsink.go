package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/outbox"
)

// heedSink is the whole path a failed write takes: a POST through heed's
// transport, its one attempt answered 503 in memory, queued in a
// boltstore by WithOutbox before the call returns with ErrQueued. Its
// time over boltSink's is what heed adds to the store's.
type heedSink struct {
	*boltSink
	transport http.RoundTripper
}

// down answers every request 503, without a network.
type down struct{}

func (down) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

func openHeed(dir string) (sink, error) {
	s, err := openBolt(dir)
	if err != nil {
		return nil, err
	}
	b := s.(*boltSink)
	p, err := heed.NewPolicy(heed.WithBase(down{}), heed.WithMaxAttempts(1), heed.WithLogger(nil),
		heed.WithoutBreaker(), heed.WithoutRetryBudget(), heed.WithLimits(heed.Limits{NoPacing: true}),
		heed.WithOutbox(heed.Outbox{Store: b.Store}))
	if err != nil {
		b.Close()
		return nil, err
	}
	return &heedSink{boltSink: b, transport: p.Transport()}, nil
}

func (h *heedSink) Add(ctx context.Context, e *outbox.Entry) error {
	req, err := http.NewRequestWithContext(ctx, e.Method, e.URL, bytes.NewReader(e.Body))
	if err != nil {
		return err
	}
	req.Header = e.Header.Clone()
	resp, err := h.transport.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
		return fmt.Errorf("heed returned %d, want the call queued", resp.StatusCode)
	}
	if !errors.Is(err, heed.ErrQueued) {
		return fmt.Errorf("heed returned %v, want ErrQueued", err)
	}
	return nil
}
