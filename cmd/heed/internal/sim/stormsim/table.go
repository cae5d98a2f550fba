package stormsim

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/heed-go/heed/cmd/heed/internal/sim/table"
	"github.com/heed-go/heed/internal/storm"
)

// Table lays out storm results, one row per strategy, for heed demo and
// heed sim storm alike, with a legend and a conclusion drawn from rs.
func Table(sc storm.Scenario, rs []storm.Result) table.Table {
	total := sc.Clients * sc.PerClient
	opt := sc.Optimal().Seconds()
	t := table.Table{
		Title: fmt.Sprintf("%d clients x %d GETs (%d in all) against an API that allows %v requests a second, burst %d",
			sc.Clients, sc.PerClient, total, sc.Server.Rate, sc.Server.Burst),
		Head:   []string{"strategy", "ok", "failed", "attempts", "429s", "per ok", "makespan", "vs optimal"},
		Labels: 1,
		Legend: [][2]string{
			{"ok, failed", "GETs that got their 200, and GETs the client gave up on"},
			{"attempts", "requests the server saw, retries included; 429s: those it refused"},
			{"per ok", "attempts / ok: 1.00 means not one request was wasted"},
			{"makespan", "time from the start until the last GET ended, in success or failure"},
			{"vs optimal", optimalNote(sc, opt, total)},
		},
	}
	for _, r := range rs {
		vs := "n/a"
		if r.Failed == 0 && r.Optimal > 0 {
			vs = fmt.Sprintf("%.2fx", r.OverOptimal())
		}
		per := "n/a"
		if r.Succeeded > 0 {
			per = fmt.Sprintf("%.2f", r.AttemptsPerSuccess())
		}
		t.Rows = append(t.Rows, []string{r.Name, strconv.Itoa(r.Succeeded), strconv.Itoa(r.Failed),
			strconv.FormatInt(r.Attempts, 10), strconv.FormatInt(r.Throttled, 10), per,
			fmt.Sprintf("%.2fs", r.Makespan.Seconds()), vs})
	}
	t.Notes = conclude(total, rs)
	return t
}

// optimalNote explains the vs optimal column.
func optimalNote(sc storm.Scenario, opt float64, total int) string {
	if opt <= 0 {
		return fmt.Sprintf("makespan / the least time the API needs for all %d GETs; n/a here, "+
			"since its burst of %d serves them all at once", total, sc.Server.Burst)
	}
	return fmt.Sprintf("makespan / %.2fs, the least time in which the API can serve all %d GETs "+
		"(%d at once, then %v a second); n/a when GETs failed: giving up early is not speed",
		opt, total, sc.Server.Burst, sc.Server.Rate)
}

// speed says how long r took, against the optimal time if there is one.
func speed(r storm.Result) string {
	if r.Optimal <= 0 {
		return fmt.Sprintf("%.2fs", r.Makespan.Seconds())
	}
	return fmt.Sprintf("%.2fx the optimal time", r.OverOptimal())
}

// conclude says, from the numbers alone, which strategies finished the
// work and which of those was fastest and most frugal, and what the
// others lost.
func conclude(total int, rs []storm.Result) []string {
	var done, lost []storm.Result
	for _, r := range rs {
		if r.Failed == 0 {
			done = append(done, r)
		} else {
			lost = append(lost, r)
		}
	}
	var out []string
	if len(done) == 0 {
		if len(lost) > 0 {
			best := slices.MinFunc(lost, func(a, b storm.Result) int { return a.Failed - b.Failed })
			out = append(out, fmt.Sprintf("No strategy completed all %d GETs; %s lost the fewest (%d).", total, best.Name, best.Failed))
		}
		return out
	}
	fast := slices.MinFunc(done, func(a, b storm.Result) int { return cmp.Compare(a.Makespan.Seconds(), b.Makespan.Seconds()) })
	frugal := slices.MinFunc(done, func(a, b storm.Result) int { return cmp.Compare(a.AttemptsPerSuccess(), b.AttemptsPerSuccess()) })
	slow := slices.MaxFunc(done, func(a, b storm.Result) int { return cmp.Compare(a.Makespan.Seconds(), b.Makespan.Seconds()) })
	var s string
	switch {
	case len(done) == 1:
		s = fmt.Sprintf("Only %s completed all %d GETs, in %s with %.2f attempts per success.",
			fast.Name, total, speed(fast), fast.AttemptsPerSuccess())
	case fast.Name == frugal.Name:
		s = fmt.Sprintf("Of the %d strategies that completed all %d GETs, %s was the fastest (%s) and wasted the least (%.2f attempts per success)",
			len(done), total, fast.Name, speed(fast), fast.AttemptsPerSuccess())
	default:
		s = fmt.Sprintf("Of the %d strategies that completed all %d GETs, %s was the fastest (%s) and %s wasted the least (%.2f attempts per success)",
			len(done), total, fast.Name, speed(fast), frugal.Name, frugal.AttemptsPerSuccess())
	}
	if len(done) > 1 {
		s += fmt.Sprintf("; %s was the slowest (%s).", slow.Name, speed(slow))
	}
	if len(lost) > 0 {
		var parts []string
		for _, r := range lost {
			parts = append(parts, fmt.Sprintf("%s lost %d of %d", r.Name, r.Failed, total))
		}
		s += " " + strings.Join(parts, ", ") + "."
	}
	return append(out, s)
}

// WriteTable prints Table(sc, rs).
func WriteTable(w io.Writer, sc storm.Scenario, rs []storm.Result) error {
	return Table(sc, rs).Write(w)
}
