package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

var listening = regexp.MustCompile(`(fault server|fault proxy to \S+|admin API) on (http://\S+)`)

// startFaults runs "heed faults args..." until the test ends, and returns
// the URLs it printed, by what they serve.
func startFaults(t *testing.T, args ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var errOut lockedBuffer
	done := make(chan int)
	go func() { done <- runMain(ctx, append([]string{"faults"}, args...), io.Discard, &errOut) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 || !strings.Contains(errOut.String(), "stopped") {
				t.Errorf("heed faults exited %d after the interrupt:\n%s", code, errOut.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("heed faults did not stop within 10 s of the interrupt")
		}
	})
	want := 1
	if strings.Contains(strings.Join(args, " "), "-admin") {
		want = 2
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := listening.FindAllStringSubmatch(errOut.String(), -1)
		if len(m) == want {
			urls := map[string]string{}
			for _, x := range m {
				urls[strings.Fields(x[1])[0]+" "+strings.Fields(x[1])[1]] = x[2]
			}
			return urls
		}
		select {
		case code := <-done:
			t.Fatalf("heed faults exited %d:\n%s", code, errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("heed faults did not say where it listens:\n%s", errOut.String())
	return nil
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFaultsCommand(t *testing.T) {
	defer http.DefaultClient.CloseIdleConnections()
	urls := startFaults(t, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0")
	base, admin := urls["fault server"], urls["admin API"]
	if code, _ := httpGet(t, base+"/status/503?times=1"); code != 503 {
		t.Errorf("first: %d", code)
	}
	if code, _ := httpGet(t, base+"/status/503?times=1"); code != 200 {
		t.Errorf("second: %d", code)
	}
	if code, body := httpGet(t, admin+"/stats"); code != 200 || !strings.Contains(body, `"/status/503"`) {
		t.Errorf("/stats: %d %s", code, body)
	}

	// The fault proxy, in front of the fault server.
	purls := startFaults(t, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-upstream", base, "-status-rate", "429:1")
	var pbase, padmin string
	for k, v := range purls {
		if strings.HasPrefix(k, "fault proxy") {
			pbase = v
		} else {
			padmin = v
		}
	}
	if code, _ := httpGet(t, pbase+"/echo"); code != 429 {
		t.Errorf("through the proxy with 429:1: %d", code)
	}
	req, _ := http.NewRequest("PUT", padmin+"/faults", strings.NewReader(`{"status_rates":{}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, body := httpGet(t, pbase+"/echo"); code != 200 || !strings.Contains(body, `"path": "/echo"`) {
		t.Errorf("through the proxy after PUT: %d %s", code, body)
	}
}

func TestFaultsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"faults", "-h"}, 0, "Usage: heed faults [flags]"},
		{[]string{"faults", "proxy", "-h"}, 0, "Usage: heed faults proxy [flags]"},
		{[]string{"faults", "-admin", "0.0.0.0:0", "-listen", "127.0.0.1:0"}, 2, "not a loopback address"},
		{[]string{"faults", "proxy"}, 2, "-upstream is required"},
		{[]string{"faults", "proxy", "-upstream", "ftp://x"}, 2, "want http://"},
		{[]string{"faults", "proxy", "-upstream", "http://127.0.0.1:1", "-status-rate", "503"}, 2, "-status-rate"},
		{[]string{"faults", "proxy", "-upstream", "http://127.0.0.1:1", "-status-rate", "503:0.8", "-reset-rate", "0.5"}, 2, "more than 1"},
		{[]string{"faults", "proxy", "-upstream", "http://127.0.0.1:1", "-bandwidth", "fast"}, 2, "-bandwidth"},
		{[]string{"-h"}, 0, "heed faults proxy [flags]"},
		{[]string{"-h"}, 0, "heed get [flags] URL"},
	} {
		var out, errOut bytes.Buffer
		code := runMain(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
			t.Errorf("%q: exit %d, want %d and %q\nstdout:\n%s\nstderr:\n%s", tc.args, code, tc.code, tc.want, out.String(), errOut.String())
		}
	}
}
