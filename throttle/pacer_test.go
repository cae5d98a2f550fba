package throttle_test

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heed-go/heed/hint"
	"github.com/heed-go/heed/throttle"
)

// Signals at virtual times. sent and now are offsets from t0; a sent of
// zeroSent leaves Sent zero (unknown).
const zeroSent = time.Duration(math.MinInt64)

func sig(sent, now time.Duration) throttle.Signal {
	s := throttle.Signal{Now: at(now)}
	if sent != zeroSent {
		s.Sent = at(sent)
	}
	return s
}

// success is a success of a request sent at sent, answered at now.
func success(sent, now time.Duration) throttle.Signal { return sig(sent, now) }

// tooMany is a 429 of a request sent at sent, answered at now, with a
// Retry-After of ra (none if ra < 0).
func tooMany(sent, now, ra time.Duration) throttle.Signal {
	s := sig(sent, now)
	s.Throttled = true
	if ra >= 0 {
		s.RetryAfter, s.HasRetryAfter = ra, true
	}
	return s
}

// quota adds X-RateLimit-style fields: limit, remaining, and a reset (no
// window). A negative limit or remaining leaves that field out.
func quota(s throttle.Signal, limit, remaining int64, reset time.Duration) throttle.Signal {
	s.HasQuota = true
	s.Quota = hint.Quota{Reset: reset, HasReset: true, Source: hint.SourceXRateLimit}
	if limit >= 0 {
		s.Quota.Limit, s.Quota.HasLimit = limit, true
	}
	if remaining >= 0 {
		s.Quota.Remaining, s.Quota.HasRemaining = remaining, true
	}
	return s
}

// ceiling95 is the ceiling Limit 100 with a reset of 1 s states, at the
// default Safety of 0.95.
const ceiling95 = 95.0

func rateOf(t *testing.T, p *throttle.Pacer, what string) float64 {
	t.Helper()
	r, ok := p.Rate()
	if !ok {
		t.Fatalf("%s: pacer inactive, want it pacing", what)
	}
	return r
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func wantRate(t *testing.T, p *throttle.Pacer, what string, want float64) {
	t.Helper()
	if got := rateOf(t, p, what); !near(got, want) {
		t.Errorf("%s: rate %v, want %v", what, got, want)
	}
}

func wantInactive(t *testing.T, p *throttle.Pacer, what string) {
	t.Helper()
	if p.Active() {
		r, _ := p.Rate()
		t.Fatalf("%s: pacer active at %v/s, want inactive", what, r)
	}
	if r, ok := p.Rate(); ok || r != 0 {
		t.Errorf("%s: Rate() = %v, %v; want 0, false", what, r, ok)
	}
	if d := p.Interval(); d != 0 {
		t.Errorf("%s: Interval() = %v, want 0", what, d)
	}
}

// activated returns a pacer activated at t0 by a 429 with a Retry-After of
// ra and the quota fields Limit 100, Remaining 0, reset 1 s: pacing at
// 1/ra, ceiling 95/s.
func activated(t *testing.T, ra time.Duration) *throttle.Pacer {
	t.Helper()
	p := throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(quota(tooMany(-10*ms, 0, ra), 100, 0, time.Second))
	if !p.Active() {
		t.Fatal("a 429 did not activate the pacer")
	}
	return p
}

func TestPacerInactive(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	wantInactive(t, p, "new pacer")
	for i, dl := range []time.Time{{}, at(time.Second), at(-time.Second)} {
		if got, ok := takeTurn(p, t0, dl); !got.Equal(t0) || !ok {
			t.Errorf("case %d: inactive Reserve(t0, %v) = t0+%v, %v; want t0, true", i, dl, got.Sub(t0), ok)
		}
	}
	for i, s := range []throttle.Signal{
		success(0, 10*ms),
		success(zeroSent, 10*ms),
		quota(success(0, 10*ms), 100, 50, time.Second), // plenty left
		quota(success(0, 10*ms), 100, 11, time.Second), // just over a tenth
		quota(success(0, 10*ms), -1, 5, time.Second),   // few left, of an unknown limit
		quota(success(0, 10*ms), 100, -1, time.Second), // no remaining count
	} {
		p.Observe(s)
		if p.Active() {
			t.Fatalf("case %d: success %+v activated the pacer", i, s)
		}
	}
	wantInactive(t, p, "after successes")
}

func TestPacerInactiveAllocs(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	s := quota(success(0, 10*ms), 100, 50, time.Second)
	plain := success(0, 10*ms)
	if n := testing.AllocsPerRun(1000, func() { takeTurn(p, t0, time.Time{}) }); n != 0 {
		t.Errorf("inactive Reserve allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { p.Observe(plain); p.Observe(s) }); n != 0 {
		t.Errorf("inactive Observe of successes allocates %v times, want 0", n)
	}
	if p.Active() {
		t.Fatal("successes activated the pacer")
	}
}

func TestPacerActivateOn429(t *testing.T) {
	tests := []struct {
		name     string
		cfg      throttle.PacerConfig
		s        throttle.Signal
		rate     float64
		interval time.Duration
	}{
		{"Retry-After 1s", throttle.PacerConfig{}, tooMany(-10*ms, 0, time.Second), 1, time.Second},
		{"Retry-After 500ms", throttle.PacerConfig{}, tooMany(-10*ms, 0, 500*ms), 2, 500 * ms},
		{"Retry-After 2s", throttle.PacerConfig{}, tooMany(-10*ms, 0, 2*time.Second), 0.5, 2 * time.Second},
		{"no Retry-After: one a second", throttle.PacerConfig{}, tooMany(-10*ms, 0, -1), 1, time.Second},
		{"Retry-After 0: one a second", throttle.PacerConfig{}, tooMany(-10*ms, 0, 0), 1, time.Second},
		{"Retry-After 10s: MinRate", throttle.PacerConfig{}, tooMany(-10*ms, 0, 10*time.Second), 0.5, 2 * time.Second},
		{"Retry-After 10s, MinRate 0.05", throttle.PacerConfig{MinRate: 0.05}, tooMany(-10*ms, 0, 10*time.Second), 0.1, 10 * time.Second},
		{"a ceiling below 1/RA", throttle.PacerConfig{}, quota(tooMany(-10*ms, 0, 500*ms), 60, 30, 30*time.Second), 0.95, 1052631578},
		{"a fixed window spent: one request left for the reset", throttle.PacerConfig{}, quota(tooMany(-10*ms, 0, 500*ms), 60, 0, 60*time.Second), 0.95 / 60, 63157894736},
		{"unknown Sent", throttle.PacerConfig{}, tooMany(zeroSent, 0, time.Second), 1, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := throttle.NewPacer(tt.cfg)
			p.Observe(tt.s)
			wantRate(t, p, "after the 429", tt.rate)
			if got := p.Interval(); got != tt.interval {
				t.Errorf("Interval() = %v, want %v", got, tt.interval)
			}
		})
	}
}

func TestPacerActivateOnLowQuota(t *testing.T) {
	tests := []struct {
		name      string
		limit     int64
		remaining int64
		activates bool
		rate      float64 // if it activates
	}{
		{"5 of 100", 100, 5, true, ceiling95},
		{"0 of 100", 100, 0, true, ceiling95},
		{"1 of 100", 100, 1, true, ceiling95},
		{"9 of 100", 100, 9, true, ceiling95},
		// Exactly a tenth counts as low (Remaining*10 <= Limit), though the
		// doc of low says "under a tenth".
		{"10 of 100", 100, 10, true, ceiling95},
		{"11 of 100", 100, 11, false, 0},
		{"50 of 100", 100, 50, false, 0},
		{"5 of unknown", -1, 5, false, 0},
		// A used-up quota of unknown limit: starts at 1/s, and the same
		// answer counted as an answer in flight adds 1/s more.
		{"0 of unknown", -1, 0, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := throttle.NewPacer(throttle.PacerConfig{})
			p.Observe(quota(success(-10*ms, 0), tt.limit, tt.remaining, time.Second))
			if p.Active() != tt.activates {
				t.Fatalf("Active() = %v, want %v", p.Active(), tt.activates)
			}
			if !tt.activates {
				wantInactive(t, p, "not low")
				return
			}
			wantRate(t, p, "after the low success", tt.rate)
		})
	}
}

