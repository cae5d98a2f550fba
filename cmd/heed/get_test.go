package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heed-go/heed/cmd/heed/internal/faults"
	"github.com/heed-go/heed/heedtest"
)

// faultServer starts heed faults' endpoints on loopback.
func faultServer(t *testing.T) (*faults.Server, string) {
	t.Helper()
	s := faults.NewServer(1)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); ts.Close() })
	return s, ts.URL
}

// runGet runs "heed get args..." and returns its exit status and output.
func runGet(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runMain(context.Background(), append([]string{"get"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestGetRetries503(t *testing.T) {
	s, base := faultServer(t)
	code, out, errOut := runGet(t, base+"/status/503?times=1")
	if code != 0 || out != "{\"status\":200,\"request\":2}\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and the 200's body", code, out, errOut)
	}
	if n := s.Stats.Path("/status/503").Requests; n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}
}

func TestGetVerbose(t *testing.T) {
	_, base := faultServer(t)
	code, _, errOut := runGet(t, "-v", base+"/status/503?times=1&retry-after=0")
	for _, want := range []string{"> GET ", "* attempt 1: 503 Service Unavailable", "waited", "* attempt 2: 200 OK", "< HTTP/1.1 200 OK"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("-v: no %q in stderr:\n%s", want, errOut)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestGetFail(t *testing.T) {
	_, base := faultServer(t)
	if code, out, _ := runGet(t, "-f", base+"/status/404"); code != 22 || out != "" {
		t.Errorf("-f on 404: exit %d, stdout %q; want 22 and nothing", code, out)
	}
	// Without -f a 404 is a success, body and all, as with curl.
	if code, out, _ := runGet(t, base+"/status/404"); code != 0 || !strings.Contains(out, "404") {
		t.Errorf("404 without -f: exit %d, stdout %q", code, out)
	}
}

func TestGetExitCodes(t *testing.T) {
	_, base := faultServer(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--attempts", "2", "http://" + heedtest.DeadAddr(t) + "/"}, 7},
		{[]string{"--attempts", "1", base + "/reset/before-headers"}, 56},
		{[]string{"--attempts", "1", base + "/truncated?bytes=10000"}, 18},
		{[]string{"-m", "0.2", base + "/slow-headers?delay=10s"}, 28},
		{[]string{"-m", "200ms", base + "/trickle?bytes=100&every=50ms"}, 28},
		{[]string{base + "/redirect-loop"}, 47},
		{[]string{"--attempts", "1", emptyReply(t) + "/"}, 52},
		{[]string{"--attempts", "1", heedtest.NewFaultServer(t, nil).TLSURL + "/"}, 35},
		{[]string{"ftp://example.com/"}, 3},
		{[]string{}, 2},
		{[]string{"a", "b"}, 2},
		{[]string{"-H", "nocolon", base}, 2},
		{[]string{"-d", "@/nonexistent/file", base + "/echo"}, 26},
		{[]string{"-o", "/nonexistent/dir/file", base + "/bytes/10"}, 23},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errOut := runGet(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errOut)
			}
		})
	}
}

func TestGetDataFile(t *testing.T) {
	_, base := faultServer(t)
	file := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(file, []byte("{\"a\": 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runGet(t, base+"/echo", "-d", "@"+file, "-H", "Content-Type: application/json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var e faults.Echo
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatal(err)
	}
	if e.Method != "POST" || e.Body != "{\"a\": 1}\n" || e.Header["Content-Type"][0] != "application/json" {
		t.Errorf("echoed %+v", e)
	}
	// -X and -o.
	outFile := filepath.Join(t.TempDir(), "out")
	if code, _, errOut := runGet(t, "-X", "PUT", "-d", "x", "-o", outFile, base+"/echo"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b, _ := os.ReadFile(outFile)
	if !strings.Contains(string(b), `"method": "PUT"`) {
		t.Errorf("-o file holds %s", b)
	}
}

func TestGetPostNotRepeated(t *testing.T) {
	s, base := faultServer(t)
	code, out, errOut := runGet(t, "-v", "-d", "x", base+"/status/503?times=5&key=post")
	if code != 0 || !strings.Contains(out, "503") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if n := s.Stats.Path("/status/503").Requests; n != 1 {
		t.Errorf("the POST was sent %d times, want once", n)
	}
	if !strings.Contains(errOut, "heed did not repeat the POST") {
		t.Errorf("-v does not say why the POST was not repeated:\n%s", errOut)
	}
	if code, _, _ := runGet(t, "-f", "-d", "x", base+"/status/503?times=5&key=post2"); code != 22 {
		t.Errorf("-f on the POST's 503: exit %d, want 22", code)
	}
	// With an Idempotency-Key heed may send it again.
	code, out, errOut = runGet(t, "--idempotency-key", "auto", "-d", "x", base+"/status/503?times=1&key=idem")
	if code != 0 || !strings.Contains(out, "200") {
		t.Errorf("--idempotency-key auto: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
}

func TestGetHelp(t *testing.T) {
	code, out, _ := runGet(t, "-h")
	if code != 0 || !strings.Contains(out, "Usage: heed get [flags] URL") || !strings.Contains(out, "22  -f and the final status") {
		t.Errorf("heed get -h: exit %d\n%s", code, out)
	}
}

// The progress meter follows the body as it is written.
func TestGetProgress(t *testing.T) {
	var w, shown bytes.Buffer
	now := time.Unix(0, 0)
	m := newMeterAt(&shown, "heed get", false, false, func() time.Time { now = now.Add(700 * time.Millisecond); return now })
	p := &progressWriter{w: &w, m: m, total: 4 << 20}
	for range 4 {
		p.Write(make([]byte, 1<<20))
	}
	if w.Len() != 4<<20 || !strings.Contains(shown.String(), "4194304/4194304 100.0%") {
		t.Errorf("wrote %d bytes, meter showed:\n%s", w.Len(), shown.String())
	}
	// Not on a terminal: a buffer is not one.
	if isTerminal(&shown) {
		t.Error("a buffer counts as a terminal")
	}
}

// emptyReply starts a server that reads each request's header and closes
// the connection without a word (a FIN, not a reset: the request was read).
func emptyReply(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "http://" + ln.Addr().String()
}

// "--" ends the flags: what follows is positional, even after the URL.
func TestGetDoubleDash(t *testing.T) {
	_, base := faultServer(t)
	if code, out, errOut := runGet(t, "-s", "--", base+"/status/200"); code != 0 || !strings.Contains(out, `"status":200`) {
		t.Errorf("-- URL: exit %d, %q, %q", code, out, errOut)
	}
	// After "--", "-x" is a second positional argument, not an unknown flag.
	if code, _, errOut := runGet(t, "--", base+"/status/200", "-x"); code != 2 || !strings.Contains(errOut, "one URL only") {
		t.Errorf("-- URL -x: exit %d, %q; want 2 naming two URLs", code, errOut)
	}
}
