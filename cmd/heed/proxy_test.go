package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProxyCommandLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(bad, []byte("routes:\n  - listen: 127.0.0.1:0\n    upstream: http://x\n    attempts: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"help"}, 0, "heed proxy [flags]", ""},
		{[]string{"proxy", "-h"}, 0, "-upstream URL", ""},
		{[]string{"proxy"}, 2, "", "heed proxy: give -listen and -upstream, or -config"},
		{[]string{"proxy", "-listen", "127.0.0.1:0", "-upstream", "ftp://x"}, 2, "", "-upstream: bad URL \"ftp://x\""},
		{[]string{"proxy", "-listen", "127.0.0.1:0", "-upstream", "http://x", "-admin", "0.0.0.0:9090"}, 2, "", "is not a loopback address"},
		{[]string{"proxy", "-config", bad, "-listen", "127.0.0.1:0"}, 2, "", "-listen goes with the one-route case"},
		{[]string{"proxy", "-config", bad}, 1, "", bad + ":4: routes[0].attempts: must be at least 1"},
	} {
		var out, errOut bytes.Buffer
		code := runMain(context.Background(), c.args, &out, &errOut)
		if code != c.code || !strings.Contains(out.String(), c.stdout) || !strings.Contains(errOut.String(), c.stderr) {
			t.Errorf("heed %s: exit %d, stdout %q, stderr %q", strings.Join(c.args, " "), code, out.String(), errOut.String())
		}
	}
}