func TestPacerStaleAnswersRaiseToCeiling(t *testing.T) {
	p := activated(t, time.Second)
	wantRate(t, p, "after the 429", 1)
	if got := p.Interval(); got != time.Second {
		t.Errorf("Interval() = %v, want 1s", got)
	}
	// The answer to a request that was in flight when the pacer started
	// (Sent before t0), with quota fields: the ceiling at once.
	p.Observe(quota(success(-20*ms, 10*ms), 100, 0, time.Second))
	wantRate(t, p, "after a stale answer", ceiling95)
	want := time.Second / 95 // 1/95 s, truncated as Interval does
	if got := p.Interval(); got != want {
		t.Errorf("Interval() = %v, want %v", got, want)
	}
	p.Observe(quota(success(-5*ms, 20*ms), 100, 0, time.Second))
	wantRate(t, p, "after a second stale answer", ceiling95) // never above the ceiling
}

func TestPacerStaleAnswersWithoutQuota(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(tooMany(-10*ms, 0, 500*ms)) // 2/s, and 2/s for each request in flight
	wantRate(t, p, "after the 429", 2)
	for i, s := range []throttle.Signal{
		success(-9*ms, 5*ms),
		tooMany(-8*ms, 6*ms, 500*ms), // a stale throttle too counts a request in flight
		success(zeroSent, 7*ms),      // unknown Sent: taken as stale
		success(0, 8*ms),             // sent at the very moment of activation: stale
	} {
		p.Observe(s)
		wantRate(t, p, fmt.Sprintf("stale answer %d", i), 2+2*float64(i+1))
	}
}

func TestPacerSlackDoubles(t *testing.T) {
	p := activated(t, time.Second)
	want := 1.0
	for i := 1; i <= 10; i++ {
		now := time.Duration(i) * 50 * ms
		p.Observe(quota(success(now-10*ms, now), 100, 50, time.Second))
		want = math.Min(want*2, ceiling95)
		wantRate(t, p, fmt.Sprintf("slack success %d", i), want)
	}
	if want != ceiling95 {
		t.Fatalf("test did not reach the ceiling: %v", want)
	}
}

