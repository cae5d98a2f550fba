package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heed-go/heed/bench/internal/sidecar"
)

// Config is one soak.
type Config struct {
	HeedBin    string
	Duration   time.Duration
	Workers    int
	ResetRate  float64
	StatusRate string
	Bandwidth  string
	Log        io.Writer
}

// Sample is the proxy process as seen from outside.
type Sample struct {
	FDs        int
	RSSKiB     int
	Goroutines int // from its /metrics (go_goroutines); -1 if absent
}

// Report is what a soak found.
type Report struct {
	Requests  int
	Statuses  map[string]int // status codes, and "error: ..." for transport failures
	Unclear   int            // answers that were neither a status heed documents nor a clear error
	Baseline  Sample         // after start and a warm-up
	Peak      Sample         // the largest seen during the load
	After     Sample         // once the load ended and idle connections were closed
	Elapsed   time.Duration
	BodyBytes int64
}

// OK says whether the proxy gave back what it took: no more file
// descriptors or goroutines than at the baseline (a small slack for the
// runtime), memory within 1.5x of the baseline, and every request
// answered with a status or a clear error.
func (r Report) OK() bool {
	return r.After.FDs <= r.Baseline.FDs+2 &&
		(r.Baseline.Goroutines < 0 || r.After.Goroutines <= r.Baseline.Goroutines+5) &&
		float64(r.After.RSSKiB) <= 1.5*float64(r.Baseline.RSSKiB) && r.Unclear == 0
}

// Write prints the report.
func (r Report) Write(w io.Writer) {
	fmt.Fprintf(w, "%d requests in %v (%.0f/s), %d body bytes\n", r.Requests, r.Elapsed.Round(time.Second), float64(r.Requests)/r.Elapsed.Seconds(), r.BodyBytes)
	keys := make([]string, 0, len(r.Statuses))
	for k := range r.Statuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-40s %d\n", k, r.Statuses[k])
	}
	fmt.Fprintln(w, "| proxy | file descriptors | goroutines | RSS |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, s := range []struct {
		name string
		s    Sample
	}{{"baseline (after warm-up)", r.Baseline}, {"peak under load", r.Peak}, {"after the load", r.After}} {
		fmt.Fprintf(w, "| %s | %d | %d | %.1f MiB |\n", s.name, s.s.FDs, s.s.Goroutines, float64(s.s.RSSKiB)/1024)
	}
	fmt.Fprintf(w, "unclear answers: %d; gave back what it took: %v\n", r.Unclear, r.OK())
}

// Run starts a backend, the fault proxy in front of it and heed proxy in
// front of that, warms up, samples, loads for cfg.Duration, lets the
// proxy settle, and samples again.
func Run(ctx context.Context, cfg Config) (Report, error) {
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(payload)
	}), ReadHeaderTimeout: 10 * time.Second}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Report{}, err
	}
	go backend.Serve(bl)
	defer backend.Close()

	faultAddr, err := sidecar.FreeAddr()
	if err != nil {
		return Report{}, err
	}
	faults, err := sidecar.Start(ctx, cfg.HeedBin, "faults", "proxy", "-listen", faultAddr, "-upstream", "http://"+bl.Addr().String(),
		"-reset-rate", fmt.Sprint(cfg.ResetRate), "-status-rate", cfg.StatusRate, "-bandwidth", cfg.Bandwidth)
	if err != nil {
		return Report{}, fmt.Errorf("heed faults proxy: %w", err)
	}
	defer sidecar.Stop(faults)
	if err := sidecar.WaitListening(faultAddr); err != nil {
		return Report{}, fmt.Errorf("heed faults proxy: %w", err)
	}
	addr, admin, proxy, err := sidecar.StartProxy(ctx, cfg.HeedBin, "http://"+faultAddr)
	if err != nil {
		return Report{}, err
	}
	defer sidecar.Stop(proxy)

	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers}, Timeout: 2 * time.Minute}
	}
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	// Warm up: the proxy's pools, pacer and breakers reach their working
	// size, then the client's connections are closed.
	warm := client()
	load(ctx, warm, "http://"+addr, cfg.Workers, 5*time.Second, nil)
	warm.CloseIdleConnections()
	time.Sleep(2 * time.Second)
	rep := Report{Statuses: map[string]int{}}
	if rep.Baseline, err = sample(proxy.Process.Pid, admin); err != nil {
		return Report{}, err
	}
	logf("baseline: %+v; loading for %v", rep.Baseline, cfg.Duration)

	c := client()
	var mu sync.Mutex
	peak := rep.Baseline
	sampler := time.NewTicker(5 * time.Second)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-sampler.C:
				if s, err := sample(proxy.Process.Pid, admin); err == nil {
					mu.Lock()
					peak.FDs, peak.RSSKiB, peak.Goroutines = max(peak.FDs, s.FDs), max(peak.RSSKiB, s.RSSKiB), max(peak.Goroutines, s.Goroutines)
					mu.Unlock()
				}
			}
		}
	}()
	t0 := time.Now()
	load(ctx, c, "http://"+addr, cfg.Workers, cfg.Duration, &rep)
	rep.Elapsed = time.Since(t0)
	close(done)
	sampler.Stop()
	c.CloseIdleConnections()
	mu.Lock()
	rep.Peak = peak
	mu.Unlock()
	// Idle connections to the upstream close after their timeout; give
	// the proxy the time a real idle spell would.
	time.Sleep(5 * time.Second)
	if rep.After, err = sample(proxy.Process.Pid, admin); err != nil {
		return Report{}, err
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	return rep, nil
}

var payload = []byte(strings.Repeat("heed soak body ", 4096)) // 60 KiB: slow under a bandwidth cap

// load runs workers GET loops until d has passed, counting what came back
// into rep (nil: not counted).
func load(ctx context.Context, c *http.Client, base string, workers int, d time.Duration, rep *Report) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, fmt.Sprintf("%s/items/%d", base, i), nil)
				resp, err := c.Do(req)
				var key string
				var body int64
				unclear := false
				switch {
				case err != nil:
					key = "error: " + errKind(err)
				default:
					body, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					key = strconv.Itoa(resp.StatusCode)
					if err != nil {
						key += " then body error: " + errKind(err)
					}
					// A status heed documents for what it passes on or
					// answers itself: the upstream's, or 502/503/504 with
					// a reason.
					unclear = resp.StatusCode < 200 || resp.StatusCode > 599
				}
				if rep != nil {
					mu.Lock()
					rep.Requests++
					rep.Statuses[key]++
					rep.BodyBytes += body
					if unclear {
						rep.Unclear++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}

func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected EOF"
	}
	return err.Error()
}

// sample reads the proxy's file descriptors and RSS from /proc and its
// goroutines from its metrics.
func sample(pid int, admin string) (Sample, error) {
	s := Sample{Goroutines: -1}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.RSSKiB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return s, nil
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			s.Goroutines = int(f)
		}
	}
	return s, nil
}
