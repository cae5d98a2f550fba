package hint

import (
	"fmt"
	"net/textproto"
	"strings"
	"testing"
)

// dump renders the members sfScan finds, for comparison in tests.
func dump(lines []string, dict bool) (string, bool) {
	var b strings.Builder
	ok := sfScan(lines, dict, func(m sfMember) {
		if b.Len() > 0 {
			b.WriteString(" | ")
		}
		if m.key != "" {
			b.WriteString(m.key + "=")
		}
		fmt.Fprintf(&b, "%d:%q:%d", m.val.kind, m.val.str, m.val.num)
		b.WriteString(m.params)
	})
	return b.String(), ok
}

func TestSFList(t *testing.T) {
	tests := []struct {
		in   string
		want string // members, if valid
		ok   bool
	}{
		{``, ``, true},
		{`   `, ``, true},
		{`1, 42`, `1:"":1 | 1:"":42`, true},
		{`1,42`, `1:"":1 | 1:"":42`, true},
		{"1 ,\t 42", `1:"":1 | 1:"":42`, true},
		{`1, 42,`, ``, false},
		{`1,,42`, ``, false},
		{`,1`, ``, false},
		{`1 42`, ``, false},

		// Integers and Decimals.
		{`0`, `1:"":0`, true},
		{`-0`, `1:"":0`, true},
		{`042`, `1:"":42`, true},
		{`-42`, `1:"":-42`, true},
		{`999999999999999`, `1:"":999999999999999`, true},
		{`-999999999999999`, `1:"":-999999999999999`, true},
		{`1000000000000000`, ``, false},
		{`9223372036854775808`, ``, false},
		{`1.5`, `2:"":1500`, true},
		{`-1.23`, `2:"":-1230`, true},
		{`123456789012.123`, `2:"":123456789012123`, true},
		{`1234567890123.1`, ``, false},
		{`1.1234`, ``, false},
		{`1.`, ``, false},
		{`1..4`, ``, false},
		{`1.5.4`, ``, false},
		{`-`, ``, false},
		{`-a`, ``, false},
		{`4-2`, ``, false},
		{`1e3`, ``, false},

		// Strings.
		{`"foo"`, `3:"foo":0`, true},
		{`""`, `3:"":0`, true},
		{`"a\"b\\c"`, `3:"a\\\"b\\\\c":0`, true},
		{`"foo`, ``, false},
		{`"foo\`, ``, false},
		{`"a\x"`, ``, false},
		{"\"a\tb\"", ``, false},
		{"\"caf\u00e9\"", ``, false},
		{"\"a\x7fb\"", ``, false},

		// Tokens.
		{`foo`, `4:"foo":0`, true},
		{`*foo`, `4:"*foo":0`, true},
		{`text/html`, `4:"text/html":0`, true},
		{`a:b!#$%&'*+-.^_|~`, "4:\"a:b!#$%&'*+-.^_|~\":0", true},
		{"a`b", "4:\"a`b\":0", true},
		{`a"b"`, ``, false},
		{`a(b)`, ``, false},

		// Byte Sequences, Booleans, Dates, Display Strings.
		{`:aGVsbG8=:`, `5:"aGVsbG8=":0`, true},
		{`::`, `5:"":0`, true},
		{`:aGVsbG8=`, ``, false},
		{`:aGV sbG8=:`, ``, false},
		{`?1`, `6:"":1`, true},
		{`?0`, `6:"":0`, true},
		{`?2`, ``, false},
		{`?`, ``, false},
		{`@1659578233`, `7:"":1659578233`, true},
		{`@-1`, `7:"":-1`, true},
		{`@1.5`, ``, false},
		{`@`, ``, false},
		{`%"plain"`, `8:"plain":0`, true},
		{`%"f%c3%bc%c3%bc"`, `8:"f%c3%bc%c3%bc":0`, true},
		{`%"%ef%bf%bd"`, `8:"%ef%bf%bd":0`, true},       // U+FFFD itself is valid
		{`%"%f0%9f%98%80"`, `8:"%f0%9f%98%80":0`, true}, // four bytes
		{`%"f%C3%BC"`, ``, false},                       // uppercase hex
		{`%"%c3"`, ``, false},                           // truncated rune
		{`%"%c3x%bc"`, ``, false},                       // plain byte inside a rune
		{`%"%ff"`, ``, false},                           // not UTF-8
		{`%"%c0%80"`, ``, false},                        // overlong
		{`%"%ed%a0%80"`, ``, false},                     // surrogate
		{`%"%c`, ``, false},
		{`%"abc`, ``, false},
		{`%abc`, ``, false},
		{`%`, ``, false},

		// Parameters.
		{`a;b=1;c`, `4:"a":0;b=1;c`, true},
		{`a; b=1`, `4:"a":0; b=1`, true},
		{`a ;b=1`, ``, false},
		{`a;b =1`, ``, false},
		{`a;b= 1`, ``, false},
		{`a;B=1`, ``, false},
		{`a;1b=1`, ``, false},
		{`a;*b_-.9=1`, `4:"a":0;*b_-.9=1`, true},
		{`a;b=`, ``, false},
		{`a;`, ``, false},
		{`a;b=(1)`, ``, false},
		{`a;b=?1;c="x";d=tok;e=:AA==:;f=1.5;g=@1;h=%"x"`, `4:"a":0;b=?1;c="x";d=tok;e=:AA==:;f=1.5;g=@1;h=%"x"`, true},

		// Inner Lists.
		{`(1 2);a=1, 3`, `9:"":0;a=1 | 1:"":3`, true},
		{`()`, `9:"":0`, true},
		{`( 1  "x";p=1 )`, `9:"":0`, true},
		{`(1 2`, ``, false},
		{`(1,2)`, ``, false},
		{`(1 (2))`, ``, false},
		{`(`, ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := dump([]string{tt.in}, false)
			if ok != tt.ok || ok && got != tt.want {
				t.Fatalf("sfScan(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSFDictionary(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`a=1, b=2`, `a=1:"":1 | b=1:"":2`, true},
		{`a=1,b=2`, `a=1:"":1 | b=1:"":2`, true},
		{`a, b;x=1`, `a=6:"":1 | b=6:"":1;x=1`, true},
		{`a=(1 2), b="x"`, `a=9:"":0 | b=3:"x":0`, true},
		{`a=1,`, ``, false},
		{`a=`, ``, false},
		{`A=1`, ``, false},
		{`"a"=1`, ``, false},
		{`a =1`, ``, false},
		{`a=1 b=2`, ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := dump([]string{tt.in}, true)
			if ok != tt.ok || ok && got != tt.want {
				t.Fatalf("sfScan(%q, dict) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSFLines(t *testing.T) {
	got, ok := dump([]string{"1", "", " 2 ", "3, 4"}, false)
	if want := `1:"":1 | 1:"":2 | 1:"":3 | 1:"":4`; !ok || got != want {
		t.Fatalf("sfScan over lines = %q, %v; want %q, true", got, ok, want)
	}
	if _, ok := dump([]string{"1", "2,"}, false); ok {
		t.Fatal("a malformed second line did not spoil the field")
	}
}

func TestSFParam(t *testing.T) {
	var m sfMember
	if !sfScan([]string{`x;a=1;b;a=2;c="s"`}, false, func(x sfMember) { m = x }) {
		t.Fatal("parse failed")
	}
	if v, ok := m.intParam("a"); !ok || v != 2 {
		t.Errorf("a = %d, %v; want the last, 2", v, ok)
	}
	if v, ok := m.param("b"); !ok || v.kind != sfBoolean || v.num != 1 {
		t.Errorf("b = %+v, %v; want true", v, ok)
	}
	if _, ok := m.intParam("c"); ok {
		t.Error("String c read as an Integer")
	}
	if _, ok := m.param("d"); ok {
		t.Error("absent d found")
	}
}

func TestSFText(t *testing.T) {
	var v sfItem
	sfScan([]string{`"a\"b\\c"`}, false, func(m sfMember) { v = m.val })
	if got, want := v.text(), `a"b\c`; got != want {
		t.Errorf("text() = %q, want %q", got, want)
	}
	if !sameText(v, sfItem{kind: sfToken, str: `a"b\c`}) {
		t.Error("escaped String differs from its text")
	}
}

func TestKeysCanonical(t *testing.T) {
	keys := []string{keyRetryAfter, keyRateLimit, keyRateLimitPolicy, keyRateLimitLimit,
		keyRateLimitRemaining, keyRateLimitReset}
	for _, f := range xFamilies {
		keys = append(keys, f.limit, f.remaining, f.reset)
	}
	for _, k := range keys {
		if c := textproto.CanonicalMIMEHeaderKey(k); c != k {
			t.Errorf("key %q is not canonical (%q)", k, c)
		}
	}
}

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in           string
		whole, nanos int64
		ok           bool
	}{
		{"0", 0, 0, true},
		{"12", 12, 0, true},
		{"1.5", 1, 500_000_000, true},
		{"1.000000001", 1, 1, true},
		{"1.0000000001", 1, 1, true}, // rounded up
		{"1.0000000000", 1, 0, true},
		{"0.9999999999", 0, 1_000_000_000, true},
		{"9223372036854775807", 9223372036854775807, 0, true},
		{"9223372036854775808", 9223372036854775807, 0, true},
		{"", 0, 0, false},
		{".5", 0, 0, false},
		{"5.", 0, 0, false},
		{"5.a", 0, 0, false},
		{"5a", 0, 0, false},
	}
	for _, tt := range tests {
		w, n, ok := parseDecimal(tt.in)
		if w != tt.whole || n != tt.nanos || ok != tt.ok {
			t.Errorf("parseDecimal(%q) = %d, %d, %v; want %d, %d, %v", tt.in, w, n, ok, tt.whole, tt.nanos, tt.ok)
		}
	}
}