func TestPacerSettlesOnNearEmptyQuota(t *testing.T) {
	for _, ra := range []time.Duration{time.Second, 500 * ms} {
		for _, remaining := range []int64{0, 1} {
			t.Run(fmt.Sprintf("RA=%v/remaining=%d", ra, remaining), func(t *testing.T) {
				p := activated(t, ra)
				per := float64(time.Second) / float64(ra)
				start := rateOf(t, p, "activated")
				p.Observe(quota(success(10*ms, 20*ms), 100, remaining, time.Second))
				// No climb on a near-empty quota: a success that took the
				// last token lowers the pace by a tenth; one that left one
				// raises it by at most a hundredth of the stated rate.
				r := rateOf(t, p, "after a near-empty success")
				if remaining == 0 && !near(r, start*0.9) || remaining == 1 && (r < start || r > start+ceiling95/100) {
					t.Fatalf("after a success leaving %d: rate %v -> %v", remaining, start, r)
				}
				for i := 1; i <= 12; i++ {
					now := 20*ms + time.Duration(i)*20*ms
					p.Observe(quota(success(now-10*ms, now), 100, 9, time.Second))
					got := rateOf(t, p, "slack")
					lo := r + per                 // at least one request per Retry-After more
					hi := math.Max(r+per, r*1.25) // and no more than that or x1.25
					if got < lo-1e-9 || got > hi+1e-9 {
						t.Fatalf("slack success %d: rate %v -> %v, want in [%v, %v]", i, r, got, lo, hi)
					}
					if i >= 3 && got >= 2*r {
						t.Fatalf("slack success %d: rate %v -> %v, doubled though settled", i, r, got)
					}
					r = got
				}
				if r >= ceiling95 {
					t.Errorf("12 gentle steps reached the ceiling (%v)", r)
				}
			})
		}
	}
}

func TestPacerThrottleDecrease(t *testing.T) {
	tests := []struct {
		name      string
		successes int           // stale successes at t0+2.9s: their count / 3 s is the success rate
		ra        time.Duration // of the throttle; -1 for none
		want      float64
	}{
		// The success rate sets the pace, but one round never more than
		// halves it.
		{"no successes: half", 1, time.Second, ceiling95 / 2},
		{"success rate 10/s: half", 30, time.Second, ceiling95 / 2},
		{"success rate 50/s", 150, time.Second, 50},
		{"success rate 100/s: rate*0.7", 300, time.Second, ceiling95 * 0.7},
		{"Retry-After 250ms: half", 3, 250 * ms, ceiling95 / 2},
		{"no Retry-After: half", 1, -1, ceiling95 / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := activated(t, time.Second)
			for range tt.successes {
				p.Observe(quota(success(-5*ms, 2900*ms), 100, 0, time.Second))
			}
			before := rateOf(t, p, "before the throttle")
			if before != ceiling95 {
				t.Fatalf("stale answers raised the rate to %v, want %v", before, ceiling95)
			}
			p.Observe(tooMany(3000*ms, 3010*ms, tt.ra))
			got := rateOf(t, p, "after the throttle")
			if !near(got, tt.want) {
				t.Errorf("rate %v -> %v, want %v", before, got, tt.want)
			}
			floor := 0.5
			if tt.ra > 0 {
				floor = math.Max(floor, float64(time.Second)/float64(tt.ra))
			}
			if got < floor-1e-9 || got > before*0.7+1e-9 {
				t.Errorf("rate %v -> %v, want within [1/RA or MinRate = %v, rate*0.7 = %v]", before, got, floor, before*0.7)
			}

			// A throttle of a request sent before that decrease reports the
			// old pace: no change.
			p.Observe(tooMany(3005*ms, 3020*ms, tt.ra))
			p.Observe(tooMany(3010*ms, 3021*ms, tt.ra)) // sent at the very moment of the decrease
			if r := rateOf(t, p, "after older throttles"); r != got {
				t.Errorf("throttles of requests sent before the decrease moved the rate %v -> %v", got, r)
			}
		})
	}
}

func TestPacerThrottleAfterDecreaseLowersAgain(t *testing.T) {
	p := activated(t, time.Second)
	for range 60 {
		p.Observe(quota(success(-5*ms, 2900*ms), 100, 0, time.Second)) // 20/s of successes over 3 s
	}
	p.Observe(tooMany(3000*ms, 3010*ms, time.Second))
	wantRate(t, p, "first decrease", ceiling95/2)     // to the 20/s of successes, but at most halved
	p.Observe(tooMany(3015*ms, 3030*ms, time.Second)) // sent after the first decrease
	wantRate(t, p, "second decrease", ceiling95/4)
	p.Observe(tooMany(3020*ms, 3040*ms, time.Second)) // sent before the second
	wantRate(t, p, "throttle from before the second decrease", ceiling95/4)
}

func TestPacerZeroSentNeverLowers(t *testing.T) {
	// Settled (after a decrease), a throttle of unknown Sent changes nothing.
	p := activated(t, time.Second)
	for range 60 {
		p.Observe(quota(success(-5*ms, 1*ms), 100, 0, time.Second))
	}
	p.Observe(tooMany(10*ms, 20*ms, time.Second))
	before := rateOf(t, p, "settled")
	for i := range 5 {
		p.Observe(tooMany(zeroSent, 30*ms+time.Duration(i)*ms, time.Second))
		if got := rateOf(t, p, "zero Sent"); got < before {
			t.Fatalf("settled: throttle %d of unknown Sent lowered the rate %v -> %v", i, before, got)
		}
	}

	// Not settled, it does not lower either (it is counted as an answer in
	// flight, which raises the starting pace).
	p = throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(tooMany(-10*ms, 0, time.Second))
	p.Observe(quota(success(5*ms, 10*ms), 100, 50, time.Second)) // climbing: 2/s
	before = rateOf(t, p, "climbing")
	for i := range 5 {
		p.Observe(tooMany(zeroSent, 30*ms+time.Duration(i)*ms, time.Second))
		if got := rateOf(t, p, "zero Sent"); got < before {
			t.Fatalf("not settled: throttle %d of unknown Sent lowered the rate %v -> %v", i, before, got)
		}
	}
}

