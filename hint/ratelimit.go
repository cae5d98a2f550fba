package hint

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// Source says which header family a Quota came from.
type Source uint8

const (
	SourceNone Source = iota // no usable rate-limit field
	// SourceIETF is RateLimit and RateLimit-Policy
	// (draft-ietf-httpapi-ratelimit-headers), or the older drafts'
	// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset.
	SourceIETF
	// SourceXRateLimit is X-RateLimit-Limit, -Remaining and -Reset, or the
	// same with the X-Rate-Limit- prefix.
	SourceXRateLimit
)

func (s Source) String() string {
	switch s {
	case SourceNone:
		return "none"
	case SourceIETF:
		return "ietf"
	case SourceXRateLimit:
		return "x-ratelimit"
	}
	return "Source(" + strconv.Itoa(int(s)) + ")"
}

// Quota is what the server said about its rate limit on one response.
// Limit, Remaining, Reset and Window are meaningful only if their Has field
// is set; otherwise they are zero.
type Quota struct {
	Limit     int64         // requests allowed per window (valid if HasLimit)
	Remaining int64         // requests left in the current window (valid if HasRemaining)
	Reset     time.Duration // time from now until the quota is restored (valid if HasReset), in [0, MaxDelay]
	Window    time.Duration // length of the quota window (valid if HasWindow), (0, MaxDelay]
	Policy    string        // IETF policy name when known, else ""
	Source    Source

	HasLimit, HasRemaining, HasReset, HasWindow bool
}

// Exhausted reports whether the quota is known to be used up: HasRemaining
// and Remaining == 0. An unknown remaining count is not exhaustion.
func (q Quota) Exhausted() bool { return q.HasRemaining && q.Remaining == 0 }

// Canonical header keys, as net/http stores them: "RateLimit" becomes
// "Ratelimit".
const (
	keyRateLimit          = "Ratelimit"
	keyRateLimitPolicy    = "Ratelimit-Policy"
	keyRateLimitLimit     = "Ratelimit-Limit"
	keyRateLimitRemaining = "Ratelimit-Remaining"
	keyRateLimitReset     = "Ratelimit-Reset"
)

