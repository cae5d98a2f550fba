package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// BenchmarkPartialFailure sweeps the partial-failure scenario on loopback:
// a chain of services each calling the next, the bottom failing a random
// share of requests (503, 500, or connection refused), every calling tier
// using the same contender with its defaults. "one-tier" is a chain of 2
// (the load calls a service that calls the bottom), "four-tiers" a chain
// of 4 as in the amplification table. Each cell sends 2,000 GETs from 20
// workers, 5 s each, and stops sending after 20 s (go-retryablehttp waits
// 1 s to 30 s between attempts). It reports the top calls sent, the share
// answered 200, the load aimed at the bottom over the top calls, the p99
// and longest top call, and the cell's wall time. The whole sweep (240
// cells) takes about half an hour:
//
//	HEED_PARTIAL_OUT=/tmp/partial-out go test -run xxx -bench PartialFailure -benchtime 1x -timeout 0
//
// The environment selects cells and changes the load: HEED_PARTIAL_TIERS
// (one,four; or a chain length), HEED_PARTIAL_KINDS (503,500,refused),
// HEED_PARTIAL_RATES (in %), HEED_PARTIAL_CONTENDERS (names),
// HEED_PARTIAL_REQUESTS, HEED_PARTIAL_WORKERS, HEED_PARTIAL_DEADLINE
// (0 = none), HEED_PARTIAL_SEND_FOR, HEED_PARTIAL_SEED. One cell:
//
//	HEED_PARTIAL_TIERS=four HEED_PARTIAL_KINDS=503 HEED_PARTIAL_RATES=50 HEED_PARTIAL_CONTENDERS=heed \
//		go test -run xxx -bench PartialFailure -benchtime 1x
//
// Every cell draws its failures from the same seeded sequence, so the
// cells compare on common random numbers and -count repeats the same
// draws; a different HEED_PARTIAL_SEED samples another sequence. With
// HEED_PARTIAL_OUT=dir it writes partial.csv and the charts of
// WritePartial there.
func BenchmarkPartialFailure(b *testing.B) {
	sw, err := partialSweep()
	if err != nil {
		b.Fatal(err)
	}
	var results []PartialResult
	for _, tiers := range sw.tiers {
		sc := sw.sc
		sc.Tiers = tiers
		b.Run(sc.TierName(), func(b *testing.B) {
			for _, kind := range sw.kinds {
				sc.Kind = kind
				b.Run(string(kind), func(b *testing.B) {
					for _, rate := range sw.rates {
						sc.Rate = rate / 100
						b.Run("rate-"+strconv.FormatFloat(rate, 'f', -1, 64), func(b *testing.B) {
							for _, c := range sw.contenders {
								b.Run(c.Name, func(b *testing.B) {
									for b.Loop() {
										r := runCell(b, sc, c)
										results = append(results, r)
										reportPartial(b, r)
									}
								})
							}
						})
					}
				})
			}
		})
	}
	if dir := os.Getenv("HEED_PARTIAL_OUT"); dir != "" && len(results) > 0 {
		if err := WritePartial(dir, results); err != nil {
			b.Fatal(err)
		}
	}
}

