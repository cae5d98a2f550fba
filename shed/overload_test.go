package shed_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed/shed"
	"github.com/heed-go/heed/tier"
)

// The overload experiment's report, off by default: it runs for minutes
// of virtual time, seconds to minutes of real time.
//
//	go test ./shed/ -run TestOverload -v -args -overload
//	go test ./shed/ -run TestOverload -v -args -overload.grid
var (
	overloadReport = flag.Bool("overload", false, "TestOverload: report the full 3x overload run (10 s of virtual time) with and without shedding")
	overloadGrid   = flag.Bool("overload.grid", false, "TestOverload: report a grid of handler shapes, loads and seeds")
)

// TestOverload offers a handler three times its capacity, with and without
// a Shedder, and checks that the shedder keeps goodput near capacity and
// the latency of what it admits near the unloaded latency, that without it
// latency grows without bound and goodput collapses, and that retries are
// the ones shed.
func TestOverload(t *testing.T) {
	t.Parallel()
	base := scenario{
		Slots: 32, Service: 50 * time.Millisecond, Load: 3,
		Duration: 3500 * time.Millisecond, Warmup: 1500 * time.Millisecond,
		AttemptTimeout: time.Second, CallTimeout: 10 * time.Second, MaxAttempts: 3,
		Shed: true, Seed: 1,
	}
	if *overloadReport {
		base.Duration, base.Warmup = 10*time.Second, 2*time.Second
	}
	unloaded := base
	unloaded.Load = 0.3
	bare := base
	bare.Shed = false
	if !*overloadReport {
		// The collapse needs no scale, and an unbounded backlog is dear
		// to simulate.
		bare.Slots, bare.Duration = 8, 3*time.Second
	}

	var u, shedOut, bareOut outcome
	t.Run("runs", func(t *testing.T) {
		for _, r := range []struct {
			name string
			sc   scenario
			out  *outcome
		}{{"unloaded", unloaded, &u}, {"shed", base, &shedOut}, {"bare", bare, &bareOut}} {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				*r.out = r.sc.run(t)
			})
		}
	})
	if t.Failed() {
		return
	}
	t.Logf("unloaded (0.3x), shed: %v", u)
	t.Logf("3x, shed:  %v", shedOut)
	t.Logf("3x, bare:  %v", bareOut)

	if shedOut.Goodput < 0.9 {
		t.Errorf("goodput with shedding %.1f%% of capacity, want >= 90%%", shedOut.Goodput*100)
	}
	if limit := 2 * u.P99; shedOut.P99 > limit {
		t.Errorf("p99 of admitted requests %v, want <= 2x the unloaded p99 (%v)", shedOut.P99, limit)
	}
	if shedOut.Retries.Sent == 0 || shedOut.Retries.shedShare() < 0.95 || shedOut.Retries.shedShare() <= shedOut.First.shedShare() {
		t.Errorf("retries shed %.1f%% (of %d), first attempts %.1f%%: want retries shed first, at least 95%%",
			shedOut.Retries.shedShare()*100, shedOut.Retries.Sent, shedOut.First.shedShare()*100)
	}
	if bareOut.Goodput > 0.5 || bareOut.ServerP99 < base.AttemptTimeout {
		t.Errorf("without shedding: goodput %.1f%%, server-side p99 %v: want the collapse (goodput < 50%%, p99 > %v)",
			bareOut.Goodput*100, bareOut.ServerP99, base.AttemptTimeout)
	}

	if *overloadGrid {
		grid(t)
	}
}

