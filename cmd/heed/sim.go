package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heed-go/heed/cmd/heed/internal/sim/brooker"
	"github.com/heed-go/heed/cmd/heed/internal/sim/chainsim"
	"github.com/heed-go/heed/cmd/heed/internal/sim/chart"
	"github.com/heed-go/heed/cmd/heed/internal/sim/stormsim"
	"github.com/heed-go/heed/internal/storm"
)

const simUsage = `Usage: heed sim MODEL [flags]

Models:
  brooker   the optimistic-concurrency contention model of Brooker's
            "Exponential Backoff And Jitter", with heed's backoffs
  storm     the public 429 storm in virtual time, heed beside plain strategies
  chain     retry amplification through K tiers, the bottom one failing
            a share of its requests (one rate, or a sweep of them)

Every model prints a table on stdout; -csv prints CSV instead, and -out DIR
also writes CSV files and charts (SVG and PNG) into DIR. The same -seed
gives the same output, byte for byte.
`

func sim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, simUsage)
		return errNoCommand
	}
	switch args[0] {
	case "brooker":
		return simBrooker(ctx, args[1:], stdout, stderr)
	case "storm":
		return simStorm(ctx, args[1:], stdout, stderr)
	case "chain":
		return simChain(ctx, args[1:], stdout, stderr)
	case "help":
		fmt.Fprint(stdout, simUsage)
		return nil
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, simUsage)
		return nil
	}
	return &usageError{cmd: "sim", err: fmt.Errorf("unknown model %q (want brooker, storm or chain)", args[0])}
}

// simFlags are the flags every model has.
type simFlags struct {
	*command
	seed  *uint64
	csv   *bool
	out   *string
	quiet *bool
}

func newSimFlags(model, about string) simFlags {
	c := newCommand("sim "+model, about)
	return simFlags{
		command: c,
		seed:    c.fs.Uint64("seed", 1, "random seed: the same seed gives the same output"),
		csv:     c.fs.Bool("csv", false, "print CSV instead of the table"),
		out:     c.fs.String("out", "", "also write CSV files and charts (SVG and PNG) into `DIR`"),
		quiet:   c.fs.Bool("quiet", false, "no progress on stderr"),
	}
}

// parse parses args as command.parse does, then creates the -out
// directory.
func (f simFlags) parse(args []string, stdout io.Writer) (help bool, err error) {
	if help, err := f.command.parse(args, stdout); help || err != nil {
		return help, err
	}
	if *f.out != "" {
		if err := os.MkdirAll(*f.out, 0o755); err != nil {
			return false, fmt.Errorf("-out: %w", err)
		}
	}
	return false, nil
}

