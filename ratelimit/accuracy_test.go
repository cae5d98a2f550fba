package ratelimit_test

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed/ratelimit"
)

// The accuracy of the limit under over-demand, single instance: 100
// clients offer ten times the limit for a span (60 s unless said
// otherwise) of virtual time, each request through the Limiter's Handler,
// and the requests that reach the handler behind it are counted.
//
// # What the limit allows
//
// One window of Limit R per Per with burst B is GCRA with emission
// interval T = Per/R (rounded up to the nanosecond: never faster than
// published) and tolerance (B-1)T. Starting from full at 0 (every client
// sends its first request at 0, which makes the key's entry full), the
// n-th admission cannot come before (n-B)T: each admission moves the
// theoretical arrival time on by at least T, and a request at t conforms
// only if that time is at most t+(B-1)T. So over the closed span [0, E]
// at most
//
//	allowed = B + floor(E/T) = B + R*E/Per
//
// are admitted (E a multiple of T in every case here): the burst, plus
// one token per interval. The clients send in the half-open span [0, E),
// which cannot reach the token that comes back at exactly E, so the exact
// maximum is one less:
//
//	max = B + ceil(E/T) - 1 = allowed - 1
//
// With several windows each admission takes from every one, so the
// bound is the least of the windows' (50/s burst 10 with 2000/min burst
// 100 over 60 s: min(10+3000, 100+2000) = 2100, the minute binds); with a
// key per client it is the sum over the keys. The difference between
// allowed and max is 0.02% of a shared 100/s key over a minute but 1.5%
// of a hundred keys of 1/s burst 5 (65 each), so the test holds admitted
// to max, exactly from above, within 1% from below, and logs the error
// against both. (So "never above allowed" holds with one to spare per
// key; the test asserts the tighter max.)
//
// A request delayed to its slot (MaxDelay) is counted when the handler
// runs, at its slot; those whose slot falls at E or later are counted
// apart, as late, and are not in admitted.
//
// # What is checked
//
// For every case: admitted <= max (more would break GCRA's definition:
// never seen); the handler's count agrees with the clients' 200s; and
// each instant's decisions, replayed through a plain GCRA of the same
// windows, come out the same (so that no refusal was of a request the
// windows would have admitted: the spread's promises and holds take
// nothing from the bucket). Then, where the offered load keeps the
// bucket empty, admitted >= 99% of max: the bar.
//
// # Where the bar does not hold, and why
//
// Two shortfalls are not errors of the accounting (the replay agrees)
// but of the demand the limiter actually sees, and the cases that show
// them say so (short) and are held to a floor instead:
//
//   - Burst 1 with arrivals at random times. With a tolerance of zero, a
//     request that comes d after the token is back sets the next one at
//     its own arrival + T: the d is lost, as a token bucket of one
//     discards the refill while it is full. At a key rate λ the next
//     request comes 1/λ after the token on average (Poisson), so the
//     admitted rate is R/(1+R/λ): 1/1.1 = 91% at ten times over (546 of
//     600 at 10/s; 540, 90%, from constant-rate clients at random phases,
//     whose arrivals are as irregular). Burst 2
//     already absorbs the delay (the bucket then fills only if no request
//     comes for a whole interval, e^-10 at 10x), and MaxDelay removes it
//     (the next request is queued for the token).
//   - Clients that obey a whole-second Retry-After exactly (spread by
//     default, or NoSpread). A refused client stays away a second or
//     more, although the next token may be 10 ms away; with everyone at
//     10x, most clients are away at any moment and the demand the limiter
//     sees is 1-2x, not 10x, with dips below the limit the burst cannot
//     cover: at 100/s burst 10, Poisson clients get 90-94% of max with the
//     spread and 94-98% with NoSpread (25 runs each; the order of requests
//     of the same instant varies). Spread on whole seconds promises at
//     most Burst returns a second (what the bucket can absorb at that
//     instant), so at a small burst much of the rate goes unused: at 10/s
//     burst 1, constant-rate clients all end up on the whole second, and
//     get 1 or 2 a second of 10. This is the cost doc.go describes;
//     HoldRefusals (slots to the millisecond) and MaxDelay reach the bar
//     with the same clients. (Constant-rate clients at 100/s come back in
//     their own phase, a whole number of their gaps later, and do reach it.)
//
// # Cost
//
// About 6 µs of real time a request on two CPUs (mostly the synctest
// bubble's scheduling), so the spans keep the whole test under 2 s: the
// hammered shared 100/s burst 10, the two windows and the hundred keys of
// 1/s burst 5 run the full 60 s (60,000, 20,000 and 60,000 requests);
// 1000/s burst 100 runs 2 s (20,000 requests, allowed 2,100) instead of
// 60 (600,000), the hundred keys of burst 1 run 10 s. With the race
// detector the spans of the clients that hammer are cut to a quarter;
// obedient clients send little, and what they lose as they settle (the
// start's herd, sent away for seconds) would weigh four times as much in
// a quarter of the span: 50/s + 2000/min with obedient Poisson clients
// gets 99.6-100% of max over 60 s, about 99% over 15 s.
func TestAccuracy(t *testing.T) {
	var (
		w100  = []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 10}}
		w1000 = []ratelimit.Window{{Limit: 1000, Per: time.Second, Burst: 100}}
		w10b1 = []ratelimit.Window{{Limit: 10, Per: time.Second, Burst: 1}}
		w10b2 = []ratelimit.Window{{Limit: 10, Per: time.Second, Burst: 2}}
		wTwo  = []ratelimit.Window{{Limit: 50, Per: time.Second, Burst: 10}, {Limit: 2000, Per: time.Minute, Burst: 100}}
		wKey  = []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 5}}
		wKey1 = []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 1}}
	)
	const (
		minute = 60 * time.Second
		burst1 = "burst 1: the delay of each request after its token is lost"
		whole  = "obedient clients told whole seconds stay away: the demand seen is 1-2x, not 10x"
	)
	cases := []accCase{
		// One key shared by the hundred clients, 100/s burst 10.
		{name: "100rps b10, constant, hammer, spread", windows: w100, span: minute},
		{name: "100rps b10, Poisson, hammer, NoSpread", windows: w100, span: 10 * time.Second, poisson: true, mode: accNoSpread},
		{name: "100rps b10, constant, obey, spread", windows: w100, span: minute, obey: true},
		{name: "100rps b10, Poisson, obey, spread", windows: w100, span: minute, poisson: true, obey: true, short: whole, floor: 0.85},
		{name: "100rps b10, Poisson, obey, NoSpread", windows: w100, span: minute, poisson: true, obey: true, mode: accNoSpread, short: whole, floor: 0.85},
		{name: "100rps b10, Poisson, obey, HoldRefusals", windows: w100, span: minute, poisson: true, obey: true, mode: accHold},
		{name: "100rps b10, Poisson, hammer, MaxDelay", windows: w100, span: minute, poisson: true, mode: accDelay},
		// 1000/s burst 100: 2 s (see Cost).
		{name: "1000rps b100, Poisson, hammer, spread", windows: w1000, span: 2 * time.Second, poisson: true},
		{name: "1000rps b100, Poisson, obey, HoldRefusals", windows: w1000, span: 2 * time.Second, poisson: true, obey: true, mode: accHold},
		{name: "1000rps b100, constant, obey, MaxDelay", windows: w1000, span: 2 * time.Second, obey: true, mode: accDelay},
		// 10/s burst 1, and burst 2 for comparison.
		{name: "10rps b1, Poisson, hammer, spread", windows: w10b1, span: minute, poisson: true, short: burst1, floor: 0.88},
		{name: "10rps b1, constant, hammer, NoSpread", windows: w10b1, span: minute, mode: accNoSpread, short: burst1, floor: 0.88},
		{name: "10rps b1, Poisson, hammer, MaxDelay", windows: w10b1, span: minute, poisson: true, mode: accDelay},
		{name: "10rps b1, Poisson, obey, HoldRefusals", windows: w10b1, span: minute, poisson: true, obey: true, mode: accHold},
		// Every client on the whole second, one token an instant: 1 or 2
		// a second of 10, as the same-instant requests happen to be ordered.
		{name: "10rps b1, constant, obey, spread", windows: w10b1, span: minute, obey: true, short: whole, floor: 0.08},
		{name: "10rps b2, Poisson, hammer, spread", windows: w10b2, span: minute, poisson: true},
		// Two windows, the minute binding: offered 10 x 2000/min.
		{name: "50rps b10 + 2000rpm b100, Poisson, hammer, spread", windows: wTwo, span: minute, poisson: true},
		{name: "50rps b10 + 2000rpm b100, constant, obey, NoSpread", windows: wTwo, span: minute, obey: true, mode: accNoSpread},
		{name: "50rps b10 + 2000rpm b100, Poisson, obey, spread", windows: wTwo, span: minute, poisson: true, obey: true},
		{name: "50rps b10 + 2000rpm b100, Poisson, hammer, MaxDelay", windows: wTwo, span: minute, poisson: true, mode: accDelay},
		// A key per client, each offering ten times its own limit.
		{name: "100 keys of 1rps b5, Poisson, hammer, spread", windows: wKey, perKey: true, span: minute, poisson: true},
		{name: "100 keys of 1rps b5, Poisson, obey, spread", windows: wKey, perKey: true, span: minute, poisson: true, obey: true},
		{name: "100 keys of 1rps b5, constant, hammer, MaxDelay", windows: wKey, perKey: true, span: minute, mode: accDelay},
		{name: "100 keys of 1rps b1, Poisson, hammer, NoSpread", windows: wKey1, perKey: true, span: 10 * time.Second, poisson: true, mode: accNoSpread, short: burst1, floor: 0.88},
	}
	for _, c := range cases {
		if raceEnabled && !c.obey {
			c.span /= 4
		}
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := runAccuracy(t, c)
			t.Logf("%v: allowed %d, max %d, admitted %d (%+.2f%% of allowed, %+.2f%% of max), late %d; sent %d (%.1fx the limit), refused %d; %v real",
				c.span, r.allowed, r.max, r.admitted, pct(r.admitted, r.allowed), pct(r.admitted, r.max), r.late,
				r.sent, r.offered, r.refused, time.Since(start).Round(time.Millisecond))
			if r.admitted > r.max {
				t.Errorf("admitted %d, more than the %d GCRA allows", r.admitted, r.max)
			}
			if r.ok != r.admitted+r.late {
				t.Errorf("the clients saw %d 200s, the handler ran %d times (%d late)", r.ok, r.admitted+r.late, r.late)
			}
			if r.mismatch != "" {
				t.Errorf("not GCRA's decisions: %s", r.mismatch)
			}
			floor := 0.99
			if c.short != "" {
				floor = c.floor
				t.Logf("below the 1%% bar by design (%s): %.1f%% of max, floor %.0f%%", c.short, 100*float64(r.admitted)/float64(r.max), 100*floor)
			}
			if float64(r.admitted) < floor*float64(r.max) {
				t.Errorf("admitted %d, under %.0f%% of the %d allowed", r.admitted, 100*floor, r.max)
			}
		})
	}
}