// grid reports the shedder over handler shapes (fast, slow, heavy-tailed
// latency), loads and seeds.
func grid(t *testing.T) {
	type shape struct {
		slots   int
		service time.Duration
		sigma   float64
	}
	for _, sh := range []shape{{32, 50 * time.Millisecond, 0}, {8, 5 * time.Millisecond, 0}, {100, 200 * time.Millisecond, 0}, {32, 50 * time.Millisecond, 0.5}, {32, 50 * time.Millisecond, 1}} {
		sc := scenario{Slots: sh.slots, Service: sh.service, Sigma: sh.sigma, Duration: 10 * time.Second, Warmup: 2 * time.Second,
			AttemptTimeout: time.Second, CallTimeout: 10 * time.Second, MaxAttempts: 3, Shed: true, Seed: 1, Load: 0.3}
		u := sc.run(t)
		for _, load := range []float64{1.2, 3, 10} {
			for seed := uint64(1); seed <= 2; seed++ {
				sc.Load, sc.Seed = load, seed
				o := sc.run(t)
				t.Logf("slots %3d, service %v, sigma %.1f, load %4.1fx, seed %d: goodput %5.1f%%, p99 %v = %.2fx unloaded (%v); shed: first attempts %.1f%%, retries %.1f%% (of %d)",
					sh.slots, sh.service, sh.sigma, load, seed, o.Goodput*100, o.P99.Round(time.Millisecond), float64(o.P99)/float64(u.P99),
					u.P99.Round(time.Millisecond), o.First.shedShare()*100, o.Retries.shedShare()*100, o.Retries.Sent)
			}
		}
	}
}

// scenario is an overload experiment, run in virtual time: a handler that
// can serve Slots requests at once, each in about Service, more waiting for
// a slot inside it (as for CPUs or a connection pool) and doing their work
// even when their client has gone; and a fleet of clients sending first
// attempts at Load times the handler's capacity as a Poisson stream for
// Duration, each call retrying like a heed client.
type scenario struct {
	Slots    int
	Service  time.Duration // mean; uniform within ±20% unless Sigma is set
	Sigma    float64       // when set, service times are lognormal with this sigma
	Load     float64       // offered first attempts / capacity
	Duration time.Duration
	Warmup   time.Duration // left out of the measurements

	// The clients: an attempt is abandoned after AttemptTimeout (sent as
	// Heed-Timeout); a 503 or a timeout is retried with Heed-Attempt,
	// after Retry-After plus up to 0.5 s or a backoff of 0.5-1 s, up to
	// MaxAttempts, while CallTimeout lasts.
	AttemptTimeout, CallTimeout time.Duration
	MaxAttempts                 int

	Shed   bool // behind a Shedder (default Config), or bare
	Config shed.Config
	Seed   uint64
}

// outcome is what a scenario measured, over the attempts sent after the
// warmup and before the end.
type outcome struct {
	Goodput   float64       // attempts answered 200 within their timeout, per second, over the handler's capacity
	P50, P99  time.Duration // of those, as their clients saw them (queue wait included)
	ServerP99 time.Duration // of every request the handler served, from arrival to end, whether its client still waited or not
	First     counts        // first attempts
	Retries   counts        // retries
}

type counts struct{ Sent, OK, Shed, TimedOut int }

func (c counts) shedShare() float64 {
	if c.Sent == 0 {
		return 0
	}
	return float64(c.Shed) / float64(c.Sent)
}

func (o outcome) String() string {
	return fmt.Sprintf("goodput %.1f%% of capacity; admitted p50 %v, p99 %v (server-side p99 %v); "+
		"first attempts: %d sent, %.1f%% shed, %d timed out; retries: %d sent, %.1f%% shed, %d timed out",
		o.Goodput*100, o.P50.Round(time.Millisecond), o.P99.Round(time.Millisecond), o.ServerP99.Round(time.Millisecond),
		o.First.Sent, o.First.shedShare()*100, o.First.TimedOut, o.Retries.Sent, o.Retries.shedShare()*100, o.Retries.TimedOut)
}

// run runs sc in a synctest bubble.
func (sc scenario) run(t *testing.T) outcome {
	var out outcome
	synctest.Test(t, func(t *testing.T) { out = sc.simulate(t) })
	return out
}

