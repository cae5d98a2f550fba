package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/internal/storm"
)

// The storm lab plays the 429 storm of internal/storm on loopback with
// heed's defaults, in several server variants, scales and ways of sharing
// (or not) heed's per-host state between the callers, and measures each
// run from both ends: what the callers got (lost calls and why, latency,
// makespan) and what the server saw (every request's arrival, retries
// among them, how much it admitted second by second).

// LabVariant is a way the storm server answers: the rate-limit headers it
// sends and how it writes Retry-After. Its Rate and Burst are left to the
// scale.
type LabVariant struct {
	Name   string
	Server storm.ServerConfig
}

// LabVariants are the server variants of the lab.
var LabVariants = []LabVariant{
	// Retry-After in whole seconds and X-RateLimit-* (storm.DefaultServer).
	{"seconds", storm.ServerConfig{}},
	// Retry-After as an HTTP-date, X-RateLimit-Reset as Unix seconds.
	{"date-epoch", storm.ServerConfig{RetryAfter: storm.RetryAfterDate, Reset: storm.ResetEpoch}},
	// No Retry-After, X-RateLimit-Reset as Unix seconds.
	{"epoch-no-ra", storm.ServerConfig{RetryAfter: storm.RetryAfterNone, Reset: storm.ResetEpoch}},
	// No Retry-After, X-RateLimit-* with Reset in seconds from now.
	{"no-ra", storm.ServerConfig{RetryAfter: storm.RetryAfterNone}},
	// No Retry-After and no rate-limit header: a bare 429.
	{"bare", storm.ServerConfig{RetryAfter: storm.RetryAfterNone, NoRateLimitHeaders: true}},
}

// LabScale is the server's rate and burst and the callers' number and
// load.
type LabScale struct {
	Name      string
	Rate      float64 // requests per second the server admits
	Burst     int
	Clients   int // concurrent callers
	PerClient int // GETs each caller makes, one after another
}

// LabScales are the scales of the lab: the public storm, and ten times it.
var LabScales = []LabScale{
	{Name: "public", Rate: 100, Burst: 10, Clients: 50, PerClient: 10},
	{Name: "x10", Rate: 1000, Burst: 100, Clients: 500, PerClient: 10},
}

// LabMode is how the callers hold heed.
type LabMode string

// The modes of the lab.
const (
	// LabShared: one heed client for every caller (storm.Heed(name, true)),
	// as goroutines of one service would share it.
	LabShared LabMode = "shared"
	// LabIndependent: a heed client per caller, each on its own base
	// transport (storm.Heed(name, false)).
	LabIndependent LabMode = "independent"
	// LabIndependentDefaultBase: a heed.NewClient(heed.WithLogger(nil)) per
	// caller without WithBase, so they all send through
	// http.DefaultTransport, as a naive user would write it.
	LabIndependentDefaultBase LabMode = "independent-default-base"
	// LabProcesses: every caller is an operating-system process of its own
	// (see LabCell.ChildCommand and RunLabChild) with heed.New()'s defaults
	// (its logger off).
	LabProcesses LabMode = "processes"
)

// LabModes are the modes of the lab, in order.
var LabModes = []LabMode{LabShared, LabIndependent, LabIndependentDefaultBase, LabProcesses}

// LabSlice is the width of the windows in which the lab counts the
// requests arriving at the server; LabBunch the narrower one in which it
// looks for retries sent together.
const (
	LabSlice = 100 * time.Millisecond
	LabBunch = 10 * time.Millisecond
)

// DefaultLabTimeout bounds one run of a cell.
const DefaultLabTimeout = 3 * time.Minute

