package brooker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOneClient(t *testing.T) {
	ps, err := Run(Config{N: 1, Runs: 200, Strategies: All(), Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Work != 1 || p.WorkFloor != 1 {
			t.Errorf("%v: work %v (floor %d), want 1", p.Strategy, p.Work, p.WorkFloor)
		}
		if p.Time < 39 || p.Time > 41 {
			t.Errorf("%v: mean time %.2f ms, want 39-41", p.Strategy, p.Time)
		}
		if p.GaveUp != 0 {
			t.Errorf("%v: %v gave up", p.Strategy, p.GaveUp)
		}
	}
}

func TestWorkAtLeastN(t *testing.T) {
	for _, n := range []int{2, 5, 17, 40} {
		ps, err := Run(Config{N: n, Runs: 5, Strategies: All(), Seed: uint64(n)})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Work < float64(n) || p.WorkFloor < n {
				t.Errorf("N=%d %v: work %v < N", n, p.Strategy, p.Work)
			}
			if !(p.Time > 0) || p.TimeFloor < 0 {
				t.Errorf("N=%d %v: time %v", n, p.Strategy, p.Time)
			}
			if !p.Strategy.Heed() && p.GaveUp != 0 {
				t.Errorf("N=%d %v: reference strategy gave up %v", n, p.Strategy, p.GaveUp)
			}
		}
	}
}

func TestExponentialSleeps(t *testing.T) {
	want := []time.Duration{10, 20, 40, 80, 160, 320, 640, 1280, 2000, 2000}
	p := Exponential.policy()
	for i, w := range want {
		n := i + 1
		for _, u := range []float64{0, 0.5, 0.999} {
			if got := p.sleep(n, Base, u); got != w*time.Millisecond {
				t.Errorf("Exponential sleep(%d) = %v, want %v", n, got, w*time.Millisecond)
			}
		}
	}
	none := None.policy()
	for n := 1; n <= 10; n++ {
		if got := none.sleep(n, Base, 0.7); got != 0 {
			t.Errorf("None sleep(%d) = %v", n, got)
		}
	}
}

func TestJitterSleeps(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	full, equal := FullJitter.policy(), EqualJitter.policy()
	for n := 1; n <= 12; n++ {
		expo := min(Cap, Base<<n)
		for range 1000 {
			u := r.Float64()
			if got, want := full.sleep(n, Base, u), time.Duration(float64(expo)*u); got != want {
				t.Fatalf("FullJitter sleep(%d, u=%v) = %v, want U(0, %v) = %v", n, u, got, expo, want)
			}
			if got, want := equal.sleep(n, Base, u), expo/2+time.Duration(float64(expo/2)*u); got != want {
				t.Fatalf("EqualJitter sleep(%d, u=%v) = %v, want %v", n, u, got, want)
			}
		}
	}
}

// Decorr must be the model's sleep = min(cap, U(base, 3*sleep)) from
// sleep = base, storing the capped value.
func TestDecorrSleeps(t *testing.T) {
	p := Decorr.policy()
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		prev := Base
		for n := 1; n <= 20; n++ {
			u := r.Float64()
			got := p.sleep(n, prev, u)
			lo, hi := Base, 3*prev
			if n == 1 && (got < 5*time.Millisecond || got >= 15*time.Millisecond) {
				t.Fatalf("first sleep %v outside [5ms, 15ms)", got)
			}
			if got < lo || got >= hi || got > Cap {
				t.Fatalf("sleep %d = %v outside [%v, %v) capped at %v", n, got, lo, hi, Cap)
			}
			// The spec's formula in float ms; heed works in whole ns.
			want := math.Min(2000, 5+u*(3*durationToMs(prev)-5))
			if d := math.Abs(durationToMs(got) - want); d > 1e-6 {
				t.Fatalf("sleep %d = %v, spec says %vms", n, got, want)
			}
			prev = got
		}
	}
}

func TestHeedDefaultsSleeps(t *testing.T) {
	p := HeedDefaults.policy()
	// heed's numbering: the first retry draws under 500 ms, the fifth under 8 s.
	for n, ceil := range map[int]time.Duration{1: 500 * time.Millisecond, 5: 8 * time.Second, 20: 30 * time.Second} {
		if got := p.sleep(n, 0, 0.999999); got >= ceil || got < ceil*99/100 {
			t.Errorf("heed-defaults sleep(%d, u≈1) = %v, want just under %v", n, got, ceil)
		}
	}
}

