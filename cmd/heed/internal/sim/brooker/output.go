package brooker

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// WriteTable writes points as a fixed-width table: one row per N (in order
// of first appearance) and, per strategy, the mean work and the mean time
// in ms, plus the mean given-up clients for heed's variants. A missing
// point prints "-". The same points always give the same bytes.
func WriteTable(w io.Writer, points []Point) error {
	var ns []int
	var ss []Strategy
	cell := map[[2]int]Point{}
	for _, p := range points {
		if !slices.Contains(ns, p.N) {
			ns = append(ns, p.N)
		}
		if !slices.Contains(ss, p.Strategy) {
			ss = append(ss, p.Strategy)
		}
		cell[[2]int{p.N, int(p.Strategy)}] = p
	}

	type column struct {
		s     Strategy
		head  string
		value func(Point) float64
	}
	var cols []column
	for _, s := range ss {
		cols = append(cols,
			column{s, s.String() + ".work", func(p Point) float64 { return p.Work }},
			column{s, s.String() + ".time", func(p Point) float64 { return p.Time }})
		if s.Heed() {
			cols = append(cols, column{s, s.String() + ".gaveup", func(p Point) float64 { return p.GaveUp }})
		}
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%6s", "N")
	for _, c := range cols {
		fmt.Fprintf(bw, "  %*s", width(c.head), c.head)
	}
	bw.WriteByte('\n')
	for _, n := range ns {
		fmt.Fprintf(bw, "%6d", n)
		for _, c := range cols {
			p, ok := cell[[2]int{n, int(c.s)}]
			v := "-"
			if ok {
				v = strconv.FormatFloat(c.value(p), 'f', 1, 64)
			}
			fmt.Fprintf(bw, "  %*s", width(c.head), v)
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

func width(head string) int { return max(len(head), 10) }

// WriteCSV writes points in the model's backoff_results.csv format, one
// row per point in order: clients,time,calls,Algorithm, where time and
// calls are the model's floors of the means. If any point is a heed
// variant, a gave_up column (the mean given-up clients per run, 0 for the
// reference strategies) follows.
func WriteCSV(w io.Writer, points []Point) error {
	heedCol := slices.ContainsFunc(points, func(p Point) bool { return p.Strategy.Heed() })
	bw := bufio.NewWriter(w)
	bw.WriteString("clients,time,calls,Algorithm")
	if heedCol {
		bw.WriteString(",gave_up")
	}
	bw.WriteByte('\n')
	for _, p := range points {
		fmt.Fprintf(bw, "%d,%d,%d,%s", p.N, p.TimeFloor, p.WorkFloor, p.Strategy)
		if heedCol {
			fmt.Fprintf(bw, ",%s", strconv.FormatFloat(p.GaveUp, 'f', 2, 64))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// WriteSeries writes write times as the model's ts_<Algorithm> file does:
// int(t) of each, one per line.
func WriteSeries(w io.Writer, times []float64) error {
	bw := bufio.NewWriter(w)
	for _, t := range times {
		bw.WriteString(strconv.Itoa(int(t)))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
