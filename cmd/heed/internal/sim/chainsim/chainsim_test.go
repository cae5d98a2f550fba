package chainsim

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/cmd/heed/internal/sim/vclock"
	"github.com/heed-go/heed/tier"
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
// 2^(K-1), not the 2K-1 that articles on retry amplification sometimes
// state (their own examples, 8 for K=4 and 512 for K=10, are 2^(K-1)).
func TestOneRetryDoublesPerTier(t *testing.T) {
	ps := points(t, Config{Tiers: []int{2, 3, 4, 5, 6, 7, 8, 9, 10}, FailRates: []float64{1}, Requests: 3, Interval: time.Second, Strategies: strategies(t, "one-retry")})
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
	ps := points(t, Config{Tiers: []int{2, 4, 10}, FailRates: []float64{1}, Requests: 100, Interval: 20 * time.Millisecond, Strategies: strategies(t, "heed-no-budget,heed")})
	for _, p := range ps {
		if a := p.Amplification(); a > 1 {
			t.Errorf("%s, K=%d: amplification %v (hits %v)", p.Strategy, p.Tiers, a, p.Hits)
		}
	}
}

// A healthy chain carries each request once, whatever the policy.
func TestHealthyChain(t *testing.T) {
	for _, p := range points(t, Config{Tiers: []int{2, 5}, FailRates: []float64{0}, Requests: 20, Strategies: Strategies()}) {
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
		cfg := Config{Tiers: []int{3, 6}, FailRates: []float64{0.5}, Requests: 100, Interval: 10 * time.Millisecond, Seed: seed, Strategies: Strategies()}
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
	ok := Config{Tiers: []int{2}, FailRates: []float64{1}, Requests: 1, Strategies: Strategies()}
	for name, mutate := range map[string]func(*Config){
		"no tiers":      func(c *Config) { c.Tiers = nil },
		"one tier":      func(c *Config) { c.Tiers = []int{1} },
		"eleven tiers":  func(c *Config) { c.Tiers = []int{11} },
		"fail rate 2":   func(c *Config) { c.FailRates = []float64{2} },
		"fail rate NaN": func(c *Config) { c.FailRates = []float64{nan()} },
		"no requests":   func(c *Config) { c.Requests = 0 },
		"negative gap":  func(c *Config) { c.Interval = -time.Second },
		"no strategy":   func(c *Config) { c.Strategies = nil },
		"no fail rate":  func(c *Config) { c.FailRates = nil },
		"rate twice":    func(c *Config) { c.FailRates = []float64{0.5, 0.5} },
		"bad kind":      func(c *Config) { c.FailKind = "502" },
		"neg. deadline": func(c *Config) { c.Deadline = -time.Second },
		"naive, K = 10": func(c *Config) { c.Tiers, c.Requests = []int{10}, 200 }, // 6^9 each: hours
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
	for _, s := range []string{"503", "500", "refused"} {
		if k, err := ParseFailKind(s); err != nil || string(k) != s {
			t.Errorf("ParseFailKind(%q) = %q, %v", s, k, err)
		}
	}
	if _, err := ParseFailKind("timeout"); err == nil {
		t.Error("unknown fail kind: no error")
	}
}

func nan() float64 {
	z := 0.0
	return z / z
}

// A sweep runs every rate, and the same seed gives the same points.
func TestSweepDeterministic(t *testing.T) {
	out := func(seed uint64) (string, []Point) {
		cfg := Config{Tiers: []int{2, 3}, FailRates: []float64{0.2, 0.6}, Requests: 60, Interval: 10 * time.Millisecond, Deadline: time.Second, Seed: seed, Strategies: strategies(t, "naive,heed")}
		ps := points(t, cfg)
		var b bytes.Buffer
		if err := WriteTable(&b, cfg, ps); err != nil {
			t.Fatal(err)
		}
		if err := WriteCSV(&b, ps); err != nil {
			t.Fatal(err)
		}
		return b.String(), ps
	}
	a, ps := out(1)
	if len(ps) != 2*2*2 {
		t.Fatalf("%d points, want 8", len(ps))
	}
	for _, want := range []string{"K = 3", "\n60%", "naive,2,503,0.2,60,"} {
		if !strings.Contains(a, want) {
			t.Errorf("output lacks %q:\n%s", want, a)
		}
	}
	if b, _ := out(1); a != b {
		t.Fatalf("same seed, different output:\n%s\n%s", a, b)
	}
	if c, _ := out(2); a == c {
		t.Error("seeds 1 and 2 gave the same output")
	}
}

// A naive loop of 6 attempts sends 6 requests to a dead bottom for each
// one it gets.
func TestNaiveAmplification(t *testing.T) {
	for _, kind := range FailKinds {
		p := points(t, Config{Tiers: []int{2}, FailRates: []float64{1}, FailKind: kind, Requests: 10, Strategies: strategies(t, "naive")})[0]
		if p.Amplification() != 6 || p.OK != 0 {
			t.Errorf("%s: amplification %v, ok %d (hits %v), want 6 and 0", kind, p.Amplification(), p.OK, p.Hits)
		}
	}
}

// The refused kind fails the hop as a connection refused, which heed
// classifies as refused; heed without a breaker gets nothing through a
// bottom that refuses every connection.
func TestRefused(t *testing.T) {
	clk := vclock.New()
	c, err := heedStrategy("heed", false, heed.WithMaxAttempts(1)).client(&hop{clk: clk, rtt: time.Millisecond, refuse: func() bool { return true }}, clk, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	var callErr error
	clk.Go(func() { _, callErr = c.Get("http://bottom.test/") })
	if err := clk.Run(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	var he *heed.Error
	if !errors.As(callErr, &he) || len(he.Attempts) != 1 || he.Attempts[0].Kind != heed.KindRefused || !errors.Is(callErr, syscall.ECONNREFUSED) {
		t.Fatalf("error %v: want heed's refused", callErr)
	}

	ps := points(t, Config{Tiers: []int{2, 3}, FailRates: []float64{0.5, 1}, FailKind: FailRefused, Requests: 50, Interval: 10 * time.Millisecond, Strategies: strategies(t, "heed-no-breaker")})
	for _, p := range ps {
		if p.FailRate == 1 && p.OK != 0 || p.FailRate < 1 && p.OK == 0 {
			t.Errorf("K=%d, %v refused: %d ok", p.Tiers, p.FailRate, p.OK)
		}
		if p.Hits[len(p.Hits)-1] <= p.Hits[0] {
			t.Errorf("K=%d, %v refused: hits %v, want retries to reach the bottom", p.Tiers, p.FailRate, p.Hits)
		}
	}
}

// A deadline ends a request at the deadline: a plain loop, which does not
// know it, finds the request cancelled at its next attempt, and nothing
// reaches the bottom after it.
func TestDeadline(t *testing.T) {
	// Hops of 1 ms: the bottom sees attempts at 2 and 3 ms, the third would
	// arrive at 4 ms, past the 3.5 ms deadline.
	p := points(t, Config{Tiers: []int{2}, FailRates: []float64{1}, Requests: 10, Interval: time.Second, Deadline: 3500 * time.Microsecond, Strategies: strategies(t, "naive")})[0]
	if p.Amplification() != 2 || p.OK != 0 || p.Max != 3500*time.Microsecond {
		t.Errorf("naive: amplification %v, ok %d, max %v (hits %v); want 2, 0, 3.5ms", p.Amplification(), p.OK, p.Max, p.Hits)
	}
}

// A tier with tier.Middleware gets the caller's Heed-Timeout as a deadline
// on the virtual clock, and its heed client decides by it: told to come
// back after the deadline, it gives up at once. The tier's context ends
// when the caller's deadline passes.
func TestVirtualDeadline(t *testing.T) {
	clk := vclock.New()
	bottom := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c, err := heedStrategy("heed", true).client(&hop{clk: clk, rtt: time.Millisecond, handler: bottom}, clk, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	var (
		deadline      time.Time
		header        string
		callErr       error
		after, before error
	)
	mid := tier.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadline, _ = r.Context().Deadline()
		header = r.Header.Get(tier.HeaderTimeout)
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://bottom.test/", nil)
		_, callErr = c.Do(req)
		before = r.Context().Err()
		clock.Sleep(clk, time.Second, nil)
		after = r.Context().Err()
	}))
	top := &http.Client{Transport: &hop{clk: clk, rtt: time.Millisecond, handler: mid, middleware: true}}
	clk.Go(func() {
		s := newScope(clk, nil, clk.Now().Add(500*time.Millisecond))
		defer s.cancel(nil)
		req, _ := http.NewRequestWithContext(&simCtx{Context: s.ctx, s: s, deadline: s.expiry}, http.MethodGet, "http://tier0.test/", nil)
		req.Header.Set(tier.HeaderTimeout, timeoutHeader(500*time.Millisecond))
		top.Do(req)
	})
	if err := clk.Run(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	if want := vclock.Epoch.Add(501 * time.Millisecond); !deadline.Equal(want) || header != "" {
		t.Errorf("tier's deadline %v, Heed-Timeout %q; want %v and none", deadline, header, want)
	}
	var he *heed.Error
	if !errors.Is(callErr, heed.ErrDeadline) || !errors.As(callErr, &he) || len(he.Attempts) != 1 {
		t.Errorf("heed's call: %v; want ErrDeadline after 1 attempt", callErr)
	}
	if before != nil || !errors.Is(after, context.Canceled) {
		t.Errorf("tier's context: %v before the deadline, %v after; want nil and canceled", before, after)
	}
}

func TestBreakerVariants(t *testing.T) {
	bs, err := ParseBreakers("default,off")
	if err != nil {
		t.Fatal(err)
	}
	sts, err := WithBreakers(strategies(t, "naive,heed"), bs)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range sts {
		names = append(names, st.Name)
	}
	if got := strings.Join(names, ","); got != "naive,heed[default],heed[off]" {
		t.Errorf("strategies %s", got)
	}
	// Every setting builds a client.
	for _, st := range must(WithBreakers(strategies(t, "heed"), Breakers())) {
		if _, err := st.client(http.DefaultTransport, vclock.New(), rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Errorf("%s: %v", st.Name, err)
		}
	}
	if _, err := WithBreakers(strategies(t, "naive"), bs); err == nil {
		t.Error("breaker settings without the heed strategy: no error")
	}
	if _, err := ParseBreakers("sometimes"); err == nil {
		t.Error("unknown breaker setting: no error")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The SRE book's throttle refuses nothing while the dependency is healthy,
// cuts a dead one off, and refuses a share that grows with the failures.
func TestSREThrottle(t *testing.T) {
	sts := must(WithBreakers(strategies(t, "heed"), must(ParseBreakers("sre2"))))
	for _, tc := range []struct {
		fail         float64
		minOK, maxOK float64
		maxAmp       float64
	}{
		{0, 1, 1, 1},
		{1, 0, 0, 0.05},
	} {
		ps, err := Run(context.Background(), Config{Tiers: []int{2}, FailRates: []float64{tc.fail}, Requests: 400, Interval: 5 * time.Millisecond, Seed: 1, Strategies: sts}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := ps[0]
		ok := float64(p.OK) / float64(p.Hits[0])
		if ok < tc.minOK || ok > tc.maxOK || p.Amplification() > tc.maxAmp {
			t.Errorf("fail %.0f%%: %.1f%% ok, amplification %.3f", tc.fail*100, 100*ok, p.Amplification())
		}
	}
}

// A strategy name with a comma or a quote is quoted as CSV wants.
func TestCSVQuoting(t *testing.T) {
	var b bytes.Buffer
	ps := []Point{{Strategy: `heed[a,"b"]`, Tiers: 2, FailKind: Fail503, FailRate: 0.5, Hits: []int64{10, 20}, OK: 5}}
	if err := WriteCSV(&b, ps); err != nil {
		t.Fatal(err)
	}
	want := `"heed[a,""b""]",2,503,0.5,10,20,2.000000,5,0.000000,0.000000`
	if lines := strings.Split(b.String(), "\n"); lines[1] != want {
		t.Errorf("got %s, want %s", lines[1], want)
	}
}
