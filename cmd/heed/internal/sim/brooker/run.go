package brooker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
)

// Limits on a configuration, so a typo cannot start a run that never ends.
const (
	MaxN    = 100000
	MaxRuns = 100000
)

// DefaultNs returns the model's client counts: 10, 20, …, 190.
func DefaultNs() []int {
	ns := make([]int, 19)
	for i := range ns {
		ns[i] = 10 * (i + 1)
	}
	return ns
}

// Config is one simulation: Runs independent runs of N clients under each
// strategy.
type Config struct {
	N          int        // competing clients, 1 to MaxN
	Runs       int        // runs per strategy, 1 to MaxRuns
	Strategies []Strategy // at least one, no repeats
	Seed       uint64     // the same seed gives the same results
	// Series also keeps the write times of the last run, for the
	// call-rate chart (the model's ts_<Algorithm> file).
	Series bool
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.N < 1 || c.N > MaxN {
		errs = append(errs, fmt.Errorf("brooker: N %d clients is outside [1, %d]", c.N, MaxN))
	}
	if c.Runs < 1 || c.Runs > MaxRuns {
		errs = append(errs, fmt.Errorf("brooker: %d runs is outside [1, %d]", c.Runs, MaxRuns))
	}
	errs = append(errs, checkStrategies(c.Strategies))
	return errors.Join(errs...)
}

func checkStrategies(ss []Strategy) error {
	if len(ss) == 0 {
		return errors.New("brooker: no strategies")
	}
	seen := map[Strategy]bool{}
	for _, s := range ss {
		if !s.valid() {
			return fmt.Errorf("brooker: unknown %v", s)
		}
		if seen[s] {
			return fmt.Errorf("brooker: strategy %v listed twice", s)
		}
		seen[s] = true
	}
	return nil
}

// Point is the result of Runs runs of N clients under one strategy.
type Point struct {
	Strategy Strategy
	N        int
	Runs     int
	// Work is the mean number of conditional writes per run; WorkFloor is
	// the model's floor(total writes / runs).
	Work      float64
	WorkFloor int
	// Time is the mean makespan in ms; TimeFloor is the model's
	// floor(sum of makespans / runs).
	Time      float64
	TimeFloor int
	// GaveUp is the mean number of clients per run that gave up without
	// a successful write; only heed's variants give up.
	GaveUp float64
	// Series holds the write times (ms, in order) of the last run when
	// Config.Series is set; int(t) of each is a line of the model's ts file.
	Series []float64
}

// Run simulates cfg and returns one Point per strategy, in cfg's order.
// It runs on the calling goroutine; use [Sweep] to use every CPU.
func Run(cfg Config) ([]Point, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sm := newSim()
	out := make([]Point, len(cfg.Strategies))
	for i, s := range cfg.Strategies {
		p, err := sm.point(s, cfg.N, cfg.Runs, cfg.Seed, cfg.Series)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// Series returns the write times, in ms, of one run of n clients under s:
// the run that Run performs with Runs 1 and the same seed.
func Series(s Strategy, n int, seed uint64) ([]float64, error) {
	ps, err := Run(Config{N: n, Runs: 1, Strategies: []Strategy{s}, Seed: seed, Series: true})
	if err != nil {
		return nil, err
	}
	return ps[0].Series, nil
}

// point runs one (strategy, N) point.
func (sm *sim) point(s Strategy, n, runs int, seed uint64, series bool) (Point, error) {
	pol := s.policy()
	var calls, gaveUp int64
	var sum float64
	var ts []float64
	for run := range runs {
		var sp *[]float64
		if series && run == runs-1 {
			ts = make([]float64, 0, 2*n)
			sp = &ts
		}
		s1, s2 := runSeed(seed, s, n, run)
		r, err := sm.run(&pol, n, s1, s2, sp)
		if err != nil {
			return Point{}, err
		}
		calls += int64(r.calls)
		gaveUp += int64(r.gaveUp)
		sum += r.makespan
	}
	return Point{
		Strategy:  s,
		N:         n,
		Runs:      runs,
		Work:      float64(calls) / float64(runs),
		WorkFloor: int(calls / int64(runs)),
		Time:      sum / float64(runs),
		TimeFloor: int(math.Floor(sum / float64(runs))),
		GaveUp:    float64(gaveUp) / float64(runs),
		Series:    ts,
	}, nil
}

// runSeed derives a run's PCG seed from the sweep's seed and the run's
// coordinates alone, so no run depends on which others ran before it.
func runSeed(seed uint64, s Strategy, n, run int) (uint64, uint64) {
	h := splitmix(seed)
	h = splitmix(h ^ uint64(s))
	h = splitmix(h ^ uint64(n))
	h = splitmix(h ^ uint64(run))
	return h, splitmix(h ^ 0x6a09e667f3bcc908)
}

// splitmix is SplitMix64's finaliser: a cheap bijective mix.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Sweep runs runs runs of every strategy at every N in ns, and returns the
// points ordered by N (as given), then strategy (as given). Points run in
// parallel on GOMAXPROCS goroutines; the result is the same as a
// sequential run's. progress, if not nil, is called after each point with
// the points done and the total, one call at a time, from the sweeping
// goroutines. When ctx ends, the points not yet started are skipped and
// Sweep returns ctx's error.
func Sweep(ctx context.Context, ns []int, runs int, strategies []Strategy, seed uint64, progress func(done, total int)) ([]Point, error) {
	return sweep(ctx, ns, runs, strategies, seed, progress, runtime.GOMAXPROCS(0))
}

func sweep(ctx context.Context, ns []int, runs int, strategies []Strategy, seed uint64, progress func(done, total int), workers int) ([]Point, error) {
	if len(ns) == 0 {
		return nil, errors.New("brooker: no client counts to sweep")
	}
	for i, n := range ns {
		if slices.Contains(ns[:i], n) {
			return nil, fmt.Errorf("brooker: N %d listed twice", n)
		}
		if err := (Config{N: n, Runs: runs, Strategies: strategies}).Validate(); err != nil {
			return nil, err
		}
	}
	total := len(ns) * len(strategies)
	out := make([]Point, total)
	// Largest N first: the longest points start early and the short ones
	// fill in, so the workers finish together.
	order := make([]int, total)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return ns[b/len(strategies)] - ns[a/len(strategies)] })

	jobs := make(chan int)
	var (
		mu       sync.Mutex
		done     int
		firstErr error
		wg       sync.WaitGroup
	)
	for range max(1, min(workers, total)) {
		wg.Go(func() {
			sm := newSim()
			for i := range jobs {
				p, err := sm.point(strategies[i%len(strategies)], ns[i/len(strategies)], runs, seed, false)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out[i] = p
				done++
				if progress != nil {
					progress(done, total)
				}
				mu.Unlock()
			}
		})
	}
	for _, i := range order {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