func TestDeterminism(t *testing.T) {
	cfg := Config{N: 30, Runs: 4, Strategies: All(), Seed: 42, Series: true}
	a, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Run(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different points")
	}
	if out(t, WriteTable, a) != out(t, WriteTable, b) || out(t, WriteCSV, a) != out(t, WriteCSV, b) {
		t.Fatal("same points, different bytes")
	}
	cfg.Seed = 43
	c, _ := Run(cfg)
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same points")
	}
	// The series is the last run's writes, one time per call.
	for _, p := range a {
		if len(p.Series) < p.N || !slices.IsSorted(p.Series) {
			t.Errorf("%v: series of %d writes, sorted %v", p.Strategy, len(p.Series), slices.IsSorted(p.Series))
		}
	}
	s, err := Series(FullJitter, 30, 42)
	if err != nil {
		t.Fatal(err)
	}
	one, _ := Run(Config{N: 30, Runs: 1, Strategies: []Strategy{FullJitter}, Seed: 42})
	if len(s) != one[0].WorkFloor {
		t.Errorf("Series has %d writes, Run counted %d", len(s), one[0].WorkFloor)
	}
}

func TestSweepParallelMatchesSequential(t *testing.T) {
	ns := []int{5, 25, 15}
	var calls []int
	par, err := sweep(context.Background(), ns, 3, All(), 9, func(done, total int) {
		if total != len(ns)*len(All()) {
			t.Errorf("total %d", total)
		}
		calls = append(calls, done)
	}, 4)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := sweep(context.Background(), ns, 3, All(), 9, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(par, seq) {
		t.Fatal("parallel and sequential sweeps differ")
	}
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21}; !slices.Equal(calls, want) {
		t.Errorf("progress calls %v", calls)
	}
	// A sweep point equals the same point run alone.
	for i, n := range ns {
		ps, _ := Run(Config{N: n, Runs: 3, Strategies: All(), Seed: 9})
		if got := par[i*len(All()) : (i+1)*len(All())]; !reflect.DeepEqual(got, ps) {
			t.Errorf("N=%d: sweep %+v, Run %+v", n, got, ps)
		}
	}
}

