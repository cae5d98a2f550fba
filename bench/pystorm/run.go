package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/heed-go/heed/bench/internal/sidecar"
	"github.com/heed-go/heed/internal/storm"
)

// Config is one comparison.
type Config struct {
	Server             storm.ServerConfig // the API; without Rate and Burst, storm.DefaultServer's
	HeedBin            string             // the heed binary; empty: the direct run only
	Threads, PerThread int
	Rounds             int
	Log                io.Writer // progress; nil for none
}

// Row is one run of the Python client.
type Row struct {
	Path     string // "direct" or "heed proxy"
	OK       int
	Failed   int
	Attempts int64 // requests the API answered
	Makespan time.Duration
	Optimal  time.Duration
	Statuses map[string]int
}

// AttemptsPerSuccess is the API's requests per GET that got its 200.
func (r Row) AttemptsPerSuccess() float64 {
	if r.OK == 0 {
		return 0
	}
	return float64(r.Attempts) / float64(r.OK)
}

// pyResult is what client.py prints.
type pyResult struct {
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	Statuses map[string]int `json:"statuses"`
	Makespan float64        `json:"makespan"`
}

// Run runs the Python client straight at a fresh API and, with a heed
// binary, through `heed proxy` in front of another fresh API, Rounds
// times each.
func Run(ctx context.Context, cfg Config) ([]Row, error) {
	if err := exec.CommandContext(ctx, "python3", "-c", "import requests").Run(); err != nil {
		return nil, errors.New("python3 with requests is needed (apt-get install python3-requests)")
	}
	dir, err := os.MkdirTemp("", "pystorm")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "client.py")
	if err := os.WriteFile(script, clientPy, 0o600); err != nil {
		return nil, err
	}
	server := cfg.Server
	if server.Rate == 0 && server.Burst == 0 {
		// No limit given (a zero bucket would refuse everything): the
		// public scenario's, with whatever else was set.
		server.Rate, server.Burst = storm.DefaultServer.Rate, storm.DefaultServer.Burst
	}
	sc := storm.Scenario{Server: server, Clients: cfg.Threads, PerClient: cfg.PerThread}
	var rows []Row
	for round := 0; round < max(1, cfg.Rounds); round++ {
		paths := []string{"direct"}
		if cfg.HeedBin != "" {
			paths = append(paths, "heed proxy")
		}
		for _, path := range paths {
			if cfg.Log != nil {
				fmt.Fprintf(cfg.Log, "round %d: %s\n", round+1, path)
			}
			r, err := runOnce(ctx, cfg, sc, script, path == "heed proxy")
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			r.Path = path
			rows = append(rows, r)
		}
	}
	return rows, nil
}

func runOnce(ctx context.Context, cfg Config, sc storm.Scenario, script string, viaProxy bool) (Row, error) {
	srv, err := storm.NewServer(sc.Server)
	if err != nil {
		return Row{}, err
	}
	defer srv.Close()
	url := srv.URL + "/items"
	if viaProxy {
		addr, _, proxy, err := sidecar.StartProxy(ctx, cfg.HeedBin, srv.URL)
		if err != nil {
			return Row{}, err
		}
		defer sidecar.Stop(proxy)
		url = "http://" + addr + "/items"
	}
	out, err := exec.CommandContext(ctx, "python3", script, url, fmt.Sprint(cfg.Threads), fmt.Sprint(cfg.PerThread)).Output()
	if err != nil {
		return Row{}, fmt.Errorf("python client: %w", err)
	}
	var res pyResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		return Row{}, fmt.Errorf("python client said %q: %w", out, err)
	}
	return Row{
		OK: res.OK, Failed: res.Failed, Statuses: res.Statuses,
		Attempts: srv.Served() + srv.Throttled(),
		Makespan: time.Duration(res.Makespan * float64(time.Second)),
		Optimal:  sc.Optimal(),
	}, nil
}

// WriteTable prints the rows as a Markdown table; makespan/optimal is n/a
// for a run that lost GETs.
func WriteTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| path | ok | failed | attempts | attempts/success | makespan | makespan/optimal | statuses |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		keys := make([]string, 0, len(r.Statuses))
		for k := range r.Statuses {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		st := ""
		for i, k := range keys {
			if i > 0 {
				st += ", "
			}
			st += fmt.Sprintf("%s: %d", k, r.Statuses[k])
		}
		ratio := "n/a" // giving up early is not speed
		if r.Failed == 0 {
			ratio = fmt.Sprintf("%.2fx", r.Makespan.Seconds()/r.Optimal.Seconds())
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.2f | %.2f s | %s | %s |\n", r.Path, r.OK, r.Failed, r.Attempts,
			r.AttemptsPerSuccess(), r.Makespan.Seconds(), ratio, st)
	}
}