// LabCell is one cell of the lab: a server variant at a scale, called in a
// mode.
type LabCell struct {
	Variant LabVariant
	Scale   LabScale
	Mode    LabMode
	// Timeout bounds one run; 0 means DefaultLabTimeout. Calls still going
	// when it ends fail (and count as lost), and processes still running
	// are killed.
	Timeout time.Duration
	// Options are added to heed's in the in-process modes (a hook for a
	// diagnosis, say). Processes use heed's defaults only.
	Options []heed.Option
	// ChildCommand runs one caller in the processes mode: a program and its
	// arguments that calls RunLabChild. Nil means this test binary again,
	// running the test TestStormLabChild (the bench package's tests).
	ChildCommand []string
	// Stagger and Barrier are for experiments on the callers' start. With
	// Stagger, caller i makes its first GET i*Stagger/Clients after the
	// start. With Barrier, in the processes mode, the start is one instant
	// for all the processes (chosen to leave them time to start), rather
	// than each one's own start; the in-process callers always start
	// together.
	Stagger time.Duration
	Barrier bool
}

// Name is the cell's name, variant/scale/mode.
func (c LabCell) Name() string { return c.Variant.Name + "/" + c.Scale.Name + "/" + string(c.Mode) }

// Scenario is the storm the cell plays (with no recorder).
func (c LabCell) Scenario() storm.Scenario {
	cfg := c.Variant.Server
	cfg.Rate, cfg.Burst = c.Scale.Rate, c.Scale.Burst
	return storm.Scenario{Server: cfg, Clients: c.Scale.Clients, PerClient: c.Scale.PerClient}
}

func (c LabCell) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultLabTimeout
}

// LabCall is one GET of one caller as the caller saw it.
type LabCall struct {
	Start int64 `json:"start"` // Unix nanoseconds
	End   int64 `json:"end"`
	OK    bool  `json:"ok,omitempty"`
	// Group is the failure's error grouped (see LabErrorGroup); Err its
	// text. Both are empty for a success.
	Group string `json:"group,omitempty"`
	Err   string `json:"err,omitempty"`
}

// Latency is the call's duration.
func (c LabCall) Latency() time.Duration { return time.Duration(c.End - c.Start) }

// LabSecond is what the server saw in one whole second of a run.
type LabSecond struct {
	Requests, Retries, Admitted int
}

// LabRun is what one run of a cell measured.
type LabRun struct {
	Cell string
	// Succeeded and Failed count the callers' GETs; Refused counts the
	// failures heed returned without sending anything (its error says
	// "after 0 attempts"): refused locally, by the breaker or the pacer.
	Succeeded, Failed, Refused int
	// Errors counts the failures by group.
	Errors map[string]int
	// Failures are the failed calls, in the order they ended.
	Failures []LabCall
	// Requests, Retries and Throttled are counted by the server: every
	// request, those carrying Heed-Attempt (heed's retries), those answered
	// 429.
	Requests, Retries, Throttled int
	// Start is when the first call started. Makespan is from then to the
	// last call's end; Optimal is storm.Scenario.Optimal.
	Start             time.Time
	Makespan, Optimal time.Duration
	// Slowest is the longest call.
	Slowest time.Duration
	// MaxPerSlice and MaxRetriesPerSlice are the most requests, and the
	// most retries, that arrived in any window of LabSlice (sliding);
	// AdmitPerSlice is what the server admits in LabSlice at its rate (it
	// can admit Burst more at once).
	MaxPerSlice, MaxRetriesPerSlice int
	AdmitPerSlice                   float64
	Burst                           int
	// RetryBunch is the most retries that arrived within LabBunch (10 ms),
	// and RetryBunchAt when, from the first call's start: retries drawn
	// with jitter do not arrive together.
	RetryBunch   int
	RetryBunchAt time.Duration
	// StartSpread is from the first caller's first GET to the last
	// caller's: the processes take time to start.
	StartSpread time.Duration
	// Stall is the longest run of consecutive whole seconds of the
	// makespan in which the server admitted less than a tenth of its rate;
	// StallAt is when the longest run began, from the first call's start.
	Stall   int
	StallAt time.Duration
	// Seconds is what the server saw in each whole second from the first
	// call's start (the last one partial).
	Seconds []LabSecond
	// TimedOut says the run hit the cell's timeout.
	TimedOut bool
	// ChildErrors are the processes that failed or did not report
	// (processes mode), with what they wrote on stderr.
	ChildErrors []string
}

