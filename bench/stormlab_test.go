package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/internal/storm"
	"github.com/heed-go/heed/tier"
)

// BenchmarkStormLab runs the storm lab (stormlab.go): every selected cell
// (server variant x scale x mode) HEED_LAB_RUNS times against a fresh
// loopback server, reporting each metric's min, median and max over the
// runs, and printing a table per cell on stdout. The selection, by name, comma
// separated (defaults: every variant, the public scale, every mode, 10
// runs, a 3-minute bound per run):
//
//	HEED_LAB_VARIANTS=seconds,date-epoch,epoch-no-ra,no-ra,bare
//	HEED_LAB_SCALES=public,x10
//	HEED_LAB_MODES=shared,independent,independent-default-base,processes
//	HEED_LAB_RUNS=10 HEED_LAB_TIMEOUT=3m
//	HEED_LAB_JSON=/tmp/runs.jsonl (optional: appends every run, JSON per line)
//
// and, for experiments on the callers' start (LabCell.Stagger, Barrier):
// HEED_LAB_STAGGER=500ms spreads the callers' first GETs evenly over the
// duration; HEED_LAB_BARRIER=1 starts the processes' first GETs at one
// instant.
//
// For example, from the repository's root:
//
//	HEED_LAB_VARIANTS=bare,seconds HEED_LAB_MODES=shared,processes HEED_LAB_RUNS=10 \
//	  go test ./bench -run '^$' -bench StormLab -benchtime 1x -timeout 0
//
// The public scale takes about 5-60 s a run; the processes mode starts
// one process per client (500 at the x10 scale).
func BenchmarkStormLab(b *testing.B) {
	variants := labPick(b, "HEED_LAB_VARIANTS", LabVariants, func(v LabVariant) string { return v.Name }, nil)
	scales := labPick(b, "HEED_LAB_SCALES", LabScales, func(s LabScale) string { return s.Name }, []string{"public"})
	modes := labPick(b, "HEED_LAB_MODES", LabModes, func(m LabMode) string { return string(m) }, nil)
	runs := 10
	if s := os.Getenv("HEED_LAB_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("HEED_LAB_RUNS=%q: want a positive count", s)
		}
		runs = n
	}
	var timeout time.Duration
	if s := os.Getenv("HEED_LAB_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("HEED_LAB_TIMEOUT=%q: want a positive duration", s)
		}
		timeout = d
	}
	var stagger time.Duration
	if s := os.Getenv("HEED_LAB_STAGGER"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			b.Fatalf("HEED_LAB_STAGGER=%q: want a duration", s)
		}
		stagger = d
	}
	barrier := os.Getenv("HEED_LAB_BARRIER") == "1"
	var out *json.Encoder
	if path := os.Getenv("HEED_LAB_JSON"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		out = json.NewEncoder(f)
	}

	for _, v := range variants {
		b.Run(v.Name, func(b *testing.B) {
			for _, s := range scales {
				b.Run(s.Name, func(b *testing.B) {
					for _, m := range modes {
						cell := LabCell{Variant: v, Scale: s, Mode: m, Timeout: timeout, Stagger: stagger, Barrier: barrier}
						var rs []LabRun
						b.Run(string(m), func(b *testing.B) {
							for b.Loop() {
								rs = make([]LabRun, 0, runs)
								for range runs {
									r, err := RunLab(context.Background(), cell)
									if err != nil {
										b.Fatal(err)
									}
									rs = append(rs, r)
									if out != nil {
										if err := out.Encode(r); err != nil {
											b.Fatal(err)
										}
									}
								}
								for i, st := range Summarize(rs) {
									u := LabMetrics[i].Unit
									b.ReportMetric(st.Min, u+"-min")
									b.ReportMetric(st.Median, u+"-med")
									b.ReportMetric(st.Max, u+"-max")
								}
							}
						})
						// The table, once the benchmark's line is out.
						if len(rs) > 0 {
							var t strings.Builder
							if err := WriteLabTable(&t, cell, rs); err != nil {
								b.Fatal(err)
							}
							fmt.Println(t.String())
						}
					}
				})
			}
		})
	}
}

// labPick selects items by the comma-separated names in the environment
// variable env, or def's names (nil: all) when it is empty.
func labPick[T any](b *testing.B, env string, all []T, name func(T) string, def []string) []T {
	names := def
	if s := os.Getenv(env); s != "" {
		names = strings.Split(s, ",")
	}
	if names == nil {
		return all
	}
	var out []T
	for _, n := range names {
		n = strings.TrimSpace(n)
		found := false
		for _, x := range all {
			if name(x) == n {
				out, found = append(out, x), true
			}
		}
		if !found {
			b.Fatalf("%s: no %q", env, n)
		}
	}
	return out
}

// TestStormLabChild is one caller of the storm lab's processes mode: the
// lab starts this test binary with LabChildURL set. Otherwise it skips.
func TestStormLabChild(t *testing.T) {
	ran, err := RunLabChild(os.Stdout)
	if !ran {
		t.Skip("a process of the storm lab; RunLab starts it")
	}
	if err != nil {
		t.Fatal(err)
	}
}

