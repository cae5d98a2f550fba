package hint_test

import (
	"bufio"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heed-go/heed/hint"
)

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// hdr builds a header from key, value pairs with Header.Add, so keys are
// canonical as on a real response.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func unix(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
func unixMilli(d time.Duration) string {
	return strconv.FormatInt(now.Add(d).UnixMilli(), 10)
}

// X-RateLimit quotas, which all have this Source.
func xq(q hint.Quota) hint.Quota { q.Source = hint.SourceXRateLimit; return q }
func iq(q hint.Quota) hint.Quota { q.Source = hint.SourceIETF; return q }

func lim(n int64) hint.Quota { return hint.Quota{Limit: n, HasLimit: true} }
func rem(n int64) hint.Quota { return hint.Quota{Remaining: n, HasRemaining: true} }
func rst(d time.Duration) hint.Quota {
	return hint.Quota{Reset: d, HasReset: true}
}

// full builds a quota with limit, remaining, reset and window set.
func full(l, r int64, reset, window time.Duration, policy string) hint.Quota {
	return hint.Quota{
		Limit: l, Remaining: r, Reset: reset, Window: window, Policy: policy,
		HasLimit: true, HasRemaining: true, HasReset: true, HasWindow: true,
	}
}

func TestRateLimitX(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   hint.Quota
		ok     bool
	}{
		{"nil header", nil, hint.Quota{}, false},
		{"none", hdr("Content-Type", "text/plain"), hint.Quota{}, false},
		{"all three, delta reset",
			hdr("X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "50", "X-RateLimit-Reset", "30"),
			xq(hint.Quota{Limit: 100, Remaining: 50, Reset: 30 * time.Second, HasLimit: true, HasRemaining: true, HasReset: true}), true},
		{"only remaining", hdr("X-RateLimit-Remaining", "0"), xq(rem(0)), true},
		{"OWS", hdr("X-RateLimit-Limit", " 100\t"), xq(lim(100)), true},
		{"leading zeros", hdr("X-RateLimit-Limit", "007"), xq(lim(7)), true},
		{"policy suffix after comma", hdr("X-RateLimit-Limit", "100, 100;w=60"), xq(lim(100)), true},
		{"policy suffix after semicolon", hdr("X-RateLimit-Limit", "100;w=60"), xq(lim(100)), true},
		{"space before comma", hdr("X-RateLimit-Remaining", "5 , 9"), xq(rem(5)), true},
		{"count saturates", hdr("X-RateLimit-Limit", "99999999999999999999"), xq(lim(math.MaxInt64)), true},
		{"max int64", hdr("X-RateLimit-Limit", "9223372036854775807"), xq(lim(math.MaxInt64)), true},
		{"first field line wins", hdr("X-RateLimit-Remaining", "5", "X-RateLimit-Remaining", "0"), xq(rem(5)), true},
		{"negative ignored", hdr("X-RateLimit-Limit", "-1"), hint.Quota{}, false},
		{"plus ignored", hdr("X-RateLimit-Limit", "+1"), hint.Quota{}, false},
		{"decimal count ignored", hdr("X-RateLimit-Remaining", "1.5"), hint.Quota{}, false},
		{"exponent ignored", hdr("X-RateLimit-Remaining", "1e3"), hint.Quota{}, false},
		{"empty ignored", hdr("X-RateLimit-Remaining", ""), hint.Quota{}, false},
		{"leading comma ignored", hdr("X-RateLimit-Remaining", ", 5"), hint.Quota{}, false},
		{"invalid one ignored, others kept",
			hdr("X-RateLimit-Limit", "lots", "X-RateLimit-Remaining", "3"), xq(rem(3)), true},

		// Reset: epoch or delta by magnitude.
		{"reset delta", hdr("X-RateLimit-Reset", "60"), xq(rst(time.Minute)), true},
		{"reset zero", hdr("X-RateLimit-Reset", "0"), xq(rst(0)), true},
		{"reset decimal delta", hdr("X-RateLimit-Reset", "1.25"), xq(rst(1250 * time.Millisecond)), true},
		{"reset largest delta saturates", hdr("X-RateLimit-Reset", "999999999"), xq(rst(hint.MaxDelay)), true},
		{"reset epoch seconds", hdr("X-RateLimit-Reset", unix(time.Minute)), xq(rst(time.Minute)), true},
		{"reset epoch seconds decimal (Discord)",
			hdr("X-RateLimit-Reset", unix(time.Minute)+".5"), xq(rst(time.Minute + 500*time.Millisecond)), true},
		{"reset epoch milliseconds", hdr("X-RateLimit-Reset", unixMilli(time.Minute)), xq(rst(time.Minute)), true},
		{"reset epoch milliseconds with fraction",
			hdr("X-RateLimit-Reset", unixMilli(time.Minute)+".5"), xq(rst(time.Minute + 500*time.Microsecond)), true},
		{"reset epoch in the past", hdr("X-RateLimit-Reset", unix(-time.Hour)), xq(rst(0)), true},
		{"reset epoch milliseconds in the past", hdr("X-RateLimit-Reset", unixMilli(-time.Hour)), xq(rst(0)), true},
		{"reset 1e9 is an epoch (2001)", hdr("X-RateLimit-Reset", "1000000000"), xq(rst(0)), true},
		{"reset 1e12 is milliseconds (2001)", hdr("X-RateLimit-Reset", "1000000000000"), xq(rst(0)), true},
		{"reset epoch far ahead saturates", hdr("X-RateLimit-Reset", "999999999999"), xq(rst(hint.MaxDelay)), true},
		{"reset huge saturates", hdr("X-RateLimit-Reset", "99999999999999999999999"), xq(rst(hint.MaxDelay)), true},
		{"reset with suffix", hdr("X-RateLimit-Reset", "30;foo"), xq(rst(30 * time.Second)), true},
		{"reset negative ignored", hdr("X-RateLimit-Reset", "-5"), hint.Quota{}, false},
		{"reset trailing dot ignored", hdr("X-RateLimit-Reset", "5."), hint.Quota{}, false},
		{"reset leading dot ignored", hdr("X-RateLimit-Reset", ".5"), hint.Quota{}, false},
		{"reset exponent ignored", hdr("X-RateLimit-Reset", "1.7e9"), hint.Quota{}, false},
		{"reset date ignored", hdr("X-RateLimit-Reset", "Sun, 01 Jun 2025 12:01:30 GMT"), hint.Quota{}, false},

		// The X-Rate-Limit- prefix (Twitter).
		{"X-Rate-Limit prefix",
			hdr("X-Rate-Limit-Limit", "15", "X-Rate-Limit-Remaining", "14", "X-Rate-Limit-Reset", unix(15*time.Minute)),
			xq(hint.Quota{Limit: 15, Remaining: 14, Reset: 15 * time.Minute, HasLimit: true, HasRemaining: true, HasReset: true}), true},
		{"X-RateLimit preferred", hdr("X-Rate-Limit-Remaining", "1", "X-RateLimit-Remaining", "2"), xq(rem(2)), true},
		{"X-Rate-Limit when X-RateLimit unusable",
			hdr("X-RateLimit-Remaining", "many", "X-Rate-Limit-Remaining", "1"), xq(rem(1)), true},

		// Keys must be canonical, as net/http makes them.
		{"non-canonical key unseen", http.Header{"x-ratelimit-remaining": {"0"}}, hint.Quota{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := hint.RateLimit(tt.header, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("RateLimit(%v)\n got %+v, %v\nwant %+v, %v", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRateLimitIETF(t *testing.T) {
	const (
		policies = `"burst";q=100;w=60, "daily";q=1000;w=86400`
		day      = 24 * time.Hour
	)
	tests := []struct {
		name   string
		header http.Header
		want   hint.Quota
		ok     bool
	}{
		// Current drafts: RateLimit and RateLimit-Policy as Lists.
		{"current draft",
			hdr("RateLimit-Policy", policies, "RateLimit", `"burst";r=50;t=30`),
			iq(full(100, 50, 30*time.Second, time.Minute, "burst")), true},
		{"second policy",
			hdr("RateLimit-Policy", policies, "RateLimit", `"daily";r=500;t=3600`),
			iq(full(1000, 500, time.Hour, day, "daily")), true},
		{"most restrictive member: fewest remaining",
			hdr("RateLimit-Policy", policies, "RateLimit", `"burst";r=50;t=30, "daily";r=10;t=3600`),
			iq(full(1000, 10, time.Hour, day, "daily")), true},
		{"most restrictive member: tie goes to latest reset",
			hdr("RateLimit-Policy", policies, "RateLimit", `"burst";r=0;t=30, "daily";r=0;t=3600`),
			iq(full(1000, 0, time.Hour, day, "daily")), true},
		{"tie with latest reset first",
			hdr("RateLimit-Policy", policies, "RateLimit", `"daily";r=0;t=3600, "burst";r=0;t=30`),
			iq(full(1000, 0, time.Hour, day, "daily")), true},
		{"members over two field lines",
			hdr("RateLimit-Policy", `"burst";q=100;w=60`, "RateLimit-Policy", `"daily";q=1000;w=86400`,
				"RateLimit", `"burst";r=50;t=30`, "RateLimit", `"daily";r=10;t=3600`),
			iq(full(1000, 10, time.Hour, day, "daily")), true},
		{"tokens as names",
			hdr("RateLimit-Policy", `burst;q=10;w=1`, "RateLimit", `burst;r=5;t=1`),
			iq(full(10, 5, time.Second, time.Second, "burst")), true},
		{"token matches string",
			hdr("RateLimit-Policy", `"burst";q=10;w=1`, "RateLimit", `burst;r=5;t=1`),
			iq(full(10, 5, time.Second, time.Second, "burst")), true},
		{"escaped name",
			hdr("RateLimit-Policy", `"a\"b";q=10;w=1`, "RateLimit", `"a\"b";r=5;t=1`),
			iq(full(10, 5, time.Second, time.Second, `a"b`)), true},
		{"qu and pk ignored",
			hdr("RateLimit-Policy", `"default";q=100;qu="requests";w=60;pk=:cHJvamVjdC0xMjM=:`,
				"RateLimit", `"default";r=50;t=30;pk=:cHJvamVjdC0xMjM=:`),
			iq(full(100, 50, 30*time.Second, time.Minute, "default")), true},
		{"no policy field",
			hdr("RateLimit", `"burst";r=50;t=30`),
			iq(hint.Quota{Remaining: 50, Reset: 30 * time.Second, Policy: "burst", HasRemaining: true, HasReset: true}), true},
		{"no matching policy",
			hdr("RateLimit-Policy", policies, "RateLimit", `"hourly";r=50;t=30`),
			iq(hint.Quota{Remaining: 50, Reset: 30 * time.Second, Policy: "hourly", HasRemaining: true, HasReset: true}), true},
		{"no t",
			hdr("RateLimit", `"burst";r=50`),
			iq(hint.Quota{Remaining: 50, Policy: "burst", HasRemaining: true}), true},
		{"repeated parameter: last wins",
			hdr("RateLimit", `"burst";r=50;r=3`), iq(hint.Quota{Remaining: 3, Policy: "burst", HasRemaining: true}), true},
		{"member without r ignored",
			hdr("RateLimit", `"a";t=5, "b";r=7`), iq(hint.Quota{Remaining: 7, Policy: "b", HasRemaining: true}), true},
		{"member with negative r ignored",
			hdr("RateLimit", `"a";r=-1, "b";r=7`), iq(hint.Quota{Remaining: 7, Policy: "b", HasRemaining: true}), true},
		{"member with decimal r ignored",
			hdr("RateLimit", `"a";r=1.5, "b";r=7`), iq(hint.Quota{Remaining: 7, Policy: "b", HasRemaining: true}), true},
		{"member with Integer name ignored",
			hdr("RateLimit", `5;r=1, "b";r=7`), iq(hint.Quota{Remaining: 7, Policy: "b", HasRemaining: true}), true},
		{"inner list member ignored",
			hdr("RateLimit", `("a" "b");r=1, "c";r=2`), iq(hint.Quota{Remaining: 2, Policy: "c", HasRemaining: true}), true},
		{"negative t ignored",
			hdr("RateLimit", `"a";r=1;t=-5`), iq(hint.Quota{Remaining: 1, Policy: "a", HasRemaining: true}), true},
		{"largest t saturates",
			hdr("RateLimit", `"a";r=1;t=999999999999999`),
			iq(hint.Quota{Remaining: 1, Reset: hint.MaxDelay, Policy: "a", HasRemaining: true, HasReset: true}), true},
		{"zero window ignored",
			hdr("RateLimit-Policy", `"a";q=10;w=0`, "RateLimit", `"a";r=1`),
			iq(hint.Quota{Limit: 10, Remaining: 1, Policy: "a", HasLimit: true, HasRemaining: true}), true},
		{"huge window saturates",
			hdr("RateLimit-Policy", `"a";q=10;w=999999999999999`, "RateLimit", `"a";r=1;t=1`),
			iq(full(10, 1, time.Second, hint.MaxDelay, "a")), true},
		{"malformed policy field ignored",
			hdr("RateLimit-Policy", `"burst";q=100;w=60,`, "RateLimit", `"burst";r=50;t=30`),
			iq(hint.Quota{Remaining: 50, Reset: 30 * time.Second, Policy: "burst", HasRemaining: true, HasReset: true}), true},

		// The Dictionary form of the middle drafts.
		{"dictionary",
			hdr("RateLimit", "limit=100, remaining=50, reset=30"),
			iq(hint.Quota{Limit: 100, Remaining: 50, Reset: 30 * time.Second, HasLimit: true, HasRemaining: true, HasReset: true}), true},
		{"dictionary with old policy",
			hdr("RateLimit", "limit=100, remaining=50, reset=30", "RateLimit-Policy", "10;w=1, 100;w=60"),
			iq(full(100, 50, 30*time.Second, time.Minute, "")), true},
		{"dictionary repeated key: last wins",
			hdr("RateLimit", "remaining=5, remaining=3"), iq(rem(3)), true},
		{"dictionary repeated key: unusable last wins",
			hdr("RateLimit", "remaining=5, remaining=-3, limit=9"), iq(lim(9)), true},
		{"dictionary unknown keys ignored",
			hdr("RateLimit", "policy=x, remaining=5;foo=1, extra"), iq(rem(5)), true},
		{"dictionary string value ignored",
			hdr("RateLimit", `limit="100", remaining=5`), iq(rem(5)), true},

		// The separate fields of the early drafts.
		{"separate fields",
			hdr("RateLimit-Limit", "100", "RateLimit-Remaining", "50", "RateLimit-Reset", "30"),
			iq(hint.Quota{Limit: 100, Remaining: 50, Reset: 30 * time.Second, HasLimit: true, HasRemaining: true, HasReset: true}), true},
		{"separate fields with old policy",
			hdr("RateLimit-Limit", "100", "RateLimit-Remaining", "50", "RateLimit-Reset", "30", "RateLimit-Policy", "10;w=1, 100;w=60"),
			iq(full(100, 50, 30*time.Second, time.Minute, "")), true},
		{"limit carrying its policies",
			hdr("RateLimit-Limit", "10, 10;w=1, 50;w=60", "RateLimit-Remaining", "5", "RateLimit-Reset", "1"),
			iq(full(10, 5, time.Second, time.Second, "")), true},
		{"only remaining", hdr("RateLimit-Remaining", "0"), iq(rem(0)), true},
		{"malformed remaining ignored",
			hdr("RateLimit-Remaining", "five", "RateLimit-Limit", "10"), iq(lim(10)), true},
		{"16-digit remaining ignored (RFC 9651 Integers have at most 15)",
			hdr("RateLimit-Remaining", "1000000000000000", "RateLimit-Limit", "10"), iq(lim(10)), true},
		{"15-digit limit", hdr("RateLimit-Limit", "999999999999999"), iq(lim(999999999999999)), true},
		{"negative reset ignored",
			hdr("RateLimit-Reset", "-1", "RateLimit-Limit", "10"), iq(lim(10)), true},
		{"reset saturates", hdr("RateLimit-Reset", "999999999999999"), iq(rst(hint.MaxDelay)), true},

		// RateLimit-Policy alone.
		{"single current policy alone",
			hdr("RateLimit-Policy", `"default";q=100;w=60`),
			iq(hint.Quota{Limit: 100, Window: time.Minute, Policy: "default", HasLimit: true, HasWindow: true}), true},
		{"single old policy alone",
			hdr("RateLimit-Policy", `100;w=60`),
			iq(hint.Quota{Limit: 100, Window: time.Minute, HasLimit: true, HasWindow: true}), true},
		{"several policies alone are ambiguous", hdr("RateLimit-Policy", policies), hint.Quota{}, false},
		{"policy without quota alone", hdr("RateLimit-Policy", `"a";w=60`), hint.Quota{}, false},

		// Malformed Structured Fields are ignored whole.
		{"unterminated string", hdr("RateLimit", `"burst;r=50;t=30`), hint.Quota{}, false},
		{"parameter without value", hdr("RateLimit", `"burst";r=;t=30`), hint.Quota{}, false},
		{"uppercase parameter key", hdr("RateLimit", `"burst";R=50`), hint.Quota{}, false},
		{"space before semicolon", hdr("RateLimit", `"burst" ;r=50`), hint.Quota{}, false},
		{"trailing comma", hdr("RateLimit", `"burst";r=50;t=30,`), hint.Quota{}, false},
		{"empty member", hdr("RateLimit", `"a";r=1,,"b";r=2`), hint.Quota{}, false},
		{"16-digit integer", hdr("RateLimit", `"burst";r=1000000000000000`), hint.Quota{}, false},
		{"huge integer", hdr("RateLimit", `"burst";r=99999999999999999999`), hint.Quota{}, false},
		{"non-ASCII in string", hdr("RateLimit", `"bürst";r=1`), hint.Quota{}, false},
		{"bad escape", hdr("RateLimit", `"a\n";r=1`), hint.Quota{}, false},
		{"error on second line spoils the field",
			hdr("RateLimit", `"a";r=5`, "RateLimit", `"b";r=`), hint.Quota{}, false},
		{"garbage", hdr("RateLimit", "\x00\xff"), hint.Quota{}, false},

		// Precedence.
		{"IETF wins over X-RateLimit",
			hdr("RateLimit", `"a";r=5`, "X-RateLimit-Remaining", "9"),
			iq(hint.Quota{Remaining: 5, Policy: "a", HasRemaining: true}), true},
		{"current form wins over separate fields",
			hdr("RateLimit", `"a";r=5`, "RateLimit-Remaining", "9"),
			iq(hint.Quota{Remaining: 5, Policy: "a", HasRemaining: true}), true},
		{"separate fields when RateLimit unusable",
			hdr("RateLimit", `"a";t=5`, "RateLimit-Remaining", "9"), iq(rem(9)), true},
		{"X-RateLimit when IETF malformed",
			hdr("RateLimit", `"a";r=`, "X-RateLimit-Remaining", "9"), xq(rem(9)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := hint.RateLimit(tt.header, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("RateLimit(%v)\n got %+v, %v\nwant %+v, %v", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRateLimitFromResponse(t *testing.T) {
	// Field names in any case on the wire are canonicalized by net/http.
	raw := "HTTP/1.1 429 Too Many Requests\r\n" +
		"ratelimit-policy: \"burst\";q=100;w=60\r\n" +
		"RATELIMIT: \"burst\";r=0;t=30\r\n" +
		"Content-Length: 0\r\n\r\n"
	resp, err := http.ReadResponse(bufioReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	q, ok := hint.RateLimit(resp.Header, now)
	if want := iq(full(100, 0, 30*time.Second, time.Minute, "burst")); !ok || q != want {
		t.Fatalf("RateLimit = %+v, %v; want %+v", q, ok, want)
	}
	if !q.Exhausted() {
		t.Error("Exhausted() = false with no requests remaining")
	}
}

func TestExhausted(t *testing.T) {
	tests := []struct {
		q    hint.Quota
		want bool
	}{
		{hint.Quota{}, false},
		{hint.Quota{Remaining: 0, HasRemaining: true}, true},
		{hint.Quota{Remaining: 1, HasRemaining: true}, false},
		{hint.Quota{Limit: 0, HasLimit: true}, false}, // remaining unknown
	}
	for _, tt := range tests {
		if got := tt.q.Exhausted(); got != tt.want {
			t.Errorf("%+v.Exhausted() = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestSourceString(t *testing.T) {
	tests := []struct {
		s    hint.Source
		want string
	}{
		{hint.SourceNone, "none"},
		{hint.SourceIETF, "ietf"},
		{hint.SourceXRateLimit, "x-ratelimit"},
		{hint.Source(9), "Source(9)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Source(%d).String() = %q, want %q", uint8(tt.s), got, tt.want)
		}
	}
}