// TestPacerThrottleNeverRaises: a throttle of a request sent at the current
// pace means that pace was too fast.
func TestPacerThrottleNeverRaises(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(tooMany(-10*ms, 0, 2*time.Second))
	before := rateOf(t, p, "activated")
	p.Observe(tooMany(2*time.Second, 2100*ms, time.Second))
	if got := rateOf(t, p, "after a throttle"); got > before {
		t.Errorf("a throttle raised the rate %v -> %v", before, got)
	}

	// The same with a stated ceiling below 1/RetryAfter: 10 a minute is
	// 0.158/s at Safety 0.95, but MinRate (0.5) and then 1/RA (1) win.
	p = throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(quota(tooMany(-10*ms, 0, time.Second), 10, 0, 60*time.Second))
	before = rateOf(t, p, "activated under a 10/min quota")
	p.Observe(quota(tooMany(3*time.Second, 3100*ms, time.Second), 10, 0, 57*time.Second))
	if got := rateOf(t, p, "after a throttle"); got > before {
		t.Errorf("a throttle under a 10/min quota raised the rate %v -> %v", before, got)
	}
}

// Places in line come one interval apart; a request is refused a place
// only when even at the fastest pace the server is known to allow (95/s,
// its stated quota) its turn would come after its deadline.
func TestPacerTakeSpacing(t *testing.T) {
	p := activated(t, time.Second) // 1/s; the first turn an interval away
	steps := []struct {
		now, deadline time.Duration // deadline -1: none
		want          time.Duration
		ok            bool
	}{
		{0, -1, time.Second, true},
		{0, -1, 2 * time.Second, true},
		{0, 2500 * ms, 3 * time.Second, true},                        // past the deadline at 1/s, but not at 95/s: it may move up
		{0, 2 * ms, 4 * time.Second, false},                          // four places ahead of it: 42 ms at 95/s
		{500 * ms, -1, 4 * time.Second, true},                        // the refused place was given back
		{10 * time.Second, 10 * time.Second, 10 * time.Second, true}, // idle: at once, no credit
		{10 * time.Second, -1, 11 * time.Second, true},
	}
	for i, s := range steps {
		var dl time.Time
		if s.deadline >= 0 {
			dl = at(s.deadline)
		}
		got, ok := takeTurn(p, at(s.now), dl)
		if !got.Equal(at(s.want)) || ok != s.ok {
			t.Errorf("step %d: Take(t0+%v, %v) = t0+%v, %v; want t0+%v, %v", i, s.now, s.deadline, got.Sub(t0), ok, s.want, s.ok)
		}
	}
}

// Without quota fields nor a refusal at the current pace, the pace may yet
// rise any amount: no place is refused. Once the server has refused a
// pace, that pace bounds the hope.
func TestPacerTakeRefusesTheHopeless(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(tooMany(-10*ms, 0, time.Second)) // 1/s, nothing known of the server's rate
	for i := range 100 {
		if _, ok := takeTurn(p, t0, at(time.Second)); !ok {
			t.Fatalf("place %d refused though the pace may rise", i)
		}
	}
	p = throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(tooMany(-10*ms, 0, time.Second))
	p.Observe(tooMany(1500*ms, 1600*ms, time.Second)) // refused at 1/s: 0.7/s now, 1/s at best
	var refused bool
	for range 10 {
		if _, ok := takeTurn(p, at(1600*ms), at(5*time.Second)); !ok {
			refused = true
		}
	}
	if !refused {
		t.Fatal("10 places within 3.4 s at a pace the server refused above 1/s: none refused")
	}
}

// The places waiting move up when the pace rises: a turn is reckoned anew
// at each look.
func TestPacerTurnMovesUp(t *testing.T) {
	p := activated(t, time.Second)
	var places []throttle.Place
	for range 5 {
		pl, _, _ := p.Take(t0, time.Time{})
		places = append(places, pl)
	}
	last, _ := p.Turn(places[4], t0, time.Time{})
	if want := at(5 * time.Second); !last.Equal(want) {
		t.Fatalf("fifth place at 1/s: turn t0+%v, want t0+5s", last.Sub(t0))
	}
	p.Observe(quota(success(-5*ms, 10*ms), 100, 0, time.Second)) // stale: up to the ceiling, 95/s
	now := at(10 * ms)
	for i, pl := range places {
		got, ok := p.Turn(pl, now, time.Time{})
		if !ok || got.Sub(now) > time.Duration(i+2)*p.Interval() {
			t.Errorf("place %d after the rise: turn t0+%v, want within %d intervals of t0+10ms", i, got.Sub(t0), i+2)
		}
	}
	// A place given up leaves the line: the last one is taken back whole.
	p.Leave(places[4])
	pl, at5, _ := p.Take(now, time.Time{})
	if got, _ := p.Turn(places[3], now, time.Time{}); at5.Sub(got) != p.Interval() {
		t.Errorf("a new place after the last one left: %v after the one before, want one interval", at5.Sub(got))
	}
	p.Leave(pl)
}

