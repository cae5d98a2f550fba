package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/internal/storm"
)

// The fleet lab runs the configuration docs/redis.md recommends: a fleet
// of heed instances in one process, each with its own heed transport, its
// own go-redis client (its own connections) and its own heedredis.Store
// under one Prefix, sharing one key's limit through store.KeyLimits, against
// a token-bucket API on loopback (internal/storm) that admits exactly that
// limit. Every instance's callers send GETs back to back for the run while
// the lab injects a fault (in the API or in Redis) and measures what the
// API admitted second by second, each instance's call latency and the
// calls that failed.

// FleetFault is the fault a fleet-lab run injects.
type FleetFault string

// The faults of the lab. Times are from the start of the traffic; FaultAt
// and FaultFor of FleetScenario change them.
const (
	// FleetSteady injects nothing.
	FleetSteady FleetFault = "steady"
	// FleetStray429: at FaultAt the API answers one request with a 429 and
	// Retry-After: 1 although its bucket holds tokens (a proxy's 429, say),
	// without taking a token. The fault window is the second after it.
	FleetStray429 FleetFault = "stray429"
	// FleetPause: Redis is paused (SIGSTOP) at FaultAt for FaultFor
	// (default 5 s), then resumed: connections stay open, calls hang.
	FleetPause FleetFault = "pause"
	// FleetKill: Redis is killed at FaultAt and started again, empty, on the
	// same port FaultFor (default 3 s) later.
	FleetKill FleetFault = "kill"
	// FleetGarbage: the stores' Redis address is a loopback TCP server that
	// answers whatever it reads with random bytes, for the whole run.
	FleetGarbage FleetFault = "garbage"
	// FleetNothing: the stores' Redis address is a loopback port where
	// nothing listens, for the whole run.
	FleetNothing FleetFault = "nothing"
)

// FleetFaults are the lab's faults, in order.
var FleetFaults = []FleetFault{FleetSteady, FleetStray429, FleetPause, FleetKill, FleetGarbage, FleetNothing}

// FleetScenario is one run's setup. The zero value of a field means its
// default.
type FleetScenario struct {
	Fault FleetFault // default FleetSteady
	// Pacing leaves heed's adaptive pacing on (heed's default); false runs
	// the instances with NoPacing in their heed.Limits.
	Pacing    bool
	Instances int           // default 8
	Callers   int           // per instance, sending GETs back to back; default 16
	Duration  time.Duration // how long callers start calls; default 10 s
	Rate      float64       // the API's rate and the fleet's shared limit; default 200 req/s
	Burst     int           // the API's burst and the limit's; default 10
	// FaultAt is when the fault begins (default 2 s); FaultFor how long
	// Redis stays paused (default 5 s) or down (default 3 s).
	FaultAt, FaultFor time.Duration
	// Grace is how long after Duration calls still going are let finish;
	// then they are cancelled and counted as cut. Default 5 s.
	Grace time.Duration
}

// Name is the scenario's fault and pacing, as "pause/pacing-on".
func (s FleetScenario) Name() string {
	p := "pacing-off"
	if s.Pacing {
		p = "pacing-on"
	}
	f := s.Fault
	if f == "" {
		f = FleetSteady
	}
	return string(f) + "/" + p
}

func (s FleetScenario) withDefaults() FleetScenario {
	if s.Fault == "" {
		s.Fault = FleetSteady
	}
	if s.Instances == 0 {
		s.Instances = 8
	}
	if s.Callers == 0 {
		s.Callers = 16
	}
	if s.Duration == 0 {
		s.Duration = 10 * time.Second
	}
	if s.Rate == 0 {
		s.Rate = 200
	}
	if s.Burst == 0 {
		s.Burst = 10
	}
	if s.FaultAt == 0 {
		s.FaultAt = 2 * time.Second
	}
	if s.FaultFor == 0 {
		s.FaultFor = 5 * time.Second
		if s.Fault == FleetKill {
			s.FaultFor = 3 * time.Second
		}
	}
	if s.Grace == 0 {
		s.Grace = 5 * time.Second
	}
	return s
}

