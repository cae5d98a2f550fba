package heed_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
)

var t0 = time.Date(2026, 3, 16, 15, 0, 0, 0, time.UTC)

func mustPolicy(t testing.TB, opts ...heed.Option) *heed.Policy {
	t.Helper()
	p, err := heed.NewPolicy(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func statusOutcome(n, code int, h http.Header) heed.Outcome {
	if h == nil {
		h = http.Header{}
	}
	return heed.Outcome{Attempt: n, Response: &http.Response{StatusCode: code, Header: h}, Idempotent: true, Replayable: true}
}

// TestDecisionTable walks the usual status-code table: how many attempts each status
// gets before heed stops.
func TestDecisionTable(t *testing.T) {
	p := mustPolicy(t)
	tests := []struct {
		status   int
		attempts int // attempts made before the decision is final
		reason   error
	}{
		{429, 6, heed.ErrAttemptsExhausted},
		{503, 6, heed.ErrAttemptsExhausted},
		{408, 6, heed.ErrAttemptsExhausted},
		{502, 3, heed.ErrAttemptsExhausted},
		{504, 3, heed.ErrAttemptsExhausted},
		{500, 2, heed.ErrAttemptsExhausted},
		{400, 1, heed.ErrNotRetryable},
		{401, 1, heed.ErrNotRetryable},
		{403, 1, heed.ErrNotRetryable},
		{404, 1, heed.ErrNotRetryable},
		{422, 1, heed.ErrNotRetryable},
		{501, 1, heed.ErrNotRetryable},
		{200, 1, nil},
		{304, 1, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			for n := 1; ; n++ {
				d := p.Decide(statusOutcome(n, tt.status, nil), heed.When{Now: t0, Draw: 0.5})
				if d.Retry {
					if d.Source != heed.SourceBackoff || d.Wait <= 0 {
						t.Fatalf("attempt %d: retry with wait %v from %v, want a backoff wait", n, d.Wait, d.Source)
					}
					continue
				}
				if n != tt.attempts || d.Reason != tt.reason {
					t.Fatalf("final after %d attempts with reason %v, want %d attempts and %v", n, d.Reason, tt.attempts, tt.reason)
				}
				return
			}
		})
	}
}

func TestDecisionOverrides(t *testing.T) {
	p := mustPolicy(t,
		heed.WithRetryStatus(404, 2),
		heed.WithoutRetryStatus(503),
		heed.WithRetryStatus(500, 0), // policy max instead of 2
	)
	cases := []struct {
		status, n int
		retry     bool
	}{
		{404, 1, true}, {404, 2, false}, {503, 1, false}, {500, 5, true}, {500, 6, false}, {429, 5, true},
	}
	for _, c := range cases {
		if d := p.Decide(statusOutcome(c.n, c.status, nil), heed.When{Now: t0}); d.Retry != c.retry {
			t.Errorf("status %d attempt %d: Retry = %v, want %v", c.status, c.n, d.Retry, c.retry)
		}
	}
}

func TestClassifierOverrides(t *testing.T) {
	p := mustPolicy(t, heed.WithClassifier(func(o heed.Outcome) heed.Verdict {
		switch {
		case o.Response != nil && o.Response.Header.Get("X-Busy") != "":
			return heed.VerdictRetry
		case o.Response != nil && o.Response.StatusCode == 503:
			return heed.VerdictStop
		}
		return heed.VerdictDefault
	}))
	busy := http.Header{"X-Busy": {"1"}}
	if d := p.Decide(statusOutcome(1, 200, busy), heed.When{Now: t0}); !d.Retry {
		t.Error("classifier Retry on a 200 was not retried")
	}
	if d := p.Decide(statusOutcome(1, 503, nil), heed.When{Now: t0}); d.Retry || d.Reason != heed.ErrNotRetryable {
		t.Errorf("classifier Stop on 503: %+v", d)
	}
	if d := p.Decide(statusOutcome(1, 429, nil), heed.When{Now: t0}); !d.Retry {
		t.Error("classifier Default on 429 did not fall back to the table")
	}
	// A Retry verdict vouches for a POST without a key...
	o := statusOutcome(1, 200, busy)
	o.Idempotent = false
	if d := p.Decide(o, heed.When{Now: t0}); !d.Retry {
		t.Error("classifier Retry did not override the method rule")
	}
	// ...but cannot replay a body heed could not keep.
	o.Replayable = false
	if d := p.Decide(o, heed.When{Now: t0}); d.Retry || d.Reason != heed.ErrBodyNotReplayable {
		t.Errorf("unreplayable body: %+v", d)
	}
}

func TestIdempotencyGate(t *testing.T) {
	p := mustPolicy(t)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	cases := []struct {
		name  string
		o     heed.Outcome
		retry bool
		why   error
	}{
		{"503 POST", heed.Outcome{Attempt: 1, Response: &http.Response{StatusCode: 503}, Replayable: true}, false, heed.ErrNotIdempotent},
		{"429 POST", heed.Outcome{Attempt: 1, Response: &http.Response{StatusCode: 429}, Replayable: true}, false, heed.ErrNotIdempotent},
		{"refused POST never sent", heed.Outcome{Attempt: 1, Err: refused, NotSent: true, Replayable: true}, true, nil},
		{"reset POST maybe processed", heed.Outcome{Attempt: 1, Err: reset, Replayable: true}, false, heed.ErrNotIdempotent},
		{"reset POST before headers were written", heed.Outcome{Attempt: 1, Err: reset, NotSent: true, Replayable: true}, true, nil},
		{"reset GET", heed.Outcome{Attempt: 1, Err: reset, Idempotent: true, Replayable: true}, true, nil},
		{"truncated GET", heed.Outcome{Attempt: 1, Err: io.ErrUnexpectedEOF, Idempotent: true, Replayable: true}, true, nil},
		{"truncated POST", heed.Outcome{Attempt: 1, Err: io.ErrUnexpectedEOF, Replayable: true}, false, heed.ErrNotIdempotent},
		{"503 GET body not replayable", heed.Outcome{Attempt: 1, Response: &http.Response{StatusCode: 503}, Idempotent: true}, false, heed.ErrBodyNotReplayable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(c.o, heed.When{Now: t0, Draw: 0.5})
			if d.Retry != c.retry || d.Reason != c.why {
				t.Fatalf("Retry=%v Reason=%v, want Retry=%v Reason=%v", d.Retry, d.Reason, c.retry, c.why)
			}
		})
	}
}