type accMode int

const (
	accSpread   accMode = iota // the default: refusals spread over whole seconds
	accNoSpread                // Config.NoSpread
	accHold                    // Config.HoldRefusals
	accDelay                   // Config.MaxDelay of a second
)

type accCase struct {
	name    string
	windows []ratelimit.Window
	perKey  bool          // a key per client, each its own limit, instead of one shared
	span    time.Duration // E: the clients send in [0, E)
	poisson bool          // arrivals at exponential gaps, else at a constant rate from a random phase
	obey    bool          // a refused client comes back exactly Retry-After later, else it keeps its pace
	mode    accMode
	short   string  // why the case is not held to the 1% bar
	floor   float64 // then the fraction of max it must reach
}

type accResult struct {
	allowed, max int64 // B + R*E/Per, and what requests in [0, E) can take (see TestAccuracy)
	admitted     int64 // handler calls before E
	late         int64 // handler calls at E or later: delayed to a slot past the span
	ok, refused  int64 // statuses the clients saw
	sent         int64
	offered      float64 // sent over what the limit sustains in the span
	mismatch     string  // the first instant where the decisions were not GCRA's
}

func pct(n, of int64) float64 { return 100 * float64(n-of) / float64(of) }

// accEvent is one request: when it was decided, since the start, and
// whether it was admitted (at once or, with MaxDelay, at its slot).
type accEvent struct {
	at       time.Duration
	admitted bool
}