// AttemptsPerSuccess is the server's count of requests over the callers'
// successes.
func (r LabRun) AttemptsPerSuccess() float64 {
	if r.Succeeded == 0 {
		return math.Inf(1)
	}
	return float64(r.Requests) / float64(r.Succeeded)
}

// OverOptimal is the makespan over the optimal makespan.
func (r LabRun) OverOptimal() float64 {
	if r.Optimal <= 0 {
		return 0
	}
	return r.Makespan.Seconds() / r.Optimal.Seconds()
}

// arrivals is a storm.Recorder keeping every arrival.
type arrivals struct {
	mu sync.Mutex
	a  []storm.Arrival
}

func (r *arrivals) Arrive(a storm.Arrival) {
	r.mu.Lock()
	r.a = append(r.a, a)
	r.mu.Unlock()
}

func (r *arrivals) all() []storm.Arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.a)
}

// RunLab runs the cell once against a fresh storm server on 127.0.0.1. It
// returns an error only when the run could not be set up; failed calls,
// a timeout and failed processes are in the LabRun.
func RunLab(ctx context.Context, cell LabCell) (LabRun, error) {
	sc := cell.Scenario()
	if sc.Clients < 1 || sc.PerClient < 1 {
		return LabRun{}, fmt.Errorf("lab %s: %d clients x %d GETs", cell.Name(), sc.Clients, sc.PerClient)
	}
	rec := &arrivals{a: make([]storm.Arrival, 0, 2*sc.Clients*sc.PerClient)}
	cfg := sc.Server
	cfg.Recorder = rec
	srv, err := storm.NewServer(cfg)
	if err != nil {
		return LabRun{}, err
	}
	defer srv.Close()

	ctx, cancel := context.WithTimeout(ctx, cell.timeout())
	defer cancel()
	var (
		calls    []LabCall
		childErr []string
	)
	switch cell.Mode {
	case LabShared, LabIndependent, LabIndependentDefaultBase:
		calls, err = runInProcess(ctx, cell, srv.URL)
	case LabProcesses:
		calls, childErr, err = runProcesses(ctx, cell, srv.URL)
	default:
		err = fmt.Errorf("lab: unknown mode %q", cell.Mode)
	}
	if err != nil {
		return LabRun{}, err
	}
	timedOut := ctx.Err() != nil
	srv.Close() // every handler has returned: the recorder is complete
	r := measure(sc, calls, rec.all())
	r.Cell, r.TimedOut, r.ChildErrors = cell.Name(), timedOut, childErr
	return r, nil
}

// labTransport is a fresh connection pool for a caller or a shared client,
// keeping an idle connection for each concurrent caller.
func labTransport(callers int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(100, callers)
	return t
}

func runInProcess(ctx context.Context, cell LabCell, url string) ([]LabCall, error) {
	n := cell.Scale.Clients
	clients := make([]*http.Client, n)
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for i := range clients {
		var (
			c   *http.Client
			err error
		)
		switch cell.Mode {
		case LabShared:
			if i > 0 {
				clients[i] = clients[0]
				continue
			}
			base := labTransport(n)
			closers = append(closers, base.CloseIdleConnections)
			c, err = storm.Heed("heed-shared", true, cell.Options...).NewClient(base)
		case LabIndependent:
			base := labTransport(1)
			closers = append(closers, base.CloseIdleConnections)
			c, err = storm.Heed("heed-independent", false, cell.Options...).NewClient(base)
		case LabIndependentDefaultBase:
			c, err = heed.NewClient(append([]heed.Option{heed.WithLogger(nil)}, cell.Options...)...)
			if i == 0 {
				closers = append(closers, http.DefaultTransport.(*http.Transport).CloseIdleConnections)
			}
		}
		if err != nil {
			return nil, err
		}
		clients[i] = c
	}

	calls := make([][]LabCall, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			calls[i] = make([]LabCall, 0, cell.Scale.PerClient)
			if d := labDelay(cell, i); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
			for range cell.Scale.PerClient {
				calls[i] = append(calls[i], labGet(ctx, clients[i], url))
			}
		})
	}
	wg.Wait()
	return slices.Concat(calls...), nil
}

