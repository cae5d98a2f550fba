package storm

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints results side by side, one row per strategy.
func WriteTable(w io.Writer, sc Scenario, rs []Result) error {
	fmt.Fprintf(w, "%d clients x %d GETs against %v req/s, burst %d; optimal makespan %.2fs\n\n",
		sc.Clients, sc.PerClient, sc.Server.Rate, sc.Server.Burst, sc.Optimal().Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\tsucceeded\tfailed\tattempts\t429s\tattempts/success\tmakespan\tvs optimal\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%.2fs\t%.2fx\t\n",
			r.Name, r.Succeeded, r.Failed, r.Attempts, r.Throttled, r.AttemptsPerSuccess(), r.Makespan.Seconds(), r.OverOptimal())
	}
	return tw.Flush()
}