const accClients = 100

// runAccuracy plays c in a synctest bubble.
func runAccuracy(t *testing.T, c accCase) accResult {
	var res accResult
	synctest.Test(t, func(t *testing.T) {
		cfg := ratelimit.Config{
			Windows: c.windows,
			// Retry-After is set before OnLimited; the problem body would
			// only cost time here.
			OnLimited: func(w http.ResponseWriter, _ *http.Request, _ ratelimit.Refusal) {
				w.WriteHeader(http.StatusTooManyRequests)
			},
		}
		if !c.perKey {
			cfg.Key = func(*http.Request) string { return "api" }
		} // else the default, ByRemoteAddr: each client its own address
		var delay time.Duration
		switch c.mode {
		case accNoSpread:
			cfg.NoSpread = true
		case accHold:
			cfg.HoldRefusals = true
		case accDelay:
			delay = time.Second
			cfg.MaxDelay = delay
		}
		l, err := ratelimit.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		end := start.Add(c.span)
		var admitted, late atomic.Int64
		h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if time.Now().Before(end) {
				admitted.Add(1)
			} else {
				late.Add(1)
			}
			w.WriteHeader(http.StatusOK)
		}))

		keys := int64(1)
		rate := 10 * sustained(c.windows) // requests a second, all clients together
		if c.perKey {
			keys = accClients
			rate *= accClients
		}
		gap := time.Duration(float64(accClients) / rate * float64(time.Second)) // each client's mean gap
		events := make([][]accEvent, accClients)
		var okN, refused atomic.Int64
		done := make(chan struct{})
		for i := range accClients {
			go func() {
				defer func() { done <- struct{}{} }()
				rng := rand.New(rand.NewPCG(uint64(i), 0xacc))
				req := httptest.NewRequest("GET", "/", nil) // the limiter only reads it
				req.RemoteAddr = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256) + ":1234"
				phase := time.Duration(rng.Int64N(int64(gap))) + 1 // a constant-rate client's second request
				var evs []accEvent
				defer func() { events[i] = evs }()
				next := start // every client's first request at 0
				for {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					sent := time.Now()
					if !sent.Before(end) {
						return
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					now := time.Now() // later than sent when held, or delayed to a slot
					evs = append(evs, accEvent{sent.Sub(start), rec.Code == http.StatusOK})
					switch rec.Code {
					case http.StatusOK:
						okN.Add(1)
					case http.StatusTooManyRequests:
						refused.Add(1)
						if c.obey {
							ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
							if err != nil || ra < 0 {
								t.Errorf("Retry-After %q", rec.Header().Get("Retry-After"))
								return
							}
							next = now.Add(time.Duration(ra) * time.Second)
							continue
						}
					default:
						t.Errorf("status %d", rec.Code)
						return
					}
					switch {
					case c.poisson:
						next = next.Add(time.Duration(rng.ExpFloat64() * float64(gap)))
					case next.Equal(start):
						next = next.Add(phase)
					default:
						next = next.Add(gap)
					}
					if next.Before(now) {
						next = now // one request at a time
					}
				}
			}()
		}
		for range accClients {
			<-done
		}

		res = accResult{
			allowed:  keys * allowedFor(c.windows, c.span),
			max:      keys * maxFor(c.windows, c.span),
			admitted: admitted.Load(),
			late:     late.Load(),
			ok:       okN.Load(),
			refused:  refused.Load(),
		}
		for _, evs := range events {
			res.sent += int64(len(evs))
		}
		res.offered = float64(res.sent) / (float64(keys) * sustained(c.windows) * c.span.Seconds())
		if c.perKey {
			for _, evs := range events {
				if res.mismatch = replay(c.windows, delay, evs); res.mismatch != "" {
					break
				}
			}
		} else {
			res.mismatch = replay(c.windows, delay, slices.Concat(events...))
		}
	})
	return res
}