// writeFile writes dir/name with write.
func writeFile(dir, name string, write func(io.Writer) error) error {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseInts reads "10,20,30" or "10-190/10" (from-to/step, the step
// defaulting to 1).
func parseInts(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		span, stepText, hasStep := strings.Cut(part, "/")
		from, to, isRange := strings.Cut(span, "-")
		if !isRange {
			if hasStep {
				return nil, fmt.Errorf("%q: a step needs a range, as 10-190/10", part)
			}
			n, err := strconv.Atoi(span)
			if err != nil {
				return nil, fmt.Errorf("%q is not a number", part)
			}
			out = append(out, n)
			continue
		}
		a, err1 := strconv.Atoi(from)
		b, err2 := strconv.Atoi(to)
		step := 1
		var err3 error
		if hasStep {
			step, err3 = strconv.Atoi(stepText)
		}
		if err := errors.Join(err1, err2, err3); err != nil || step < 1 || b < a {
			return nil, fmt.Errorf("%q: want FROM-TO or FROM-TO/STEP with FROM <= TO and STEP >= 1", part)
		}
		if (b-a)/step >= 100_000 {
			return nil, fmt.Errorf("%q: too many values", part)
		}
		for n := a; n <= b; n += step {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no value")
	}
	return out, nil
}

func simStorm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newSimFlags("storm", "The public 429 storm in virtual time: a token-bucket API and C clients x M GETs,\neach strategy against a fresh server. heed's strategies run heed's real Transport.")
	sc := storm.Default
	f.fs.IntVar(&sc.Clients, "clients", sc.Clients, "number of clients")
	f.fs.IntVar(&sc.PerClient, "requests", sc.PerClient, "successful GETs each client needs")
	f.fs.Float64Var(&sc.Server.Rate, "rate", sc.Server.Rate, "requests per second the API allows")
	f.fs.IntVar(&sc.Server.Burst, "burst", sc.Server.Burst, "the API's burst")
	retryAfter := f.fs.String("retry-after", "seconds", "the 429's Retry-After: seconds, date or none")
	reset := f.fs.String("reset", "seconds", "X-RateLimit-Reset as seconds (delta) or epoch")
	noHeaders := f.fs.Bool("no-ratelimit-headers", false, "send no X-RateLimit-* fields")
	latency := f.fs.Duration("latency", time.Millisecond, "network round trip")
	strategies := f.fs.String("strategies", "all", "comma-separated: no-retry, exponential, full-jitter, retry-after,\nretry-after-jitter, heed-shared, heed; or all")
	bucket := f.fs.Duration("bucket", 0, "width of the attempts-over-time charts' buckets (0: a round width, about 40 buckets a chart)")
	if help, err := f.parse(args, stdout); help || err != nil {
		return err
	}
	switch *retryAfter {
	case "seconds":
		sc.Server.RetryAfter = storm.RetryAfterSeconds
	case "date":
		sc.Server.RetryAfter = storm.RetryAfterDate
	case "none":
		sc.Server.RetryAfter = storm.RetryAfterNone
	default:
		return f.bad(fmt.Errorf("-retry-after %q: want seconds, date or none", *retryAfter))
	}
	switch *reset {
	case "seconds":
		sc.Server.Reset = storm.ResetDelta
	case "epoch":
		sc.Server.Reset = storm.ResetEpoch
	default:
		return f.bad(fmt.Errorf("-reset %q: want seconds or epoch", *reset))
	}
	sc.Server.NoRateLimitHeaders = *noHeaders
	sts, err := stormsim.ParseStrategies(*strategies)
	if err != nil {
		return f.bad(err)
	}
	if *bucket < 0 {
		return f.bad(fmt.Errorf("-bucket %v: must not be negative", *bucket))
	}
	cfg := stormsim.Config{Scenario: sc, Latency: *latency, Seed: *f.seed, Strategies: sts}
	if err := cfg.Validate(); err != nil {
		return f.bad(err)
	}
	m := newMeter(stderr, "storm", *f.quiet)
	rs, err := stormsim.Run(ctx, cfg, m.update)
	m.finish()
	if err != nil {
		return err
	}
	if *f.csv {
		if err := stormsim.WriteCSV(stdout, cfg, rs); err != nil {
			return err
		}
	} else {
		plain := make([]storm.Result, len(rs))
		for i, r := range rs {
			plain[i] = r.Result
		}
		if err := stormsim.WriteTable(stdout, sc, plain); err != nil {
			return err
		}
	}
	if *f.out == "" {
		return nil
	}
	if err := writeFile(*f.out, "storm.csv", func(w io.Writer) error { return stormsim.WriteCSV(w, cfg, rs) }); err != nil {
		return err
	}
	return stormCharts(*f.out, sc, rs, *bucket)
}

func simChain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newSimFlags("chain", `K services in a row, each calling the next through its retry policy, the bottom one
failing a share of its requests; for each K and failure rate, the load at the bottom
over the load at the top, the share of the top's requests that succeeded and their
latency (p99, max), in virtual time. Several rates make a sweep: a table per K, a row
per rate, and with -out a success and an amplification chart per K.`)
	tiers := f.fs.String("tiers", "2-10", "chain lengths K: a list (2,4,10) or a range (2-10)")
	failRate := f.fs.String("fail-rate", "1", "shares of its requests the bottom tier fails: one (0.5), a list\n(0,0.1,0.5,1) or a sweep FROM-TO/STEP (0-1/0.1)")
	failKind := f.fs.String("fail-kind", "503", "how the bottom fails them: 503, 500, or refused (the connection to it\nis refused)")
	requests := f.fs.Int("requests", 200, "requests sent into the top")
	interval := f.fs.Duration("interval", 50*time.Millisecond, "time between requests into the top")
	latency := f.fs.Duration("latency", time.Millisecond, "each hop's round trip")
	deadline := f.fs.Duration("deadline", 0, "each top-level request's deadline, in virtual time (0: none); the client\nsends it in Heed-Timeout and gives up then, which cancels the request's work")
	strategies := f.fs.String("strategies", "one-retry,heed-no-budget,heed-no-breaker,heed", "comma-separated: one-retry, naive, heed-no-budget, heed-no-breaker, heed;\nor all (naive, 6 attempts a tier, sends 6^(K-1) to the bottom for each\nrequest: keep K small)")
	var bnames []string
	for _, b := range chainsim.Breakers() {
		bnames = append(bnames, b.Name)
	}
	breakers := f.fs.String("breaker", "", "run the heed strategy once per breaker setting, as heed[NAME];\ncomma-separated: "+strings.Join(bnames, ", ")+"; or all")
	if help, err := f.parse(args, stdout); help || err != nil {
		return err
	}
	ks, err := parseInts(*tiers)
	if err != nil {
		return f.bad(fmt.Errorf("-tiers: %w", err))
	}
	rates, err := parseRates(*failRate)
	if err != nil {
		return f.bad(fmt.Errorf("-fail-rate: %w", err))
	}
	kind, err := chainsim.ParseFailKind(*failKind)
	if err != nil {
		return f.bad(fmt.Errorf("-fail-kind: %w", err))
	}
	sts, err := chainsim.ParseStrategies(*strategies)
	if err != nil {
		return f.bad(err)
	}
	if *breakers != "" {
		bs, err := chainsim.ParseBreakers(*breakers)
		if err != nil {
			return f.bad(fmt.Errorf("-breaker: %w", err))
		}
		if sts, err = chainsim.WithBreakers(sts, bs); err != nil {
			return f.bad(fmt.Errorf("-breaker: %w", err))
		}
	}
	cfg := chainsim.Config{Tiers: ks, FailRates: rates, FailKind: kind, Requests: *requests, Interval: *interval, Latency: *latency, Deadline: *deadline, Seed: *f.seed, Strategies: sts}
	if err := cfg.Validate(); err != nil {
		return f.bad(err)
	}
	m := newMeter(stderr, "chain", *f.quiet)
	ps, err := chainsim.Run(ctx, cfg, m.update)
	m.finish()
	if err != nil {
		return err
	}
	if *f.csv {
		err = chainsim.WriteCSV(stdout, ps)
	} else {
		err = chainsim.WriteTable(stdout, cfg, ps)
	}
	if err != nil || *f.out == "" {
		return err
	}
	if err := writeFile(*f.out, "chain.csv", func(w io.Writer) error { return chainsim.WriteCSV(w, ps) }); err != nil {
		return err
	}
	if len(rates) > 1 {
		return chainSweepCharts(*f.out, cfg, ps)
	}
	return chainCharts(*f.out, ps)
}