func TestServerHints(t *testing.T) {
	p := mustPolicy(t) // cap 60 s, base 500 ms
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	cases := []struct {
		name       string
		header     http.Header
		deadline   time.Time
		minW, maxW time.Duration
		src        heed.WaitSource
		reason     error
		retryAt    time.Time
	}{
		{"delta seconds", h("Retry-After", "3"), time.Time{}, 3 * time.Second, 5 * time.Second, heed.SourceRetryAfter, nil, t0.Add(3 * time.Second)},
		{"http date", h("Retry-After", t0.Add(7*time.Second).Format(http.TimeFormat)), time.Time{}, 7 * time.Second, 9 * time.Second, heed.SourceRetryAfter, nil, t0.Add(7 * time.Second)},
		{"date in the past", h("Retry-After", t0.Add(-time.Hour).Format(http.TimeFormat)), time.Time{}, 0, time.Second, heed.SourceRetryAfter, nil, t0},
		{"ten hours", h("Retry-After", "36000"), time.Time{}, 0, 0, 0, heed.ErrWaitTooLong, t0.Add(10 * time.Hour)},
		{"thirty years ahead", h("Retry-After", t0.AddDate(30, 0, 0).Format(http.TimeFormat)), time.Time{}, 0, 0, 0, heed.ErrWaitTooLong, time.Time{}},
		{"past the deadline", h("Retry-After", "20"), t0.Add(10 * time.Second), 0, 0, 0, heed.ErrDeadline, t0.Add(20 * time.Second)},
		{"jitter trimmed to the deadline", h("Retry-After", "5"), t0.Add(5*time.Second + time.Millisecond), 5 * time.Second, 5 * time.Second, heed.SourceRetryAfter, nil, t0.Add(5 * time.Second)},
		{"negative ignored", h("Retry-After", "-1"), time.Time{}, 0, time.Second, heed.SourceBackoff, nil, time.Time{}},
		{"exponent ignored", h("Retry-After", "1e12"), time.Time{}, 0, time.Second, heed.SourceBackoff, nil, time.Time{}},
		{"garbage ignored", h("Retry-After", "soon"), time.Time{}, 0, time.Second, heed.SourceBackoff, nil, time.Time{}},
		{"repeated lines: largest valid", h("Retry-After", "2", "Retry-After", "x", "Retry-After", "4"), time.Time{}, 4 * time.Second, 6 * time.Second, heed.SourceRetryAfter, nil, t0.Add(4 * time.Second)},
		{"odd whitespace", h("Retry-After", " \t2\t "), time.Time{}, 2 * time.Second, 4 * time.Second, heed.SourceRetryAfter, nil, t0.Add(2 * time.Second)},
		{"exhausted quota reset", h("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "6"), time.Time{}, 6 * time.Second, 8 * time.Second, heed.SourceRateLimitReset, nil, t0.Add(6 * time.Second)},
		{"quota left: backoff", h("X-RateLimit-Remaining", "5", "X-RateLimit-Reset", "6"), time.Time{}, 0, time.Second, heed.SourceBackoff, nil, time.Time{}},
		{"Retry-After before reset", h("Retry-After", "1", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "30"), time.Time{}, time.Second, 2 * time.Second, heed.SourceRetryAfter, nil, t0.Add(time.Second)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, draw := range []float64{0, 0.5, 0.999} {
				d := p.Decide(statusOutcome(1, 429, c.header), heed.When{Now: t0, Deadline: c.deadline, Draw: draw})
				if d.Reason != c.reason {
					t.Fatalf("draw %v: Reason = %v, want %v (%+v)", draw, d.Reason, c.reason, d)
				}
				if c.reason == nil && (d.Wait < c.minW || d.Wait > c.maxW || d.Source != c.src) {
					t.Fatalf("draw %v: wait %v from %v, want [%v, %v] from %v", draw, d.Wait, d.Source, c.minW, c.maxW, c.src)
				}
				if !c.retryAt.IsZero() && !d.RetryAt.Equal(c.retryAt) {
					t.Fatalf("RetryAt = %v, want %v", d.RetryAt, c.retryAt)
				}
			}
		})
	}
}

func TestWaitsNeverExceedTheCap(t *testing.T) {
	p := mustPolicy(t, heed.WithMaxWait(10*time.Second), heed.WithBackoff(backoff.Exponential(time.Second, time.Hour)), heed.WithMaxAttempts(100))
	for n := 1; n < 100; n++ {
		d := p.Decide(statusOutcome(n, 503, nil), heed.When{Now: t0, Draw: 0.9})
		if !d.Retry || d.Wait > 10*time.Second {
			t.Fatalf("attempt %d: %+v", n, d)
		}
	}
	// A hint just under the cap plus jitter stays within the cap.
	d := p.Decide(statusOutcome(1, 429, http.Header{"Retry-After": {"10"}}), heed.When{Now: t0, Draw: 0.999})
	if !d.Retry || d.Wait != 10*time.Second {
		t.Fatalf("hint at the cap: %+v", d)
	}
}

func TestBackoffPassesPreviousWait(t *testing.T) {
	p := mustPolicy(t, heed.WithBackoff(backoff.Decorrelated(100*time.Millisecond, 10*time.Second)))
	d := p.Decide(statusOutcome(3, 503, nil), heed.When{Now: t0, Prev: 2 * time.Second, Draw: 0.999})
	if d.Wait < 5*time.Second {
		t.Fatalf("decorrelated wait from prev 2s at draw ~1 = %v, want about 6s", d.Wait)
	}
}

func TestDecideTransportErrors(t *testing.T) {
	p := mustPolicy(t)
	for _, c := range []struct {
		err   error
		kind  heed.ErrorKind
		retry bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, heed.KindRefused, true},
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, heed.KindDNS, true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, heed.KindReset, true},
		{io.ErrUnexpectedEOF, heed.KindEOF, true},
		{errors.New("net/http: unsupported protocol scheme \"ftp\""), heed.KindOther, false},
		{heed.Retryable(errors.New("flaky")), heed.KindRetryable, true},
	} {
		d := p.Decide(heed.Outcome{Attempt: 1, Err: c.err, Idempotent: true, Replayable: true}, heed.When{Now: t0})
		if d.Kind != c.kind || d.Retry != c.retry {
			t.Errorf("%v: kind %q retry %v, want %q %v", c.err, d.Kind, d.Retry, c.kind, c.retry)
		}
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	cases := []struct {
		opts []heed.Option
		want string
	}{
		{[]heed.Option{heed.WithMaxAttempts(0)}, "WithMaxAttempts(0)"},
		{[]heed.Option{heed.WithMaxWait(-time.Second)}, "WithMaxWait(-1s)"},
		{[]heed.Option{heed.WithMaxWait(0)}, "WithMaxWait(0s)"},
		{[]heed.Option{heed.WithMaxTotal(10 * time.Second), heed.WithAttemptTimeout(30 * time.Second)}, "WithAttemptTimeout(30s) is longer than WithMaxTotal(10s)"},
		{[]heed.Option{heed.WithBackoff(backoff.Full(time.Second, time.Millisecond))}, "cap 1ms is below its base 1s"},
		{[]heed.Option{heed.WithRetryStatus(999, 1)}, "WithRetryStatus(999, 1)"},
		{[]heed.Option{heed.WithMaxBodyBuffer(-1)}, "WithMaxBodyBuffer(-1)"},
		{[]heed.Option{heed.WithClock(nil)}, "WithClock(nil)"},
		{[]heed.Option{nil}, "nil Option"},
	}
	for _, c := range cases {
		_, err := heed.New(c.opts...)
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("New: error %v, want one naming %q", err, c.want)
		}
	}
	// Every problem is reported, not just the first.
	_, err := heed.New(heed.WithMaxAttempts(-1), heed.WithResponseBuffer(-5))
	if err == nil || !contains(err.Error(), "WithMaxAttempts(-1)") || !contains(err.Error(), "WithResponseBuffer(-5)") {
		t.Errorf("two problems: %v", err)
	}
}