// window is the fault's window [start, end) from the start of the traffic,
// and the time the recovery is measured from; ok is false for no fault.
func (s FleetScenario) window() (start, end, from time.Duration, ok bool) {
	switch s.Fault {
	case FleetStray429:
		return s.FaultAt, s.FaultAt + time.Second, s.FaultAt, true
	case FleetPause, FleetKill:
		return s.FaultAt, s.FaultAt + s.FaultFor, s.FaultAt + s.FaultFor, true
	case FleetGarbage, FleetNothing:
		return 0, s.Duration, s.Duration, true
	}
	return 0, 0, 0, false
}

func (s FleetScenario) validate() error {
	if !slices.Contains(FleetFaults, s.Fault) {
		return fmt.Errorf("fleet lab: unknown fault %q", s.Fault)
	}
	if s.Instances < 1 || s.Callers < 1 || s.Duration <= 0 || !(s.Rate > 0) || s.Burst < 1 || s.FaultAt < 0 || s.FaultFor < 0 || s.Grace < 0 {
		return fmt.Errorf("fleet lab: %+v: sizes and times must be positive", s)
	}
	if _, end, _, ok := s.window(); ok && end > s.Duration {
		return fmt.Errorf("fleet lab: the %s fault ends at %v, after the run's %v", s.Fault, end, s.Duration)
	}
	return nil
}

// FleetInstance is one instance's side of a run.
type FleetInstance struct {
	Calls    int // calls started
	Failed   int // ended with an error or a status other than 200
	Cut      int // still going Grace after the run, cancelled
	P50, P99 time.Duration
	Max      time.Duration // the slowest call (a cut call counts its time until the cut)
	// Attempts, Admitted and Throttled count what the API saw of this
	// instance, in the whole run: requests, 200s and 429s.
	Attempts, Admitted, Throttled int
	// AdmittedPerSecond counts its 200s in each second of the run;
	// ThrottledAt is when its 429s were answered.
	AdmittedPerSecond []int
	ThrottledAt       []time.Duration
}

// FleetRun is what one run measured. Rates are requests a second; the
// windows are from the start of the traffic.
type FleetRun struct {
	Scenario FleetScenario
	// Admitted counts the 200s the API sent in [0, Duration); Rate is
	// Admitted over Duration.
	Admitted int
	Rate     float64
	// PerSecond counts the 200s of each second of the run.
	PerSecond []int
	// Throttled counts the 429s the API sent in the whole run (the stray
	// one included).
	Throttled int
	// FaultStart and FaultEnd are the fault's window (both 0 without a
	// fault); DuringRate is the rate admitted in it and AfterRate from its
	// end to the end of the run (NaN when that does not exist).
	FaultStart, FaultEnd  time.Duration
	DuringRate, AfterRate float64
	// Recovery is the time from the fault's end (for a stray 429, from the
	// 429) to the first 1-second window, on a 100 ms grid, in which the API
	// admitted at least 90% of the rate: 0 when the fleet never fell
	// below, NaN without such an end, +Inf when it never got back.
	Recovery float64 // seconds
	// MinWindow is the least any 1-second window (on a 100 ms grid) from
	// the fault's start (or the run's) admitted.
	MinWindow int
	// Instances are the instances, in order; MedianP99 is the median of
	// their p99s and WorstP99 the largest.
	Instances           []FleetInstance
	MedianP99, WorstP99 time.Duration
	Calls, Failed, Cut  int
	// Errors counts failed calls by their error text, numbers and
	// addresses blanked, or "status N".
	Errors map[string]int
	// StrayTo is the instance the stray 429 went to (-1 for none).
	StrayTo int
	// ThrottledPerSecond counts the 429s of each second of the run.
	ThrottledPerSecond []int
	// Faults and Recoveries count the stores' reports of leaving Redis for
	// their local state and of coming back; FaultTimes and RecoverTimes
	// are when, in order.
	Faults, Recoveries       int
	FaultTimes, RecoverTimes []time.Duration
	// Elapsed is the run's length until its last call ended.
	Elapsed time.Duration
}