// allowedFor is B + R*E/Per for one key over span E, the least over the
// windows.
func allowedFor(ws []ratelimit.Window, span time.Duration) int64 {
	best := int64(math.MaxInt64)
	for _, w := range ws {
		best = min(best, w.Burst+w.Limit*int64(span)/int64(w.Per))
	}
	return best
}

// maxFor is what one key's requests in [0, span) can take: the n-th no
// earlier than (n-B)T, so n < B + span/T.
func maxFor(ws []ratelimit.Window, span time.Duration) int64 {
	best := int64(math.MaxInt64)
	for _, w := range ws {
		iv := w.Interval()
		best = min(best, w.Burst+int64((span+iv-1)/iv)-1)
	}
	return best
}

// sustained is the binding window's rate, a second.
func sustained(ws []ratelimit.Window) float64 {
	best := math.Inf(1)
	for _, w := range ws {
		best = min(best, float64(w.Limit)/w.Per.Seconds())
	}
	return best
}

// replay decides one key's requests again by a plain GCRA of the windows
// (with delay, admitting at the slot within it, as MaxDelay does), an
// instant at a time, and says where the number admitted differs.
// Requests of the same instant are alike, so only their number admitted
// is compared, not which of them.
func replay(ws []ratelimit.Window, delay time.Duration, evs []accEvent) string {
	slices.SortStableFunc(evs, func(a, b accEvent) int { return cmp.Compare(a.at, b.at) })
	tat := make([]time.Duration, len(ws))
	for i := 0; i < len(evs); {
		at := evs[i].at
		n, got := 0, 0
		for ; i < len(evs) && evs[i].at == at; i++ {
			n++
			if evs[i].admitted {
				got++
			}
		}
		want := 0
		for ; want < n; want++ {
			conform := at
			for j, w := range ws {
				conform = max(conform, max(tat[j], at)-w.Tolerance())
			}
			if conform > at+delay {
				break
			}
			for j, w := range ws {
				tat[j] = max(tat[j], conform) + w.Interval()
			}
		}
		if got != want {
			return fmt.Sprintf("at %v, %d of %d requests admitted, GCRA admits %d", at, got, n, want)
		}
	}
	return ""
}