func runCell(b *testing.B, sc PartialScenario, c Contender) PartialResult {
	// SendFor, then the calls in flight, then the chain's closing: bounded
	// by the deadline (or the cap) of those calls.
	limit := sc.SendFor + cmp.Or(sc.Deadline, sc.Cap, 2*time.Minute) + time.Minute
	if sc.SendFor == 0 {
		limit = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	r, err := RunPartial(ctx, sc, c)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func reportPartial(b *testing.B, r PartialResult) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(float64(r.Sent), "sent")
	b.ReportMetric(100*r.Success(), "success-%")
	b.ReportMetric(float64(r.Bottom()), "bottom")
	b.ReportMetric(r.Load(), "bottom/top")
	b.ReportMetric(ms(r.Quantile(0.99)), "p99-ms")
	b.ReportMetric(ms(r.Quantile(1)), "max-ms")
	b.ReportMetric(r.Wall.Seconds(), "wall-s")
}

// sweep is the set of cells BenchmarkPartialFailure runs.
type sweep struct {
	sc         PartialScenario
	tiers      []int
	kinds      []FailureKind
	rates      []float64 // in %
	contenders []Contender
}

// partialSweep reads the HEED_PARTIAL_* variables over the full sweep.
func partialSweep() (sweep, error) {
	sw := sweep{
		sc:         Partial,
		tiers:      []int{2, 4},
		kinds:      FailureKinds,
		rates:      []float64{0, 10, 20, 30, 50, 70, 90, 100},
		contenders: PartialContenders(),
	}
	list := func(name string, each func(string) error) error {
		v := os.Getenv(name)
		if v == "" {
			return nil
		}
		for f := range strings.SplitSeq(v, ",") {
			if err := each(strings.TrimSpace(f)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	}
	var (
		tiers      []int
		kinds      []FailureKind
		rates      []float64
		contenders []Contender
	)
	err := list("HEED_PARTIAL_TIERS", func(s string) error {
		n, ok := map[string]int{"one": 2, "four": 4}[s]
		if !ok {
			var err error
			if n, err = strconv.Atoi(s); err != nil || n < 2 {
				return fmt.Errorf("%q is not one, four or a chain length of 2 or more", s)
			}
		}
		tiers = append(tiers, n)
		return nil
	})
	if err == nil {
		err = list("HEED_PARTIAL_KINDS", func(s string) error {
			if !slices.Contains(FailureKinds, FailureKind(s)) {
				return fmt.Errorf("unknown kind %q", s)
			}
			kinds = append(kinds, FailureKind(s))
			return nil
		})
	}
	if err == nil {
		err = list("HEED_PARTIAL_RATES", func(s string) error {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
			if err != nil || v < 0 || v > 100 {
				return fmt.Errorf("%q is not a rate in %%", s)
			}
			rates = append(rates, v)
			return nil
		})
	}
	if err == nil {
		err = list("HEED_PARTIAL_CONTENDERS", func(s string) error {
			i := slices.IndexFunc(sw.contenders, func(c Contender) bool { return c.Name == s })
			if i < 0 {
				return fmt.Errorf("unknown contender %q", s)
			}
			contenders = append(contenders, sw.contenders[i])
			return nil
		})
	}
	for _, v := range []struct {
		name string
		dst  *int
	}{{"HEED_PARTIAL_REQUESTS", &sw.sc.Requests}, {"HEED_PARTIAL_WORKERS", &sw.sc.Workers}} {
		if s := os.Getenv(v.name); s != "" && err == nil {
			if *v.dst, err = strconv.Atoi(s); err != nil {
				err = fmt.Errorf("%s: %w", v.name, err)
			}
		}
	}
	for _, v := range []struct {
		name string
		dst  *time.Duration
	}{{"HEED_PARTIAL_DEADLINE", &sw.sc.Deadline}, {"HEED_PARTIAL_SEND_FOR", &sw.sc.SendFor}} {
		if s := os.Getenv(v.name); s != "" && err == nil {
			if s == "0" {
				*v.dst = 0
			} else if *v.dst, err = time.ParseDuration(s); err != nil {
				err = fmt.Errorf("%s: %w", v.name, err)
			}
		}
	}
	if s := os.Getenv("HEED_PARTIAL_SEED"); s != "" && err == nil {
		if sw.sc.Seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			err = fmt.Errorf("HEED_PARTIAL_SEED: %w", err)
		}
	}
	if err != nil {
		return sweep{}, err
	}
	sw.tiers = cmpSlice(tiers, sw.tiers)
	sw.kinds = cmpSlice(kinds, sw.kinds)
	sw.rates = cmpSlice(rates, sw.rates)
	sw.contenders = cmpSlice(contenders, sw.contenders)
	return sw, sw.sc.validate()
}

func cmpSlice[T any](s, def []T) []T {
	if len(s) > 0 {
		return s
	}
	return def
}

// TestPartialRuns checks the partial-failure plumbing on a small scale:
// with a healthy bottom every contender answers every call; with a bottom
// failing everything, the naive loop's 6 attempts per tier reach it 6
// times per call through one tier and 6^3 times through three; and the
// refusal emulation refuses about the share of connections asked.
func TestPartialRuns(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	small := PartialScenario{Tiers: 2, Kind: Fail503, Requests: 40, Workers: 4, Deadline: 5 * time.Second, Seed: 7}
	cs := PartialContenders()
	naive := cs[slices.IndexFunc(cs, func(c Contender) bool { return c.Name == "naive" })]
	run := func(sc PartialScenario, c Contender) PartialResult {
		t.Helper()
		r, err := RunPartial(ctx, sc, c)
		if err != nil {
			t.Fatalf("%s, %s %s at %v: %v", c.Name, sc.TierName(), sc.Kind, sc.Rate, err)
		}
		if r.Sent != sc.Requests || len(r.Latencies) != r.Sent {
			t.Fatalf("%s: %d sent, %d timed, want %d", c.Name, r.Sent, len(r.Latencies), sc.Requests)
		}
		return r
	}

	for _, kind := range FailureKinds {
		sc := small
		sc.Kind = kind
		for _, c := range cs {
			r := run(sc, c)
			if r.OK != sc.Requests || r.Bottom() != int64(sc.Requests) || r.Refused != 0 {
				t.Errorf("%s, healthy bottom (%s): %d of %d answered 200, bottom load %d, %d refused",
					c.Name, kind, r.OK, sc.Requests, r.Bottom(), r.Refused)
			}
		}
	}

	for _, tc := range []struct {
		tiers, requests int
		load            float64
	}{{2, 20, 6}, {4, 4, 216}} {
		sc := small
		sc.Tiers, sc.Requests, sc.Rate = tc.tiers, tc.requests, 1
		if r := run(sc, naive); r.OK != 0 || r.Load() != tc.load || r.Codes[502]+r.Codes[503] != sc.Requests {
			t.Errorf("naive, %s, bottom failing: %d answered 200, load %v (want %v), codes %v",
				sc.TierName(), r.OK, r.Load(), tc.load, r.Codes)
		}
	}

	sc := small
	sc.Kind, sc.Rate, sc.Requests = FailRefused, 0.3, 200
	r := run(sc, naive)
	// The draws come from a seeded sequence, so the share is close to
	// 0.3 in any order; 0.1 is over 5 standard deviations at ~280 dials.
	if share := float64(r.Refused) / float64(r.Bottom()); math.Abs(share-sc.Rate) > 0.1 || r.OK < sc.Requests*9/10 {
		t.Errorf("refused at 30%%: %d of %d connections refused (%.2f), %d of %d answered 200",
			r.Refused, r.Bottom(), share, r.OK, sc.Requests)
	}
}
