package hint_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heed-go/heed/hint"
)

// hostileValues seed both fuzzers: every shape of value the tests worry about.
var hostileValues = []string{
	"", " ", "120", " 120\t", "0", "007", "1.5", "0.0001", "0.9999", "-1", "+5",
	"1e12", "abc", "1 20", "1.", ".5", "0x10", "1_000", "inf", "NaN", "١٢٠",
	"99999999999999999999", "99999999999999999999.99999999999", "315360000",
	"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
	"Sun Nov  6 08:49:37 1994", "Fri, 31 Dec 9999 23:59:59 GMT",
	"Sunday, 01-Jun-70 12:00:00 GMT", "Sunday, 01-Jun-25 12:01:30 PST",
	"Monday, 29-Feb-00 12:00:00 GMT", "Sun, 01 Jun 2025 12:01:30 GMT+3",
	"1748779260", "1748779260.5", "1748779260000", "1000000000", "999999999999",
	"100, 100;w=60", "100;w=60",
	`"burst";r=50;t=30`, `"burst";q=100;w=60, "daily";q=1000;w=86400`,
	`"burst";r=0;t=30, "daily";r=0;t=3600`, "limit=100, remaining=50, reset=30",
	`10, 10;w=1, 50;w=60`, `burst;r=5;t=1`, `"a\"b";r=1`, `("a" "b");r=1, "c";r=2`,
	`"burst;r=50`, `"burst";r=`, `"burst";r=50,`, `"burst";r=1000000000000000`,
	`"a";r=-1;t=-5`, `"a";r=1;t=999999999999999`, `:aGk=:;a=?1;b=@1;c=%"%c3%bc"`,
	`%"%c3"`, "\x00", "\xff\xfe",
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, v := range hostileValues {
		f.Add(v)
	}
	now := time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, value string) {
		d, err := hint.ParseRetryAfter(value, now)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v with error %v", value, d, err)
			}
			if !errors.Is(err, hint.ErrEmpty) && !errors.Is(err, hint.ErrInvalid) {
				t.Fatalf("ParseRetryAfter(%q) error %v is neither ErrEmpty nor ErrInvalid", value, err)
			}
		} else if d < 0 || d > hint.MaxDelay {
			t.Fatalf("ParseRetryAfter(%q) = %v, outside [0, MaxDelay]", value, d)
		}
		// Plain digits always parse, and agree with strconv where it can.
		v := strings.Trim(value, " \t")
		if v != "" && strings.Trim(v, "0123456789") == "" {
			if err != nil {
				t.Fatalf("ParseRetryAfter(%q) error %v for plain digits", value, err)
			}
			want := hint.MaxDelay
			if n, perr := strconv.ParseUint(v, 10, 64); perr == nil && n < uint64(hint.MaxDelay/time.Second) {
				want = time.Duration(n) * time.Second
			}
			if d != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", value, d, want)
			}
		}
		// RetryAfter agrees with ParseRetryAfter on a single line.
		rd, ok := hint.RetryAfter(http.Header{"Retry-After": {value}}, now)
		if ok != (err == nil) || rd != d {
			t.Fatalf("RetryAfter(%q) = %v, %v; ParseRetryAfter = %v, %v", value, rd, ok, d, err)
		}
	})
}

func FuzzRateLimit(f *testing.F) {
	for i, v := range hostileValues {
		w := hostileValues[(i+7)%len(hostileValues)]
		f.Add(v, w, "", "", "", v, w, v)
		f.Add(w, v, v, w, v, "", "", "")
	}
	f.Add(`"burst";r=50;t=30`, `"burst";q=100;w=60`, "", "", "", "", "", "")
	f.Add("", "", "100", "50", "30", "", "", "")
	f.Add("", "10;w=1, 100;w=60", "100", "50", "30", "", "", "")
	f.Add("", "", "", "", "", "100", "0", "1748779260.5")
	now := time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, rateLimit, policy, limit, remaining, reset, xLimit, xRemaining, xReset string) {
		h := http.Header{}
		set := func(k, v string) {
			// Split on newlines so the fuzzer can also send several field
			// lines; an empty value means the field is absent.
			if v != "" {
				h[k] = strings.Split(v, "\n")
			}
		}
		set("Ratelimit", rateLimit)
		set("Ratelimit-Policy", policy)
		set("Ratelimit-Limit", limit)
		set("Ratelimit-Remaining", remaining)
		set("Ratelimit-Reset", reset)
		set("X-Ratelimit-Limit", xLimit)
		set("X-Ratelimit-Remaining", xRemaining)
		set("X-Rate-Limit-Reset", xReset)
		q, ok := hint.RateLimit(h, now)
		checkQuota(t, q, ok)
	})
}

// checkQuota asserts the invariants every Quota from RateLimit holds.
func checkQuota(t *testing.T, q hint.Quota, ok bool) {
	t.Helper()
	has := q.HasLimit || q.HasRemaining || q.HasReset || q.HasWindow
	switch {
	case ok != has:
		t.Fatalf("ok = %v for %+v", ok, q)
	case ok != (q.Source != hint.SourceNone):
		t.Fatalf("ok = %v with source %v", ok, q.Source)
	case q.Source > hint.SourceXRateLimit:
		t.Fatalf("unknown source in %+v", q)
	case q.HasLimit && q.Limit < 0, !q.HasLimit && q.Limit != 0:
		t.Fatalf("bad Limit in %+v", q)
	case q.HasRemaining && q.Remaining < 0, !q.HasRemaining && q.Remaining != 0:
		t.Fatalf("bad Remaining in %+v", q)
	case q.HasReset && (q.Reset < 0 || q.Reset > hint.MaxDelay), !q.HasReset && q.Reset != 0:
		t.Fatalf("bad Reset in %+v", q)
	case q.HasWindow && (q.Window <= 0 || q.Window > hint.MaxDelay), !q.HasWindow && q.Window != 0:
		t.Fatalf("bad Window in %+v", q)
	case q.Policy != "" && q.Source != hint.SourceIETF:
		t.Fatalf("policy name from %v in %+v", q.Source, q)
	case q.Source == hint.SourceXRateLimit && q.HasWindow:
		t.Fatalf("window from X-RateLimit in %+v", q)
	}
}