// The lab's plumbing, at a tiny scale against a generous server: the
// server's recorder, and every mode, processes included, losing nothing.
func TestStormLabPlumbing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("recorder", func(t *testing.T) {
		rec := &arrivals{}
		srv, err := storm.NewServer(storm.ServerConfig{Rate: 1, Burst: 2, Recorder: rec})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c := &http.Client{Transport: &http.Transport{}}
		defer c.CloseIdleConnections()
		for i := range 3 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			if i == 2 {
				req.Header.Set(tier.HeaderAttempt, "2")
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		a := rec.all()
		if len(a) != 3 || !a[0].Admitted || !a[1].Admitted || a[2].Admitted || a[0].Attempt != 0 || a[2].Attempt != 2 {
			t.Fatalf("arrivals %+v", a)
		}
	})

	// The modes, then the start experiments (processes waiting for one
	// instant, then staggered by 30 ms each), and processes that report
	// nothing, all at once: a process takes up to a second to start under
	// -race.
	tiny := LabScale{Name: "tiny", Rate: 1000, Burst: 100, Clients: 3, PerClient: 2}
	t.Run("cells", func(t *testing.T) {
		for _, m := range LabModes {
			t.Run(string(m), func(t *testing.T) {
				t.Parallel()
				r, err := RunLab(ctx, LabCell{Variant: LabVariants[0], Mode: m, Timeout: 10 * time.Second, Scale: tiny})
				if err != nil {
					t.Fatal(err)
				}
				if r.Succeeded != 6 || r.Failed != 0 || r.Requests != 6 || r.Retries != 0 || r.Throttled != 0 || r.TimedOut || len(r.ChildErrors) != 0 {
					t.Fatalf("%+v", r)
				}
				if r.MaxPerSlice < 1 || r.MaxPerSlice > 6 || r.Makespan <= 0 || r.Slowest <= 0 || r.Slowest > r.Makespan || r.AdmitPerSlice != 100 {
					t.Fatalf("metrics %+v", r)
				}
			})
		}
		t.Run("processes-barrier-stagger", func(t *testing.T) {
			t.Parallel()
			r, err := RunLab(ctx, LabCell{Variant: LabVariants[0], Mode: LabProcesses, Timeout: 10 * time.Second,
				Barrier: true, Stagger: 90 * time.Millisecond, Scale: tiny})
			if err != nil {
				t.Fatal(err)
			}
			// The children wait for the barrier plus their share of the
			// stagger, but a child that starts late on a loaded machine
			// goes at once, so the spread measured can be anything below
			// the bound; the delays themselves are checked exactly below.
			if r.Succeeded != 6 || r.StartSpread > time.Second {
				t.Fatalf("%+v", r)
			}
			for i, want := range []time.Duration{0, 30 * time.Millisecond, 60 * time.Millisecond} {
				if d := labDelay(LabCell{Stagger: 90 * time.Millisecond, Scale: tiny}, i); d != want {
					t.Errorf("caller %d waits %v after the start, want %v", i, d, want)
				}
			}
		})
		t.Run("process-fails", func(t *testing.T) {
			t.Parallel()
			r, err := RunLab(ctx, LabCell{Variant: LabVariants[0], Mode: LabProcesses, Timeout: 10 * time.Second, Scale: tiny,
				ChildCommand: []string{os.Args[0], "-test.run=^$"}}) // runs nothing, reports nothing
			if err != nil {
				t.Fatal(err)
			}
			if r.Failed != 6 || r.Errors["process failed"] != 6 || len(r.ChildErrors) != 3 {
				t.Fatalf("%+v", r)
			}
		})
	})
}

// The metrics from made-up calls and arrivals.
func TestStormLabMeasure(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sc := storm.Scenario{Server: storm.ServerConfig{Rate: 100, Burst: 10}, Clients: 2, PerClient: 2}
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	calls := []LabCall{
		{Start: at(0), End: at(100 * time.Millisecond), OK: true},
		{Start: at(100 * time.Millisecond), End: at(4500 * time.Millisecond), Group: "throttled after 0 attempts", Err: "heed: GET URL: throttled after 0 attempts"},
		{Start: at(0), End: at(50 * time.Millisecond), OK: true},
		{Start: at(50 * time.Millisecond), End: at(2 * time.Second), OK: true},
	}
	var arr []storm.Arrival
	add := func(d time.Duration, admitted bool, attempt int) {
		arr = append(arr, storm.Arrival{At: t0.Add(d), Admitted: admitted, Attempt: attempt})
	}
	for i := range 20 { // second 0: 20 requests, 12 admitted, 5 retries in 50 ms
		add(time.Duration(i)*10*time.Millisecond, i < 12, map[bool]int{true: 2}[i >= 15])
	}
	add(1500*time.Millisecond, true, 2)  // second 1: 1 admitted (stall)
	add(2500*time.Millisecond, false, 3) // second 2: none admitted (stall)
	for i := range 10 {                  // second 3: 10 admitted
		add(3*time.Second+time.Duration(i)*time.Millisecond, true, 0)
	}
	r := measure(sc, calls, arr)
	want := LabRun{Succeeded: 3, Failed: 1, Refused: 1, Requests: 32, Retries: 7, Throttled: 9,
		Makespan: 4500 * time.Millisecond, Slowest: 4400 * time.Millisecond,
		MaxPerSlice: 10, MaxRetriesPerSlice: 5, AdmitPerSlice: 10, Burst: 10, Stall: 2, StallAt: time.Second,
		RetryBunch: 1, RetryBunchAt: 150 * time.Millisecond}
	got := r
	got.Errors, got.Failures, got.Seconds, got.Start, got.Optimal = nil, nil, nil, time.Time{}, 0
	if !labEqual(got, want) || r.Errors["throttled after 0 attempts"] != 1 || len(r.Seconds) != 5 || r.Seconds[0] != (LabSecond{20, 5, 12}) {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
	if s := stat([]float64{3, 1, 2, 10}); s != (LabStat{1, 2.5, 10}) {
		t.Fatalf("stat %+v", s)
	}
}

func labEqual(a, b LabRun) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