func TestPacerReserveOneIntervalApart(t *testing.T) {
	p := activated(t, time.Second)
	p.Observe(quota(success(-20*ms, 10*ms), 100, 0, time.Second)) // 95/s
	iv := p.Interval()
	prev, _ := takeTurn(p, at(10*ms), time.Time{})
	if d := prev.Sub(t0); d < 10*ms || d > 11*ms {
		t.Errorf("first slot at t0+%v, want one interval (%v) after t0", d, iv)
	}
	for i := range 50 {
		got, ok := takeTurn(p, at(10*ms), time.Time{})
		if !ok {
			t.Fatalf("reservation %d refused without a deadline", i)
		}
		if d := got.Sub(prev); d < iv-time.Nanosecond || d > iv+time.Nanosecond {
			t.Fatalf("reservation %d: %v after the previous, want one Interval (%v)", i, d, iv)
		}
		prev = got
	}
	// A faster pace takes effect at once: the next free slot moves with it.
	last := prev
	p.Observe(quota(success(-1*ms, 20*ms), 200, 0, time.Second)) // stale: the new ceiling, 190/s
	iv = p.Interval()
	if got, _ := takeTurn(p, at(10*ms), time.Time{}); got.Sub(last) > iv+time.Nanosecond {
		t.Errorf("after a raise to %v, the next slot is %v after the last, want at most %v", 190.0, got.Sub(last), iv)
	}
}

// Without quota fields the pace grows with calm time, doubling per step
// (TCP's slow start) until a throttle hits it, a step being a Probe
// interval or the pacing interval if longer.
func TestPacerCalmGrowthWithoutQuota(t *testing.T) {
	tests := []struct {
		name string
		cfg  throttle.PacerConfig
		calm time.Duration
		want float64
	}{
		// Activated at 1/s: the pacing interval (1 s) is the step.
		{"1s at defaults", throttle.PacerConfig{}, time.Second, 2},
		{"3s at defaults", throttle.PacerConfig{}, 3 * time.Second, 8},
		{"999ms: not yet a step", throttle.PacerConfig{}, 999 * ms, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := throttle.NewPacer(tt.cfg)
			p.Observe(tooMany(-10*ms, 0, time.Second))
			p.Observe(success(tt.calm/2, tt.calm))
			wantRate(t, p, fmt.Sprintf("after %v calm", tt.calm), tt.want)
		})
	}

	// At a fast pace the Probe interval is the step.
	p := throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(tooMany(-10*ms, 0, 10*ms)) // 100/s: interval 10 ms, step 100 ms
	p.Observe(success(50*ms, 200*ms))
	r := 100 * math.Pow(2, 2)
	wantRate(t, p, "after 200ms", r)
	for _, now := range []time.Duration{250 * ms, 299 * ms} {
		p.Observe(success(now-ms, now))
		wantRate(t, p, fmt.Sprintf("at t0+%v", now), r)
	}
	// A raise needs the pace to have held a request back since the last
	// one (without a stated ceiling, growth nobody used is not taken).
	p.Observe(success(300*ms-ms, 300*ms))
	wantRate(t, p, "one probe later, nothing held back", r)
	takeTurn(p, at(350*ms), time.Time{})
	takeTurn(p, at(350*ms), time.Time{}) // waits: the pace holds it back
	p.Observe(success(400*ms-ms, 400*ms))
	wantRate(t, p, "one probe later, a request held back", r*2)

	// After a throttle the pace doubles back to Decrease times the pace
	// refused, not past it.
	p = throttle.NewPacer(throttle.PacerConfig{})
	grow := func(sent, now time.Duration) { // a success while requests wait
		takeTurn(p, at(sent), time.Time{})
		takeTurn(p, at(sent), time.Time{})
		p.Observe(success(sent, now))
	}
	p.Observe(tooMany(-10*ms, 0, -1))        // 1/s
	grow(500*ms, time.Second)                // 2/s
	grow(1400*ms, 1500*ms)                   // 4/s
	grow(1700*ms, 1750*ms)                   // 8/s
	p.Observe(tooMany(1800*ms, 1850*ms, -1)) // refused at 8/s: halved (3 successes in 1.85 s would say 1.6/s)
	wantRate(t, p, "after the throttle", 4)
	p.Observe(tooMany(2600*ms, 2650*ms, -1)) // and again, in a later round: 2/s
	wantRate(t, p, "after a second throttle", 2)
	grow(2700*ms, 3700*ms) // calm: back up, to 0.7 times the 4/s refused last
	wantRate(t, p, "doubled back", 0.7*4)
}

// TestPacerGrowthWithQuotaWithoutRemaining: quota fields that state a limit
// but no remaining count (RateLimit: limit=100, reset=1) show neither slack
// nor a near-empty quota; the pacer should still climb with calm time.
func TestPacerGrowthWithQuotaWithoutRemaining(t *testing.T) {
	p := activated(t, time.Second)
	ready := 10 * ms
	for ready < 30*time.Second {
		sent, _ := takeTurn(p, at(ready), time.Time{})
		d := sent.Sub(t0)
		p.Observe(quota(success(d, d), 100, -1, time.Second))
		ready = max(d, ready+10*ms) // wants 100/s
	}
	if r, ok := p.Rate(); ok && r < 2 {
		t.Errorf("after 30 s of successes the pace is still %v/s", r)
	}
}

