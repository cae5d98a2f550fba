package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Row is one contender's results over the rounds.
type Row struct {
	Key, Name string
	Runs      []WrkResult
	// RSS in KiB (-1: not read): after start, after its last wrk run, with
	// IdleOpened idle keep-alive client connections open to it.
	RSSIdle, RSSLoad, RSSConns int64
	IdleOpened                 int
	Note                       string
}

// Median of the rounds.
func (r *Row) Median() (rps float64, p50, p99 time.Duration, errs int64) {
	var rs []float64
	var a, b []time.Duration
	for _, x := range r.Runs {
		rs = append(rs, x.ReqPerSec)
		a = append(a, x.P50)
		b = append(b, x.P99)
		errs += x.Errors
	}
	return median(rs), median(a), median(b), errs
}

func median[T float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// FormatTable writes the rows as a Markdown table; ratios are to the row
// whose Key is base (left blank if it has no runs).
func FormatTable(rows []*Row, base string) string {
	var baseRPS float64
	var baseP99 time.Duration
	for _, r := range rows {
		if r.Key == base && len(r.Runs) > 0 {
			baseRPS, _, baseP99, _ = r.Median()
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| contender | req/s | vs %s | p50 | p99 | p99 vs %s | errors | RSS idle | RSS after load | RSS, 10k idle conns |\n", base, base)
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		if len(r.Runs) == 0 {
			note := r.Note
			if note == "" {
				note = "not run"
			}
			fmt.Fprintf(&b, "| %s | %s | | | | | | | | |\n", r.Name, note)
			continue
		}
		rps, p50, p99, errs := r.Median()
		ratio, p99ratio := "", ""
		if baseRPS > 0 {
			ratio = fmt.Sprintf("%.2f", rps/baseRPS)
		}
		if baseP99 > 0 {
			p99ratio = fmt.Sprintf("%.2f", float64(p99)/float64(baseP99))
		}
		conns := FormatKiB(r.RSSConns)
		if r.RSSConns >= 0 && r.IdleOpened != 10000 {
			conns += fmt.Sprintf(" (%d conns)", r.IdleOpened)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |\n",
			r.Name, formatThousands(rps), ratio, FormatLatency(p50), FormatLatency(p99), p99ratio, errs,
			FormatKiB(r.RSSIdle), FormatKiB(r.RSSLoad), conns)
	}
	return b.String()
}

// FormatKiB writes a KiB count as MiB; "-" for not read.
func FormatKiB(kib int64) string {
	if kib < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

// FormatLatency writes a latency in milliseconds with two decimals.
func FormatLatency(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func formatThousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
