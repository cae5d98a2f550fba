package chainsim

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func points(t *testing.T, cfg Config) []Point {
	t.Helper()
	ps, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func strategies(t *testing.T, names string) []Strategy {
	t.Helper()
	sts, err := ParseStrategies(names)
	if err != nil {
		t.Fatal(err)
	}
	return sts
}

// One retry per tier multiplies the load by 2 per tier below the top:
// 2^(K-1), not the 2K-1 the seed's text states (its own examples, 8 for
// K=4 and 512 for K=10, are 2^(K-1)).
func TestOneRetryDoublesPerTier(t *testing.T) {
	ps := points(t, Config{Tiers: []int{2, 3, 4, 5, 6, 7, 8, 9, 10}, FailRate: 1, Requests: 3, Interval: time.Second, Strategies: strategies(t, "one-retry")})
	for _, p := range ps {
		want := float64(int(1) << (p.Tiers - 1))
		if p.Amplification() != want {
			t.Errorf("K=%d: amplification %v, want %v (hits %v)", p.Tiers, p.Amplification(), want, p.Hits)
		}
		for i := 1; i < len(p.Hits); i++ {
			if p.Hits[i] != 2*p.Hits[i-1] {
				t.Errorf("K=%d: hits %v do not double per tier", p.Tiers, p.Hits)
				break
			}
		}
	}
}

// With heed, a dead bottom tier gets no more load than the top sends.
func TestHeedCapsAmplification(t *testing.T) {
	ps := points(t, Config{Tiers: []int{2, 4, 10}, FailRate: 1, Requests: 100, Interval: 20 * time.Millisecond, Strategies: strategies(t, "heed-no-budget,heed")})
	for _, p := range ps {
		if a := p.Amplification(); a > 1 {
			t.Errorf("%s, K=%d: amplification %v (hits %v)", p.Strategy, p.Tiers, a, p.Hits)
		}
	}
}

// A healthy chain carries each request once, whatever the policy.
func TestHealthyChain(t *testing.T) {
	for _, p := range points(t, Config{Tiers: []int{2, 5}, FailRate: 0, Requests: 20, Strategies: Strategies()}) {
		for _, h := range p.Hits {
			if h != 20 {
				t.Errorf("%s, K=%d: hits %v, want 20 at every tier", p.Strategy, p.Tiers, p.Hits)
				break
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	out := func(seed uint64) string {
		var b bytes.Buffer
		cfg := Config{Tiers: []int{3, 6}, FailRate: 0.5, Requests: 100, Interval: 10 * time.Millisecond, Seed: seed, Strategies: Strategies()}
		if err := WriteTable(&b, cfg, points(t, cfg)); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	a := out(1)
	if b := out(1); a != b {
		t.Fatalf("same seed, different output:\n%s\n%s", a, b)
	}
	if c := out(2); a == c {
		t.Error("seeds 1 and 2 gave the same output")
	}
}

func TestBadConfig(t *testing.T) {
	ok := Config{Tiers: []int{2}, FailRate: 1, Requests: 1, Strategies: Strategies()}
	for name, mutate := range map[string]func(*Config){
		"no tiers":      func(c *Config) { c.Tiers = nil },
		"one tier":      func(c *Config) { c.Tiers = []int{1} },
		"eleven tiers":  func(c *Config) { c.Tiers = []int{11} },
		"fail rate 2":   func(c *Config) { c.FailRate = 2 },
		"fail rate NaN": func(c *Config) { c.FailRate = nan() },
		"no requests":   func(c *Config) { c.Requests = 0 },
		"negative gap":  func(c *Config) { c.Interval = -time.Second },
		"no strategy":   func(c *Config) { c.Strategies = nil },
	} {
		c := ok
		mutate(&c)
		if _, err := Run(context.Background(), c, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ParseStrategies("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown strategy: %v", err)
	}
}

func nan() float64 {
	z := 0.0
	return z / z
}
