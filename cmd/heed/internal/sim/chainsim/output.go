package chainsim

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WriteTable prints the points. With one failure rate, a row per K: for
// every strategy the amplification (the load at the bottom over the load at
// the top) and the share of requests into the top that succeeded. With
// several, for each K a row per rate with the same two columns per
// strategy, then the top-level latency (p99 and max) the same way.
func WriteTable(w io.Writer, cfg Config, ps []Point) error {
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
	if len(cfg.FailRates) == 1 {
		rate := cfg.FailRates[0]
		how := ""
		switch kind {
		case Fail500:
			how = " with 500"
		case FailRefused:
			how = " (connection refused)"
		}
		fmt.Fprintf(w, "%d requests into the top, %v apart; the bottom fails %.0f%% of its requests%s%s\n", cfg.Requests, cfg.Interval, rate*100, how, deadline)
		fmt.Fprintf(w, "amplification = load at the bottom / load at the top; ok = requests into the top that succeeded\n\n")
		fmt.Fprintf(w, "%3s", "K")
		for _, n := range names {
			fmt.Fprintf(w, " %16s %6s", n, "ok")
		}
		fmt.Fprintf(w, " %8s\n", "2^(K-1)")
		for _, k := range cfg.Tiers {
			fmt.Fprintf(w, "%3d", k)
			for _, n := range names {
				p := find(n, k, rate)
				fmt.Fprintf(w, " %16s %5.1f%%", amp(p.Amplification()), 100*p.Success())
			}
			fmt.Fprintf(w, " %8d\n", 1<<(k-1))
		}
		return nil
	}

	how := map[FailKind]string{Fail503: "answering 503", Fail500: "answering 500", FailRefused: "refusing the connection"}[kind]
	fmt.Fprintf(w, "%d requests into the top, %v apart; the bottom fails a share of its requests, %s%s\n", cfg.Requests, cfg.Interval, how, deadline)
	fmt.Fprintf(w, "ok = requests into the top that succeeded; amp = load at the bottom / load at the top;\n")
	fmt.Fprintf(w, "p99, max = the top-level requests' latency in virtual time\n")
	widths := make([]int, len(names))
	for i, n := range names {
		widths[i] = max(len(n), 15)
	}
	line := func(label string, cell func(strategy string) string) {
		fmt.Fprintf(w, "%6s", label)
		for i, n := range names {
			fmt.Fprintf(w, "  %*s", widths[i], cell(n))
		}
		fmt.Fprintln(w)
	}
	for _, k := range cfg.Tiers {
		fmt.Fprintf(w, "\nK = %d\n", k)
		line("", func(n string) string { return n })
		line("rate", func(string) string { return fmt.Sprintf("%6s %8s", "ok", "amp") })
		for _, rate := range cfg.FailRates {
			line(rateText(rate), func(n string) string {
				p := find(n, k, rate)
				return fmt.Sprintf("%5.1f%% %8s", 100*p.Success(), amp(p.Amplification()))
			})
		}
		line("", func(string) string { return fmt.Sprintf("%6s %6s", "p99", "max") })
		for _, rate := range cfg.FailRates {
			line(rateText(rate), func(n string) string {
				p := find(n, k, rate)
				return fmt.Sprintf("%6s %6s", dur(p.P99), dur(p.Max))
			})
		}
	}
	return nil
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
	if _, err := fmt.Fprintln(w, "strategy,tiers,fail_kind,fail_rate,top,bottom,amplification,ok,max_latency,p99_latency"); err != nil {
		return err
	}
	for _, p := range ps {
		if _, err := fmt.Fprintf(w, "%s,%d,%s,%s,%d,%d,%.6f,%d,%.6f,%.6f\n", csvField(p.Strategy), p.Tiers, p.FailKind, strconv.FormatFloat(p.FailRate, 'f', -1, 64),
			p.Hits[0], p.Hits[len(p.Hits)-1], p.Amplification(), p.OK, p.Max.Seconds(), p.P99.Seconds()); err != nil {
			return err
		}
	}
	return nil
}

// csvField quotes a field that needs it.
func csvField(s string) string {
	if strings.ContainsAny(s, ",\"\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}
