package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/boltstore"
	"github.com/heed-go/heed/outbox/outboxtest"
)

// newEntry returns the i-th entry (i from 1): outboxtest's, with a JSON
// body of size bytes (at least what holds the order number), due i
// milliseconds after outboxtest.T0 so the due index grows as a queue's does.
func newEntry(i, size int) *outbox.Entry {
	e := outboxtest.NewEntry(i, outboxtest.T0.Add(time.Duration(i)*time.Millisecond))
	b := fmt.Appendf(make([]byte, 0, size), `{"order":%d,"note":"`, i)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	e.Body = append(b, `"}`...)
	return e
}

// entryIndex returns the i newEntry(i) was built from, by its
// Idempotency-Key.
func entryIndex(e *outbox.Entry) (int, bool) {
	s, ok := strings.CutPrefix(e.IdempotencyKey(), "key-")
	i, err := strconv.Atoi(s)
	return i, ok && err == nil
}

// A cell is one contender at one writer concurrency.
type cell struct {
	Contender     string
	Writers       int
	Entries       int64         // Adds that returned nil
	Elapsed       time.Duration // until the last writer's last Add returned
	P50, P99, Max time.Duration // of one Add
	Commits       int64
	Others        float64   // CPUs the machine's other processes kept busy meanwhile
	Steal         float64   // CPUs the hypervisor gave to other machines meanwhile
	Rounds        []float64 // with -rounds: entries/s of every run of the cell
	Err           error     // the first failure: an Add, or reading back
}

func (c cell) PerSec() float64        { return float64(c.Entries) / c.Elapsed.Seconds() }
func (c cell) CommitsPerSec() float64 { return float64(c.Commits) / c.Elapsed.Seconds() }

