package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// BenchmarkFleetLab runs the fleet lab (fleetlab.go): 8 instances, each
// with its own heed transport, go-redis client and heedredis.Store, share
// one key's limit of 200 req/s (burst 10) through store.KeyLimits against
// a storm API on loopback that admits 200 req/s (burst 10); 16 callers per
// instance send GETs back to back for 10 s while a fault is injected. Each
// scenario runs with heed's adaptive pacing on (the default) and off, 3
// times; every run prints a few lines, and the end a table of each
// metric's min/median/max per cell. It needs redis-server on the PATH and
// takes about 12 s a run (6 minutes for all of it):
//
//	cd bench && go test -run '^$' -bench FleetLab -benchtime 1x -timeout 30m .
//
// Environment: HEED_FLEET_SCENARIOS, a comma-separated list of steady,
// stray429, pause, kill, garbage, nothing (default all); HEED_FLEET_RUNS,
// runs per cell (default 3); HEED_FLEET_SECONDS, the traffic's length in
// seconds (default 10; pause needs 7, kill 5); HEED_FLEET_PACING, "on",
// "off" or "on,off" (the default); HEED_FLEET_CALLERS, callers per
// instance (default 16).
func BenchmarkFleetLab(b *testing.B) {
	fleetQuiet()
	env, err := fleetEnv()
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("fleet lab: %d instances x %d callers, shared limit and API %v req/s burst %d, %v a run, %d runs a cell\n",
		8, env.callers, 200, 10, env.duration, env.runs)
	var cells []FleetCell
	for _, f := range env.faults {
		for _, p := range env.pacing {
			sc := FleetScenario{Fault: f, Pacing: p, Duration: env.duration, Callers: env.callers}.withDefaults()
			var runs []FleetRun
			b.Run(sc.Name(), func(b *testing.B) {
				runs = runs[:0]
				for i := range env.runs {
					r, err := RunFleet(context.Background(), sc)
					if err != nil {
						b.Fatal(err)
					}
					WriteFleetRun(os.Stdout, fmt.Sprintf("%s run %d", sc.Name(), i+1), r)
					runs = append(runs, r)
				}
				cell := FleetCell{Scenario: sc, Runs: runs}
				for i, s := range cell.Stats() {
					if !math.IsNaN(s.Median) && !math.IsInf(s.Median, 0) {
						b.ReportMetric(s.Median, FleetMetrics[i].Unit)
					}
				}
			})
			cells = append(cells, FleetCell{Scenario: sc, Runs: runs})
		}
	}
	fmt.Println("\nfleet lab, min/median/max over the runs of each cell:")
	if err := WriteFleetTable(os.Stdout, cells); err != nil {
		b.Fatal(err)
	}
}

// fleetSettings are the lab's settings from the environment.
type fleetSettings struct {
	faults   []FleetFault
	pacing   []bool
	runs     int
	callers  int
	duration time.Duration
}

func fleetEnv() (fleetSettings, error) {
	s := fleetSettings{faults: FleetFaults, pacing: []bool{true, false}, runs: 3, callers: 16, duration: 10 * time.Second}
	if v := os.Getenv("HEED_FLEET_SCENARIOS"); v != "" {
		s.faults = nil
		for f := range strings.SplitSeq(v, ",") {
			f := FleetFault(strings.TrimSpace(f))
			if err := (FleetScenario{Fault: f}).withDefaults().validate(); err != nil {
				return s, err
			}
			s.faults = append(s.faults, f)
		}
	}
	if v := os.Getenv("HEED_FLEET_PACING"); v != "" {
		s.pacing = nil
		for p := range strings.SplitSeq(v, ",") {
			switch strings.TrimSpace(p) {
			case "on":
				s.pacing = append(s.pacing, true)
			case "off":
				s.pacing = append(s.pacing, false)
			default:
				return s, fmt.Errorf("HEED_FLEET_PACING=%q: want on, off or on,off", v)
			}
		}
	}
	if v := os.Getenv("HEED_FLEET_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s, fmt.Errorf("HEED_FLEET_RUNS=%q: want a positive integer", v)
		}
		s.runs = n
	}
	if v := os.Getenv("HEED_FLEET_CALLERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s, fmt.Errorf("HEED_FLEET_CALLERS=%q: want a positive integer", v)
		}
		s.callers = n
	}
	if v := os.Getenv("HEED_FLEET_SECONDS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) {
			return s, fmt.Errorf("HEED_FLEET_SECONDS=%q: want a positive number", v)
		}
		s.duration = time.Duration(f * float64(time.Second))
	}
	return s, nil
}

var fleetQuietOnce sync.Once

// fleetQuiet silences go-redis, which logs every failed dial of the fault
// scenarios.
func fleetQuiet() { fleetQuietOnce.Do(func() { redis.SetLogger(fleetNoLog{}) }) }

type fleetNoLog struct{}

func (fleetNoLog) Printf(context.Context, string, ...any) {}

// The plumbing of the lab, quickly: two instances for a second on a real
// Redis get about the limit admitted and no call fails; no goroutine is
// left behind.
func TestFleetLabPlumbing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fleetQuiet()
	sc := FleetScenario{Instances: 2, Duration: time.Second, Pacing: true}
	r, err := RunFleet(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	WriteFleetRun(&sb, sc.Name(), r)
	t.Log("\n" + sb.String())
	if d := r.Rate/200 - 1; d > 0.2 || d < -0.2 {
		t.Errorf("admitted %.1f req/s, want 200 within 20%%", r.Rate)
	}
	if r.Failed != 0 || r.Cut != 0 {
		t.Errorf("%d calls failed and %d were cut: %v", r.Failed, r.Cut, r.Errors)
	}
	if r.Calls < r.Admitted || len(r.Instances) != 2 || r.Instances[0].Admitted == 0 || r.Instances[1].Admitted == 0 {
		t.Errorf("%d calls, instances %+v", r.Calls, r.Instances)
	}
}

// The garbage server answers a Redis command with something go-redis
// cannot use, and stops with its connections.
func TestFleetGarbage(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fleetQuiet()
	g, err := startFleetGarbage()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rdb := redis.NewClient(&redis.Options{Addr: g.Addr(), DialTimeout: 100 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := rdb.Set(ctx, "k", "v", 0).Err()
		cancel()
		if err == nil {
			t.Fatal("garbage accepted as a reply")
		}
	}
}
