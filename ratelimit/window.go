package ratelimit

import (
	"fmt"
	"strconv"
	"time"
)

// Window is one limit: Limit requests per Per, of which up to Burst may come
// at once. It is enforced as GCRA (the token bucket kept as one time per
// key): a request is admitted when the key's bucket holds a token, the
// bucket holds at most Burst and refills one token every Per/Limit.
//
// In the IETF fields the window is the policy Name;q=Limit;w=Per. q/w is
// the sustained rate a client may keep up; the burst shows in the
// remaining count r, which is at most Burst. Like every token bucket, a
// window admits up to Burst-1 more than Limit in a span of Per (a full
// bucket spent at once, then the refill): for 100,000 a day that may be
// nearly 200,000 in the first day with a Burst of 100,000, and at most
// 100,000+Burst-1 in any span of a day.
type Window struct {
	// Name names the policy in RateLimit-Policy and RateLimit, and in the
	// problem details of a refusal. By default "default" for a limit of
	// one window; with several, after Per: "second", "minute", "hour",
	// "day", "week", else "<n>s". At most 32 printable ASCII characters,
	// without '"' and '\'.
	Name string
	// Limit is the number of requests allowed per Per, at least 1.
	Limit int64
	// Per is the window's length: a whole number of seconds (the IETF
	// fields count in seconds), from 1 s to 366 days.
	Per time.Duration
	// Burst is how many requests may come at once after a quiet spell, at
	// least 1.
	Burst int64

	interval, tolerance time.Duration // set by New; computed when zero
}

// Interval returns the window's emission interval, Per/Limit rounded up to
// the nanosecond so that the rate never exceeds the one published: the
// time one token takes to refill, and the spacing of the return slots
// promised to refused clients.
func (w Window) Interval() time.Duration {
	if w.interval > 0 {
		return w.interval
	}
	if w.Limit < 1 || w.Per < 1 {
		return 1
	}
	return max(1, (w.Per+time.Duration(w.Limit)-1)/time.Duration(w.Limit))
}

// Tolerance returns how far ahead of its schedule the window lets a key
// run: (Burst-1) intervals. GCRA admits a request at now when the key's
// theoretical arrival time is at most now+Tolerance.
func (w Window) Tolerance() time.Duration {
	if w.interval > 0 {
		return w.tolerance
	}
	return time.Duration(max(w.Burst-1, 0)) * w.Interval()
}

// maxPer bounds a window; maxTolerance bounds its burst, far below where
// nanosecond times overflow.
const (
	maxPer       = 366 * 24 * time.Hour
	maxTolerance = 10 * 366 * 24 * time.Hour
	maxNameLen   = 32
)

// check returns what is wrong with w, each problem prefixed with the
// field's name.
func (w *Window) check(field string) []string {
	var bad []string
	if w.Limit < 1 {
		bad = append(bad, fmt.Sprintf("%s.Limit: %d must be at least 1", field, w.Limit))
	}
	switch {
	case w.Per < time.Second || w.Per > maxPer:
		bad = append(bad, fmt.Sprintf("%s.Per: %v must be from 1s to 366 days", field, w.Per))
	case w.Per%time.Second != 0:
		bad = append(bad, fmt.Sprintf("%s.Per: %v must be whole seconds (RateLimit-Policy's w counts seconds)", field, w.Per))
	}
	if w.Burst < 1 {
		bad = append(bad, fmt.Sprintf("%s.Burst: %d must be at least 1", field, w.Burst))
	}
	if w.Limit >= 1 && w.Per >= time.Second && int64(w.Per) < w.Limit {
		bad = append(bad, fmt.Sprintf("%s.Limit: %d per %v is more than one a nanosecond", field, w.Limit, w.Per))
	}
	if len(bad) == 0 && float64(w.Burst-1)*float64(w.Interval()) > float64(maxTolerance) {
		bad = append(bad, fmt.Sprintf("%s.Burst: %d at %d per %v takes more than ten years to refill", field, w.Burst, w.Limit, w.Per))
	}
	if why := nameProblem(w.Name); why != "" {
		bad = append(bad, fmt.Sprintf("%s.Name: %q %s", field, w.Name, why))
	}
	return bad
}

// nameProblem says why name cannot be a policy name. Names go into the
// IETF fields as Structured Field Strings; leaving out '"' and '\' keeps
// them free of escapes, and the length bound keeps a RateLimit value in
// the fixed buffer the hot path fills.
func nameProblem(name string) string {
	if len(name) > maxNameLen {
		return fmt.Sprintf("is longer than %d characters", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return `holds a character other than printable ASCII without '"' and '\'`
		}
	}
	return ""
}

// perName names a window by its length, for default names and details.
func perName(per time.Duration) string {
	switch per {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	case 7 * 24 * time.Hour:
		return "week"
	}
	return strconv.FormatInt(int64(per/time.Second), 10) + "s"
}