// labDelay is how long after the start caller i waits before its first
// GET.
func labDelay(cell LabCell, i int) time.Duration {
	if cell.Stagger <= 0 || cell.Scale.Clients < 1 {
		return 0
	}
	return time.Duration(int64(cell.Stagger) * int64(i) / int64(cell.Scale.Clients))
}

// labGet makes one GET and reports it.
func labGet(ctx context.Context, c *http.Client, url string) LabCall {
	call := LabCall{Start: time.Now().UnixNano()}
	defer func() { call.End = time.Now().UnixNano() }()
	fail := func(err error, status int) LabCall {
		call.End = time.Now().UnixNano()
		call.Group = LabErrorGroup(err, status)
		if err != nil {
			call.Err = err.Error()
		} else {
			call.Err = fmt.Sprintf("final status %d", status)
		}
		return call
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(err, 0)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fail(err, 0)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fail(err, 0)
	}
	if resp.StatusCode != http.StatusOK {
		return fail(nil, resp.StatusCode)
	}
	call.OK = true
	call.End = time.Now().UnixNano()
	return call
}

var (
	labURL    = regexp.MustCompile(`https?://[^\s"/]+/?\S*?(["\s:]|$)`)
	labTime   = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	labNumber = regexp.MustCompile(`\d+(\.\d+)?(ns|µs|ms|s|m|h)?`)
)

// LabErrorGroup names a failed call's kind, for counting: for heed's
// errors its reason and the number of attempts made, with the last cause
// when it says more ("circuit breaker open after 0 attempts", "attempts
// exhausted after 6 attempts: 429"); for a final status returned as a
// response, "final status N"; for any other error its text with URLs,
// times and numbers blanked.
func LabErrorGroup(err error, status int) string {
	if err == nil {
		return fmt.Sprintf("final status %d", status)
	}
	var he *heed.Error
	if !errors.As(err, &he) {
		return labBlank(err.Error())
	}
	g := fmt.Sprintf("%v after %d attempts", he.Reason, len(he.Attempts))
	var se *heed.StatusError
	switch {
	case he.Err == nil, errors.Is(he.Err, heed.ErrBreakerOpen), errors.Is(he.Reason, he.Err):
	case errors.As(he.Err, &se):
		g += fmt.Sprintf(": %d", se.StatusCode)
	default:
		g += ": " + labBlank(he.Err.Error())
	}
	return g
}