// Retries told the same Retry-After spread over as long again, or over the
// key's pacing interval if that is longer, but never over more than 2 s:
// the documented bound on hint jitter holds whatever the pace.
func TestSpreadSizedByPace(t *testing.T) {
	p := mustPolicy(t)
	ra := http.Header{"Retry-After": {"1"}}
	lo := p.Decide(statusOutcome(1, 429, ra), heed.When{Now: t0, Draw: 0, Pace: 1500 * time.Millisecond})
	hi := p.Decide(statusOutcome(1, 429, ra), heed.When{Now: t0, Draw: 0.999, Pace: 1500 * time.Millisecond})
	if lo.Wait != time.Second || hi.Wait < 2490*time.Millisecond || hi.Wait > 2500*time.Millisecond {
		t.Fatalf("waits %v..%v, want [1s, 2.5s): the hint plus up to one pacing interval", lo.Wait, hi.Wait)
	}
	hi = p.Decide(statusOutcome(1, 429, ra), heed.When{Now: t0, Draw: 0.999, Pace: 10 * time.Millisecond})
	if hi.Wait < 1990*time.Millisecond || hi.Wait > 2*time.Second {
		t.Fatalf("wait %v, want [1s, 2s): as long again as the hint", hi.Wait)
	}
	for _, pace := range []time.Duration{3 * time.Second, time.Minute} {
		hi = p.Decide(statusOutcome(1, 429, ra), heed.When{Now: t0, Draw: 0.999, Pace: pace})
		if hi.Wait > 3*time.Second {
			t.Fatalf("pace %v: wait %v, want at most the hint plus 2 s", pace, hi.Wait)
		}
	}
}