// WorstOverMedian is the worst instance p99 over the fleet's median p99.
func (r FleetRun) WorstOverMedian() float64 {
	if r.MedianP99 <= 0 {
		return math.NaN()
	}
	return float64(r.WorstP99) / float64(r.MedianP99)
}

// fleetInstanceHeader tells the API which instance sent a request.
const fleetInstanceHeader = "X-Fleet-Instance"

// errFleetCut is the cause of the calls cancelled Grace after the run.
var errFleetCut = errors.New("fleet lab: cut at the end of the run")

// RunFleet plays one run of sc: it starts a redis-server on loopback with
// redistest (for the faults in Redis and the API, none for garbage and
// nothing), the API, and the fleet, sends traffic for sc.Duration while it
// injects the fault, and measures. It needs redis-server on the PATH.
// go-redis logs every failed dial; redis.SetLogger silences it.
func RunFleet(ctx context.Context, sc FleetScenario) (FleetRun, error) {
	sc = sc.withDefaults()
	if err := sc.validate(); err != nil {
		return FleetRun{}, err
	}
	tb := &fleetTB{}
	defer tb.close()

	var rds *redistest.Server
	var addr string
	switch sc.Fault {
	case FleetGarbage:
		g, err := startFleetGarbage()
		if err != nil {
			return FleetRun{}, err
		}
		defer g.Close()
		addr = g.Addr()
	case FleetNothing:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return FleetRun{}, err
		}
		addr = ln.Addr().String()
		ln.Close()
	default:
		if err := tb.try(func() { rds = redistest.Start(tb) }); err != nil {
			return FleetRun{}, err
		}
		addr = rds.Addr
	}

	api, err := storm.NewAPI(storm.ServerConfig{Rate: sc.Rate, Burst: sc.Burst})
	if err != nil {
		return FleetRun{}, err
	}
	fs := &fleetServer{api: api, strayTo: -1}
	if sc.Fault == FleetStray429 {
		fs.strayAt = sc.FaultAt
	}
	srv := httptest.NewServer(fs)
	defer srv.Close()

	var storeLog fleetStoreLog
	clients := make([]*http.Client, sc.Instances)
	for i := range clients {
		rdb := redis.NewClient(&redis.Options{
			Addr:                  addr,
			DialTimeout:           100 * time.Millisecond,
			ReadTimeout:           100 * time.Millisecond,
			WriteTimeout:          100 * time.Millisecond,
			ContextTimeoutEnabled: true,
		})
		defer rdb.Close()
		store, err := heedredis.New(rdb, heedredis.Config{
			FallbackShare: 1 / float64(sc.Instances),
			OnFault:       func(string, error) { storeLog.add(&fs.start, false) },
			OnRecover:     func(string) { storeLog.add(&fs.start, true) },
		})
		if err != nil {
			return FleetRun{}, err
		}
		defer store.Close()
		limits, err := store.KeyLimits(sc.Rate, sc.Burst)
		if err != nil {
			return FleetRun{}, err
		}
		base := &http.Transport{
			MaxIdleConns:        2 * sc.Callers,
			MaxIdleConnsPerHost: 2 * sc.Callers,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		}
		defer base.CloseIdleConnections()
		keyLimits := limits
		if !sc.Pacing {
			keyLimits = func(key string) heed.Limits {
				l := limits(key)
				l.NoPacing = true
				return l
			}
		}
		opts := []heed.Option{heed.WithLogger(nil), heed.WithBase(base), heed.WithKeyLimits(keyLimits)}
		if clients[i], err = heed.NewClient(opts...); err != nil {
			return FleetRun{}, err
		}
	}

	callCtx, cut := context.WithCancelCause(ctx)
	defer cut(nil)
	t0 := time.Now()
	fs.start.Store(&t0)
	calls := make([][]fleetCall, sc.Instances*sc.Callers)
	var wg sync.WaitGroup
	for i := range calls {
		inst := i / sc.Callers
		wg.Go(func() { calls[i] = fleetCaller(callCtx, clients[inst], srv.URL, inst, t0, sc.Duration) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var faultErr error
	switch sc.Fault {
	case FleetPause:
		faultErr = fleetAt(ctx, t0, sc.FaultAt, sc.FaultFor, tb, rds.Pause, rds.Resume)
	case FleetKill:
		faultErr = fleetAt(ctx, t0, sc.FaultAt, sc.FaultFor, tb, rds.Stop, rds.Restart)
	}
	if faultErr != nil {
		cut(faultErr)
	}
	select {
	case <-done:
	case <-time.After(time.Until(t0.Add(sc.Duration + sc.Grace))):
		cut(errFleetCut)
		<-done
	}
	elapsed := time.Since(t0)
	if faultErr != nil {
		return FleetRun{}, faultErr
	}
	if err := ctx.Err(); err != nil {
		return FleetRun{}, err
	}
	answers, strayTo := fs.all()
	r := fleetMeasure(sc, calls, answers)
	r.FaultTimes, r.RecoverTimes = storeLog.times()
	r.Faults, r.Recoveries = len(r.FaultTimes), len(r.RecoverTimes)
	r.StrayTo = strayTo
	r.Elapsed = elapsed
	return r, nil
}

// fleetStoreLog records when the stores left Redis and came back.
type fleetStoreLog struct {
	mu         sync.Mutex
	down, back []time.Duration
}

func (l *fleetStoreLog) add(start *atomic.Pointer[time.Time], back bool) {
	at := time.Duration(-1)
	if t0 := start.Load(); t0 != nil {
		at = time.Since(*t0)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if back {
		l.back = append(l.back, at)
	} else {
		l.down = append(l.down, at)
	}
}

func (l *fleetStoreLog) times() (down, back []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(slices.Values(l.down)), slices.Sorted(slices.Values(l.back))
}

// fleetAt runs begin at t0+at and end at t0+at+d, unless ctx ends first.
func fleetAt(ctx context.Context, t0 time.Time, at, d time.Duration, tb *fleetTB, begin, end func()) error {
	for _, step := range []struct {
		at time.Duration
		do func()
	}{{at, begin}, {at + d, end}} {
		t := time.NewTimer(time.Until(t0.Add(step.at)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if err := tb.try(step.do); err != nil {
			return err
		}
	}
	return nil
}

// fleetCall is one call as its caller saw it.
type fleetCall struct {
	start, took time.Duration // start from t0
	failed, cut bool
	group       string // why it failed
}

// fleetCaller sends GETs back to back until the run's end.
func fleetCaller(ctx context.Context, c *http.Client, url string, inst int, t0 time.Time, d time.Duration) []fleetCall {
	var out []fleetCall
	for {
		start := time.Since(t0)
		if start >= d || ctx.Err() != nil {
			return out
		}
		call := fleetCall{start: start}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			panic(err) // a constant, valid URL
		}
		req.Header.Set(fleetInstanceHeader, strconv.Itoa(inst))
		resp, err := c.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		call.took = time.Since(t0) - start
		switch {
		case err != nil && errors.Is(context.Cause(ctx), errFleetCut):
			call.cut = true
		case err != nil:
			call.failed, call.group = true, LabErrorGroup(err, 0)
		case resp.StatusCode != http.StatusOK:
			call.failed, call.group = true, fmt.Sprintf("status %d", resp.StatusCode)
		}
		out = append(out, call)
	}
}

// fleetServer is the API with a record of every answer and, for the
// stray429 fault, one 429 of its own.
type fleetServer struct {
	api     *storm.API
	start   atomic.Pointer[time.Time] // t0, set before the traffic starts
	strayAt time.Duration             // 0: no stray 429
	stray   atomic.Bool

	mu      sync.Mutex
	answers []fleetAnswer
	strayTo int
}

// fleetAnswer is one request as the API answered it.
type fleetAnswer struct {
	at   time.Duration // from t0
	inst int
	code int
}

func (s *fleetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t0 := s.start.Load()
	at := time.Duration(-1)
	if t0 != nil {
		at = time.Since(*t0)
	}
	inst, err := strconv.Atoi(r.Header.Get(fleetInstanceHeader))
	if err != nil {
		inst = -1
	}
	if s.strayAt > 0 && at >= s.strayAt && s.stray.CompareAndSwap(false, true) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		s.mu.Lock()
		s.strayTo = inst
		s.answers = append(s.answers, fleetAnswer{at, inst, http.StatusTooManyRequests})
		s.mu.Unlock()
		return
	}
	sw := &fleetStatus{ResponseWriter: w, code: http.StatusOK}
	s.api.ServeHTTP(sw, r)
	s.mu.Lock()
	s.answers = append(s.answers, fleetAnswer{at, inst, sw.code})
	s.mu.Unlock()
}

// all returns the answers so far and the instance the stray 429 went to.
func (s *fleetServer) all() ([]fleetAnswer, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.answers), s.strayTo
}

// fleetStatus remembers the status a handler wrote.
type fleetStatus struct {
	http.ResponseWriter
	code int
}

func (w *fleetStatus) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// fleetMeasure computes a run's metrics.
func fleetMeasure(sc FleetScenario, calls [][]fleetCall, answers []fleetAnswer) FleetRun {
	r := FleetRun{
		Scenario: sc, Errors: map[string]int{}, StrayTo: -1,
		Instances:          make([]FleetInstance, sc.Instances),
		PerSecond:          make([]int, int((sc.Duration+time.Second-1)/time.Second)),
		ThrottledPerSecond: make([]int, int((sc.Duration+time.Second-1)/time.Second)),
		DuringRate:         math.NaN(), AfterRate: math.NaN(), Recovery: math.NaN(),
	}
	for i := range r.Instances {
		r.Instances[i].AdmittedPerSecond = make([]int, len(r.PerSecond))
	}
	var admitted []time.Duration // in [0, Duration), in order
	for _, a := range answers {
		var in *FleetInstance
		if a.inst >= 0 && a.inst < sc.Instances {
			in = &r.Instances[a.inst]
			in.Attempts++
		}
		switch a.code {
		case http.StatusOK:
			if in != nil {
				in.Admitted++
			}
			if a.at >= 0 && a.at < sc.Duration {
				admitted = append(admitted, a.at)
				r.PerSecond[a.at/time.Second]++
				if in != nil {
					in.AdmittedPerSecond[a.at/time.Second]++
				}
			}
		case http.StatusTooManyRequests:
			r.Throttled++
			if in != nil {
				in.Throttled++
				in.ThrottledAt = append(in.ThrottledAt, a.at)
			}
			if a.at >= 0 && a.at < sc.Duration {
				r.ThrottledPerSecond[a.at/time.Second]++
			}
		}
	}
	slices.Sort(admitted)
	r.Admitted = len(admitted)
	r.Rate = float64(r.Admitted) / sc.Duration.Seconds()
	count := func(from, to time.Duration) int {
		i, _ := slices.BinarySearch(admitted, from)
		j, _ := slices.BinarySearch(admitted, to)
		return j - i
	}
	rate := func(from, to time.Duration) float64 {
		if to <= from {
			return math.NaN()
		}
		return float64(count(from, to)) / (to - from).Seconds()
	}
	const step = 100 * time.Millisecond
	minFrom := time.Duration(0)
	if start, end, from, ok := sc.window(); ok {
		r.FaultStart, r.FaultEnd = start, end
		r.DuringRate = rate(start, end)
		r.AfterRate = rate(end, sc.Duration)
		minFrom = start
		if from < sc.Duration {
			r.Recovery = math.Inf(1)
			for t := from; t+time.Second <= sc.Duration; t += step {
				if float64(count(t, t+time.Second)) >= 0.9*sc.Rate {
					r.Recovery = (t - from).Seconds()
					break
				}
			}
		}
	}
	r.MinWindow = math.MaxInt
	for t := minFrom; t+time.Second <= sc.Duration; t += step {
		r.MinWindow = min(r.MinWindow, count(t, t+time.Second))
	}
	if r.MinWindow == math.MaxInt {
		r.MinWindow = 0
	}

	p99s := make([]time.Duration, 0, sc.Instances)
	for i := range r.Instances {
		in := &r.Instances[i]
		var took []time.Duration
		for _, cs := range calls[i*sc.Callers : (i+1)*sc.Callers] {
			for _, c := range cs {
				in.Calls++
				took = append(took, c.took)
				switch {
				case c.cut:
					in.Cut++
				case c.failed:
					in.Failed++
					r.Errors[c.group]++
				}
			}
		}
		slices.Sort(took)
		in.P50, in.P99 = fleetQuantile(took, 0.5), fleetQuantile(took, 0.99)
		if len(took) > 0 {
			in.Max = took[len(took)-1]
		}
		p99s = append(p99s, in.P99)
		r.Calls += in.Calls
		r.Failed += in.Failed
		r.Cut += in.Cut
	}
	slices.Sort(p99s)
	if n := len(p99s); n > 0 {
		r.WorstP99 = p99s[n-1]
		r.MedianP99 = p99s[n/2]
		if n%2 == 0 {
			r.MedianP99 = (p99s[n/2-1] + p99s[n/2]) / 2
		}
	}
	return r
}

// fleetQuantile is the q quantile of sorted d (nearest rank).
func fleetQuantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// WriteFleetRun prints one run in a few lines: the rates, the admitted
// count of each second, each instance's p50/p99 and 429s, and the failed
// calls by kind.
func WriteFleetRun(w io.Writer, label string, r FleetRun) {
	fmt.Fprintf(w, "%s: admitted %.1f/s", label, r.Rate)
	if !math.IsNaN(r.DuringRate) {
		fmt.Fprintf(w, ", fault window [%v,%v) %.1f/s, after %s/s, recovery %ss, min 1s window %d",
			r.FaultStart, r.FaultEnd, r.DuringRate, fleetNum(r.AfterRate, 1), fleetNum(r.Recovery, 1), r.MinWindow)
	} else {
		fmt.Fprintf(w, ", min 1s window %d", r.MinWindow)
	}
	fmt.Fprintf(w, "; 429s %d; calls %d, failed %d, cut %d; store faults %d, recoveries %d; ended %.1fs\n",
		r.Throttled, r.Calls, r.Failed, r.Cut, r.Faults, r.Recoveries, r.Elapsed.Seconds())
	fmt.Fprintf(w, "  per second: admitted %v, 429s %v\n", r.PerSecond, r.ThrottledPerSecond)
	if r.Faults > 0 || r.Recoveries > 0 {
		fmt.Fprintf(w, "  stores left Redis at %s; came back at %s\n", fleetSeconds(r.FaultTimes), fleetSeconds(r.RecoverTimes))
	}
	var b strings.Builder
	for i, in := range r.Instances {
		mark := ""
		if i == r.StrayTo {
			mark = "*"
		}
		fmt.Fprintf(&b, " #%d%s %d/%d/%d", i, mark, in.P50.Milliseconds(), in.P99.Milliseconds(), in.Max.Milliseconds())
		if in.Throttled > 0 {
			fmt.Fprintf(&b, " (%d 429s)", in.Throttled)
		}
	}
	fmt.Fprintf(w, "  p50/p99/max ms by instance (* got the stray 429):%s; median p99 %dms, worst %dms (x%.2f)\n",
		b.String(), r.MedianP99.Milliseconds(), r.WorstP99.Milliseconds(), r.WorstOverMedian())
	adm := make([]int, len(r.Instances))
	for i, in := range r.Instances {
		adm[i] = in.Admitted
	}
	fmt.Fprintf(w, "  admitted by instance: %v\n", adm)
	if r.WorstOverMedian() > 3 {
		for i, in := range r.Instances {
			if in.P99 == r.WorstP99 {
				slices.Sort(in.ThrottledAt)
				fmt.Fprintf(w, "  worst instance #%d: admitted per second %v, 429s at %s s\n", i, in.AdmittedPerSecond, fleetSeconds(in.ThrottledAt))
			}
		}
	}
	for _, k := range fleetSortedKeys(r.Errors) {
		fmt.Fprintf(w, "  failed %d x %s\n", r.Errors[k], k)
	}
}

// fleetSeconds writes times as seconds with two decimals.
func fleetSeconds(ts []time.Duration) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = strconv.FormatFloat(t.Seconds(), 'f', 2, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func fleetSortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

// FleetCell is a scenario's runs.
type FleetCell struct {
	Scenario FleetScenario
	Runs     []FleetRun
}

// FleetStat is a metric's spread over a cell's runs.
type FleetStat struct{ Min, Median, Max float64 }

// FleetMetric is one metric of a run, by name.
type FleetMetric struct {
	Name     string // for the table
	Unit     string // for b.ReportMetric: no spaces
	Decimals int    // in the table
	Of       func(FleetRun) float64
}

// FleetMetrics are the metrics the lab's table shows, in order.
var FleetMetrics = []FleetMetric{
	{"admitted/s", "admitted-req/s", 1, func(r FleetRun) float64 { return r.Rate }},
	{"fault-window/s", "fault-window-req/s", 1, func(r FleetRun) float64 { return r.DuringRate }},
	{"after/s", "after-req/s", 1, func(r FleetRun) float64 { return r.AfterRate }},
	{"recover-s", "recover-s", 1, func(r FleetRun) float64 { return r.Recovery }},
	{"min-1s", "min-1s-window", 0, func(r FleetRun) float64 { return float64(r.MinWindow) }},
	{"worst-p99-ms", "worst-p99-ms", 0, func(r FleetRun) float64 { return fleetMS(r.WorstP99) }},
	{"median-p99-ms", "median-p99-ms", 0, func(r FleetRun) float64 { return fleetMS(r.MedianP99) }},
	{"worst/median", "worst/median-p99", 2, FleetRun.WorstOverMedian},
	{"failed", "failed", 0, func(r FleetRun) float64 { return float64(r.Failed) }},
	{"cut", "cut", 0, func(r FleetRun) float64 { return float64(r.Cut) }},
	{"429s", "429s", 0, func(r FleetRun) float64 { return float64(r.Throttled) }},
}

func fleetMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Stats is each of FleetMetrics' min, median and max over the cell's runs.
func (c FleetCell) Stats() []FleetStat {
	out := make([]FleetStat, len(FleetMetrics))
	for i, m := range FleetMetrics {
		v := make([]float64, 0, len(c.Runs))
		for _, r := range c.Runs {
			v = append(v, m.Of(r))
		}
		out[i] = fleetStat(v)
	}
	return out
}

// fleetStat is v's min, median and max (NaN for none; +Inf sorts last).
func fleetStat(v []float64) FleetStat {
	v = slices.DeleteFunc(v, math.IsNaN)
	if len(v) == 0 {
		return FleetStat{math.NaN(), math.NaN(), math.NaN()}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return FleetStat{v[0], med, v[len(v)-1]}
}

// WriteFleetTable prints one line per cell: each metric as
// min/median/max over its runs ("-" where it does not apply, "inf" for a
// fleet that never got back to 90% of the rate), then the failed calls
// by kind over all runs.
func WriteFleetTable(w io.Writer, cells []FleetCell) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "scenario\truns\t")
	for _, m := range FleetMetrics {
		fmt.Fprintf(tw, "%s\t", m.Name)
	}
	fmt.Fprintln(tw)
	for _, c := range cells {
		fmt.Fprintf(tw, "%s\t%d\t", c.Scenario.Name(), len(c.Runs))
		for i, s := range c.Stats() {
			d := FleetMetrics[i].Decimals
			fmt.Fprintf(tw, "%s/%s/%s\t", fleetNum(s.Min, d), fleetNum(s.Median, d), fleetNum(s.Max, d))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range cells {
		errs := map[string]int{}
		for _, r := range c.Runs {
			for k, n := range r.Errors {
				errs[k] += n
			}
		}
		for _, k := range fleetSortedKeys(errs) {
			fmt.Fprintf(w, "  %s: failed %d x %s\n", c.Scenario.Name(), errs[k], k)
		}
	}
	return nil
}

// fleetNum writes v with d decimals, "-" for NaN and "inf" for infinity.
func fleetNum(v float64, d int) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.IsInf(v, 0):
		return "inf"
	}
	return strconv.FormatFloat(v, 'f', d, 64)
}

// fleetTB lets RunFleet use redistest outside a test: Fatal panics with a
// fleetFatal, which try turns into an error, and close runs the cleanups.
type fleetTB struct{ cleanups []func() }

type fleetFatal struct{ msg string }

func (t *fleetTB) Helper()                   {}
func (t *fleetTB) Fatal(args ...any)         { panic(fleetFatal{fmt.Sprint(args...)}) }
func (t *fleetTB) Fatalf(f string, a ...any) { panic(fleetFatal{fmt.Sprintf(f, a...)}) }
func (t *fleetTB) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }

func (t *fleetTB) close() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}