// parseRates reads fail rates: "0.5", "0,0.1,0.5,1" or "0-1/0.1"
// (FROM-TO/STEP), each 0 to 1.
func parseRates(s string) ([]float64, error) {
	var out []float64
	add := func(part string, v float64) error {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("%q: want rates from 0 to 1", part)
		}
		if slices.Contains(out, v) {
			return fmt.Errorf("%q: rate %v given twice", part, v)
		}
		out = append(out, v)
		return nil
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		span, stepText, hasStep := strings.Cut(part, "/")
		from, to, isRange := strings.Cut(span, "-")
		if !isRange || from == "" {
			if hasStep {
				return nil, fmt.Errorf("%q: a step needs a range, as 0-1/0.1", part)
			}
			v, err := strconv.ParseFloat(span, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a number", part)
			}
			if err := add(part, v); err != nil {
				return nil, err
			}
			continue
		}
		a, err1 := strconv.ParseFloat(from, 64)
		b, err2 := strconv.ParseFloat(to, 64)
		step, err3 := strconv.ParseFloat(stepText, 64)
		if err := errors.Join(err1, err2, err3); err != nil || !hasStep || !(step > 0) || !(a <= b) {
			return nil, fmt.Errorf("%q: want FROM-TO/STEP with FROM <= TO and STEP > 0", part)
		}
		n := math.Floor((b-a)/step + 1e-9)
		if n >= 1000 {
			return nil, fmt.Errorf("%q: too many values", part)
		}
		for i := range int(n) + 1 {
			v := math.Round((a+float64(i)*step)*1e9) / 1e9 // 0.30000000000000004 is 0.3
			if err := add(part, v); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// stormCharts draws the attempts each strategy sent, per second of the
// run. One range and bucket width cannot show both a strategy that ends
// in 5 s and one that takes 50 s, so there are two charts:
// storm-attempts holds every strategy that did all the work within three
// times the optimal time, on a window just wide enough for them;
// storm-attempts-slow holds the slower ones, over their whole run. A
// strategy that lost requests did not do the work and is left out (the
// table has its numbers). bucket 0 picks a round width: about 40 buckets
// a chart.
func stormCharts(dir string, sc storm.Scenario, rs []stormsim.Result, bucket time.Duration) error {
	limit := 3 * sc.Optimal()
	var quick, slow []stormsim.Result
	var quickEnd, slowEnd time.Duration
	for _, r := range rs {
		switch {
		case r.Failed > 0 || len(r.Sent) == 0:
		case r.Makespan <= limit:
			quick, quickEnd = append(quick, r), max(quickEnd, r.Makespan)
		default:
			slow, slowEnd = append(slow, r), max(slowEnd, r.Makespan)
		}
	}
	if len(quick) == 0 {
		quick, quickEnd, slow = slow, slowEnd, nil
	}
	if len(quick) == 0 {
		return nil
	}
	draw := func(name, title string, rs []stormsim.Result, end time.Duration) error {
		span := roundUp(end, 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
		width := bucket
		if width == 0 {
			width = roundUp(span/40, 1, 2, 5)
		}
		c := chart.Chart{
			Title:  title,
			XLabel: "time since the start (s)",
			YLabel: fmt.Sprintf("attempts per second (%v buckets)", width),
			Step:   true,
		}
		lo, hi := 0.0, span.Seconds()
		c.XMin, c.XMax = &lo, &hi
		for _, r := range rs {
			times := make([]float64, len(r.Sent))
			for i, t := range r.Sent {
				times[i] = t.Seconds()
			}
			x, y := chart.Histogram(times, width.Seconds())
			for i := range y {
				y[i] /= width.Seconds() // a rate, whatever the bucket width
			}
			// Back to zero after the last bucket, so that a run of one
			// bucket still draws a step.
			x, y = append(x, x[len(x)-1]+width.Seconds()), append(y, 0)
			c.Series = append(c.Series, chart.Series{Name: r.Name, X: x, Y: y})
		}
		c.Series = append(c.Series, chart.Series{Name: fmt.Sprintf("API limit (%v/s)", sc.Server.Rate), X: []float64{0, hi}, Y: []float64{sc.Server.Rate, sc.Server.Rate}, Reference: true})
		return chart.Save(c, dir, name)
	}
	title := fmt.Sprintf("429 storm: attempts over time, strategies done within %v", roundUp(quickEnd, 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8))
	if err := draw("storm-attempts", title, quick, quickEnd); err != nil {
		return err
	}
	if len(slow) == 0 {
		return nil
	}
	return draw("storm-attempts-slow", "429 storm: attempts over time, the slower strategies", slow, slowEnd)
}

// roundUp rounds d up to one of steps (from 1 to under 10) times a power
// of ten milliseconds, for axis ends and bucket widths a reader takes in
// at a glance.
func roundUp(d time.Duration, steps ...float64) time.Duration {
	for p := float64(time.Millisecond); ; p *= 10 {
		for _, m := range steps {
			if v := time.Duration(m * p); d <= v {
				return v
			}
		}
	}
}

// chainCharts draws the amplification against K on a log axis, with the
// 2^(K-1) of one retry per tier for reference.
func chainCharts(dir string, ps []chainsim.Point) error {
	c := chart.Chart{Title: "retry amplification through K tiers", XLabel: "tiers (K)", YLabel: "load at the bottom / load at the top", LogY: true}
	var names []string
	byName := map[string]*chart.Series{}
	for _, p := range ps {
		s, ok := byName[p.Strategy]
		if !ok {
			names = append(names, p.Strategy)
			s = &chart.Series{Name: p.Strategy}
			byName[p.Strategy] = s
		}
		if a := p.Amplification(); a > 0 { // a log axis has no zero
			s.X = append(s.X, float64(p.Tiers))
			s.Y = append(s.Y, a)
		}
	}
	for _, n := range names {
		if len(byName[n].X) > 0 {
			c.Series = append(c.Series, *byName[n])
		}
	}
	return chart.Save(c, dir, "chain-amplification")
}

// chainSweepCharts draws, for each K, the share of the top's requests that
// succeeded and the amplification (on a log axis) against the failure
// rate, a line per strategy.
func chainSweepCharts(dir string, cfg chainsim.Config, ps []chainsim.Point) error {
	kind := string(cfg.FailKind)
	if cfg.FailKind == chainsim.FailRefused {
		kind = "connection refused"
	}
	lo, hi := 0.0, 100.0
	for _, k := range cfg.Tiers {
		ok := chart.Chart{Title: fmt.Sprintf("success against the bottom's failure rate (%s), K = %d", kind, k), XLabel: "requests the bottom fails (%)", YLabel: "top requests that succeeded (%)", YMin: &lo, YMax: &hi}
		amp := chart.Chart{Title: fmt.Sprintf("amplification against the bottom's failure rate (%s), K = %d", kind, k), XLabel: "requests the bottom fails (%)", YLabel: "load at the bottom / load at the top", LogY: true}
		for _, st := range cfg.Strategies {
			var so, sa chart.Series
			so.Name, sa.Name = st.Name, st.Name
			for _, p := range ps {
				if p.Strategy != st.Name || p.Tiers != k {
					continue
				}
				so.X, so.Y = append(so.X, 100*p.FailRate), append(so.Y, 100*p.Success())
				if a := p.Amplification(); a > 0 { // a log axis has no zero
					sa.X, sa.Y = append(sa.X, 100*p.FailRate), append(sa.Y, a)
				}
			}
			ok.Series = append(ok.Series, so)
			if len(sa.X) > 0 {
				amp.Series = append(amp.Series, sa)
			}
		}
		if err := chart.Save(ok, dir, fmt.Sprintf("chain-success-k%d", k)); err != nil {
			return err
		}
		if err := chart.Save(amp, dir, fmt.Sprintf("chain-amplification-k%d", k)); err != nil {
			return err
		}
	}
	return nil
}

func simBrooker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newSimFlags("brooker", "The optimistic-concurrency contention model of Brooker's \"Exponential Backoff And\nJitter\" (docs/simulations.md): N clients each update one row once; work is the\nconditional writes the server handled, time the makespan in ms. Means over -runs.")
	ns := f.fs.String("n", "10-190/10", "numbers of clients N: a list (10,50,100) or a range (10-190/10)")
	runs := f.fs.Int("runs", 100, "independent runs per point")
	strategies := f.fs.String("strategies", "all", "comma-separated: None, Exponential, FullJitter, EqualJitter, Decorr,\nheed-defaults, heed-budget; or reference (the first five) or all")
	seriesN := f.fs.Int("series-n", 100, "N whose call rate over time -out charts (one run per strategy)")
	if help, err := f.parse(args, stdout); help || err != nil {
		return err
	}
	points, err := parseInts(*ns)
	if err != nil {
		return f.bad(fmt.Errorf("-n: %w", err))
	}
	sts, err := brooker.ParseStrategies(*strategies)
	if err != nil {
		return f.bad(err)
	}
	for _, n := range append(points, *seriesN) {
		if err := (brooker.Config{N: n, Runs: *runs, Strategies: sts}).Validate(); err != nil {
			return f.bad(err)
		}
	}
	m := newMeter(stderr, "brooker", *f.quiet)
	ps, err := brooker.Sweep(ctx, points, *runs, sts, *f.seed, m.update)
	m.finish()
	if err != nil {
		return err
	}
	if *f.csv {
		err = brooker.WriteCSV(stdout, ps)
	} else {
		err = brooker.WriteTable(stdout, ps)
	}
	if err != nil || *f.out == "" {
		return err
	}
	if err := writeFile(*f.out, "brooker.csv", func(w io.Writer) error { return brooker.WriteCSV(w, ps) }); err != nil {
		return err
	}
	return brookerCharts(*f.out, ps, sts, *seriesN, *f.seed)
}

// brookerCharts draws the post's charts: client work and completion time
// against N, and the call rate over time of one run at seriesN.
func brookerCharts(dir string, ps []brooker.Point, sts []brooker.Strategy, seriesN int, seed uint64) error {
	work := chart.Chart{Title: "client work (conditional writes) against competing clients", XLabel: "competing clients (N)", YLabel: "writes"}
	took := chart.Chart{Title: "completion time against competing clients", XLabel: "competing clients (N)", YLabel: "time (ms)"}
	for _, st := range sts {
		var x, w, t []float64
		for _, p := range ps {
			if p.Strategy == st {
				x, w, t = append(x, float64(p.N)), append(w, p.Work), append(t, p.Time)
			}
		}
		work.Series = append(work.Series, chart.Series{Name: st.String(), X: x, Y: w})
		took.Series = append(took.Series, chart.Series{Name: st.String(), X: x, Y: t})
	}
	if err := chart.Save(work, dir, "brooker-work"); err != nil {
		return err
	}
	if err := chart.Save(took, dir, "brooker-time"); err != nil {
		return err
	}
	// One chart per strategy, as in the post: their time scales differ a
	// hundredfold.
	for _, st := range sts {
		times, err := brooker.Series(st, seriesN, seed)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("brooker-calls-%s-n%d", st, seriesN)
		if err := writeFile(dir, name+".txt", func(w io.Writer) error { return brooker.WriteSeries(w, st, seriesN, seed, times) }); err != nil {
			return err
		}
		x, y := chart.Histogram(times, 10)
		if len(x) == 0 {
			continue
		}
		rate := chart.Chart{Title: fmt.Sprintf("%s: call rate over time, N = %d (one run)", st, seriesN), XLabel: "time (ms)", YLabel: "writes per 10 ms", Step: true,
			Series: []chart.Series{{Name: st.String(), X: x, Y: y}}}
		if err := chart.Save(rate, dir, name); err != nil {
			return err
		}
	}
	return nil
}
