// Command outboxlab measures the outbox's enqueue path with every Add
// durable (on disk before it returns), side by side with what a user
// writes by hand, and decides between bbolt and SQLite for the embedded
// store. The contenders:
//
//   - boltstore: heed's store, bbolt behind a leader/follower group commit;
//   - heed: the whole path of a failed write, a POST through heed's
//     transport answered 503 (in memory, one attempt) and queued in a
//     boltstore by WithOutbox before the call returns ErrQueued;
//   - file: by hand, one file, each encoded entry appended with a length
//     prefix and fsynced under a mutex;
//   - sqlite: SQLite (modernc.org/sqlite, WAL, synchronous=FULL), one
//     transaction per entry;
//   - sqlite-group: SQLite behind the same group commit as boltstore, to
//     compare the two databases on equal terms.
//
// For each writer concurrency (-c) it has that many goroutines add
// entries (outboxtest.NewEntry's, with a -body bytes JSON body) back to
// back for -d, reads every entry back, and prints a markdown table:
// entries/s, p50, p99 and max of one Add, commits/s (one commit is one
// synced transaction: bbolt fdatasyncs twice per commit, SQLite's WAL
// once, and again at each checkpoint; the file once per entry), and how
// many CPUs other processes kept busy meanwhile and the hypervisor gave to
// other machines (steal): a cell that shared the CPUs is not a clean one.
// With -rounds N every cell runs N times, in turn, and the table shows
// each cell's median run beside every run's entries/s. A last line says
// which database is faster at each concurrency, marking the comparisons
// made while CPUs were taken.
//
// With -million it fills one boltstore with a million entries from 64
// writers and prints the Go heap (after a GC), the RSS and the file size
// every 100,000, then times Stats, Claim, Delete and reopening the full
// file, from the page cache and (on Linux) from the disk: does memory stay
// flat as the queue grows, and what does a restart cost?
//
//	go run ./bench/outboxlab                 # about a minute
//	go run ./bench/outboxlab -rounds 3       # three minutes, steadier on a shared machine
//	go run ./bench/outboxlab -million        # about half a minute
//	go run ./bench/outboxlab -dir /mnt/ssd -d 5s -c 1,64 -body 1024 -only boltstore,sqlite-group
//
// Files go to -dir (default a new directory under os.TempDir; the lab
// prints its filesystem, as fsync on tmpfs costs nothing) and are removed.
package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "outboxlab:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "where the files go (default a new directory under os.TempDir)")
	d := flag.Duration("d", 3*time.Second, "how long each cell's writers add entries")
	conc := flag.String("c", "1,16,64,256", "writer concurrencies, comma-separated")
	body := flag.Int("body", 40, "the JSON body's size in bytes")
	only := flag.String("only", "", "run only these contenders, comma-separated (default all)")
	rounds := flag.Int("rounds", 1, "runs of every cell, taken in turn; the table shows each cell's median run")
	million := flag.Bool("million", false, "fill a boltstore with -entries entries and print its memory as it grows, instead")
	entries := flag.Int("entries", 1_000_000, "-million: entries to add")
	step := flag.Int("step", 100_000, "-million: entries between two measurements")
	writers := flag.Int("writers", 64, "-million: writer goroutines")
	claim := flag.Int("claim", 10_000, "-million: entries to claim and delete once full")
	flag.Parse()
	levels, err := parseInts(*conc)
	if err != nil {
		return err
	}
	begin := time.Now()
	defer func() { fmt.Printf("\ntook %.1f s\n", time.Since(begin).Seconds()) }()
	base := *dir
	if base == "" {
		if base, err = os.MkdirTemp("", "outboxlab-"); err != nil {
			return err
		}
		defer os.RemoveAll(base)
	}
	fs, err := filesystem(base)
	if err != nil {
		fs = "unknown (" + err.Error() + ")"
	}
	fmt.Printf("outboxlab: %s, %s/%s, GOMAXPROCS %d, files in %s: %s; body %d bytes\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), base, fs, *body)
	if strings.HasPrefix(fs, "tmpfs") {
		fmt.Println("WARNING: tmpfs keeps nothing across a power loss and its fsync is free; use -dir on a real disk")
	}

	if *million {
		fmt.Printf("\n%d entries into one boltstore from %d writers\n\n", *entries, *writers)
		r, err := runMillion(base, *entries, *step, *writers, *body, *claim, func(p memPoint) {
			fmt.Fprintf(os.Stderr, "%d entries, %.0f/s\n", p.Entries, p.PerSec)
		})
		writeMillion(os.Stdout, r)
		return err
	}

	fmt.Printf("\n%v per cell, %d round(s), every Add synced before it returns\n\n", *d, *rounds)
	type slot struct {
		con     contender
		writers int
		runs    []cell
	}
	var slots []*slot
	for _, w := range levels {
		for _, con := range contenders {
			if *only == "" || slices.Contains(strings.Split(*only, ","), con.name) {
				slots = append(slots, &slot{con: con, writers: w})
			}
		}
	}
	// Rounds go through every cell in turn, so a stretch of load from
	// elsewhere spoils one run of several cells, not every run of one.
	for r := range *rounds {
		for _, s := range slots {
			fmt.Fprintf(os.Stderr, "round %d: %s, %d writers...\n", r+1, s.con.name, s.writers)
			s.runs = append(s.runs, runCell(s.con, base, s.writers, *d, *body))
		}
	}
	var cells []cell
	failed := 0
	for _, s := range slots {
		c := median(s.runs)
		cells = append(cells, c)
		if c.Err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "outboxlab: %s, %d writers: %v\n", c.Contender, c.Writers, c.Err)
		}
	}
	writeTable(os.Stdout, cells)
	fmt.Println()
	fmt.Println(conclude(cells))
	if failed > 0 {
		return fmt.Errorf("%d cells failed", failed)
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-c %q: want positive integers, comma-separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// median returns the run with the median entries/s (the faster of the
// two middle ones), its Rounds set to every run's entries/s; or the first
// failed run.
func median(runs []cell) cell {
	var rates []float64
	for _, c := range runs {
		if c.Err != nil {
			return c
		}
		rates = append(rates, c.PerSec())
	}
	sorted := slices.SortedFunc(slices.Values(runs), func(a, b cell) int { return cmp.Compare(a.PerSec(), b.PerSec()) })
	c := sorted[len(sorted)/2]
	c.Rounds = rates
	return c
}

func writeTable(w io.Writer, cells []cell) {
	fmt.Fprintln(w, "| writers | contender | entries/s | p50 | p99 | max | commits/s | entries/commit | CPU others / stolen | entries/s, every round |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, c := range cells {
		if c.Err != nil {
			fmt.Fprintf(w, "| %d | %s | failed: %v | | | | | | | |\n", c.Writers, c.Contender, c.Err)
			continue
		}
		var rounds []string
		for _, r := range c.Rounds {
			rounds = append(rounds, fmt.Sprintf("%.0f", r))
		}
		perCommit := 0.0
		if c.Commits > 0 {
			perCommit = float64(c.Entries) / float64(c.Commits)
		}
		fmt.Fprintf(w, "| %d | %s | %.0f | %s | %s | %s | %.0f | %.1f | %.2f / %.2f | %s |\n", c.Writers, c.Contender,
			c.PerSec(), dur(c.P50), dur(c.P99), dur(c.Max), c.CommitsPerSec(), perCommit, c.Others, c.Steal, strings.Join(rounds, ", "))
	}
}

// conclude names, at each concurrency, the faster of bbolt (boltstore)
// and SQLite's faster variant.
func conclude(cells []cell) string {
	type pair struct{ bolt, sqlite cell }
	var order []int
	by := map[int]*pair{}
	for _, c := range cells {
		p := by[c.Writers]
		if p == nil {
			p = &pair{}
			by[c.Writers] = p
			order = append(order, c.Writers)
		}
		switch {
		case c.Err != nil:
		case c.Contender == "boltstore":
			p.bolt = c
		case strings.HasPrefix(c.Contender, "sqlite") && (p.sqlite.Entries == 0 || c.PerSec() > p.sqlite.PerSec()):
			p.sqlite = c
		}
	}
	var parts []string
	for _, n := range order {
		p := by[n]
		if p.bolt.Entries == 0 || p.sqlite.Entries == 0 {
			continue
		}
		b, s := p.bolt.PerSec(), p.sqlite.PerSec()
		var part string
		switch {
		case b >= s*1.05:
			part = fmt.Sprintf("%d writers: bbolt %.2fx (%.0f vs %s %.0f/s)", n, b/s, b, p.sqlite.Contender, s)
		case s >= b*1.05:
			part = fmt.Sprintf("%d writers: SQLite %.2fx (%s %.0f vs bbolt %.0f/s)", n, s/b, p.sqlite.Contender, s, b)
		default:
			part = fmt.Sprintf("%d writers: a tie (bbolt %.0f, %s %.0f/s)", n, b, p.sqlite.Contender, s)
		}
		if taken := max(p.bolt.Others+p.bolt.Steal, p.sqlite.Others+p.sqlite.Steal); taken > 0.25 {
			part += fmt.Sprintf(" [noisy: %.2f CPUs taken]", taken)
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return "conclusion: nothing to compare"
	}
	return "conclusion, faster embedded database: " + strings.Join(parts, "; ")
}

func writeMillion(w io.Writer, r millionResult) {
	fmt.Fprintln(w, "| entries | heap in use | RSS | RSS anon | RSS file (mmap) | file | entries/s | CPU stolen |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range r.Points {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %.0f | %.2f |\n", p.Entries, mib(int64(p.HeapInuse)),
			mib(p.RSS), mib(p.RSSAnon), mib(p.RSSFile), mib(p.FileSize), p.PerSec, p.Steal)
	}
	if len(r.Points) == 0 {
		return
	}
	last := r.Points[len(r.Points)-1]
	cold := "n/a"
	if r.ReopenCold > 0 {
		cold = dur(r.ReopenCold)
	}
	fmt.Fprintf(w, "\nat %d entries: Stats %s (%d pending); Claim of %d: first %s, last %s (%d claimed); "+
		"Delete of %d from the writers %s; Open %s, with the file out of the page cache %s (heap after %s, %d pending)\n",
		last.Entries, dur(r.Stats), r.Pending, claimBatch, dur(r.FirstClaim), dur(r.LastClaim), r.Claimed,
		r.Deleted, dur(r.Delete), dur(r.Reopen), cold, mib(int64(r.HeapAfterReopen)), r.PendingAfter)
	fmt.Fprintln(w, heapVerdict(r.Points))
}

// heapVerdict says how the heap in use grew from the first point to the
// last, per entry added: flat under 1 byte; under 64 bytes, far less than
// an entry, it grows slowly (bookkeeping); more, entries stay in memory.
func heapVerdict(ps []memPoint) string {
	first, last := ps[0], ps[len(ps)-1]
	grew := int64(last.HeapInuse) - int64(first.HeapInuse)
	per := 0.0
	if n := last.Entries - first.Entries; n > 0 {
		per = float64(grew) / float64(n)
	}
	verdict := "flat"
	switch {
	case per >= 64:
		verdict = "GROWS with the queue: entries stay in memory"
	case per >= 1:
		verdict = fmt.Sprintf("grows slowly with the queue, %.1f MiB per million entries", per*1e6/(1<<20))
	}
	return fmt.Sprintf("verdict: heap in use %s at %d entries, %s at %d: %+.1f MiB (%.1f bytes per added entry): %s",
		mib(int64(first.HeapInuse)), first.Entries, mib(int64(last.HeapInuse)), last.Entries,
		float64(grew)/(1<<20), per, verdict)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