// xFamilies are the X-RateLimit-* field names, in order of preference.
var xFamilies = [...]struct{ limit, remaining, reset string }{
	{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"},
	{"X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"},
}

// RateLimit reads the rate-limit fields of h relative to now. ok is false
// when none is usable.
//
// The IETF fields win if any of them yields something usable; the quota's
// Source is then SourceIETF. Three generations of them are understood:
//
//   - RateLimit as a List, one member per policy, as "burst";r=50;t=30
//     (r remaining, t seconds to reset), with RateLimit-Policy giving each
//     policy's quota and window, as "burst";q=100;w=60. Of several
//     RateLimit members the most restrictive is reported: the fewest
//     remaining, and among those the latest reset. Limit and Window come
//     from the RateLimit-Policy member of the same name.
//   - RateLimit as a Dictionary: limit=100, remaining=50, reset=30.
//   - RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds),
//     with RateLimit-Policy as Integers with a window, as 100;w=60, whose
//     member matching the limit gives Window.
//
// A RateLimit-Policy alone counts only if it names a single policy, since
// nothing says which of several applies. Malformed Structured Fields
// (RFC 9651) are ignored, as are members with missing, negative or
// non-Integer values.
//
// Otherwise the first field line of each of X-RateLimit-Limit, -Remaining
// and -Reset is read (falling back to the X-Rate-Limit- prefix if none of
// them is usable), and the quota's Source is SourceXRateLimit. Each value
// is cut at the first ',' or ';', dropping the policies some servers
// append. Limit and Remaining must be non-negative integers. Reset may be an
// integer or a decimal, and is read by magnitude, since servers disagree on
// its unit:
//
//   - below 1e9, it is seconds from now (no real window lasts 31 years),
//     unless it lies within a day of now's own Unix time (a clock reading a
//     time before 2001, as a test's virtual clock may);
//   - from 1e9 up to 1e12, it is a Unix time in seconds (Unix time passed
//     1e9 in 2001, and 1e12 seconds is more than 30,000 years away);
//   - from 1e12 on, it is a Unix time in milliseconds.
//
// A reset time in the past gives Reset 0. Counts too large for an int64
// saturate at math.MaxInt64, and durations at MaxDelay. h must use
// canonical keys, as net/http produces (see the package documentation).
func RateLimit(h http.Header, now time.Time) (q Quota, ok bool) {
	if len(h) == 0 {
		return Quota{}, false
	}
	if q, ok = ietfQuota(h); ok {
		q.Source = SourceIETF
		return q, true
	}
	for _, k := range xFamilies {
		if q, ok = xQuota(h, now, k.limit, k.remaining, k.reset); ok {
			q.Source = SourceXRateLimit
			return q, true
		}
	}
	return Quota{}, false
}

// usable reports whether q holds anything at all.
func (q *Quota) usable() bool {
	return q.HasLimit || q.HasRemaining || q.HasReset || q.HasWindow
}

// ---- IETF fields ----

func ietfQuota(h http.Header) (q Quota, ok bool) {
	pol := h[keyRateLimitPolicy]
	if rl := h[keyRateLimit]; len(rl) > 0 {
		// The List goes first: a member named by a Token, as burst;r=5,
		// is also a valid Dictionary, while limit=5 is never a valid List.
		if q, ok = ietfList(rl, pol); ok {
			return q, true
		}
		if q, ok = ietfDict(rl, pol); ok {
			return q, true
		}
	}
	if q, ok = ietfSeparate(h, pol); ok {
		return q, true
	}
	return ietfPolicyOnly(pol)
}

// ietfList reads RateLimit in the List form of draft -08 and later.
func ietfList(rl, pol []string) (q Quota, ok bool) {
	var (
		name  sfItem
		r, t  int64
		hasT  bool
		found bool
	)
	valid := sfScan(rl, false, func(m sfMember) {
		if m.val.kind != sfString && m.val.kind != sfToken {
			return
		}
		mr, ok := m.intParam("r")
		if !ok || mr < 0 {
			return // r is required
		}
		mt, mHasT := m.intParam("t")
		if mt < 0 {
			mt, mHasT = 0, false
		}
		// Fewest remaining first, then the latest reset: the member that
		// will hold the client back longest.
		if found && (mr > r || mr == r && mt <= t) {
			return
		}
		name, r, t, hasT, found = m.val, mr, mt, mHasT, true
	})
	if !valid || !found {
		return Quota{}, false
	}
	q.Remaining, q.HasRemaining = r, true
	if hasT {
		q.Reset, q.HasReset = seconds(t), true
	}
	q.Policy = name.text()
	if m, ok := findPolicy(pol, func(m sfMember) bool {
		return (m.val.kind == sfString || m.val.kind == sfToken) && sameText(m.val, name)
	}); ok {
		q.applyPolicy(&m)
	}
	return q, true
}

// ietfDict reads RateLimit in the Dictionary form of the middle drafts.
func ietfDict(rl, pol []string) (q Quota, ok bool) {
	valid := sfScan(rl, true, func(m sfMember) {
		n, good := m.val.integer()
		if !good || n < 0 {
			n, good = 0, false
		}
		// Assigning in order makes a repeated key's last value win, as
		// RFC 9651 requires, even when that value is unusable.
		switch m.key {
		case "limit":
			q.Limit, q.HasLimit = n, good
		case "remaining":
			q.Remaining, q.HasRemaining = n, good
		case "reset":
			q.Reset, q.HasReset = seconds(n), good
		}
	})
	if !valid || !q.usable() {
		return Quota{}, false
	}
	q.windowFromPolicy(pol)
	return q, true
}

// ietfSeparate reads the RateLimit-Limit, -Remaining and -Reset fields of
// the early drafts, each of which is ignored on its own if malformed.
func ietfSeparate(h http.Header, pol []string) (q Quota, ok bool) {
	if lines := h[keyRateLimitLimit]; len(lines) > 0 {
		// The first drafts let RateLimit-Limit carry the policies after the
		// limit itself, as "100, 100;w=60": a member equal to the limit
		// gives its window.
		var (
			lim           int64
			hasLim, first = false, true
			win           time.Duration
			hasWin        bool
		)
		valid := sfScan(lines, false, func(m sfMember) {
			n, isInt := m.val.integer()
			if first {
				first = false
				lim, hasLim = n, isInt && n >= 0
			}
			if hasLim && isInt && n == lim && !hasWin {
				win, hasWin = window(&m)
			}
		})
		if valid && hasLim {
			q.Limit, q.HasLimit = lim, true
			q.Window, q.HasWindow = win, hasWin
		}
	}
	q.Remaining, q.HasRemaining = firstCount(h[keyRateLimitRemaining])
	if n, ok := firstCount(h[keyRateLimitReset]); ok {
		q.Reset, q.HasReset = seconds(n), true
	}
	if !q.usable() {
		return Quota{}, false
	}
	q.windowFromPolicy(pol)
	return q, true
}

// ietfPolicyOnly reads a RateLimit-Policy sent without any other field.
func ietfPolicyOnly(pol []string) (q Quota, ok bool) {
	n := 0
	var only sfMember
	if !sfScan(pol, false, func(m sfMember) { n, only = n+1, m }) || n != 1 {
		return Quota{}, false
	}
	q.applyPolicy(&only)
	if !q.HasLimit {
		return Quota{}, false // a window alone says nothing usable
	}
	return q, true
}

// windowFromPolicy fills q's missing Window from the RateLimit-Policy
// member whose quota equals q's limit.
func (q *Quota) windowFromPolicy(pol []string) {
	if !q.HasLimit || q.HasWindow || len(pol) == 0 {
		return
	}
	lim := q.Limit
	if m, ok := findPolicy(pol, func(m sfMember) bool {
		n, ok := policyQuota(&m)
		return ok && n == lim
	}); ok {
		q.applyPolicy(&m)
	}
}

// applyPolicy fills q's missing Limit, Window and Policy from a
// RateLimit-Policy member.
func (q *Quota) applyPolicy(m *sfMember) {
	if !q.HasLimit {
		q.Limit, q.HasLimit = policyQuota(m)
	}
	if !q.HasWindow {
		q.Window, q.HasWindow = window(m)
	}
	if q.Policy == "" && (m.val.kind == sfString || m.val.kind == sfToken) {
		q.Policy = m.val.text()
	}
}

// policyQuota returns a RateLimit-Policy member's quota: its q parameter in
// the current drafts, or its Integer value in the early ones.
func policyQuota(m *sfMember) (int64, bool) {
	n, ok := m.val.integer()
	if !ok {
		n, ok = m.intParam("q")
	}
	if !ok || n < 0 {
		return 0, false
	}
	return n, true
}

// window returns a member's w parameter, the window in seconds.
func window(m *sfMember) (time.Duration, bool) {
	w, ok := m.intParam("w")
	if !ok || w <= 0 {
		return 0, false
	}
	return seconds(w), true
}

// findPolicy returns the first RateLimit-Policy member that match accepts,
// if the field is valid. Members go by value, not pointer, so that they
// stay on the stack.
func findPolicy(pol []string, match func(sfMember) bool) (found sfMember, ok bool) {
	valid := sfScan(pol, false, func(m sfMember) {
		if !ok && match(m) {
			found, ok = m, true
		}
	})
	if !valid || !ok {
		return sfMember{}, false
	}
	return found, true
}

// firstCount returns the first member of an Integer field, if non-negative.
func firstCount(lines []string) (int64, bool) {
	var (
		n     int64
		ok    bool
		first = true
	)
	valid := sfScan(lines, false, func(m sfMember) {
		if first {
			first = false
			n, ok = m.val.integer()
		}
	})
	if !valid || !ok || n < 0 {
		return 0, false
	}
	return n, true
}

// seconds converts a count of seconds to a duration in [0, MaxDelay].
func seconds(n int64) time.Duration {
	if n > maxDelaySeconds {
		return MaxDelay
	}
	return clampDelay(time.Duration(n) * time.Second)
}

// ---- X-RateLimit fields ----

func xQuota(h http.Header, now time.Time, limit, remaining, reset string) (q Quota, ok bool) {
	if v, ok := firstLine(h, limit); ok {
		q.Limit, q.HasLimit = parseCount(v)
	}
	if v, ok := firstLine(h, remaining); ok {
		q.Remaining, q.HasRemaining = parseCount(v)
	}
	if v, ok := firstLine(h, reset); ok {
		q.Reset, q.HasReset = parseReset(v, now)
	}
	return q, q.usable()
}

func firstLine(h http.Header, key string) (string, bool) {
	if v := h[key]; len(v) > 0 {
		return v[0], true
	}
	return "", false
}

// leading returns the first element of v, before any ',' or ';', without
// surrounding whitespace.
func leading(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] == ',' || v[i] == ';' {
			v = v[:i]
			break
		}
	}
	return trimOWS(v)
}