func TestPacerDeactivatesAfterCalm(t *testing.T) {
	t.Run("calm", func(t *testing.T) {
		p := throttle.NewPacer(throttle.PacerConfig{})
		p.Observe(tooMany(-10*ms, 0, time.Second))
		for s := time.Second; s < 10*time.Second; s += time.Second {
			p.Observe(success(s-10*ms, s))
			if !p.Active() {
				t.Fatalf("inactive at t0+%v, before 10 s of calm", s)
			}
		}
		p.Observe(success(9990*ms, 10*time.Second))
		wantInactive(t, p, "after 10 s of calm")
		if got, ok := takeTurn(p, at(10*time.Second), at(10*time.Second)); !got.Equal(at(10*time.Second)) || !ok {
			t.Errorf("inactive Reserve = t0+%v, %v; want now, true", got.Sub(t0), ok)
		}
	})
	t.Run("delay postpones", func(t *testing.T) {
		p := throttle.NewPacer(throttle.PacerConfig{})
		p.Observe(tooMany(-10*ms, 0, time.Second))
		takeTurn(p, at(5*time.Second), time.Time{})
		if got, _ := takeTurn(p, at(5*time.Second), time.Time{}); !got.After(at(5 * time.Second)) {
			t.Fatal("the second Reserve at the same time did not wait")
		}
		p.Observe(success(9990*ms, 10*time.Second))
		if !p.Active() {
			t.Fatal("inactive 5 s after a reservation waited")
		}
		p.Observe(success(14990*ms, 15*time.Second))
		wantInactive(t, p, "10 s after the last wait")
	})
	t.Run("throttle postpones", func(t *testing.T) {
		p := throttle.NewPacer(throttle.PacerConfig{})
		p.Observe(tooMany(-10*ms, 0, time.Second))
		p.Observe(tooMany(7*time.Second, 8*time.Second, time.Second))
		p.Observe(success(9990*ms, 10*time.Second))
		p.Observe(success(17990*ms, 17999*ms))
		if !p.Active() {
			t.Fatal("inactive less than 10 s after a throttle")
		}
		p.Observe(success(17990*ms, 18*time.Second))
		wantInactive(t, p, "10 s after the last throttle")
	})
	t.Run("reactivates", func(t *testing.T) {
		p := throttle.NewPacer(throttle.PacerConfig{})
		p.Observe(tooMany(-10*ms, 0, time.Second))
		p.Observe(success(10*time.Second, 10*time.Second))
		wantInactive(t, p, "after calm")
		p.Observe(tooMany(11*time.Second, 11*time.Second, 2*time.Second))
		wantRate(t, p, "a new 429", 0.5)
	})
}

// TestPacerCalmCountsFromActivation: a pacer that a low quota (not a 429)
// activated has no throttle to count its calm from, and the very next
// success that did not wait for a slot turns it off.
func TestPacerCalmCountsFromActivation(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(quota(success(-10*ms, 0), 100, 5, time.Second))
	if !p.Active() {
		t.Fatal("a low quota did not activate the pacer")
	}
	if got, _ := takeTurn(p, at(50*ms), time.Time{}); !got.Equal(at(50 * ms)) {
		t.Fatalf("Reserve at 95/s 50ms after activation waited until t0+%v", got.Sub(t0))
	}
	p.Observe(quota(success(50*ms, 60*ms), 100, 4, time.Second))
	if !p.Active() {
		t.Errorf("inactive 60ms after a low quota activated it, want active until %v of calm", 10*time.Second)
	}
}

func TestPacerConcurrentUse(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				now := time.Duration(i) * ms
				switch (g + i) % 4 {
				case 0:
					p.Observe(quota(tooMany(now-5*ms, now, time.Second), 100, 0, time.Second))
				case 1:
					p.Observe(quota(success(now-5*ms, now), 100, 50, time.Second))
				case 2:
					takeTurn(p, at(now), at(now+time.Second))
				default:
					p.Interval()
					p.Rate()
					p.Active()
				}
			}
		})
	}
	wg.Wait()
	if r, ok := p.Rate(); ok && (r <= 0 || r > ceiling95) {
		t.Errorf("rate %v after concurrent use, want within (0, %v]", r, ceiling95)
	}
}

// ---- Recovery after a storm, in virtual time ----

// server answers a request sent at sent. Answers arrive at once (zero
// latency), so the simulation needs no clock.
type server func(sent time.Time) throttle.Signal

// stormServer lets through one request per `every` and refuses the rest
// with a 429 and a Retry-After of 1 s; ok and refused add the fields of its
// answers.
func stormServer(every time.Duration, ok, refused func(throttle.Signal) throttle.Signal) server {
	var next time.Time
	return func(sent time.Time) throttle.Signal {
		if !sent.Before(next) {
			next = sent.Add(every)
			return ok(throttle.Signal{})
		}
		return refused(throttle.Signal{Throttled: true, RetryAfter: time.Second, HasRetryAfter: true})
	}
}

