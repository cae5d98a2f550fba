package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/heed-go/heed/cmd/heed/internal/sim/table"
)

// Help anywhere goes to stdout and exits 0; a bad command line prints its
// error once and a pointer to -h on stderr, and exits 2.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		// helpFor: the usage line expected on stdout; "" means stdout
		// stays empty.
		helpFor string
		// errLine: the one error line expected on stderr.
		errLine string
	}{
		{[]string{"-h"}, 0, "heed demo [flags]", ""},
		{[]string{"--help"}, 0, "heed demo [flags]", ""},
		{[]string{"help"}, 0, "heed demo [flags]", ""},
		{[]string{"help", "demo"}, 0, "Usage: heed demo [flags]", ""},
		{[]string{"help", "sim", "chain"}, 0, "Usage: heed sim chain [flags]", ""},
		{[]string{"demo", "-h"}, 0, "Usage: heed demo [flags]", ""},
		{[]string{"demo", "--help"}, 0, "Usage: heed demo [flags]", ""},
		{[]string{"demo", "-clients", "5", "-help"}, 0, "Usage: heed demo [flags]", ""},
		{[]string{"demo", "extra", "-h"}, 0, "Usage: heed demo [flags]", ""},
		{[]string{"demo", "-bogus", "-h"}, 0, "Usage: heed demo [flags]", ""},
		{[]string{"sim", "-h"}, 0, "Usage: heed sim MODEL [flags]", ""},
		{[]string{"sim", "--help"}, 0, "Usage: heed sim MODEL [flags]", ""},
		{[]string{"sim", "brooker", "-h"}, 0, "Usage: heed sim brooker [flags]", ""},
		{[]string{"sim", "storm", "-csv", "--help"}, 0, "Usage: heed sim storm [flags]", ""},
		{[]string{"sim", "chain", "-h"}, 0, "Usage: heed sim chain [flags]", ""},
		{[]string{"outbox", "-h"}, 0, "Usage: heed outbox COMMAND", ""},
		{[]string{"help", "outbox", "list"}, 0, "Usage: heed outbox list -db FILE", ""},
		{[]string{"outbox", "replay", "3", "-bogus", "-h"}, 0, "Usage: heed outbox replay -db FILE", ""},

		{[]string{"bogus"}, 2, "", `heed: unknown command "bogus"`},
		{[]string{"demo", "-bogus"}, 2, "", "heed demo: flag provided but not defined: -bogus"},
		{[]string{"demo", "-clients", "0"}, 2, "", "heed demo: -clients 0: want 1 to 10000"},
		{[]string{"demo", "-rate", "-3"}, 2, "", "heed demo: -rate -3: want a positive rate up to 1e6"},
		{[]string{"demo", "-rate", "NaN"}, 2, "", "heed demo: -rate NaN: want a positive rate up to 1e6"},
		{[]string{"demo", "-burst", "0"}, 2, "", "heed demo: -burst 0: want at least 1"},
		{[]string{"demo", "-requests", "x"}, 2, "", `heed demo: invalid value "x" for flag -requests: parse error`},
		{[]string{"demo", "extra"}, 2, "", `heed demo: unexpected arguments ["extra"]`},
		{[]string{"sim", "bogus"}, 2, "", `heed sim: unknown model "bogus" (want brooker, storm or chain)`},
		{[]string{"sim", "storm", "-rate", "0"}, 2, "", "heed sim storm: rate 0: want a positive rate up to 1e6 requests a second"},
		{[]string{"sim", "storm", "-clients", "-3"}, 2, "", "heed sim storm: clients -3: want 1 to 1,000,000"},
		{[]string{"sim", "storm", "-strategies", "bogus"}, 2, "", `heed sim storm: unknown storm strategy "bogus"`},
		{[]string{"sim", "storm", "-retry-after", "later"}, 2, "", `heed sim storm: -retry-after "later": want seconds, date or none`},
		{[]string{"sim", "storm", "-bucket", "-1s"}, 2, "", "heed sim storm: -bucket -1s: must not be negative"},
		{[]string{"sim", "storm", "extra"}, 2, "", `heed sim storm: unexpected arguments ["extra"]`},
		{[]string{"sim", "storm", "-nope"}, 2, "", "heed sim storm: flag provided but not defined: -nope"},
		{[]string{"sim", "chain", "-tiers", "1-3"}, 2, "", "heed sim chain: "},
		{[]string{"sim", "chain", "-tiers", "5-2"}, 2, "", "heed sim chain: -tiers: "},
		{[]string{"sim", "chain", "-tiers", "x"}, 2, "", `heed sim chain: -tiers: "x" is not a number`},
		{[]string{"sim", "chain", "-fail-rate", "1.5"}, 2, "", "heed sim chain: -fail-rate: "},
		{[]string{"sim", "chain", "-fail-rate", "0,x"}, 2, "", "heed sim chain: -fail-rate: "},
		{[]string{"sim", "chain", "-fail-rate", "0.5,1.5"}, 2, "", "heed sim chain: -fail-rate: "},
		{[]string{"sim", "chain", "-fail-rate", "0.5,0.5"}, 2, "", "heed sim chain: -fail-rate: "},
		{[]string{"sim", "chain", "-fail-rate", "1-0/0.1"}, 2, "", "heed sim chain: -fail-rate: "},
		{[]string{"sim", "chain", "-fail-rate", "0-1"}, 2, "", "heed sim chain: -fail-rate: "},
		{[]string{"sim", "chain", "-fail-rate", ""}, 2, "", "heed sim chain: -fail-rate: "},
		{[]string{"sim", "chain", "-fail-kind", "timeout"}, 2, "", "heed sim chain: -fail-kind: "},
		{[]string{"sim", "chain", "-breaker", "sometimes"}, 2, "", "heed sim chain: -breaker: "},
		{[]string{"sim", "chain", "-breaker", "off", "-strategies", "naive"}, 2, "", "heed sim chain: -breaker: "},
		{[]string{"sim", "chain", "-deadline", "-1s"}, 2, "", "heed sim chain: "},
		{[]string{"sim", "chain", "-strategies", "bogus"}, 2, "", "heed sim chain: "},
		{[]string{"sim", "brooker", "-n", "-5"}, 2, "", "heed sim brooker: -n: "},
		{[]string{"sim", "brooker", "-n", "0"}, 2, "", "heed sim brooker: "},
		{[]string{"sim", "brooker", "-runs", "0"}, 2, "", "heed sim brooker: "},
		{[]string{"sim", "brooker", "-strategies", "Quantum"}, 2, "", "heed sim brooker: "},
		{[]string{"sim", "brooker", "-series-n", "0"}, 2, "", "heed sim brooker: "},
		{[]string{"outbox", "bogus"}, 2, "", `heed outbox: unknown command "bogus"`},
		{[]string{"outbox", "stats"}, 2, "", "heed outbox stats: -db FILE is required"},
		{[]string{"outbox", "list", "-db", "x.db", "-limit", "-1"}, 2, "", "heed outbox list: -limit -1: want 1 or more"},
		{[]string{"outbox", "drop", "-db", "x.db", "-bogus"}, 2, "", "heed outbox drop: flag provided but not defined: -bogus"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runMain(context.Background(), tc.args, &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
			if tc.helpFor != "" {
				if !strings.Contains(out.String(), tc.helpFor) || errOut.Len() > 0 {
					t.Errorf("want %q on stdout and nothing on stderr\nstdout:\n%s\nstderr:\n%s", tc.helpFor, out.String(), errOut.String())
				}
				return
			}
			if out.Len() > 0 {
				t.Errorf("stdout not empty:\n%s", out.String())
			}
			lines := strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], tc.errLine) || !strings.HasPrefix(lines[1], "Run \"heed") || !strings.HasSuffix(lines[1], " -h\" for usage.") {
				t.Errorf("want the error %q and a pointer to -h, got:\n%s", tc.errLine, errOut.String())
			}
		})
	}
}

