package hint_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heed-go/heed/hint"
)

// now is the fixed "current time" of every test: Sunday, 1 June 2025.
var now = time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)

const (
	rfc850  = "Monday, 02-Jan-06 15:04:05 GMT"
	asctime = time.ANSIC
)

func TestParseRetryAfter(t *testing.T) {
	in90s := now.Add(90 * time.Second)
	tests := []struct {
		name  string
		value string
		want  time.Duration
		err   error // nil, hint.ErrEmpty or hint.ErrInvalid
	}{
		// delta-seconds
		{"seconds", "120", 2 * time.Minute, nil},
		{"surrounding OWS", " 120\t", 2 * time.Minute, nil},
		{"zero", "0", 0, nil},
		{"leading zeros", "0007", 7 * time.Second, nil},
		{"max seconds", "315360000", hint.MaxDelay, nil},
		{"just over max", "315360001", hint.MaxDelay, nil},
		{"huge saturates", "99999999999999999999", hint.MaxDelay, nil},
		{"thousand digits saturate", strings.Repeat("9", 1000), hint.MaxDelay, nil},
		{"huge with fraction", "99999999999999999999.5", hint.MaxDelay, nil},

		// fractional seconds, outside the RFC but sent in the wild
		{"fraction", "1.5", 1500 * time.Millisecond, nil},
		{"quarter", "0.25", 250 * time.Millisecond, nil},
		{"tiny rounds up to 1ms", "0.0001", time.Millisecond, nil},
		{"rounds up to next ms", "1.0005", 1001 * time.Millisecond, nil},
		{"rounds up to whole second", "0.9999", time.Second, nil},
		{"zero fraction", "0.000", 0, nil},
		{"long fraction", "2." + strings.Repeat("0", 100) + "1", 2*time.Second + time.Millisecond, nil},
		{"fraction at the cap", "315359999.9999", hint.MaxDelay, nil},
		{"fraction past the cap", "315360000.5", hint.MaxDelay, nil},

		// HTTP-date
		{"IMF-fixdate", in90s.Format(http.TimeFormat), 90 * time.Second, nil},
		{"RFC 850", in90s.Format(rfc850), 90 * time.Second, nil},
		{"asctime", in90s.Format(asctime), 90 * time.Second, nil},
		{"IMF-fixdate literal", "Sun, 01 Jun 2025 12:01:30 GMT", 90 * time.Second, nil},
		{"RFC 850 literal", "Sunday, 01-Jun-25 12:01:30 GMT", 90 * time.Second, nil},
		{"asctime literal", "Sun Jun  1 12:01:30 2025", 90 * time.Second, nil},
		{"date with OWS", "\t Sun, 01 Jun 2025 12:01:30 GMT ", 90 * time.Second, nil},
		{"date now", now.Format(http.TimeFormat), 0, nil},
		{"date in the past", "Sun, 06 Nov 1994 08:49:37 GMT", 0, nil},
		{"RFC 850 in the past", "Sunday, 06-Nov-94 08:49:37 GMT", 0, nil},
		{"asctime in the past", "Sun Nov  6 08:49:37 1994", 0, nil},
		{"date 30 years ahead saturates", now.AddDate(30, 0, 0).Format(http.TimeFormat), hint.MaxDelay, nil},
		{"date 9 years ahead", now.AddDate(9, 0, 0).Format(http.TimeFormat), now.AddDate(9, 0, 0).Sub(now), nil},
		{"year 9999", "Fri, 31 Dec 9999 23:59:59 GMT", hint.MaxDelay, nil},
		{"year 0000", "Sat, 01 Jan 0000 00:00:00 GMT", 0, nil},
		// RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in
		// the past century; otherwise it is in the future.
		{"RFC 850 year 70 is 2070", "Sunday, 01-Jun-70 12:00:00 GMT", hint.MaxDelay, nil},
		{"RFC 850 year 80 is 1980", "Sunday, 01-Jun-80 12:00:00 GMT", 0, nil},
		{"RFC 850 year 26 is 2026", "Monday, 01-Jun-26 12:00:00 GMT", 365 * 24 * time.Hour, nil},

		// empty
		{"empty", "", 0, hint.ErrEmpty},
		{"only OWS", " \t ", 0, hint.ErrEmpty},

		// invalid
		{"negative", "-1", 0, hint.ErrInvalid},
		{"plus sign", "+5", 0, hint.ErrInvalid},
		{"exponent", "1e12", 0, hint.ErrInvalid},
		{"letters", "abc", 0, hint.ErrInvalid},
		{"inner space", "1 20", 0, hint.ErrInvalid},
		{"trailing dot", "1.", 0, hint.ErrInvalid},
		{"leading dot", ".5", 0, hint.ErrInvalid},
		{"two dots", "1.5.5", 0, hint.ErrInvalid},
		{"hex", "0x10", 0, hint.ErrInvalid},
		{"underscore", "1_000", 0, hint.ErrInvalid},
		{"inf", "inf", 0, hint.ErrInvalid},
		{"Infinity", "Infinity", 0, hint.ErrInvalid},
		{"NaN", "NaN", 0, hint.ErrInvalid},
		{"unit", "120s", 0, hint.ErrInvalid},
		{"comma", "120, 60", 0, hint.ErrInvalid},
		{"Arabic-Indic digits", "١٢٠", 0, hint.ErrInvalid},
		{"fullwidth digits", "１２０", 0, hint.ErrInvalid},
		{"newline", "120\n", 0, hint.ErrInvalid},
		{"NUL", "12\x00", 0, hint.ErrInvalid},
		{"non-breaking space", "\u00a0120", 0, hint.ErrInvalid},
		{"invalid UTF-8", "\xff\xfe", 0, hint.ErrInvalid},
		{"RFC 850 not GMT", "Sunday, 01-Jun-25 12:01:30 PST", 0, hint.ErrInvalid},
		{"RFC 850 GMT offset", "Sunday, 01-Jun-25 12:01:30 GMT+3", 0, hint.ErrInvalid},
		{"IMF-fixdate not GMT", "Sun, 01 Jun 2025 12:01:30 UTC", 0, hint.ErrInvalid},
		{"date without day name", "01 Jun 2025 12:01:30 GMT", 0, hint.ErrInvalid},
		{"date with extra text", "Sun, 01 Jun 2025 12:01:30 GMT x", 0, hint.ErrInvalid},
		{"ISO 8601", "2025-06-01T12:01:30Z", 0, hint.ErrInvalid},
		{"bad day", "Sun, 32 Jun 2025 12:01:30 GMT", 0, hint.ErrInvalid},
		{"long garbage", "Sun, " + strings.Repeat("x", 1<<16), 0, hint.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hint.ParseRetryAfter(tt.value, now)
			if tt.err == nil && err != nil {
				t.Fatalf("ParseRetryAfter(%q) error %v", tt.value, err)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("ParseRetryAfter(%q) error %v, want %v", tt.value, err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func TestParseRetryAfterErrorMessage(t *testing.T) {
	_, err := hint.ParseRetryAfter("soon", now)
	if got, want := err.Error(), `hint: invalid Retry-After value "soon"`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	// A hostile value is clipped, so that it cannot flood a log.
	_, err = hint.ParseRetryAfter(strings.Repeat("x", 10000), now)
	if n := len(err.Error()); n > 100 {
		t.Errorf("error message is %d bytes long", n)
	}
}

func TestRetryAfter(t *testing.T) {
	past := "Sun, 06 Nov 1994 08:49:37 GMT"
	in5m := now.Add(5 * time.Minute).Format(http.TimeFormat)
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{"nil header", nil, 0, false},
		{"absent", http.Header{"Content-Type": {"text/plain"}}, 0, false},
		{"delta", http.Header{"Retry-After": {"120"}}, 2 * time.Minute, true},
		{"zero is usable", http.Header{"Retry-After": {"0"}}, 0, true},
		{"past date is usable", http.Header{"Retry-After": {past}}, 0, true},
		{"date", http.Header{"Retry-After": {in5m}}, 5 * time.Minute, true},
		{"empty line", http.Header{"Retry-After": {""}}, 0, false},
		{"no lines", http.Header{"Retry-After": {}}, 0, false},
		{"invalid", http.Header{"Retry-After": {"soon"}}, 0, false},
		{"largest of two", http.Header{"Retry-After": {"120", "60"}}, 2 * time.Minute, true},
		{"largest of two, reversed", http.Header{"Retry-After": {"60", "120"}}, 2 * time.Minute, true},
		{"invalid line ignored", http.Header{"Retry-After": {"soon", "30"}}, 30 * time.Second, true},
		{"invalid last line ignored", http.Header{"Retry-After": {"30", "-1"}}, 30 * time.Second, true},
		{"date beats delta", http.Header{"Retry-After": {"120", in5m}}, 5 * time.Minute, true},
		{"zero and past", http.Header{"Retry-After": {"0", past}}, 0, true},
		{"not split at commas", http.Header{"Retry-After": {"120, 60"}}, 0, false},
		{"huge saturates", http.Header{"Retry-After": {"1", "99999999999999999999"}}, hint.MaxDelay, true},
		// Keys must be canonical, as net/http makes them; a key written
		// into the map by hand in another case is not seen.
		{"non-canonical key unseen", http.Header{"retry-after": {"120"}}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := hint.RetryAfter(tt.header, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("RetryAfter(%v) = %v, %v; want %v, %v", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRetryAfterCanonicalKey(t *testing.T) {
	h := http.Header{}
	h.Set("retry-after", "120") // Set canonicalizes the key
	if got, ok := hint.RetryAfter(h, now); !ok || got != 2*time.Minute {
		t.Fatalf("RetryAfter after Set = %v, %v; want 2m0s, true", got, ok)
	}
}

func TestRetryAfterFromResponse(t *testing.T) {
	// A real response header, as net/http parses it from the wire.
	raw := "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\nRETRY-AFTER: 3\r\nContent-Length: 0\r\n\r\n"
	resp, err := http.ReadResponse(bufioReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got, ok := hint.RetryAfter(resp.Header, now); !ok || got != 7*time.Second {
		t.Fatalf("RetryAfter = %v, %v; want 7s, true", got, ok)
	}
}
