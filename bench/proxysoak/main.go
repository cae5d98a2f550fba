// Command proxysoak runs load through `heed proxy` while `heed faults
// proxy` injects resets, 429s and slow bodies between it and a backend,
// then checks that the proxy gives back what it took: file descriptors,
// goroutines and memory, measured from outside the process.
//
//	go build -o /tmp/heed ./cmd/heed
//	go run ./bench/proxysoak -heed-bin /tmp/heed -duration 5m
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	cfg := Config{}
	flag.StringVar(&cfg.HeedBin, "heed-bin", "", "the heed binary (go build -o PATH ./cmd/heed)")
	flag.DurationVar(&cfg.Duration, "duration", 5*time.Minute, "how long the load runs")
	flag.IntVar(&cfg.Workers, "workers", 32, "concurrent clients")
	flag.Float64Var(&cfg.ResetRate, "reset-rate", 0.02, "share of requests the fault proxy resets")
	flag.StringVar(&cfg.StatusRate, "status-rate", "429:0.05,503:0.02", "statuses the fault proxy answers instead, with their shares")
	flag.StringVar(&cfg.Bandwidth, "bandwidth", "2MB/s", "the fault proxy's bandwidth cap per connection (slow bodies)")
	flag.Parse()
	if cfg.HeedBin == "" {
		fmt.Fprintln(os.Stderr, "proxysoak: -heed-bin is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg.Log = os.Stderr
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxysoak:", err)
		os.Exit(1)
	}
	rep.Write(os.Stdout)
	if !rep.OK() {
		os.Exit(1)
	}
}