func (sc scenario) simulate(t *testing.T) outcome {
	var rngMu sync.Mutex
	rng := rand.New(rand.NewPCG(sc.Seed, 1))
	rand01 := func() float64 {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.Float64()
	}

	slots := make(chan struct{}, sc.Slots)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slots <- struct{}{} // waits for a slot, whether its client still waits or not
		time.Sleep(sc.serviceTime(rand01))
		<-slots
		w.WriteHeader(http.StatusOK)
	})
	if sc.Shed {
		s, err := shed.New(sc.Config)
		if err != nil {
			t.Fatal(err)
		}
		h = s.Handler(h)
	}

	begin := time.Now()
	from, to := begin.Add(sc.Warmup), begin.Add(sc.Duration)
	measured := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	var (
		mu        sync.Mutex
		okLat     []time.Duration
		serverLat []time.Duration
		good      int
		first     counts
		retries   counts
		serving   sync.WaitGroup // the server's goroutines, which outlive abandoned attempts
	)
	target := &url.URL{Path: "/work"}

	// attempt sends attempt n of a call and returns its status (0: timed
	// out) and Retry-After.
	attempt := func(n int, callDeadline time.Time) (int, time.Duration) {
		timeout := min(sc.AttemptTimeout, time.Until(callDeadline))
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		r := (&http.Request{Method: http.MethodGet, URL: target, Header: http.Header{}}).WithContext(ctx)
		r.Header.Set(tier.HeaderTimeout, strconv.FormatInt(timeout.Milliseconds(), 10))
		if n > 1 {
			r.Header.Set(tier.HeaderAttempt, strconv.Itoa(n))
		}
		w := &sink{header: http.Header{}}
		done := make(chan struct{})
		sent := time.Now()
		serving.Go(func() {
			h.ServeHTTP(w, r)
			if w.status == http.StatusOK && measured(sent) {
				mu.Lock()
				serverLat = append(serverLat, time.Since(sent))
				mu.Unlock()
			}
			close(done)
		})
		status, retryAfter := 0, time.Duration(0)
		select {
		case <-done:
			status = w.status
			if v, err := strconv.Atoi(w.header.Get("Retry-After")); err == nil {
				retryAfter = time.Duration(v) * time.Second
			}
		case <-ctx.Done():
		}
		mu.Lock()
		defer mu.Unlock()
		c := &first
		if n > 1 {
			c = &retries
		}
		if measured(sent) {
			c.Sent++
			switch status {
			case http.StatusOK:
				c.OK++
				okLat = append(okLat, time.Since(sent))
			case http.StatusServiceUnavailable:
				c.Shed++
			case 0:
				c.TimedOut++
			}
		}
		if status == http.StatusOK && measured(time.Now()) {
			good++
		}
		return status, retryAfter
	}
	call := func() {
		callDeadline := time.Now().Add(sc.CallTimeout)
		for n := 1; n <= sc.MaxAttempts; n++ {
			status, retryAfter := attempt(n, callDeadline)
			if status == http.StatusOK {
				return
			}
			wait := time.Duration((0.5 + 0.5*rand01()) * float64(time.Second)) // backoff
			if retryAfter > 0 {
				wait = retryAfter + time.Duration(0.5*rand01()*float64(time.Second)) // heed's jitter on a hint
			}
			if time.Until(callDeadline) <= wait {
				return
			}
			time.Sleep(wait)
		}
	}

	capacity := float64(sc.Slots) / sc.Service.Seconds()
	rate := sc.Load * capacity
	var calls sync.WaitGroup
	for time.Since(begin) < sc.Duration {
		calls.Go(call)
		gap := -math.Log(1-rand01()) / rate
		time.Sleep(time.Duration(gap * float64(time.Second)))
	}
	calls.Wait()
	serving.Wait() // the abandoned requests finish their work

	return outcome{
		Goodput:   float64(good) / (sc.Duration - sc.Warmup).Seconds() / capacity,
		P50:       percentile(okLat, 0.50),
		P99:       percentile(okLat, 0.99),
		ServerP99: percentile(serverLat, 0.99),
		First:     first,
		Retries:   retries,
	}
}

func (sc scenario) serviceTime(rand01 func() float64) time.Duration {
	if sc.Sigma == 0 {
		return time.Duration(float64(sc.Service) * (0.8 + 0.4*rand01()))
	}
	// Box-Muller; the mean of exp(N(mu, sigma^2)) is exp(mu + sigma^2/2).
	z := math.Sqrt(-2*math.Log(1-rand01())) * math.Cos(2*math.Pi*rand01())
	return time.Duration(float64(sc.Service) * math.Exp(sc.Sigma*z-sc.Sigma*sc.Sigma/2))
}

// sink is the least http.ResponseWriter: a status and the header.
type sink struct {
	header http.Header
	status int
}

func (w *sink) Header() http.Header { return w.header }

func (w *sink) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *sink) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}