func labBlank(s string) string {
	s = labURL.ReplaceAllString(s, "URL$1")
	s = labTime.ReplaceAllString(s, "TIME")
	s = labNumber.ReplaceAllString(s, "N")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// measure computes a run's metrics from the calls and the arrivals.
func measure(sc storm.Scenario, calls []LabCall, arr []storm.Arrival) LabRun {
	r := LabRun{
		Errors:        map[string]int{},
		Optimal:       sc.Optimal(),
		AdmitPerSlice: sc.Server.Rate * LabSlice.Seconds(),
		Burst:         sc.Server.Burst,
		Requests:      len(arr),
	}
	if len(calls) == 0 {
		return r
	}
	first, last := calls[0].Start, calls[0].End
	for _, c := range calls {
		first, last = min(first, c.Start), max(last, c.End)
		r.Slowest = max(r.Slowest, c.Latency())
		if c.OK {
			r.Succeeded++
			continue
		}
		r.Failed++
		r.Errors[c.Group]++
		if strings.Contains(c.Err, "after 0 attempts") {
			r.Refused++
		}
		r.Failures = append(r.Failures, c)
	}
	sort.SliceStable(r.Failures, func(i, j int) bool { return r.Failures[i].End < r.Failures[j].End })
	r.Start, r.Makespan = time.Unix(0, first), time.Duration(last-first)

	slices.SortFunc(arr, func(a, b storm.Arrival) int { return a.At.Compare(b.At) })
	var all, retries []time.Time
	for _, a := range arr {
		all = append(all, a.At)
		if a.Attempt >= 2 {
			retries = append(retries, a.At)
			r.Retries++
		}
		if !a.Admitted {
			r.Throttled++
		}
	}
	r.MaxPerSlice, _ = maxInWindow(all, LabSlice)
	r.MaxRetriesPerSlice, _ = maxInWindow(retries, LabSlice)
	var bunchAt time.Time
	if r.RetryBunch, bunchAt = maxInWindow(retries, LabBunch); r.RetryBunch > 0 {
		r.RetryBunchAt = bunchAt.Sub(r.Start)
	}
	if sc.PerClient > 0 && len(calls) == sc.Clients*sc.PerClient {
		lo, hi := calls[0].Start, calls[0].Start
		for i := 0; i < len(calls); i += sc.PerClient {
			lo, hi = min(lo, calls[i].Start), max(hi, calls[i].Start)
		}
		r.StartSpread = time.Duration(hi - lo)
	}

	// Second by second from the first call's start.
	t0 := r.Start
	r.Seconds = make([]LabSecond, int(r.Makespan/time.Second)+1)
	for _, a := range arr {
		i := int(a.At.Sub(t0) / time.Second)
		if i < 0 || i >= len(r.Seconds) {
			continue
		}
		s := &r.Seconds[i]
		s.Requests++
		if a.Attempt >= 2 {
			s.Retries++
		}
		if a.Admitted {
			s.Admitted++
		}
	}
	// Stalls: whole seconds inside the makespan (not the last, partial
	// one) in which the server admitted less than a tenth of its rate.
	run := 0
	for i, s := range r.Seconds[:len(r.Seconds)-1] {
		if float64(s.Admitted) < sc.Server.Rate/10 {
			run++
			if run > r.Stall {
				r.Stall, r.StallAt = run, time.Duration(i+1-run)*time.Second
			}
		} else {
			run = 0
		}
	}
	return r
}

// maxInWindow is the most of the sorted times in any window [t, t+w),
// and the window's start (the first such window).
func maxInWindow(ts []time.Time, w time.Duration) (int, time.Time) {
	var (
		best int
		at   time.Time
	)
	j := 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		if i-j+1 > best {
			best, at = i-j+1, ts[j]
		}
	}
	return best, at
}

// LabStat is a metric's spread over the runs of a cell.
type LabStat struct{ Min, Median, Max float64 }

// LabMetric is one metric of a run, by name.
type LabMetric struct {
	Name string // for a table
	Unit string // for b.ReportMetric: no spaces
	Of   func(LabRun) float64
}

// LabMetrics are the metrics the lab summarizes, in order.
var LabMetrics = []LabMetric{
	{"lost", "lost", func(r LabRun) float64 { return float64(r.Failed) }},
	{"refused locally (0 attempts)", "refused", func(r LabRun) float64 { return float64(r.Refused) }},
	{"attempts/success", "attempts/success", LabRun.AttemptsPerSuccess},
	{"makespan/optimal", "makespan/optimal", LabRun.OverOptimal},
	{"slowest call (s)", "slowest-s", func(r LabRun) float64 { return r.Slowest.Seconds() }},
	{"max requests/100ms", "max-req/100ms", func(r LabRun) float64 { return float64(r.MaxPerSlice) }},
	{"max retries/100ms", "max-retries/100ms", func(r LabRun) float64 { return float64(r.MaxRetriesPerSlice) }},
	{"max retries/10ms", "max-retries/10ms", func(r LabRun) float64 { return float64(r.RetryBunch) }},
	{"longest stall (s)", "stall-s", func(r LabRun) float64 { return float64(r.Stall) }},
	{"first-GET spread (s)", "start-spread-s", func(r LabRun) float64 { return r.StartSpread.Seconds() }},
}

