package hint

import (
	"strings"
	"testing"
)

// FuzzSF checks the Structured Field parser on its own: it never panics,
// the parameters it records parse again to themselves, and parsing two
// field lines equals parsing them joined with ", " (RFC 9651 §4.2), the
// line-by-line shortcut sfScan takes. Strings are left out of that last
// check: a String split across lines is rejected rather than rejoined.
func FuzzSF(f *testing.F) {
	for _, s := range []string{
		`"burst";r=50;t=30`, `"burst";q=100;w=60, "daily";q=1000;w=86400`,
		"limit=100, remaining=50, reset=30", `10, 10;w=1, 50;w=60`, `a;b;c=?0`,
		`(1 2);a=1, 3`, `a=(1 "x");y`, `:aGk=:;a=@1;b=%"%c3%bc"`, `1.5, -2, 0.001`,
		`"burst;r=50`, `a;B=1`, `1,`, `(1 2`, `%"%c3"`, "\x00",
	} {
		f.Add(s, "1;a=2")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, dict := range []bool{false, true} {
			sfScan([]string{a, b}, dict, func(m sfMember) {
				p := sfParser{s: m.params}
				if raw, ok := p.params(); !ok || raw != m.params {
					t.Fatalf("parameters %q parse again as %q, %v", m.params, raw, ok)
				}
			})
			if strings.ContainsRune(a+b, '"') || trimOWS(a) == "" || trimOWS(b) == "" {
				continue
			}
			split, okSplit := dump([]string{a, b}, dict)
			joined, okJoined := dump([]string{a + ", " + b}, dict)
			if okSplit != okJoined || okSplit && split != joined {
				t.Fatalf("lines %q, %q (dict %v) give %q, %v; joined give %q, %v",
					a, b, dict, split, okSplit, joined, okJoined)
			}
		}
	})
}
