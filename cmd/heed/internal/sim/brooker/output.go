package brooker

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/heed-go/heed/cmd/heed/internal/sim/table"
)

// Tables lays points out as tables a row per N (in order of first
// appearance) and a column per strategy: the mean work, the mean time in
// ms and, if a heed variant ran, the mean clients that gave up. Splitting
// the measures keeps each table narrow. A missing point prints "-"; a value
// measured while clients gave up carries a "*", since it counts fewer
// finished updates than the others. The last table's notes conclude from
// the largest N.
func Tables(points []Point) []table.Table {
	var ns []int
	var ss []Strategy
	cell := map[[2]int]Point{}
	runs := 0
	for _, p := range points {
		if !slices.Contains(ns, p.N) {
			ns = append(ns, p.N)
		}
		if !slices.Contains(ss, p.Strategy) {
			ss = append(ss, p.Strategy)
		}
		cell[[2]int{p.N, int(p.Strategy)}] = p
		runs = max(runs, p.Runs)
	}
	anyGaveUp := slices.ContainsFunc(points, func(p Point) bool { return p.GaveUp > 0 })
	grid := func(title string, ss []Strategy, value func(Point) string) table.Table {
		t := table.Table{Title: title, Head: []string{"N"}, Labels: 1}
		for _, s := range ss {
			t.Head = append(t.Head, s.String())
		}
		for _, n := range ns {
			row := []string{strconv.Itoa(n)}
			for _, s := range ss {
				v := "-"
				if p, ok := cell[[2]int{n, int(s)}]; ok {
					v = value(p)
				}
				row = append(row, v)
			}
			t.Rows = append(t.Rows, row)
		}
		return t
	}
	star := func(p Point, v string) string {
		if p.GaveUp > 0 {
			return v + "*"
		}
		return v
	}
	mean := fmt.Sprintf("mean of %d runs", runs)
	work := grid("Work: conditional writes the server handled per run ("+mean+")", ss, func(p Point) string {
		return star(p, strconv.FormatFloat(p.Work, 'f', 1, 64))
	})
	work.Legend = [][2]string{{"N", "competing clients, each updating one row once: N writes is the least possible work"}}
	took := grid("Time: ms from the start until the last client finished or gave up ("+mean+")", ss, func(p Point) string {
		return star(p, strconv.FormatFloat(p.Time, 'f', 0, 64))
	})
	if anyGaveUp {
		note := [2]string{"*", "some clients gave up at this N, so the value counts fewer finished updates " +
			"and does not compare with an unmarked one"}
		work.Legend = append(work.Legend, note)
		took.Legend = [][2]string{note}
	}
	out := []table.Table{work, took}
	var heeds []Strategy
	for _, s := range ss {
		if s.Heed() {
			heeds = append(heeds, s)
		}
	}
	if len(heeds) > 0 {
		gave := grid("Gave up: clients per run that never wrote ("+mean+")", heeds, func(p Point) string {
			return strconv.FormatFloat(p.GaveUp, 'f', 1, 64)
		})
		for _, s := range heeds {
			why := "a client gives up after heed's limit of attempts"
			if s == HeedBudget {
				why = "a client gives up when the retry budget all clients share refuses a retry"
			}
			gave.Legend = append(gave.Legend, [2]string{s.String(), why})
		}
		out = append(out, gave)
	}
	if len(ns) > 0 {
		out[len(out)-1].Notes = conclude(ns, ss, cell)
	}
	return out
}

// conclude compares the strategies at the largest N: the least work and
// the shortest time among those whose clients all finished, how the least
// work compares with Exponential's, and which strategies only look cheaper
// because clients gave up.
func conclude(ns []int, ss []Strategy, cell map[[2]int]Point) []string {
	n := slices.Max(ns)
	var full, partial []Point
	for _, s := range ss {
		p, ok := cell[[2]int{n, int(s)}]
		switch {
		case !ok:
		case p.GaveUp > 0:
			partial = append(partial, p)
		default:
			full = append(full, p)
		}
	}
	var out []string
	if len(full) > 0 {
		least := slices.MinFunc(full, func(a, b Point) int { return cmp.Compare(a.Work, b.Work) })
		most := slices.MaxFunc(full, func(a, b Point) int { return cmp.Compare(a.Work, b.Work) })
		fast := slices.MinFunc(full, func(a, b Point) int { return cmp.Compare(a.Time, b.Time) })
		s := fmt.Sprintf("At N = %d, of the strategies whose clients all finished, %s did the least work: %.0f writes", n, least.Strategy, least.Work)
		var than []string
		if e, ok := cell[[2]int{n, int(Exponential)}]; ok && e.GaveUp == 0 && e.Strategy != least.Strategy {
			than = append(than, fmt.Sprintf("%.2fx the %.0f of %s", least.Work/e.Work, e.Work, e.Strategy))
		}
		if most.Strategy != least.Strategy && most.Strategy != Exponential {
			than = append(than, fmt.Sprintf("%.2fx the %.0f of %s", least.Work/most.Work, most.Work, most.Strategy))
		}
		if len(than) > 0 {
			s += ", " + strings.Join(than, " and ")
		}
		s += fmt.Sprintf("; %s finished first (%.0f ms).", fast.Strategy, fast.Time)
		out = append(out, s)
	}
	if len(partial) > 0 {
		var parts []string
		for _, p := range partial {
			parts = append(parts, fmt.Sprintf("%s (%s of %d clients gave up)", p.Strategy, strconv.FormatFloat(math.Round(p.GaveUp*10)/10, 'f', -1, 64), n))
		}
		out = append(out, fmt.Sprintf("At N = %d, %s did less work or finished sooner only by leaving updates undone.", n, strings.Join(parts, " and ")))
	}
	return out
}

// WriteTable prints Tables(points), a blank line between tables. The same
// points always give the same bytes.
func WriteTable(w io.Writer, points []Point) error {
	return table.WriteAll(w, Tables(points))
}

// WriteCSV writes points in the model's backoff_results.csv format, one
// row per point in order: clients,time,calls,Algorithm, where time and
// calls are the model's floors of the means. If any point is a heed
// variant, a gave_up column (the mean given-up clients per run, 0 for the
// reference strategies) follows.
func WriteCSV(w io.Writer, points []Point) error {
	heedCol := slices.ContainsFunc(points, func(p Point) bool { return p.Strategy.Heed() })
	cw := csv.NewWriter(w)
	head := []string{"clients", "time", "calls", "Algorithm"}
	if heedCol {
		head = append(head, "gave_up")
	}
	cw.Write(head)
	for _, p := range points {
		rec := []string{strconv.Itoa(p.N), strconv.Itoa(p.TimeFloor), strconv.Itoa(p.WorkFloor), p.Strategy.String()}
		if heedCol {
			rec = append(rec, strconv.FormatFloat(p.GaveUp, 'f', 2, 64))
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

// WriteSeries writes the write times of one run as the model's
// ts_<Algorithm> file does, int(t) of each, one per line, under a header
// line (starting with "#", which plotting tools skip) that says what the
// numbers are and which run they come from.
func WriteSeries(w io.Writer, s Strategy, n int, seed uint64, times []float64) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# write_ms: when the server handled each conditional write, in whole ms from the start; %s, N = %d, one run, seed %d\n", s, n, seed)
	for _, t := range times {
		bw.WriteString(strconv.Itoa(int(t)))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