// Summarize is each of LabMetrics' min, median and max over the runs.
func Summarize(runs []LabRun) []LabStat {
	out := make([]LabStat, len(LabMetrics))
	for i, m := range LabMetrics {
		v := make([]float64, len(runs))
		for j, r := range runs {
			v[j] = m.Of(r)
		}
		out[i] = stat(v)
	}
	return out
}

func stat(v []float64) LabStat {
	if len(v) == 0 {
		return LabStat{}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return LabStat{Min: v[0], Median: med, Max: v[len(v)-1]}
}

// WriteLabTable prints a cell's runs: each metric's min, median and max,
// then the failures by group (in how many runs, and when from the first
// call's start), the processes that failed, and the runs that timed out.
func WriteLabTable(w io.Writer, cell LabCell, runs []LabRun) error {
	sc := cell.Scenario()
	fmt.Fprintf(w, "%s: %d runs, %d clients x %d GETs, server %v req/s burst %d (admits %.0f per 100 ms, +%d burst), optimal %.2fs\n",
		cell.Name(), len(runs), sc.Clients, sc.PerClient, sc.Server.Rate, sc.Server.Burst,
		sc.Server.Rate*LabSlice.Seconds(), sc.Server.Burst, sc.Optimal().Seconds())
	if cell.Barrier || cell.Stagger > 0 {
		fmt.Fprintf(w, "  start: barrier %v, first GETs staggered over %v\n", cell.Barrier, cell.Stagger)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\tmin\tmedian\tmax\t")
	for i, s := range Summarize(runs) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", LabMetrics[i].Name, labNum(s.Min), labNum(s.Median), labNum(s.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	type group struct {
		n, runs     int
		first, last time.Duration
		sample      string
	}
	groups := map[string]*group{}
	timedOut := 0
	var childErrs []string
	for _, r := range runs {
		if r.TimedOut {
			timedOut++
		}
		childErrs = append(childErrs, r.ChildErrors...)
		seen := map[string]bool{}
		for _, c := range r.Failures {
			g := groups[c.Group]
			if g == nil {
				g = &group{sample: c.Err, first: time.Duration(math.MaxInt64)}
				groups[c.Group] = g
			}
			g.n++
			if !seen[c.Group] {
				seen[c.Group] = true
				g.runs++
			}
			at := time.Unix(0, c.End).Sub(r.Start)
			g.first, g.last = min(g.first, at), max(g.last, at)
		}
	}
	names := make([]string, 0, len(groups))
	for k := range groups {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return groups[names[i]].n > groups[names[j]].n })
	for _, k := range names {
		g := groups[k]
		fmt.Fprintf(w, "  lost %d x %q in %d of %d runs, ending %.1f-%.1fs into the run; e.g. %s\n",
			g.n, k, g.runs, len(runs), g.first.Seconds(), g.last.Seconds(), labBlankURL(g.sample))
	}
	if timedOut > 0 {
		fmt.Fprintf(w, "  %d of %d runs hit the timeout (%v)\n", timedOut, len(runs), cell.timeout())
	}
	for i, e := range childErrs {
		if i == 5 {
			fmt.Fprintf(w, "  ... %d more failed processes\n", len(childErrs)-5)
			break
		}
		fmt.Fprintf(w, "  process: %s\n", e)
	}
	return nil
}

func labBlankURL(s string) string { return labURL.ReplaceAllString(s, "URL$1") }

func labNum(v float64) string {
	switch {
	case math.IsInf(v, 0):
		return "inf"
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