// runCell opens con in a new directory under dir, has writers goroutines
// add entries back to back for d, then reads every entry back and checks
// each came once. The directory is removed after.
func runCell(con contender, dir string, writers int, d time.Duration, body int) cell {
	c := cell{Contender: con.name, Writers: writers}
	sub, err := os.MkdirTemp(dir, con.name+"-")
	if err != nil {
		c.Err = err
		return c
	}
	defer os.RemoveAll(sub)
	s, err := con.open(sub)
	if err != nil {
		c.Err = err
		return c
	}
	var (
		next                 atomic.Int64
		wg                   sync.WaitGroup
		errOnce              sync.Once
		lats                 = make([][]time.Duration, writers)
		ctx                  = context.Background()
		mach0, steal0, self0 = cpuTimes()
		start                = time.Now()
		deadline             = start.Add(d)
	)
	for w := range writers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				e := newEntry(int(next.Add(1)), body)
				t := time.Now()
				if err := s.Add(ctx, e); err != nil {
					errOnce.Do(func() { c.Err = fmt.Errorf("add: %w", err) })
					return
				}
				lats[w] = append(lats[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	c.Elapsed = time.Since(start)
	mach1, steal1, self1 := cpuTimes()
	c.Others = max(float64((mach1-mach0)-(self1-self0))/float64(c.Elapsed), 0)
	c.Steal = float64(steal1-steal0) / float64(c.Elapsed)
	all := slices.Concat(lats...)
	slices.Sort(all)
	c.Entries = int64(len(all))
	if n := len(all); n > 0 {
		c.P50, c.P99, c.Max = all[n/2], all[n*99/100], all[n-1]
	}

	seen := make([]bool, next.Load()+1)
	var read int64
	var bad error
	c.Commits, err = s.Finish(func(e *outbox.Entry) {
		read++
		i, ok := entryIndex(e)
		switch {
		case !ok || i <= 0 || i >= len(seen):
			bad = fmt.Errorf("read back an entry that was not written: %q", e.IdempotencyKey())
		case seen[i]:
			bad = fmt.Errorf("read back entry %d twice", i)
		default:
			seen[i] = true
		}
	})
	switch {
	case c.Err != nil:
	case err != nil:
		c.Err = fmt.Errorf("reading back: %w", err)
	case bad != nil:
		c.Err = bad
	case read != c.Entries:
		c.Err = fmt.Errorf("%d entries added, %d read back", c.Entries, read)
	}
	return c
}

// A memPoint is the million run's state after some entries.
type memPoint struct {
	Entries               int
	HeapInuse             uint64 // after runtime.GC
	RSS, RSSAnon, RSSFile int64  // VmRSS, RssAnon, RssFile (bbolt's mmap), bytes; 0 without /proc
	FileSize              int64
	PerSec                float64 // entries/s since the previous point
	Steal                 float64 // CPUs the hypervisor gave to other machines meanwhile
}

// millionResult is what runMillion measured once the file was full.
type millionResult struct {
	Points                []memPoint
	Stats                 time.Duration // one Stats call on the full file
	Pending               int           // what it counted
	FirstClaim, LastClaim time.Duration // the first and last Claim of up to claimBatch entries
	Claimed, Deleted      int
	Delete                time.Duration // deleting the claimed entries, from the writers
	Reopen, ReopenCold    time.Duration // Open, the file in the page cache or not (0: could not drop it)
	HeapAfterReopen       uint64
	PendingAfter          int // Stats after the reopen
}

const claimBatch = 1000

// runMillion fills one boltstore with total entries from writers
// goroutines, stopping them every step entries to take a memPoint, then
// claims and deletes claim of them and times Stats, Claim and reopening.
func runMillion(dir string, total, step, writers, body, claim int, progress func(memPoint)) (millionResult, error) {
	var r millionResult
	sub, err := os.MkdirTemp(dir, "million-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(sub)
	path := filepath.Join(sub, "outbox.bolt")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return r, err
	}
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	ctx := context.Background()

	var next atomic.Int64
	for target := step; target <= total; target += step {
		var wg sync.WaitGroup
		var failed atomic.Pointer[error]
		_, steal0, _ := cpuTimes()
		start := time.Now()
		for range writers {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(target) {
						next.Add(-1)
						return
					}
					if err := s.Add(ctx, newEntry(int(i), body)); err != nil {
						failed.Store(&err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			return r, fmt.Errorf("add: %w", *err)
		}
		elapsed := time.Since(start)
		_, steal1, _ := cpuTimes()
		p := memPoint{
			Entries:   target,
			PerSec:    float64(step) / elapsed.Seconds(),
			Steal:     float64(steal1-steal0) / float64(elapsed),
			HeapInuse: heapInuse(),
		}
		p.RSS, p.RSSAnon, p.RSSFile = rss()
		if fi, err := os.Stat(path); err == nil {
			p.FileSize = fi.Size()
		}
		r.Points = append(r.Points, p)
		if progress != nil {
			progress(p)
		}
	}

	t := time.Now()
	st, err := s.Stats(ctx)
	r.Stats, r.Pending = time.Since(t), st.Pending
	if err != nil {
		return r, err
	}
	now := outboxtest.T0.Add(48 * time.Hour) // every entry is due
	var ids []string
	for len(ids) < claim {
		t := time.Now()
		es, err := s.Claim(ctx, now, min(claimBatch, claim-len(ids)))
		d := time.Since(t)
		if err != nil {
			return r, err
		}
		if len(es) == 0 {
			break
		}
		if r.FirstClaim == 0 {
			r.FirstClaim = d
		}
		r.LastClaim = d
		for _, e := range es {
			ids = append(ids, e.ID)
		}
	}
	r.Claimed = len(ids)
	t = time.Now()
	var wg sync.WaitGroup
	var deleted atomic.Int64
	var failed atomic.Pointer[error]
	for w := range writers {
		wg.Go(func() {
			for i := w; i < len(ids); i += writers {
				if err := s.Delete(ctx, ids[i]); err != nil {
					failed.Store(&err)
					return
				}
				deleted.Add(1)
			}
		})
	}
	wg.Wait()
	r.Delete, r.Deleted = time.Since(t), int(deleted.Load())
	if err := failed.Load(); err != nil {
		return r, fmt.Errorf("delete: %w", *err)
	}

	// Reopen twice: with the file in the page cache, then with it dropped
	// (a restart after the cache was reclaimed). bbolt rebuilds its free
	// list by reading every page.
	for _, cold := range []bool{false, true} {
		if err := s.Close(); err != nil {
			return r, err
		}
		dropped := cold && dropCache(path) == nil
		t = time.Now()
		if s, err = boltstore.Open(path, boltstore.Options{}); err != nil {
			return r, err
		}
		switch {
		case dropped:
			r.ReopenCold = time.Since(t)
		case !cold:
			r.Reopen = time.Since(t)
		}
	}
	r.HeapAfterReopen = heapInuse()
	if st, err = s.Stats(ctx); err != nil {
		return r, err
	}
	r.PendingAfter = st.Pending
	return r, nil
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// rss reads VmRSS, RssAnon and RssFile from /proc/self/status, in bytes;
// zeros where there is no /proc.
func rss() (total, anon, file int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, 0
	}
	for line := range bytes.Lines(b) {
		name, v, ok := strings.Cut(string(line), ":")
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			total = kib << 10
		case "RssAnon":
			anon = kib << 10
		case "RssFile":
			file = kib << 10
		}
	}
	return total, anon, file
}

// cpuTimes returns the CPU time the machine's processes and this one
// have spent busy, and the time the hypervisor gave the machine's CPUs to
// others (steal), from /proc/stat and /proc/self/stat in USER_HZ (taken
// as 100); zeros without /proc. The kernel's interrupt work, much of it
// this process's own I/O, is left out.
func cpuTimes() (machine, steal, self time.Duration) {
	ticks := func(fields ...string) (sum time.Duration) {
		for _, f := range fields {
			n, _ := strconv.ParseInt(f, 10, 64)
			sum += time.Duration(n) * 10 * time.Millisecond
		}
		return sum
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := bytes.Cut(b, []byte("\n"))
		// cpu user nice system idle iowait irq softirq steal ...
		if f := strings.Fields(string(line)); len(f) > 8 && f[0] == "cpu" {
			machine, steal = ticks(f[1:4]...), ticks(f[8])
		}
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		// pid (comm) state ... utime stime: the 14th and 15th fields
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 12 {
				self = ticks(f[11:13]...)
			}
		}
	}
	return machine, steal, self
}

// filesystem names the mount dir is on, from /proc/self/mountinfo:
// "ext4 /dev/vda on /", or an error where there is no such file.
func filesystem(dir string) (string, error) {
	abs, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	best, found := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 2 {
			continue
		}
		mnt := fields[4]
		if (abs == mnt || strings.HasPrefix(abs, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
			best, found = mnt, tail[0]+" "+tail[1]+" on "+mnt
		}
	}
	if found == "" {
		return "", errors.New("not in /proc/self/mountinfo")
	}
	return found, sc.Err()
}
