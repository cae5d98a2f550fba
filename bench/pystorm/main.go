// Command pystorm runs the public 429 storm from Python's requests, which
// has no retry logic of its own, straight at the token-bucket API and
// through `heed proxy`, and prints the two side by side: what a program in
// any language gains from the sidecar without a line of code changed.
//
//	go build -o /tmp/heed ./cmd/heed
//	go run ./bench/pystorm -heed-bin /tmp/heed -rounds 3
//
// It needs python3 with requests (Debian's python3-requests).
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/heed-go/heed/internal/storm"
)

//go:embed client.py
var clientPy []byte

func main() {
	heedBin := flag.String("heed-bin", "", "the heed binary (go build -o PATH ./cmd/heed); empty: only the direct run")
	threads := flag.Int("threads", 50, "Python threads")
	perThread := flag.Int("requests", 10, "GETs per thread")
	rounds := flag.Int("rounds", 1, "rounds of each")
	retryAfter := flag.String("retry-after", "seconds", "the 429's Retry-After: seconds, date or none")
	noRateLimit := flag.Bool("no-ratelimit-headers", false, "send no X-RateLimit-* fields")
	flag.Parse()
	server := storm.DefaultServer
	server.NoRateLimitHeaders = *noRateLimit
	switch *retryAfter {
	case "seconds":
	case "date":
		server.RetryAfter = storm.RetryAfterDate
	case "none":
		server.RetryAfter = storm.RetryAfterNone
	default:
		fmt.Fprintf(os.Stderr, "pystorm: -retry-after %q: want seconds, date or none\n", *retryAfter)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rows, err := Run(ctx, Config{Server: server, HeedBin: *heedBin, Threads: *threads, PerThread: *perThread, Rounds: *rounds, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pystorm:", err)
		os.Exit(1)
	}
	WriteTable(os.Stdout, rows)
}