// withQuota adds X-RateLimit fields: limit, remaining and a reset of 1 s.
func withQuota(limit, remaining int64) func(throttle.Signal) throttle.Signal {
	return func(s throttle.Signal) throttle.Signal {
		s.HasQuota = true
		s.Quota = hint.Quota{Limit: limit, HasLimit: true, Remaining: remaining, HasRemaining: true,
			Reset: time.Second, HasReset: true, Source: hint.SourceXRateLimit}
		return s
	}
}

func plain(s throttle.Signal) throttle.Signal { return s }

// always answers every request alike.
func always(f func(throttle.Signal) throttle.Signal) server {
	return func(time.Time) throttle.Signal { return f(throttle.Signal{}) }
}

// traffic counts what a client sent and what the server refused.
type traffic struct{ sent, refused int }

// client sends requests through p to srv from `from` until `until`, one at
// a time, one every `gap` at most (its demand) and as fast as the pacer
// allows: a request the pacer delays goes at its slot, and the next one is
// ready at once. watch sees the time after each answer.
func client(p *throttle.Pacer, srv server, from, until time.Time, gap time.Duration, watch func(now time.Time)) traffic {
	var tr traffic
	for ready := from; ready.Before(until); {
		sent, _ := takeTurn(p, ready, time.Time{})
		s := srv(sent)
		s.Sent, s.Now = sent, sent
		p.Observe(s)
		tr.sent++
		if s.Throttled {
			tr.refused++
		}
		if watch != nil {
			watch(sent)
		}
		ready = ready.Add(gap)
		if sent.After(ready) {
			ready = sent // backlogged: the next request is ready as soon as this one went
		}
	}
	return tr
}

// recovery is what stormOver measured, from the end of the storm.
type recovery struct {
	stormRate  float64       // the pace after the last answer of the storm
	storm      traffic       // requests sent during the storm
	toTarget   time.Duration // until the pace reached the target (or the pacer turned off); -1 if never
	toInactive time.Duration // until the pacer turned off; -1 if never
}

func (r recovery) String() string {
	return fmt.Sprintf("pace at storm end %.2f/s (storm: %d sent, %d refused); target after %v, inactive after %v (-1ns: never)",
		r.stormRate, r.storm.sent, r.storm.refused, r.toTarget, r.toInactive)
}

// stormOver runs a client with a demand of one request per gap against a
// server that answers as storm for the requests sent in the first stormLen,
// and as calm for the next `after`.
func stormOver(t *testing.T, storm, calm server, stormLen, after, gap time.Duration, target float64) recovery {
	t.Helper()
	p := throttle.NewPacer(throttle.PacerConfig{})
	end := at(stormLen)
	rec := recovery{toTarget: -1, toInactive: -1}
	srv := func(sent time.Time) throttle.Signal {
		if sent.Before(end) {
			s := storm(sent)
			rec.storm.sent++
			if s.Throttled {
				rec.storm.refused++
			}
			return s
		}
		s := calm(sent)
		if s.Throttled {
			t.Fatalf("the calm server refused a request sent at t0+%v", sent.Sub(t0))
		}
		return s
	}
	client(p, srv, t0, end.Add(after), gap, func(now time.Time) {
		r, active := p.Rate()
		if now.Before(end) {
			rec.stormRate = r
			return
		}
		if rec.toTarget < 0 && (!active || r >= target) {
			rec.toTarget = now.Sub(end)
		}
		if rec.toInactive < 0 && !active {
			rec.toInactive = now.Sub(end)
		}
	})
	return rec
}

// TestPacerStormOverWithQuota: for 5 s a server with quota fields lets
// through only 2 requests a second (answering them with Remaining 2 of 100,
// and the rest with 429s, Remaining 0), which throttles the pacer down to
// about 2/s; then it answers every request with slack (Remaining 9 of 100,
// reset 1 s: a ceiling of 95/s). The times are from the end of the storm,
// and include the wait for the slot the client reserved during it (up to
// 1 s at 1/s).
func TestPacerStormOverWithQuota(t *testing.T) {
	storm := func() server { return stormServer(500*ms, withQuota(100, 2), withQuota(100, 0)) }
	calm := always(withQuota(100, 9))

	// A client that would send a request every millisecond: as fast as the
	// pacer allows.
	rec := stormOver(t, storm(), calm, 5*time.Second, 20*time.Second, ms, ceiling95)
	t.Logf("greedy client: %v", rec)
	if rec.stormRate < 1 || rec.stormRate > 4 {
		t.Errorf("pace at the end of the storm %.2f/s, want about 2/s", rec.stormRate)
	}
	if rec.toTarget < 0 || rec.toTarget > 3*time.Second {
		t.Errorf("ceiling of %v/s reached %v after the storm, want within 3s", ceiling95, rec.toTarget)
	}
	// Its demand is above the ceiling, so pacing must go on: turning off
	// would send faster than the server's quota.
	if rec.toInactive >= 0 {
		t.Errorf("pacer turned off %v after the storm though the client wants more than the ceiling", rec.toInactive)
	}

	// A client that wants 50 requests a second, below the ceiling: once
	// the pace passes its demand nothing waits, and the pacer turns off
	// after Calm.
	rec = stormOver(t, storm(), calm, 5*time.Second, 20*time.Second, 20*ms, 50)
	t.Logf("50/s client: %v", rec)
	if rec.stormRate < 1 || rec.stormRate > 4 {
		t.Errorf("pace at the end of the storm %.2f/s, want about 2/s", rec.stormRate)
	}
	if rec.toTarget < 0 || rec.toTarget > 3*time.Second {
		t.Errorf("its demand of 50/s reached %v after the storm, want within 3s", rec.toTarget)
	}
	if rec.toInactive < 0 || rec.toInactive > 15*time.Second {
		t.Errorf("pacer turned off %v after the storm, want within 15s", rec.toInactive)
	}
}