// A bare "heed" or "heed sim" prints the usage, once, on stderr and exits
// 2.
func TestNoCommand(t *testing.T) {
	for _, args := range [][]string{{}, {"sim"}, {"outbox"}} {
		var out, errOut bytes.Buffer
		if code := runMain(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if out.Len() > 0 || strings.Count(errOut.String(), "Usage:") != 1 {
			t.Errorf("%q: want the usage once on stderr, got stdout %q, stderr:\n%s", args, out.String(), errOut.String())
		}
	}
}

// A run that fails after its flags were accepted exits 1, with its error
// once and no pointer to -h.
func TestRunFailure(t *testing.T) {
	var out, errOut bytes.Buffer
	code := runMain(context.Background(), []string{"sim", "storm", "-out", "/dev/null/x"}, &out, &errOut)
	if code != 1 || strings.Count(errOut.String(), "\n") != 1 || !strings.HasPrefix(errOut.String(), "heed: -out: ") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut.String())
	}
}

// Every table the CLI prints fits in table.MaxWidth columns, however many
// strategies it compares.
func TestTablesFit(t *testing.T) {
	db := demoOutbox(t)
	for _, args := range [][]string{
		{"demo", "-clients", "4", "-requests", "3", "-rate", "500", "-burst", "12", "-quiet"},
		{"sim", "storm", "-clients", "20", "-requests", "3", "-quiet"},
		{"sim", "brooker", "-n", "10,190", "-runs", "2", "-quiet"},
		{"sim", "chain", "-tiers", "2-10", "-requests", "5", "-strategies", "one-retry,heed-no-budget,heed-no-breaker,heed", "-breaker", "all", "-quiet"},
		{"sim", "chain", "-tiers", "2-3", "-requests", "5", "-fail-rate", "0-1/0.5", "-strategies", "naive,heed", "-breaker", "all", "-quiet"},
		{"sim", "chain", "-tiers", "2-4", "-requests", "5", "-breaker", "all", "-quiet"},
		{"outbox", "list", "-db", db},
		{"outbox", "show", "-db", db, "5"},
		{"outbox", "stats", "-db", db},
	} {
		var out, errOut bytes.Buffer
		if code := runMain(context.Background(), args, &out, &errOut); code != 0 {
			t.Fatalf("%q: exit %d\n%s", args, code, errOut.String())
		}
		for i, l := range strings.Split(out.String(), "\n") {
			if n := utf8.RuneCountInString(l); n > table.MaxWidth {
				t.Errorf("%q: line %d is %d columns wide:\n%s", args, i+1, n, l)
			}
		}
	}
}
