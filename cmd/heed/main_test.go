package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemoSmall(t *testing.T) {
	var out, errOut bytes.Buffer
	// The burst covers every request, so nothing waits for a real second.
	err := run(context.Background(), []string{"demo", "-clients", "4", "-requests", "3", "-rate", "500", "-burst", "12"}, &out, &errOut)
	if err != nil {
		t.Fatal(err, errOut.String())
	}
	for _, want := range []string{"no retries", "naive retry loop", "heed defaults, shared client", "heed defaults, client per caller", "per ok", "vs optimal"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// With -metrics the demo serves the heed clients' metrics on loopback,
// and keeps serving them after the table until interrupted.
func TestDemoMetrics(t *testing.T) {
	var out, errOut lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "-clients", "4", "-requests", "3", "-rate", "500", "-burst", "12", "-quiet", "-metrics", "127.0.0.1:0"}, &out, &errOut)
	}()
	re := regexp.MustCompile(`serving metrics at (http://\S+/metrics)`)
	deadline := time.Now().Add(30 * time.Second)
	var url string
	for url == "" {
		if m := re.FindStringSubmatch(errOut.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no metrics address on stderr:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`heed_requests_total{key="127.0.0.1`,
		`outcome="success",strategy="shared"} 12`,
		`outcome="success",strategy="per_caller"} 12`,
		`heed_breaker_state{key="127.0.0.1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSimStormAndChain(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"sim", "storm", "-clients", "20", "-requests", "3", "-quiet"},
		{"sim", "storm", "-clients", "20", "-requests", "3", "-retry-after", "date", "-reset", "epoch", "-strategies", "heed,retry-after", "-csv", "-quiet"},
		{"sim", "chain", "-tiers", "2-4", "-requests", "5", "-quiet", "-out", dir},
		{"sim", "chain", "-tiers", "2,3", "-fail-rate", "0-1/0.5", "-fail-kind", "refused", "-deadline", "2s", "-requests", "5", "-strategies", "naive,heed", "-breaker", "default,off", "-quiet", "-out", dir},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, errOut.String())
		}
		if out.Len() == 0 {
			t.Errorf("%q printed nothing", args)
		}
	}
	for _, f := range []string{"chain.csv", "chain-amplification.svg", "chain-success-k3.svg", "chain-amplification-k2.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// The brooker model through the command: a small sweep, its files, and the
// same bytes for the same seed.
func TestSimBrooker(t *testing.T) {
	dir := t.TempDir()
	args := []string{"sim", "brooker", "-n", "1,10-30/10", "-runs", "5", "-series-n", "10", "-quiet", "-strategies", "None,Exponential,FullJitter,EqualJitter,Decorr,heed-budget"}
	var a, b, errOut bytes.Buffer
	if err := run(context.Background(), append(args, "-out", dir), &a, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	if err := run(context.Background(), args, &b, &errOut); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() || !strings.Contains(a.String(), "Work: conditional writes") {
		t.Errorf("outputs differ or lack the table:\n%s\n%s", a.String(), b.String())
	}
	for _, f := range []string{"brooker.csv", "brooker-work.svg", "brooker-time.png", "brooker-calls-FullJitter-n10.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}
