package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heed-go/heed/cmd/heed/internal/faults"
)

// curlScenarios are the faults curl and heed get meet side by side.
var curlScenarios = []struct {
	name string
	path string
	post bool
}{
	{"429 with Retry-After: 2, once", "/status/429?times=1&retry-after=2", false},
	{"503 twice, no hint", "/status/503?times=2", false},
	{"TCP reset before the header, once", "/reset/before-headers?times=1", false},
	{"POST answered 503 twice", "/status/503?times=2", true},
}

// curlRun is one command against one scenario.
type curlRun struct {
	requests int64
	exit     int
	status   string
	wall     time.Duration
}

var heedStatus = regexp.MustCompile(`(?m)^< HTTP/\S+ (\d{3})`)

// TestCurlComparison runs curl --retry 5 --retry-all-errors -o FILE and heed get
// against the same faults, each against a fault server of its own, and
// reports what the server saw, the exit status and the wall time. The
// numbers are measured, not asserted, beyond what each tool must do. Set
// HEED_CURL_TABLE to a file name to have the table written there:
//
//	HEED_CURL_TABLE=/tmp/curl.md go test ./cmd/heed -run TestCurlComparison -v
func TestCurlComparison(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the comparison waits out real Retry-After and backoff times")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not on PATH: nothing to compare heed get with")
	}
	if out, err := exec.Command(curl, "--help", "all").Output(); err != nil || !bytes.Contains(out, []byte("--retry-all-errors")) {
		t.Skip("this curl has no --retry-all-errors (curl 7.71 or later has)")
	}
	dir := t.TempDir()
	tools := []string{"curl --retry 5 --retry-all-errors", "heed get"}
	results := make([][2]curlRun, len(curlScenarios))
	var wg sync.WaitGroup
	for i, sc := range curlScenarios {
		for j := range tools {
			wg.Go(func() {
				srv := faults.NewServer(1)
				ts := httptest.NewServer(srv)
				defer func() { srv.Close(); ts.Close() }()
				url := ts.URL + sc.path
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				var r curlRun
				start := time.Now()
				if j == 0 {
					// Not -o /dev/null: curl 7.88 truncates its output
					// file before a retry and fails (exit 23) when it
					// cannot truncate /dev/null.
					args := []string{"--retry", "5", "--retry-all-errors", "-s", "-o", filepath.Join(dir, fmt.Sprint("curl", i)), "-w", "%{http_code}"}
					if sc.post {
						args = append(args, "-d", "x")
					}
					out, err := exec.CommandContext(ctx, curl, append(args, url)...).Output()
					r.status = string(out)
					if ee, ok := errors.AsType[*exec.ExitError](err); ok {
						r.exit = ee.ExitCode()
					} else if err != nil {
						r.exit = -1
					}
				} else {
					args := []string{"get", "-v", "-s", "-o", os.DevNull}
					if sc.post {
						args = append(args, "-d", "x")
					}
					var stdout, stderr bytes.Buffer
					r.exit = runMain(ctx, append(args, url), &stdout, &stderr)
					r.status = "000"
					if m := heedStatus.FindAllStringSubmatch(stderr.String(), -1); len(m) > 0 {
						r.status = m[len(m)-1][1]
					}
				}
				r.wall = time.Since(start)
				r.requests = srv.Stats.Snapshot().Requests
				results[i][j] = r
			})
		}
	}
	wg.Wait()

	var b strings.Builder
	b.WriteString("| Fault | Command | Requests the server saw | Exit | Final status | Wall time |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|\n")
	for i, sc := range curlScenarios {
		for j, tool := range tools {
			r := results[i][j]
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %.1f s |\n", sc.name, tool, r.requests, r.exit, r.status, r.wall.Seconds())
		}
	}
	t.Logf("\n%s", b.String())
	if file := os.Getenv("HEED_CURL_TABLE"); file != "" {
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	// What each must do, whatever the timings.
	for i, sc := range curlScenarios {
		h := results[i][1]
		want := int64(3)
		if sc.post {
			want = 1 // not repeated: no Idempotency-Key
		} else if !strings.Contains(sc.path, "times=2") {
			want = 2
		}
		if h.requests != want || h.exit != 0 {
			t.Errorf("%s: heed get sent %d requests and exited %d, want %d and 0", sc.name, h.requests, h.exit, want)
		}
	}
}