// parseCount parses a non-negative integer count, saturating at
// math.MaxInt64.
func parseCount(v string) (int64, bool) {
	v = leading(v)
	if v == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, false
		}
		d := int64(v[i] - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
		} else {
			n = n*10 + d
		}
	}
	return n, true
}

// parseReset parses X-RateLimit-Reset, telling seconds from a Unix time in
// seconds or milliseconds by magnitude (see RateLimit).
func parseReset(v string, now time.Time) (time.Duration, bool) {
	whole, nanos, ok := parseDecimal(leading(v))
	if !ok {
		return 0, false
	}
	// A value within a day of the clock's own Unix time is that time even
	// below 1e9: a clock that reads a time before 2001 (a test's virtual
	// clock, say) still gets epoch resets right.
	const day = 24 * 60 * 60
	nowSec := now.Unix()
	switch {
	case whole < 1e9 && (whole < nowSec-day || whole > nowSec+day):
		return clampDelay(time.Duration(whole)*time.Second + time.Duration(nanos)), true
	case whole < 1e12:
		return clampDelay(time.Unix(whole, nanos).Sub(now)), true
	default:
		// A fraction here is of a millisecond; Sub saturates for the far
		// future that a huge whole part means.
		t := time.UnixMilli(whole).Add(time.Duration((nanos + 999) / 1000))
		return clampDelay(t.Sub(now)), true
	}
}