// TestPacerStormOverWithoutQuota: the same with a server that sends no
// quota fields: 429s in the storm, successes after it. The client wants 20
// requests a second, which it sent unpaced before the storm.
func TestPacerStormOverWithoutQuota(t *testing.T) {
	const demand = 20.0
	rec := stormOver(t, stormServer(500*ms, plain, plain), always(plain), 5*time.Second, 20*time.Second, time.Second/demand, demand)
	t.Logf("20/s client: %v", rec)
	if rec.stormRate >= demand {
		t.Errorf("pace at the end of the storm %.2f/s, want below the pre-storm %v/s", rec.stormRate, demand)
	}
	if through := float64(rec.storm.sent-rec.storm.refused) / 5; through > 2.2 {
		t.Errorf("%.2f/s got through a storm that admits 2/s", through)
	}
	// Two seconds without push-back unsettle the pacer; from there it grows
	// by Increase per pacing interval (docs/throttling.md).
	if rec.toTarget < 0 || rec.toTarget > 4*time.Second {
		t.Errorf("back at the pre-storm %v/s %v after the storm, want within 4s", demand, rec.toTarget)
	}
	if rec.toInactive < 0 || rec.toInactive > 15*time.Second {
		t.Errorf("pacer turned off %v after the storm, want within 15s", rec.toInactive)
	}
}

// TestPacerHoldsPaceWithoutQuota: against a server that admits 2 requests
// a second and sends no quota fields, a client that wants more should be
// held near 2/s, with a bounded share of its requests refused.
func TestPacerHoldsPaceWithoutQuota(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	tr := client(p, stormServer(500*ms, plain, plain), t0, at(30*time.Second), ms, nil)
	t.Logf("%d sent, %d refused", tr.sent, tr.refused)
	// About one in three is refused: after two seconds without a refusal
	// the pace doubles again (a refused pace may be stale), which against
	// a server this slow and silent finds its limit every few seconds.
	if tr.refused*3 > tr.sent+2 {
		t.Errorf("%d of %d requests refused, want at most about a third", tr.refused, tr.sent)
	}
}

// A long, fixed window (an hourly quota) is spent evenly over the time
// left: 500 remaining with 20 minutes to go is about 0.4 a second, not the
// 5000 an hour (1.39/s) the limit alone would allow.
func TestPacerSpendsFixedWindowEvenly(t *testing.T) {
	p := throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(quota(success(0, 10*ms), 5000, 100, 20*time.Minute)) // low: 100 of 5000
	r := rateOf(t, p, "after a low quota")
	even := 0.95 * 100 / (20 * time.Minute).Seconds()
	if r > even*1.0001 {
		t.Fatalf("pace %v/s, want at most the even %v/s", r, even)
	}
	// In a short window (a token bucket refilling as it goes) the stated
	// rate holds, not remaining/reset.
	p = throttle.NewPacer(throttle.PacerConfig{})
	p.Observe(tooMany(-10*ms, 0, time.Second))
	p.Observe(quota(success(-5*ms, 10*ms), 100, 0, time.Second)) // stale: jumps to the ceiling
	if r := rateOf(t, p, "short window"); r < 90 {
		t.Fatalf("pace %v/s in a 1 s window of 100, want the stated 95/s", r)
	}
}

// Shortly after pacing began, the success rate is measured over the time
// since: a client whose requests are getting through is not cut to a rate
// diluted by the time before.
func TestPacerSuccessRateSinceActivation(t *testing.T) {
	p := activated(t, time.Second)
	for i := range 45 {
		p.Observe(quota(success(-5*ms, time.Duration(i)*10*ms), 100, 0, time.Second)) // 90/s for 0.5 s
	}
	p.Observe(tooMany(490*ms, 500*ms, time.Second))
	if r := rateOf(t, p, "after a throttle 0.5 s in"); r < ceiling95*0.7-1e-9 {
		t.Fatalf("rate %v, want rate*0.7 (%v): 90/s of successes over the 0.5 s since activation", r, ceiling95*0.7)
	}
}

// reserve takes a place for a request ready at now and returns its turn,
// as a caller that sleeps until then without looking again would.
func takeTurn(p *throttle.Pacer, now, deadline time.Time) (time.Time, bool) {
	_, at, ok := p.Take(now, deadline)
	return at, ok
}

func TestPacerConfigValidate(t *testing.T) {
	if err := (throttle.PacerConfig{}).Validate(); err != nil {
		t.Errorf("the zero PacerConfig refused: %v", err)
	}
	err := throttle.PacerConfig{Safety: -1, Decrease: 5, Increase: .5, Probe: -time.Second}.Validate()
	for _, field := range []string{"Safety", "Decrease", "Increase", "Probe"} {
		if err == nil || !strings.Contains(err.Error(), "PacerConfig."+field) {
			t.Errorf("bad %s not named: %v", field, err)
		}
	}
}