// try runs f and returns the message of its Fatal, if it called one.
func (t *fleetTB) try(f func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			ff, ok := v.(fleetFatal)
			if !ok {
				panic(v)
			}
			err = errors.New("fleet lab: " + ff.msg)
		}
	}()
	f()
	return nil
}

// fleetGarbage is a TCP server on loopback that answers whatever it reads
// with 1 to 64 random bytes: a Redis gone mad. It holds at most 512
// connections and each for at most 10 s without traffic; Close stops it
// and waits for its goroutines.
type fleetGarbage struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startFleetGarbage() (*fleetGarbage, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &fleetGarbage{ln: ln, conns: map[net.Conn]struct{}{}}
	g.wg.Go(g.accept)
	return g, nil
}

// Addr is the server's address.
func (g *fleetGarbage) Addr() string { return g.ln.Addr().String() }

func (g *fleetGarbage) accept() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		if g.closed || len(g.conns) >= 512 {
			g.mu.Unlock()
			c.Close()
			continue
		}
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		g.wg.Go(func() { g.serve(c) })
	}
}

func (g *fleetGarbage) serve(c net.Conn) {
	defer func() {
		g.mu.Lock()
		delete(g.conns, c)
		g.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, 4096)
	reply := make([]byte, 64)
	for {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(buf); err != nil {
			return
		}
		n := 1 + rand.IntN(len(reply))
		for i := range n {
			reply[i] = byte(rand.Uint32())
		}
		if _, err := c.Write(reply[:n]); err != nil {
			return
		}
	}
}

// Close stops the server: no more connections, those open closed.
func (g *fleetGarbage) Close() {
	g.mu.Lock()
	g.closed = true
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.ln.Close()
	g.wg.Wait()
}