// A 429 refused again and again for one call waits longer each time: at
// least its backoff for the number of refusals so far, past the hint that
// tells every client the same second. It does not use up an attempt.
func TestRepeatedRefusalsBackOff(t *testing.T) {
	p := mustPolicy(t)
	ra := http.Header{"Retry-After": {"1"}}
	first := p.Decide(statusOutcome(1, 429, ra), heed.When{Now: t0, Draw: 0.999, Pace: time.Second})
	if !first.Retry || !first.RateLimited || first.Wait > 2*time.Second {
		t.Fatalf("first refusal: %+v", first)
	}
	// Ten refusals in: the backoff (full jitter from 500 ms, capped at
	// 30 s) for 10, at a high draw, is near 30 s.
	later := p.Decide(statusOutcome(11, 429, ra), heed.When{Now: t0, Draw: 0.999, Pace: time.Second, RateLimited: 10, Waited: 20 * time.Second})
	if !later.Retry || !later.RateLimited || later.Wait < 25*time.Second {
		t.Fatalf("eleventh refusal: %+v, want a retry after about 30 s", later)
	}
	// The cap on a call's waiting still holds: 50 s waited, 10 left.
	capped := p.Decide(statusOutcome(11, 429, ra), heed.When{Now: t0, Draw: 0.999, Pace: time.Second, RateLimited: 10, Waited: 50 * time.Second})
	if !capped.Retry || capped.Wait > 10*time.Second {
		t.Fatalf("with 10 s of waiting left: %+v", capped)
	}
}

// The decision core answers from the outcome and the time alone.
func TestDecideAnswersFromOutcomeAndTime(t *testing.T) {
	p, _ := heed.NewPolicy()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"5"}}}
	d := p.Decide(heed.Outcome{Attempt: 1, Response: resp, Idempotent: true, Replayable: true}, heed.When{Now: now})
	if !d.Retry || d.Wait != 5*time.Second || d.Source != heed.SourceRetryAfter || !d.RetryAt.Equal(now.Add(5*time.Second)) {
		t.Errorf("429 with Retry-After 5: %+v", d)
	}
	resp.StatusCode = 404
	d = p.Decide(heed.Outcome{Attempt: 1, Response: resp, Idempotent: true, Replayable: true}, heed.When{Now: now})
	if d.Retry || d.Reason != heed.ErrNotRetryable {
		t.Errorf("404: %+v", d)
	}
}
