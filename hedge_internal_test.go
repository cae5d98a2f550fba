package heed

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestLatenciesQuantile(t *testing.T) {
	var l latencies
	for i := range latencyWarm - 1 {
		l.add(time.Duration(i) * time.Millisecond)
	}
	if _, ok := l.quantile(0.5); ok {
		t.Fatal("a quantile before the estimate is warm")
	}
	l = latencies{}
	for i := range 1000 {
		d := 5 * time.Millisecond
		if i%20 == 0 {
			d = 200 * time.Millisecond
		}
		l.add(d)
	}
	for _, tc := range []struct {
		q        float64
		min, max time.Duration
	}{
		{0.5, 5 * time.Millisecond, 6 * time.Millisecond},
		{0.95, 5 * time.Millisecond, 6 * time.Millisecond},
		{0.99, 200 * time.Millisecond, 240 * time.Millisecond},
	} {
		if d, ok := l.quantile(tc.q); !ok || d < tc.min || d > tc.max {
			t.Errorf("p%v = %v, want %v to %v", tc.q*100, d, tc.min, tc.max)
		}
	}
}

// The estimate follows the recent traffic: old samples fade.
func TestLatenciesForget(t *testing.T) {
	var l latencies
	for range 3000 {
		l.add(5 * time.Millisecond)
	}
	for range 4 * latencyDecay {
		l.add(50 * time.Millisecond)
	}
	if d, _ := l.quantile(0.1); d < 50*time.Millisecond {
		t.Errorf("p10 = %v after the latency rose to 50ms, want at least 50ms", d)
	}
}

func TestLatenciesExtremes(t *testing.T) {
	var l latencies
	for range latencyWarm {
		l.add(0)
		l.add(time.Hour)
	}
	if d, _ := l.quantile(0.1); d > 2*latencyMin {
		t.Errorf("p10 of instant answers = %v", d)
	}
	if d, _ := l.quantile(0.9); d < 3*time.Minute {
		t.Errorf("p90 of hour-long answers = %v, want the top bucket", d)
	}
}

// When the slow share of the traffic sits right at 1-Percentile, the
// adaptive delay must not creep upward as the hedged requests teach the
// estimate: it stays within a bucket of the fast requests' latency.
func TestAdaptiveDelayDoesNotCreep(t *testing.T) {
	c := HedgeConfig{}
	c.defaults()
	var h hedgeState
	rng := rand.New(rand.NewPCG(1, 2))
	const fast, slow = 5 * time.Millisecond, 200 * time.Millisecond
	var worst time.Duration
	for range 50_000 {
		took := fast
		if rng.Float64() < 0.05 {
			took = slow
		}
		d, ok := h.delay(&c)
		if !ok || took <= d {
			h.lat.add(took)
			continue
		}
		worst = max(worst, d)
		h.lat.add(wonAfter(1, d+fast, d)) // the hedge answered fast
	}
	if worst > 7*time.Millisecond {
		t.Errorf("the delay crept up to %v for traffic 95%% at %v", worst, fast)
	}
}
