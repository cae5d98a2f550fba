package heedprom_test

import (
	"math"
	"net/http"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedprom"
	"github.com/heed-go/heed/heedtest"
)

// bounds returns the upper bounds of the buckets of histogram name, after
// a call retried once (a wait, then a success) through a collector built
// with opts.
func bounds(t *testing.T, name string, opts ...heedprom.Option) []float64 {
	t.Helper()
	m := heedprom.New(opts...)
	tr, err := heed.New(heed.WithBase(&script{answers: []func(*http.Request) (*http.Response, error){status(503), status(200)}}),
		heed.WithClock(heedtest.NewClock(t0).AutoAdvance()), heed.WithLogger(nil), heed.WithHook(m))
	if err != nil {
		t.Fatal(err)
	}
	call(t, &http.Client{Transport: tr}, "http://api.test/")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var out []float64
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			out = append(out, b.GetUpperBound())
		}
		return out
	}
	t.Fatalf("no series of %s", name)
	return nil
}

func TestBuckets(t *testing.T) {
	durations := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	waits := []float64{.01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60}
	if got := bounds(t, "heed_request_duration_seconds"); !slices.Equal(got, durations) {
		t.Errorf("default call buckets %v, want %v", got, durations)
	}
	if got := bounds(t, "heed_retry_wait_seconds"); !slices.Equal(got, waits) {
		t.Errorf("default wait buckets %v, want %v", got, waits)
	}

	// The collector keeps its own copy: changing the slice later changes
	// nothing.
	mine := []float64{0.1, 1, 10}
	opt := heedprom.WithDurationBuckets(mine...)
	mine[0] = 5
	if got := bounds(t, "heed_request_duration_seconds", opt); !slices.Equal(got, []float64{0.1, 1, 10}) {
		t.Errorf("call buckets %v, want [0.1 1 10]", got)
	}
	if got := bounds(t, "heed_retry_wait_seconds", heedprom.WithWaitBuckets(1, 2, 4)); !slices.Equal(got, []float64{1, 2, 4}) {
		t.Errorf("wait buckets %v, want [1 2 4]", got)
	}
	// No bounds keep the default.
	if got := bounds(t, "heed_retry_wait_seconds", heedprom.WithWaitBuckets()); !slices.Equal(got, waits) {
		t.Errorf("wait buckets %v, want the default %v", got, waits)
	}
}

// Bounds Prometheus would refuse at the first observation, in the middle
// of a request, are refused by New.
func TestBucketsNotIncreasing(t *testing.T) {
	for _, opt := range []heedprom.Option{
		heedprom.WithWaitBuckets(2, 1),
		heedprom.WithDurationBuckets(1, 1),
		heedprom.WithDurationBuckets(math.NaN()),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("New accepted bounds that do not increase")
				}
			}()
			heedprom.New(opt)
		}()
	}
}
