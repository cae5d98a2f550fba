package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heed-go/heed"
)

// The environment of a lab child process (the processes mode): the storm
// server's URL, the number of GETs to make one after another, and how long
// the child may take (a Go duration).
const (
	LabChildURL     = "HEED_LAB_CHILD_URL"
	LabChildGets    = "HEED_LAB_CHILD_GETS"
	LabChildTimeout = "HEED_LAB_CHILD_TIMEOUT"
	// LabChildAt, if set, is when (Unix nanoseconds) the child makes its
	// first GET; LabChildDelay, if set, delays the first GET by a Go
	// duration (after LabChildAt, or the child's start).
	LabChildAt    = "HEED_LAB_CHILD_AT"
	LabChildDelay = "HEED_LAB_CHILD_DELAY"
)

// labChildPrefix starts the line a child reports on.
const labChildPrefix = "HEEDLAB "

// LabChildReport is what a child reports: one line on stdout, "HEEDLAB "
// and the report in JSON.
type LabChildReport struct {
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
	Calls     []LabCall `json:"calls"` // with each failure's error text and every call's times
}

// RunLabChild is one caller of the processes mode, if the environment
// names a server (LabChildURL): it builds heed.New() with its defaults
// (logging off), makes the GETs one after another and writes its report
// to w. It reports false, doing nothing, when LabChildURL is not set.
func RunLabChild(w io.Writer) (bool, error) {
	url := os.Getenv(LabChildURL)
	if url == "" {
		return false, nil
	}
	n, err := strconv.Atoi(os.Getenv(LabChildGets))
	if err != nil || n < 1 {
		return true, fmt.Errorf("%s=%q: want a positive count", LabChildGets, os.Getenv(LabChildGets))
	}
	timeout, err := time.ParseDuration(os.Getenv(LabChildTimeout))
	if err != nil || timeout <= 0 {
		return true, fmt.Errorf("%s=%q: want a positive duration", LabChildTimeout, os.Getenv(LabChildTimeout))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var start time.Time
	if s := os.Getenv(LabChildAt); s != "" {
		ns, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return true, fmt.Errorf("%s=%q: want Unix nanoseconds", LabChildAt, s)
		}
		start = time.Unix(0, ns)
	}
	if s := os.Getenv(LabChildDelay); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return true, fmt.Errorf("%s=%q: want a duration", LabChildDelay, s)
		}
		start = later(start, time.Now()).Add(d)
	}
	t, err := heed.New(heed.WithLogger(nil))
	if err != nil {
		return true, err
	}
	if d := time.Until(start); d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
		}
	}
	c := &http.Client{Transport: t}
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	rep := LabChildReport{Calls: make([]LabCall, 0, n)}
	for range n {
		call := labGet(ctx, c, url)
		if call.OK {
			rep.Succeeded++
		} else {
			rep.Failed++
		}
		rep.Calls = append(rep.Calls, call)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return true, err
	}
	_, err = fmt.Fprintf(w, "%s%s\n", labChildPrefix, b)
	return true, err
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// labChildArgs is the default child command: this test binary again,
// running TestStormLabChild only.
func labChildArgs(timeout time.Duration) []string {
	return []string{os.Args[0], "-test.run=^TestStormLabChild$", "-test.count=1",
		"-test.timeout=" + (timeout + 30*time.Second).String()}
}

// capped keeps the first max bytes written to it.
type capped struct {
	b   bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// runProcesses starts a process per caller, all at once, waits for them
// all (killing those still running when ctx ends) and gathers their calls.
// It returns the calls and the processes that failed.
func runProcesses(ctx context.Context, cell LabCell, url string) ([]LabCall, []string, error) {
	timeout := cell.timeout()
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	argv := cell.ChildCommand
	if argv == nil {
		argv = labChildArgs(timeout)
	}
	if len(argv) == 0 {
		return nil, nil, errors.New("lab: empty child command")
	}
	env := append(os.Environ(),
		LabChildURL+"="+url,
		LabChildGets+"="+strconv.Itoa(cell.Scale.PerClient),
		LabChildTimeout+"="+timeout.String())
	if cell.Barrier {
		// Time for every process to start: 50 took 70-210 ms on two cores.
		at := time.Now().Add(250*time.Millisecond + time.Duration(cell.Scale.Clients)*20*time.Millisecond)
		env = append(env, LabChildAt+"="+strconv.FormatInt(at.UnixNano(), 10))
	}

	children := make([]labChild, cell.Scale.Clients)
	for i := range children {
		c := &children[i]
		c.stdout.max, c.stderr.max = 1<<20, 2<<10
		c.cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.cmd.Env = env
		if d := labDelay(cell, i); d > 0 {
			c.cmd.Env = append(slices.Clip(env), LabChildDelay+"="+d.String())
		}
		c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
		c.cmd.WaitDelay = 5 * time.Second
		labChildAttr(c.cmd)
	}
	var wg sync.WaitGroup
	for i := range children {
		c := &children[i]
		c.start = time.Now().UnixNano()
		if c.startErr = c.cmd.Start(); c.startErr != nil {
			c.end = c.start
			continue
		}
		wg.Go(func() {
			c.wait = c.cmd.Wait()
			c.end = time.Now().UnixNano()
		})
	}
	wg.Wait()

	var (
		calls  []LabCall
		failed []string
	)
	for i := range children {
		c := &children[i]
		rep, err := c.report()
		if err == nil && len(rep.Calls) != cell.Scale.PerClient {
			err = fmt.Errorf("reported %d calls, want %d", len(rep.Calls), cell.Scale.PerClient)
		}
		if err != nil {
			msg := fmt.Sprintf("process %d: %v", i, err)
			if s := strings.TrimSpace(c.stderr.b.String()); s != "" {
				msg += "; stderr: " + strings.ReplaceAll(s, "\n", " | ")
			}
			failed = append(failed, msg)
			for range cell.Scale.PerClient {
				calls = append(calls, LabCall{Start: c.start, End: c.end, Group: "process failed", Err: msg})
			}
			continue
		}
		calls = append(calls, rep.Calls...)
	}
	return calls, failed, nil
}

// labChild is one process of the processes mode.
type labChild struct {
	cmd            *exec.Cmd
	stdout, stderr capped
	start, end     int64 // Unix nanoseconds: started, and waited for
	startErr, wait error
}

// report is what the child reported, or why it did not.
func (c *labChild) report() (LabChildReport, error) {
	switch {
	case c.startErr != nil:
		return LabChildReport{}, fmt.Errorf("not started: %w", c.startErr)
	case c.wait != nil:
		return LabChildReport{}, c.wait
	}
	return parseChildReport(c.stdout.b.Bytes())
}

// parseChildReport finds the report line in a child's stdout.
func parseChildReport(out []byte) (LabChildReport, error) {
	var rep LabChildReport
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), labChildPrefix); ok {
			err := json.Unmarshal([]byte(line), &rep)
			return rep, err
		}
	}
	return rep, errors.New("no report")
}
