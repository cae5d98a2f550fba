package backoff_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/heed-go/heed/backoff"
)

const ms = time.Millisecond

func TestDelayExact(t *testing.T) {
	tests := []struct {
		name string
		b    backoff.Backoff
		n    int
		prev time.Duration
		u    float64
		want time.Duration
	}{
		{"exponential n0", backoff.Exponential(100*ms, 10*time.Second), 0, 0, 0.7, 100 * ms},
		{"exponential n3", backoff.Exponential(100*ms, 10*time.Second), 3, 0, 0.7, 800 * ms},
		{"exponential capped", backoff.Exponential(100*ms, 10*time.Second), 20, 0, 0.7, 10 * time.Second},
		{"full lower edge", backoff.Full(100*ms, 10*time.Second), 2, 0, 0, 0},
		{"full middle", backoff.Full(100*ms, 10*time.Second), 2, 0, 0.5, 200 * ms},
		{"full upper edge", backoff.Full(100*ms, 10*time.Second), 2, 0, math.Nextafter(1, 0), 400*ms - 1},
		{"equal lower edge", backoff.Equal(100*ms, 10*time.Second), 2, 0, 0, 200 * ms},
		{"equal middle", backoff.Equal(100*ms, 10*time.Second), 2, 0, 0.5, 300 * ms},
		{"decorrelated first", backoff.Decorrelated(5*ms, 2*time.Second), 0, 0, 0, 5 * ms},
		{"decorrelated first mid", backoff.Decorrelated(5*ms, 2*time.Second), 0, 0, 0.5, 10 * ms},
		{"decorrelated grows from prev", backoff.Decorrelated(5*ms, 2*time.Second), 7, 100 * ms, 0.5, 152500 * time.Microsecond},
		{"decorrelated capped", backoff.Decorrelated(5*ms, 2*time.Second), 0, 1900 * ms, 0.99, 2 * time.Second},
		{"constant", backoff.Constant(250 * ms), 9, 0, 0.3, 250 * ms},
		{"draw above 1 clamps", backoff.Full(100*ms, time.Second), 0, 0, 7, 100*ms - 1},
		{"negative draw clamps", backoff.Full(100*ms, time.Second), 0, 0, -3, 0},
		{"NaN draw clamps", backoff.Full(100*ms, time.Second), 0, 0, math.NaN(), 0},
		{"negative n is n0", backoff.Exponential(100*ms, time.Second), -5, 0, 0, 100 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.Delay(tt.n, tt.prev, tt.u); got != tt.want {
				t.Fatalf("%v.Delay(%d, %v, %v) = %v, want %v", tt.b, tt.n, tt.prev, tt.u, got, tt.want)
			}
		})
	}
}

// The no-jitter sleeps of Brooker's model (base 5 ms, cap 2 s, first retry n=1).
func TestBrookerSchedule(t *testing.T) {
	b := backoff.Exponential(5*ms, 2*time.Second)
	want := []time.Duration{10, 20, 40, 80, 160, 320, 640, 1280, 2000, 2000}
	for i, w := range want {
		if got := b.Delay(i+1, 0, 0.5); got != w*ms {
			t.Errorf("retry n=%d: %v, want %v", i+1, got, w*ms)
		}
	}
}

func TestNoOverflow(t *testing.T) {
	huge := time.Duration(math.MaxInt64)
	strategies := []backoff.Backoff{
		backoff.Exponential(time.Second, time.Minute),
		backoff.Full(time.Second, time.Minute),
		backoff.Equal(time.Second, time.Minute),
		backoff.Decorrelated(time.Second, time.Minute),
		backoff.Full(time.Nanosecond, huge),
		backoff.Equal(huge/2, huge),
		backoff.Decorrelated(huge/4, huge),
		backoff.Exponential(huge, huge),
	}
	draws := []float64{0, 0.25, 0.5, 0.999999, math.Nextafter(1, 0)}
	for _, b := range strategies {
		for _, n := range []int{0, 1, 30, 62, 63, 64, 100, 10_000, math.MaxInt} {
			for _, u := range draws {
				for _, prev := range []time.Duration{0, b.Cap(), huge} {
					d := b.Delay(n, prev, u)
					if d < 0 || d > b.Cap() {
						t.Fatalf("%v.Delay(%d, %v, %v) = %v, outside [0, %v]", b, n, prev, u, d, b.Cap())
					}
				}
			}
		}
	}
}

func TestReproducibleWithSeed(t *testing.T) {
	seq := func() []time.Duration {
		r := rand.New(rand.NewPCG(1, 2))
		b := backoff.Decorrelated(10*ms, time.Second)
		var out []time.Duration
		var prev time.Duration
		for n := range 20 {
			prev = b.Delay(n, prev, r.Float64())
			out = append(out, prev)
		}
		return out
	}
	a, b := seq(), seq()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d differs: %v vs %v", i, a[i], b[i])
		}
	}
}

// Full jitter's mean over many draws is half the ceiling; equal jitter's is
// three quarters. A loose check that the draw is used, not ignored.
func TestJitterMeans(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	full, equal := backoff.Full(time.Second, time.Hour), backoff.Equal(time.Second, time.Hour)
	var sf, se float64
	const N = 20000
	for range N {
		sf += full.Delay(3, 0, r.Float64()).Seconds()
		se += equal.Delay(3, 0, r.Float64()).Seconds()
	}
	if m := sf / N; m < 3.8 || m > 4.2 {
		t.Errorf("full jitter mean at ceiling 8s = %.2fs, want about 4s", m)
	}
	if m := se / N; m < 5.8 || m > 6.2 {
		t.Errorf("equal jitter mean at ceiling 8s = %.2fs, want about 6s", m)
	}
}

func TestValidate(t *testing.T) {
	bad := []backoff.Backoff{
		{},
		backoff.Full(-ms, time.Second),
		backoff.Full(0, time.Second),
		backoff.Equal(time.Second, ms),
		backoff.Decorrelated(0, 0),
		backoff.Constant(-ms),
	}
	for _, b := range bad {
		if err := b.Validate(); err == nil {
			t.Errorf("%v.Validate() = nil, want an error", b)
		}
	}
	good := []backoff.Backoff{
		backoff.Full(ms, ms),
		backoff.Exponential(ms, time.Hour),
		backoff.Constant(0),
		backoff.Decorrelated(5*ms, 2*time.Second),
	}
	for _, b := range good {
		if err := b.Validate(); err != nil {
			t.Errorf("%v.Validate() = %v", b, err)
		}
	}
}

func BenchmarkFull(b *testing.B) {
	s := backoff.Full(100*ms, 30*time.Second)
	b.ReportAllocs()
	var sink time.Duration
	for i := 0; b.Loop(); i++ {
		sink += s.Delay(i&15, 0, 0.5)
	}
	_ = sink
}
