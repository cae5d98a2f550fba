package hint

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// MaxDelay bounds every duration the package returns: longer hints saturate
// to it. Ten years is far beyond any real wait, yet leaves room to add it to
// a time or duration without overflow.
const MaxDelay = 10 * 365 * 24 * time.Hour

// maxDelaySeconds is MaxDelay in whole seconds.
const maxDelaySeconds = int64(MaxDelay / time.Second)

// Errors from [ParseRetryAfter]. The returned errors wrap one of these, so
// test with [errors.Is].
var (
	ErrEmpty   = errors.New("hint: empty Retry-After value")
	ErrInvalid = errors.New("hint: invalid Retry-After value")
)

const keyRetryAfter = "Retry-After"

// RetryAfter reads the Retry-After field of h and returns how long to wait
// from now. ok is false when the field is absent or has no usable value.
//
// Every field line is read on its own; lines that do not parse are ignored,
// and if several parse, the longest wait wins, as the most conservative
// reading of the server. A line is never split at commas, which HTTP-dates
// contain. h must use canonical keys, as net/http produces (see the package
// documentation).
func RetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	for _, v := range h[keyRetryAfter] {
		if w, err := parseRetryAfter(v, now); err == nil && (!ok || w > d) {
			d, ok = w, true
		}
	}
	return d, ok
}

// ParseRetryAfter parses one Retry-After field value relative to now.
//
// The value is delta-seconds or an HTTP-date (RFC 9110 §10.2.3), with
// optional whitespace at either end. An HTTP-date may take any of the three
// forms of RFC 9110 §5.6.7; one in the past gives 0. Though the RFC allows
// only whole seconds, decimal seconds such as "1.5" are accepted, because
// some servers send them, and rounded up to the millisecond. The result
// lies in [0, MaxDelay]: longer waits saturate.
//
// The error, if any, wraps [ErrEmpty] for an empty value and [ErrInvalid]
// for anything else it cannot read; the duration is then 0.
func ParseRetryAfter(value string, now time.Time) (time.Duration, error) {
	d, err := parseRetryAfter(value, now)
	if err == ErrInvalid {
		return 0, fmt.Errorf("%w %s", ErrInvalid, quoteClipped(value))
	}
	return d, err
}

// parseRetryAfter is ParseRetryAfter with bare sentinel errors, so that
// RetryAfter skips a bad line without allocating an error message.
func parseRetryAfter(v string, now time.Time) (time.Duration, error) {
	v = trimOWS(v)
	if v == "" {
		return 0, ErrEmpty
	}
	// No HTTP-date starts with a digit, so a digit settles the form.
	if isDigit(v[0]) {
		whole, nanos, ok := parseDecimal(v)
		if !ok {
			return 0, ErrInvalid
		}
		if whole > maxDelaySeconds {
			return MaxDelay, nil
		}
		ms := (nanos + 999_999) / 1_000_000 // round up to the millisecond
		return min(time.Duration(whole)*time.Second+time.Duration(ms)*time.Millisecond, MaxDelay), nil
	}
	t, ok := parseHTTPDate(v, now)
	if !ok {
		return 0, ErrInvalid
	}
	return clampDelay(t.Sub(now)), nil
}

// parseHTTPDate parses the three HTTP-date forms with http.ParseTime, then
// applies two rules of RFC 9110 §5.6.7 that it does not: an RFC 850 date
// must be in GMT (http.ParseTime takes any zone name there, whose meaning
// would depend on the local time zone), and its two-digit year must be read
// relative to now rather than to a fixed century.
func parseHTTPDate(v string, now time.Time) (time.Time, bool) {
	// Valid dates are 24 to 33 bytes long (a few more with the fractional
	// seconds time.Parse tolerates). Checking the length first keeps hostile
	// megabyte values away from the time parser, and short garbage away from
	// its error values, which allocate.
	if len(v) < 24 || len(v) > 64 {
		return time.Time{}, false
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}, false
	}
	// An IMF-fixdate has its comma after a three-letter day name, asctime
	// has none, and RFC 850 has it after the full day name.
	if i := strings.IndexByte(v, ','); i > 3 {
		if !strings.HasSuffix(v, " GMT") {
			return time.Time{}, false
		}
		t = rfc850Year(t, now)
	}
	return t.UTC(), true
}

// rfc850Year moves t, parsed from a two-digit year, to the latest year with
// the same last two digits that is not more than 50 years after now
// (RFC 9110 §5.6.7).
func rfc850Year(t, now time.Time) time.Time {
	t = t.UTC()
	limit := now.AddDate(50, 0, 0)
	y := now.UTC().Year() - now.UTC().Year()%100 + t.Year()%100 + 100
	for range 3 {
		c := time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
		if !c.After(limit) {
			return c
		}
		y -= 100
	}
	return t // unreachable: one of three consecutive centuries fits
}

// parseDecimal parses ASCII digits, optionally followed by "." and more
// digits, as "1470173023.123". The whole part saturates at math.MaxInt64;
// the fraction is returned in nanoseconds (of whatever unit the number is
// in), rounded up, so it lies in [0, 1e9].
func parseDecimal(s string) (whole, nanos int64, ok bool) {
	i := 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		d := int64(s[i] - '0')
		if whole > (math.MaxInt64-d)/10 {
			whole = math.MaxInt64
		} else {
			whole = whole*10 + d
		}
	}
	if i == 0 {
		return 0, 0, false
	}
	if i == len(s) {
		return whole, 0, true
	}
	if s[i] != '.' {
		return 0, 0, false
	}
	i++
	start, scale, roundUp := i, int64(100_000_000), false
	for ; i < len(s) && isDigit(s[i]); i++ {
		d := int64(s[i] - '0')
		if scale > 0 {
			nanos += d * scale
			scale /= 10
		} else if d != 0 {
			roundUp = true
		}
	}
	if i == start || i != len(s) {
		return 0, 0, false
	}
	if roundUp {
		nanos++
	}
	return whole, nanos, true
}

// clampDelay limits d to [0, MaxDelay].
func clampDelay(d time.Duration) time.Duration {
	return min(max(d, 0), MaxDelay)
}

// quoteClipped quotes v for an error message, cut short so that a hostile
// value cannot blow up logs.
func quoteClipped(v string) string {
	const n = 40
	if len(v) > n {
		return fmt.Sprintf("%q...", v[:n])
	}
	return fmt.Sprintf("%q", v)
}
