package stormsim

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/internal/storm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run1(t *testing.T, cfg Config) []Result {
	t.Helper()
	rs, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func byName(t *testing.T, names string) []Strategy {
	t.Helper()
	sts, err := ParseStrategies(names)
	if err != nil {
		t.Fatal(err)
	}
	return sts
}

// heed's defaults lose nothing in the public storm, shared or not, and
// stay close to one attempt per success.
func TestHeedLosesNothing(t *testing.T) {
	for seed := range uint64(3) {
		for _, r := range run1(t, Config{Scenario: storm.Default, Seed: seed, Strategies: byName(t, "heed-shared,heed")}) {
			if r.Failed != 0 || r.Succeeded != 500 {
				t.Errorf("seed %d, %s: %d succeeded, %d failed", seed, r.Name, r.Succeeded, r.Failed)
			}
			if a := r.AttemptsPerSuccess(); a > 1.25 {
				t.Errorf("seed %d, %s: %.2f attempts per success", seed, r.Name, a)
			}
		}
	}
}

// Without retries only the burst gets through: every client sends at once.
func TestNoRetryGetsTheBurst(t *testing.T) {
	r := run1(t, Config{Scenario: storm.Default, Strategies: byName(t, "no-retry")})[0]
	if r.Succeeded != storm.Default.Server.Burst || r.Attempts != 500 {
		t.Errorf("%d succeeded in %d attempts, want the burst of %d in 500", r.Succeeded, r.Attempts, storm.Default.Server.Burst)
	}
}

// The same seed gives the same bytes; another seed another storm.
func TestDeterministic(t *testing.T) {
	out := func(seed uint64) string {
		cfg := Config{Scenario: storm.Default, Seed: seed, Strategies: Strategies()}
		var b bytes.Buffer
		if err := WriteCSV(&b, cfg, run1(t, cfg)); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	a := out(7)
	if b := out(7); a != b {
		t.Fatalf("two runs with seed 7 differ:\n%s\n%s", a, b)
	}
	if c := out(8); a == c {
		t.Error("seeds 7 and 8 gave the same storm")
	}
	if !strings.HasPrefix(a, "strategy,clients,") || strings.Count(a, "\n") != 1+len(Strategies()) {
		t.Errorf("CSV:\n%s", a)
	}
}

// Every attempt the server sees is recorded, in time order.
func TestSent(t *testing.T) {
	r := run1(t, Config{Scenario: storm.Scenario{Server: storm.DefaultServer, Clients: 5, PerClient: 4}, Strategies: byName(t, "heed")})[0]
	if int64(len(r.Sent)) != r.Attempts {
		t.Fatalf("%d times for %d attempts", len(r.Sent), r.Attempts)
	}
	for i := 1; i < len(r.Sent); i++ {
		if r.Sent[i] < r.Sent[i-1] {
			t.Fatalf("times out of order at %d: %v", i, r.Sent)
		}
	}
	if r.Sent[0] != time.Millisecond {
		t.Errorf("first attempt at %v, want after the 1ms round trip", r.Sent[0])
	}
}

func TestBadConfig(t *testing.T) {
	ok := Config{Scenario: storm.Default, Strategies: Strategies()}
	for name, mutate := range map[string]func(*Config){
		"no clients":       func(c *Config) { c.Clients = 0 },
		"negative clients": func(c *Config) { c.Clients = -1 },
		"no requests":      func(c *Config) { c.PerClient = 0 },
		"zero rate":        func(c *Config) { c.Server.Rate = 0 },
		"zero burst":       func(c *Config) { c.Server.Burst = 0 },
		"negative latency": func(c *Config) { c.Latency = -time.Second },
		"no strategy":      func(c *Config) { c.Strategies = nil },
	} {
		c := ok
		mutate(&c)
		if _, err := Run(context.Background(), c, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ParseStrategies("heed,bogus"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown strategy: %v", err)
	}
}

// CSV quotes what needs quoting, and leaves over_optimal empty for a
// strategy that lost requests.
func TestCSV(t *testing.T) {
	cfg := Config{Scenario: storm.Default}
	rs := []Result{{Result: storm.Result{Name: `a,"b"`, Succeeded: 5, Failed: 5, Attempts: 10, Makespan: time.Second, Optimal: time.Second}}}
	var b bytes.Buffer
	if err := WriteCSV(&b, cfg, rs); err != nil {
		t.Fatal(err)
	}
	want := `"a,""b""",50,10,100,10,5,5,10,0,2.0000,1.000,1.000,`
	if lines := strings.Split(b.String(), "\n"); lines[1] != want {
		t.Errorf("got %s, want %s", lines[1], want)
	}
}

// A strategy that lost requests gets no "vs optimal" score, and the
// conclusion names the winner the numbers give.
func TestTableHonest(t *testing.T) {
	sc := storm.Default
	opt := sc.Optimal()
	rs := []storm.Result{
		{Name: "quitter", Succeeded: 10, Failed: 490, Attempts: 500, Makespan: 10 * time.Millisecond, Optimal: opt},
		{Name: "slow", Succeeded: 500, Attempts: 900, Makespan: 3 * opt, Optimal: opt},
		{Name: "quick", Succeeded: 500, Attempts: 600, Makespan: opt * 11 / 10, Optimal: opt},
	}
	var b bytes.Buffer
	if err := WriteTable(&b, sc, rs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"quitter   10     490       500     0   50.00     0.01s         n/a\n",
		"quick was the fastest (1.10x the optimal time) and wasted the least (1.20 attempts per success); slow was the slowest",
		"quitter lost 490 of 500.",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
