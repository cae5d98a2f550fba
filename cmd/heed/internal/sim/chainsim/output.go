package chainsim

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heed-go/heed/cmd/heed/internal/sim/table"
)

// WriteTable prints the points as tables, each at most table.MaxWidth
// columns wide (a wide one splits), with a legend and a conclusion drawn
// from the numbers. With one failure rate: a row per K, one table of the
// amplification (the load at the bottom over the load at the top) per
// strategy beside the 2^(K-1) of one retry per tier, one of the share of
// requests into the top that succeeded. With several: for each K, a row
// per rate, the success share and amplification per strategy, then the
// top-level latency (p99 and max) the same way.
func WriteTable(w io.Writer, cfg Config, ps []Point) error {
	return table.WriteAll(w, Tables(cfg, ps))
}

// Tables lays out the points as WriteTable prints them.
func Tables(cfg Config, ps []Point) []table.Table {
	kind := cfg.FailKind
	if kind == "" {
		kind = Fail503
	}
	var names []string
	for _, p := range ps {
		if !slices.Contains(names, p.Strategy) {
			names = append(names, p.Strategy)
		}
	}
	find := func(n string, k int, rate float64) Point {
		i := slices.IndexFunc(ps, func(p Point) bool { return p.Strategy == n && p.Tiers == k && p.FailRate == rate })
		return ps[i]
	}
	var deadline string
	if cfg.Deadline > 0 {
		deadline = fmt.Sprintf("; each with a %v deadline", cfg.Deadline)
	}
	ampLegend := [2]string{"amp", "amplification: requests the bottom tier received / requests into the top " +
		"(1 = no retries reached the bottom; under 1: requests stopped above it)"}
	okLegend := [2]string{"ok", "share of the requests into the top that succeeded"}
	if len(cfg.FailRates) == 1 {
		rate := cfg.FailRates[0]
		how := ""
		switch kind {
		case Fail500:
			how = " with 500"
		case FailRefused:
			how = " (connection refused)"
		}
		scene := fmt.Sprintf("%d requests into the top, %v apart; the bottom fails %.0f%% of its requests%s%s", cfg.Requests, cfg.Interval, rate*100, how, deadline)
		amps := table.Table{Title: "Amplification through K tiers: " + scene, Head: append(append([]string{"K"}, names...), "2^(K-1)"), Labels: 1}
		oks := table.Table{Title: "Success: share of the requests into the top that succeeded", Head: append([]string{"K"}, names...), Labels: 1}
		for _, k := range cfg.Tiers {
			ar, or := []string{strconv.Itoa(k)}, []string{strconv.Itoa(k)}
			for _, n := range names {
				p := find(n, k, rate)
				ar = append(ar, amp(p.Amplification()))
				or = append(or, fmt.Sprintf("%.1f%%", 100*p.Success()))
			}
			amps.Rows = append(amps.Rows, append(ar, strconv.Itoa(1<<(k-1))))
			oks.Rows = append(oks.Rows, or)
		}
		amps.Legend = [][2]string{
			{"K", "services in the chain, the bottom one failing"},
			{"(cells)", ampLegend[1]},
			{"2^(K-1)", "the amplification of one retry per tier when the bottom always fails: each tier " +
				"sends two requests for every one it receives"},
		}
		k := slices.Max(cfg.Tiers)
		var lows, highs []string
		var low, high float64
		for i, n := range names {
			p := find(n, k, rate)
			if a := p.Amplification(); i == 0 || a < low {
				low, lows = a, []string{n}
			} else if a == low {
				lows = append(lows, n)
			}
			if o := p.Success(); i == 0 || o > high {
				high, highs = o, []string{n}
			} else if o == high {
				highs = append(highs, n)
			}
		}
		if len(names) > 0 {
			got := fmt.Sprintf("the most requests succeeded with %s (%.1f%%)", join(highs), 100*high)
			if len(highs) == len(names) {
				got = fmt.Sprintf("every strategy delivered %.1f%% of the requests", 100*high)
			}
			oks.Notes = []string{fmt.Sprintf("At K = %d the least load reached the bottom with %s (%s times the top's, against %d for one retry per tier "+
				"on a dead bottom); %s.", k, join(lows), amp(low), 1<<(k-1), got)}
		}
		return []table.Table{amps, oks}
	}

	how := map[FailKind]string{Fail503: "answering 503", Fail500: "answering 500", FailRefused: "refusing the connection"}[kind]
	var out []table.Table
	for ki, k := range cfg.Tiers {
		okAmp := table.Table{Head: append([]string{"rate"}, names...), Labels: 1}
		if ki == 0 {
			okAmp.Title = fmt.Sprintf("%d requests into the top, %v apart; the bottom fails a share (rate) of its requests, %s%s\n\n", cfg.Requests, cfg.Interval, how, deadline)
		}
		okAmp.Title += fmt.Sprintf("K = %d: ok (success) and amp (amplification), per strategy", k)
		lat := table.Table{Title: fmt.Sprintf("K = %d: latency of the requests into the top, p99 and max, per strategy", k), Head: append([]string{"rate"}, names...), Labels: 1}
		sumOK, sumAmp := make([]float64, len(names)), make([]float64, len(names))
		for _, rate := range cfg.FailRates {
			r1, r2 := []string{rateText(rate)}, []string{rateText(rate)}
			for i, n := range names {
				p := find(n, k, rate)
				r1 = append(r1, fmt.Sprintf("%5.1f%% %s", 100*p.Success(), amp(p.Amplification())))
				r2 = append(r2, fmt.Sprintf("%s %s", dur(p.P99), dur(p.Max)))
				sumOK[i] += p.Success()
				sumAmp[i] += p.Amplification()
			}
			okAmp.Rows = append(okAmp.Rows, r1)
			lat.Rows = append(lat.Rows, r2)
		}
		if ki == 0 {
			okAmp.Legend = [][2]string{{"rate", "share of its requests the bottom tier fails"}, okLegend, ampLegend}
			lat.Legend = [][2]string{{"p99, max", "the 99th-percentile and the slowest request into the top, in virtual time"}}
		}
		best, least := 0, 0
		for i := range names {
			if sumOK[i] > sumOK[best] {
				best = i
			}
			if sumAmp[i] < sumAmp[least] {
				least = i
			}
		}
		nr := float64(len(cfg.FailRates))
		lat.Notes = []string{fmt.Sprintf("K = %d, averaged over the %d failure rates: the most requests succeeded with %s (%.1f%%), "+
			"the least load reached the bottom with %s (%s times the top's).", k, len(cfg.FailRates), names[best], 100*sumOK[best]/nr, names[least], amp(sumAmp[least]/nr))}
		out = append(out, okAmp, lat)
	}
	return out
}

// join lists names: "a", "a and b", "a, b and c".
func join(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func amp(a float64) string {
	if a >= 100 {
		return fmt.Sprintf("%.0f", a)
	}
	return fmt.Sprintf("%.3f", a)
}

// dur prints a virtual duration in 6 characters or fewer.
func dur(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 100*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%.0fs", d.Seconds())
}

// WriteCSV writes one row per strategy, chain length and failure rate;
// latencies in seconds.
func WriteCSV(w io.Writer, ps []Point) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"strategy", "tiers", "fail_kind", "fail_rate", "top", "bottom", "amplification", "ok", "max_latency", "p99_latency"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
	for _, p := range ps {
		cw.Write([]string{p.Strategy, strconv.Itoa(p.Tiers), string(p.FailKind), strconv.FormatFloat(p.FailRate, 'f', -1, 64),
			strconv.FormatInt(p.Hits[0], 10), strconv.FormatInt(p.Hits[len(p.Hits)-1], 10), f(p.Amplification()),
			strconv.Itoa(p.OK), f(p.Max.Seconds()), f(p.P99.Seconds())})
	}
	cw.Flush()
	return cw.Error()
}