// The post's result: full jitter does far less work than exponential
// backoff, and no backoff does the most.
func TestPublishedResult(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 100 x 100 clients")
	}
	ps, err := Run(Config{N: 100, Runs: 100, Strategies: All(), Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	work := map[Strategy]Point{}
	for _, p := range ps {
		work[p.Strategy] = p
	}
	ratio := work[FullJitter].Work / work[Exponential].Work
	t.Logf("N=100: FullJitter/Exponential work = %.3f", ratio)
	if ratio > 0.6 {
		t.Errorf("FullJitter/Exponential work = %.2f, want well below 1", ratio)
	}
	for _, s := range Reference()[1:] {
		if work[s].Work >= work[None].Work {
			t.Errorf("%v work %v >= None's %v", s, work[s].Work, work[None].Work)
		}
	}
	hd, hb := work[HeedDefaults], work[HeedBudget]
	t.Logf("heed-defaults: work %.1f time %.1f ms gave up %.2f; heed-budget: work %.1f time %.1f ms gave up %.2f",
		hd.Work, hd.Time, hd.GaveUp, hb.Work, hb.Time, hb.GaveUp)
	if hd.Time <= 0 || hd.GaveUp >= float64(hd.N) {
		t.Errorf("heed-defaults did not finish: %+v", hd)
	}
	var b strings.Builder
	WriteTable(&b, ps)
	t.Logf("\n%s", b.String())
}

func TestBadConfigs(t *testing.T) {
	for _, c := range []Config{
		{},
		{N: 0, Runs: 1, Strategies: Reference()},
		{N: -5, Runs: 1, Strategies: Reference()},
		{N: MaxN + 1, Runs: 1, Strategies: Reference()},
		{N: 1, Runs: 0, Strategies: Reference()},
		{N: 1, Runs: -1, Strategies: Reference()},
		{N: 1, Runs: MaxRuns + 1, Strategies: Reference()},
		{N: 1, Runs: 1},
		{N: 1, Runs: 1, Strategies: []Strategy{0}},
		{N: 1, Runs: 1, Strategies: []Strategy{HeedBudget + 1}},
		{N: 1, Runs: 1, Strategies: []Strategy{None, None}},
	} {
		if _, err := Run(c); err == nil {
			t.Errorf("Run(%+v): no error", c)
		}
	}
	for _, tc := range []struct {
		ns   []int
		runs int
		ss   []Strategy
	}{
		{nil, 1, Reference()},
		{[]int{10, 0}, 1, Reference()},
		{[]int{10, 10}, 1, Reference()},
		{[]int{10}, 0, Reference()},
		{[]int{10}, 1, nil},
	} {
		if _, err := Sweep(context.Background(), tc.ns, tc.runs, tc.ss, 1, nil); err == nil {
			t.Errorf("Sweep(%v, %d, %v): no error", tc.ns, tc.runs, tc.ss)
		}
	}
	if _, err := Series(0, 10, 1); err == nil {
		t.Error("Series of an unknown strategy: no error")
	}
}

func TestParseStrategies(t *testing.T) {
	for in, want := range map[string][]Strategy{
		"all":                        All(),
		"reference":                  Reference(),
		"FullJitter,Decorr":          {FullJitter, Decorr},
		" fulljitter , heed-budget ": {FullJitter, HeedBudget},
		"heed-defaults":              {HeedDefaults},
	} {
		got, err := ParseStrategies(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseStrategies(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, mention := range map[string]string{
		"":                 `""`,
		"FullJitter,Bogus": `"Bogus"`,
		"Decorr,,None":     `""`,
		"None,none":        "twice",
		"Expo,Nothing":     `"Expo", "Nothing"`,
	} {
		_, err := ParseStrategies(in)
		if err == nil || !strings.Contains(err.Error(), mention) {
			t.Errorf("ParseStrategies(%q) error %v, want it to mention %s", in, err, mention)
		}
	}
	for _, s := range All() {
		if got, err := ParseStrategies(s.String()); err != nil || len(got) != 1 || got[0] != s {
			t.Errorf("%v does not round-trip: %v, %v", s, got, err)
		}
	}
}

func TestWriters(t *testing.T) {
	ps := []Point{
		{Strategy: None, N: 10, Runs: 2, Work: 51.5, WorkFloor: 51, Time: 382.25, TimeFloor: 382},
		{Strategy: FullJitter, N: 10, Runs: 2, Work: 39, WorkFloor: 39, Time: 475.9, TimeFloor: 475},
		{Strategy: None, N: 20, Runs: 2, Work: 154, WorkFloor: 154, Time: 609.4, TimeFloor: 609},
	}
	wantTable := "" +
		"Work: conditional writes the server handled per run (mean of 2 runs)\n\n" +
		"N    None  FullJitter\n" +
		"10   51.5        39.0\n" +
		"20  154.0           -\n\n" +
		"  N  competing clients, each updating one row once: N writes is the least possible work\n\n" +
		"Time: ms from the start until the last client finished or gave up (mean of 2 runs)\n\n" +
		"N   None  FullJitter\n" +
		"10   382         476\n" +
		"20   609           -\n\n" +
		"At N = 20, of the strategies whose clients all finished, None did the least work: 154 writes; None\n" +
		"finished first (609 ms).\n"
	if got := out(t, WriteTable, ps); got != wantTable {
		t.Errorf("table:\n%s\nwant:\n%s", got, wantTable)
	}
	wantCSV := "clients,time,calls,Algorithm\n10,382,51,None\n10,475,39,FullJitter\n20,609,154,None\n"
	if got := out(t, WriteCSV, ps); got != wantCSV {
		t.Errorf("csv:\n%s\nwant:\n%s", got, wantCSV)
	}
	ps = append(ps, Point{Strategy: HeedBudget, N: 10, Runs: 2, Work: 12, WorkFloor: 12, Time: 50.5, TimeFloor: 50, GaveUp: 1.5})
	if got := out(t, WriteCSV, ps); !strings.HasPrefix(got, "clients,time,calls,Algorithm,gave_up\n10,382,51,None,0.00\n") ||
		!strings.HasSuffix(got, "10,50,12,heed-budget,1.50\n") {
		t.Errorf("csv with heed:\n%s", got)
	}
	if got := out(t, WriteTable, ps); !strings.Contains(got, "Gave up: ") || !strings.Contains(got, "  12.0*") ||
		strings.Contains(got, "heed-defaults") {
		t.Errorf("table without the gave-up table, mark or note:\n%s", got)
	}
	var b bytes.Buffer
	WriteSeries(&b, FullJitter, 10, 1, []float64{10.9, 41.2, 1000.999})
	if b.String() != "# write_ms: when the server handled each conditional write, in whole ms from the start; FullJitter, N = 10, one run, seed 1\n10\n41\n1000\n" {
		t.Errorf("series %q", b.String())
	}
}

func out(t *testing.T, write func(io.Writer, []Point) error, ps []Point) string {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b, ps); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// BenchmarkFullSweep is the model's whole experiment: N = 10..190, 100 runs
// of the five reference strategies.
func BenchmarkFullSweep(b *testing.B) {
	for b.Loop() {
		if _, err := Sweep(context.Background(), DefaultNs(), 100, Reference(), 1, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRun measures one run's event loop.
func BenchmarkRun(b *testing.B) {
	for _, s := range Reference() {
		b.Run(fmt.Sprint(s), func(b *testing.B) {
			sm, pol := newSim(), s.policy()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := sm.run(&pol, 100, uint64(i), 0, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A cancelled sweep stops and says so.
func TestSweepCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Sweep(ctx, DefaultNs(), 100, All(), 1, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}
