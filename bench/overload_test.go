package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/shed"
	"github.com/heed-go/heed/tier"
)

// The loopback overload experiment's full report, off by default: about
// five minutes of real time, on a machine left otherwise idle.
//
//	cd bench && go test -run TestOverloadLoopback -v -timeout 20m . -overload.loopback
var overloadLoopback = flag.Bool("overload.loopback", false,
	"TestOverloadLoopback: run the full loopback overload experiment (20 s per configuration at 3x, then a grid of loads, shapes and seeds; about five minutes)")

// The clients of the experiment, as in shed's TestOverload: an attempt is
// abandoned after ovAttemptTimeout (sent as Heed-Timeout); a 503 or a
// failure is retried with Heed-Attempt, after Retry-After plus up to 0.5 s
// (heed's jitter on a hint; the shedder's Retry-After is 1-3 s and heed
// obeys it up to WithMaxWait, 60 s by default) or a backoff of 0.5-1 s, up
// to ovMaxAttempts, while ovCallTimeout lasts.
const (
	ovAttemptTimeout = time.Second
	ovCallTimeout    = 10 * time.Second
	ovMaxAttempts    = 3
)

// TestOverloadLoopback is shed's TestOverload on loopback, in real time: a
// handler with a fixed capacity behind a real HTTP server on 127.0.0.1,
// offered three times its capacity by an open-loop Poisson stream of calls
// over real connections, with a shed.Shedder (default Config) inside
// tier.Middleware, and bare (tier.Middleware only). The bar:
// goodput at least 90% of capacity and the p99 of admitted requests at
// most 2x the unloaded p99 with the shedder, the collapse without it, and
// retries shed first.
//
//	cd bench && go test -run TestOverloadLoopback -v .                                      # smoke, ~5 s
//	cd bench && go test -run TestOverloadLoopback -v -timeout 20m . -overload.loopback      # full, ~5 min
//
// The clients are a plain loop (not heed's client) so that every attempt is
// counted and classified exactly: it sets Heed-Timeout and Heed-Attempt
// itself and obeys Retry-After as heed does. The Transport keeps up to 2048
// idle connections, so that first attempts and their shed answers reuse
// connections instead of dialing; a timed-out attempt closes its
// connection (HTTP/1.1 has no other way to abandon a request), so the bare
// server, whose every attempt times out, gets a new connection per attempt.
//
// File descriptors: each connection costs two here (the client's end and
// the server's). Without shedding, every abandoned request keeps the
// server's end open until its handler has waited for its slot and done its
// work, which at 3x load is never during the run: the open connections grow
// by several times the capacity per second. A run stops offering load when
// the sockets open pass 70% of RLIMIT_NOFILE (read from /proc/self/limits,
// 4096 where it cannot be read) and reports the shorter window it measured
// (past 90%, dials fail and count as failed, so that the server's accepts
// never do); with 20,000 descriptors the bare 3x run lasts about six
// seconds, long enough to show the collapse, which is complete two seconds
// after the load starts.
//
// Without -overload.loopback the test is a smoke run of about five seconds
// on a smaller handler, logged, with a check of the plumbing only: the
// unloaded run got answers, and no attempt of any run failed other than by
// timing out or being shed. Its measures are not checked: on a machine
// shared with other builds and tests (2 vCPUs here, the hypervisor often
// stealing some) they measure the machine as much as the shedder. Even
// "goodput above half the capacity at 3x" fails there: under -race, with a
// load average of 4.7 beside it, a 25 ms time.Sleep took 348 ms on
// average, and every attempt of the 3x run with the shedder timed out
// (goodput 0.6%). The full run is the measurement.
func TestOverloadLoopback(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	if *overloadLoopback {
		overloadFull(t)
		return
	}
	overloadSmoke(t)
}

func overloadSmoke(t *testing.T) {
	shape := ovShape{Slots: 8, Service: 25 * time.Millisecond}
	unloaded := ovRun{Shape: shape, Load: 0.3, Shed: true, Warmup: 250 * time.Millisecond, Measure: 750 * time.Millisecond, Seed: 1}
	shedRun := ovRun{Shape: shape, Load: 3, Shed: true, Warmup: 1500 * time.Millisecond, Measure: time.Second, Seed: 1}
	bare := shedRun
	bare.Shed = false

	u := unloaded.run(t)
	// The two 3x runs at once, to keep the smoke short; the CPU column is
	// then theirs together.
	var s, b ovResult
	var wg sync.WaitGroup
	wg.Go(func() { s = shedRun.run(t) })
	wg.Go(func() { b = bare.run(t) })
	wg.Wait()
	t.Log("\n" + ovTable([]ovRow{{"unloaded, shed", unloaded, u, u}, {"shed", shedRun, s, u}, {"bare", bare, b, u}}))

	if u.First.OK == 0 {
		t.Errorf("unloaded: none of %d attempts answered 200", u.First.Sent)
	}
	for _, r := range []struct {
		name string
		res  ovResult
	}{{"unloaded", u}, {"3x, shed", s}} { // the bare run may refuse its own dials (see the file descriptors above)
		if n := r.res.First.Failed + r.res.Retries.Failed; n > 0 {
			t.Errorf("%s: %d attempts failed other than by a timeout or a 503", r.name, n)
		}
	}
}

// overloadFull is the measurement: 20 s at 0.3x (the unloaded p99), 3x with
// the shedder and 3x bare, on 16 slots of 50 ms (320/s), checked against the
// issue's bar; then a grid of loads (1.5x, 3x, 10x), two shapes (that one,
// and 8 slots of 20 ms log-normal, 400/s) and two seeds, reported only.
//
// The clients run in the test's process, on the server's CPUs, and a
// request costs the two of them about 240 µs of CPU here: at 10x, first
// attempts and their retries make about 7,000 requests a second, more than
// the two CPUs of the machine this was written on, so the 10x rows measure
// that machine rather than the shedder. The "client behind" mark in the
// table says when a row's client could not keep its own schedule.
func overloadFull(t *testing.T) {
	const (
		warmup  = 3 * time.Second
		measure = 20 * time.Second
		// The bare server's collapse is complete two seconds after the
		// load starts (its queue then holds more than an attempt
		// timeout's worth of work), and its runs are short (see the file
		// descriptors above).
		bareWarmup  = 2 * time.Second
		gridMeasure = 10 * time.Second
	)
	a := ovShape{Slots: 16, Service: 50 * time.Millisecond}
	b := ovShape{Slots: 8, Service: 20 * time.Millisecond, Sigma: 0.5}

	unloaded := ovRun{Shape: a, Load: 0.3, Shed: true, Warmup: warmup, Measure: measure, Seed: 1}
	shedRun := ovRun{Shape: a, Load: 3, Shed: true, Warmup: warmup, Measure: measure, Seed: 1}
	bare := ovRun{Shape: a, Load: 3, Shed: false, Warmup: bareWarmup, Measure: measure, Seed: 1}

	t.Logf("%s; load before: %s", ovMachine(), ovLoadavg())
	u := unloaded.run(t)
	s := shedRun.run(t)
	bb := bare.run(t)
	t.Log("\n" + ovTable([]ovRow{{"unloaded, shed", unloaded, u, u}, {"shed", shedRun, s, u}, {"bare", bare, bb, u}}))
	t.Logf("3x with the shedder, second by second:\n%s", s.Timeline)
	t.Logf("3x bare, second by second:\n%s", bb.Timeline)

	if s.Goodput < 0.9 {
		t.Errorf("3x: goodput with shedding %.1f%% of capacity, want >= 90%%", s.Goodput*100)
	}
	if lim := 2 * u.P99; s.P99 > lim {
		t.Errorf("3x: p99 of admitted requests %v (client-side; server-side %v), want <= 2x the unloaded p99 (%v; server-side %v)",
			s.P99, s.SrvP99, u.P99, u.SrvP99)
	}
	if s.Retries.Sent == 0 || s.Retries.shedShare() <= s.First.shedShare() {
		t.Errorf("3x: retries shed %.1f%% (of %d), first attempts %.1f%%: want retries shed first",
			s.Retries.shedShare()*100, s.Retries.Sent, s.First.shedShare()*100)
	}
	if bb.Window <= 0 || bb.Goodput > 0.5 {
		t.Errorf("3x without shedding: goodput %.1f%% over %v: want the collapse (goodput < 50%%)", bb.Goodput*100, bb.Window)
	}

	// The grid: reported, not checked.
	rows := []ovRow{{"unloaded", unloaded, u, u}}
	for _, sh := range []ovShape{a, b} {
		base := u
		if sh != a {
			un := ovRun{Shape: sh, Load: 0.3, Shed: true, Warmup: warmup, Measure: gridMeasure, Seed: 1}
			base = un.run(t)
			rows = append(rows, ovRow{"unloaded", un, base, base})
		}
		for _, load := range []float64{1.5, 3, 10} {
			for seed := uint64(1); seed <= 2; seed++ {
				r := ovRun{Shape: sh, Load: load, Shed: true, Warmup: warmup, Measure: gridMeasure, Seed: seed}
				rows = append(rows, ovRow{"shed", r, r.run(t), base})
			}
		}
	}
	t.Logf("grid (shed, %v measured after %v each; p99 ratios to the same shape's unloaded run):\n%s", gridMeasure, warmup, ovTable(rows))
	t.Logf("load after: %s", ovLoadavg())
}

// ovShape is a handler's capacity: Slots requests at once, each for about
// Service. Capacity is Slots / Service per second.
type ovShape struct {
	Slots   int
	Service time.Duration // mean; uniform within ±20% unless Sigma is set
	Sigma   float64       // when set, service times are log-normal with this sigma
}

func (s ovShape) capacity() float64 { return float64(s.Slots) / s.Service.Seconds() }

func (s ovShape) String() string {
	d := "±20%"
	if s.Sigma > 0 {
		d = fmt.Sprintf("lognormal σ %.1f", s.Sigma)
	}
	return fmt.Sprintf("%d x %v %s (%.0f/s)", s.Slots, s.Service, d, s.capacity())
}

// serviceTime draws a service time, as shed's TestOverload does.
func (s ovShape) serviceTime(rand01 func() float64) time.Duration {
	if s.Sigma == 0 {
		return time.Duration(float64(s.Service) * (0.8 + 0.4*rand01()))
	}
	// Box-Muller; the mean of exp(N(mu, sigma^2)) is exp(mu + sigma^2/2).
	z := math.Sqrt(-2*math.Log(1-rand01())) * math.Cos(2*math.Pi*rand01())
	return time.Duration(float64(s.Service) * math.Exp(s.Sigma*z-s.Sigma*s.Sigma/2))
}

// ovRun is one run: first attempts at Load times the shape's capacity, a
// Poisson stream for Warmup+Measure, measured after Warmup.
type ovRun struct {
	Shape           ovShape
	Load            float64
	Shed            bool // behind a shed.Shedder (default Config), or bare
	Warmup, Measure time.Duration
	Seed            uint64
}

// ovCounts are the attempts sent in the window, by outcome.
type ovCounts struct{ Sent, OK, Shed, TimedOut, Failed int }

func (c ovCounts) shedShare() float64 {
	if c.Sent == 0 {
		return 0
	}
	return float64(c.Shed) / float64(c.Sent)
}

// ovResult is what a run measured over its window.
type ovResult struct {
	Window  time.Duration // measured; shorter than Measure when the run stopped early
	Stopped string        // why it stopped early
	// Goodput is the attempts answered 200 within their timeout during
	// the window, per second, over the shape's capacity.
	Goodput float64
	// P50 and P99 are of the attempts sent in the window and answered
	// 200 within their timeout, as their clients saw them.
	P50, P99 time.Duration
	// SrvP50 and SrvP99 are of the requests that arrived at the server in
	// the window and were answered 200, from the server's handler entry
	// (outside tier.Middleware) to its exit, whether their clients still
	// waited or not.
	SrvP50, SrvP99 time.Duration
	First, Retries ovCounts
	Busy           float64       // share of the handler's slot-time spent in service during the window
	MeanService    time.Duration // realized mean service time (time.Sleep oversleeps)
	Lag99          time.Duration // p99 of how late the client fired its arrivals
	Limit          [3]int        // the shedder's limit in the window: min, median, max (sampled every 50 ms)
	Baseline       time.Duration // the shedder's baseline at the end
	PeakSockets    int           // most sockets open at once, both ends
	CPU            float64       // this process's CPU use in the window, in CPUs (Linux)
	Steal          float64       // the machine's CPU time stolen by the hypervisor in the window, share (Linux)
	LoadAvg        string        // the load averages at the window's end (Linux)
	Timeline       string        // the run second by second
}

type ovAttempt struct {
	sent, done time.Time
	n          int
	status     int // 0: timed out; -1: failed otherwise
}

type ovSpan struct{ from, to time.Time }

// run runs rc against a fresh server and a fresh client.
func (rc ovRun) run(t *testing.T) ovResult {
	t.Helper()
	var (
		mu       sync.Mutex
		attempts []ovAttempt
		served   []ovSpan // the server's 200s, handler entry to exit
		service  []ovSpan // the slots' service times
	)

	// The handler: Slots slots, a FIFO of requests waiting for one (a
	// channel's blocked senders are served in order) that never gives up
	// (as for CPUs: the work is done whether its client still waits or
	// not), then its service time. stop ends the run: waiting requests
	// leave with 500, never counted.
	stop := make(chan struct{})
	slots := make(chan struct{}, rc.Shape.Slots)
	svcRand := ovRand(rc.Seed, 2)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		case <-stop:
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		d := rc.Shape.serviceTime(svcRand)
		from := time.Now()
		time.Sleep(d)
		to := time.Now()
		<-slots
		mu.Lock()
		service = append(service, ovSpan{from, to})
		mu.Unlock()
		w.Header().Set("Content-Length", "3")
		_, _ = io.WriteString(w, "ok\n")
	})
	var sh *shed.Shedder
	if rc.Shed {
		var err error
		if sh, err = shed.New(shed.Config{}); err != nil {
			t.Error(err) // not Fatal: the smoke runs two runs on goroutines of its own
			return ovResult{}
		}
		h = sh.Handler(h)
	}
	stack := tier.Middleware(h)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := time.Now()
		sw := &ovStatus{ResponseWriter: w}
		stack.ServeHTTP(sw, r)
		if sw.status == http.StatusOK {
			out := time.Now()
			mu.Lock()
			served = append(served, ovSpan{in, out})
			mu.Unlock()
		}
	}))

	// Sockets, both ends, against the budget.
	var sockets, peak atomic.Int64
	open := func(d int64) {
		n := sockets.Add(d)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
	}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open(1)
		case http.StateClosed, http.StateHijacked:
			open(-1)
		}
	}
	// The run stops at budget; past hard, dials fail (as Failed) rather
	// than the server's accepts.
	limit := int64(ovOpenFileLimit())
	budget, hard := limit*7/10, limit*9/10
	srv.Start()
	var dialer net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if sockets.Load() >= hard {
				return nil, errOvDescriptors
			}
			open(1) // a connect that waits (the server's accept queue full) holds its descriptor too
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				open(-1)
				return nil, err
			}
			return &ovConn{Conn: c, closed: func() { open(-1) }}, nil
		},
		MaxIdleConns:        2048,
		MaxIdleConnsPerHost: 2048,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: tr}
	stopOnce := sync.OnceFunc(func() { close(stop) })
	defer func() {
		stopOnce()
		srv.Close()
		tr.CloseIdleConnections()
	}()
	begin := time.Now()
	from, to := begin.Add(rc.Warmup), begin.Add(rc.Warmup+rc.Measure)
	var (
		ended    = make(chan struct{}) // no attempt starts after it is closed
		endOnce  sync.Once
		end      time.Time
		stopped  string
		overflow = func(now time.Time) bool {
			n := sockets.Load()
			if n > budget {
				endOnce.Do(func() {
					end, stopped = now, fmt.Sprintf("stopped after %.1f s: %d sockets open, budget %d", now.Sub(begin).Seconds(), n, budget)
					close(ended)
				})
			}
			return n > budget
		}
	)
	jitter := ovRand(rc.Seed, 3)

	// attempt sends attempt n of a call and returns its status (0: timed
	// out, -1: failed) and Retry-After.
	attempt := func(n int, callDeadline time.Time) (int, time.Duration) {
		timeout := min(ovAttemptTimeout, time.Until(callDeadline))
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/work", nil)
		if err != nil {
			panic(err)
		}
		req.Header.Set(tier.HeaderTimeout, strconv.FormatInt(timeout.Milliseconds(), 10))
		if n > 1 {
			req.Header.Set(tier.HeaderAttempt, strconv.Itoa(n))
		}
		a := ovAttempt{sent: time.Now(), n: n, status: -1}
		var retryAfter time.Duration
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				a.status = resp.StatusCode
				if v, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
					retryAfter = time.Duration(v) * time.Second
				}
			}
		}
		if err != nil && (errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil) {
			a.status = 0
		}
		a.done = time.Now()
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
		return a.status, retryAfter
	}
	call := func() {
		callDeadline := time.Now().Add(ovCallTimeout)
		for n := 1; n <= ovMaxAttempts; n++ {
			status, retryAfter := attempt(n, callDeadline)
			if status == http.StatusOK {
				return
			}
			wait := time.Duration((0.5 + 0.5*jitter()) * float64(time.Second)) // backoff
			if retryAfter > 0 {
				wait = retryAfter + time.Duration(0.5*jitter()*float64(time.Second)) // heed's jitter on a hint
			}
			if time.Until(callDeadline) <= wait {
				return
			}
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-ended:
				timer.Stop()
				return
			}
		}
	}

	// A sampler: the shedder's state and the CPU counters, every 50 ms.
	var (
		samples     []ovSample
		samplerDone = make(chan struct{})
	)
	sample := func() ovSample {
		x := ovSample{proc: ovReadProc()}
		if sh != nil {
			x.stats = sh.Stats()
		}
		return x
	}
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ended:
				return
			case now := <-tick.C:
				samples = append(samples, sample())
				overflow(now)
			}
		}
	}()

	// The arrivals: an open-loop Poisson stream, on an absolute schedule
	// so that a late wake-up does not lower the rate.
	arrivals := rand.New(rand.NewPCG(rc.Seed, 1))
	rate := rc.Load * rc.Shape.capacity()
	var (
		calls sync.WaitGroup
		lags  []ovSpan // when each call was due, and when it was made
	)
	until := func(t time.Time) bool { // reports whether the run goes on
		timer := time.NewTimer(time.Until(t))
		defer timer.Stop()
		select {
		case <-timer.C:
			return true
		case <-ended:
			return false
		}
	}
	for next := begin; ; {
		next = next.Add(time.Duration(arrivals.ExpFloat64() / rate * float64(time.Second)))
		if !next.Before(to) {
			until(to)
			break
		}
		if !until(next) {
			break
		}
		now := time.Now()
		if overflow(now) {
			break
		}
		lags = append(lags, ovSpan{next, now})
		calls.Go(call)
	}
	endOnce.Do(func() { end = to; close(ended) })
	<-samplerDone
	samples = append(samples, sample())
	calls.Wait() // the attempts in flight end within their timeout
	stopOnce()   // the bare server's backlog leaves
	srv.Close()

	d := ovData{begin: begin, attempts: attempts, served: served, service: service, lags: lags, samples: samples}
	r := d.measure(from, end, rc.Shape)
	r.Stopped = stopped
	r.PeakSockets = int(peak.Load())
	r.Timeline = d.timeline(end)
	return r
}

// ovSample is a reading of the shedder's state and the CPU counters.
type ovSample struct {
	stats shed.Stats
	proc  ovProc
}

// ovData is what a run recorded.
type ovData struct {
	begin    time.Time
	attempts []ovAttempt
	served   []ovSpan // the server's 200s, handler entry to exit
	service  []ovSpan // the slots' service times
	lags     []ovSpan // the calls, when due and when made
	samples  []ovSample
}

// measure returns the measures of the window [from, end).
func (d ovData) measure(from, end time.Time, shape ovShape) ovResult {
	r := ovResult{Window: max(0, end.Sub(from))}
	if r.Window <= 0 {
		return r
	}
	in := func(x time.Time) bool { return !x.Before(from) && x.Before(end) }
	var okLat, srvLat, lags []time.Duration
	good := 0
	for _, a := range d.attempts {
		if a.status == http.StatusOK && in(a.done) {
			good++
		}
		if !in(a.sent) {
			continue
		}
		c := &r.First
		if a.n > 1 {
			c = &r.Retries
		}
		c.Sent++
		switch a.status {
		case http.StatusOK:
			c.OK++
			okLat = append(okLat, a.done.Sub(a.sent))
		case http.StatusServiceUnavailable:
			c.Shed++
		case 0:
			c.TimedOut++
		default:
			c.Failed++
		}
	}
	for _, s := range d.served {
		if in(s.from) {
			srvLat = append(srvLat, s.to.Sub(s.from))
		}
	}
	var busy, svc time.Duration
	nsvc := 0
	for _, s := range d.service {
		if lo, hi := later(s.from, from), earlier(s.to, end); hi.After(lo) {
			busy += hi.Sub(lo)
		}
		if in(s.from) {
			svc += s.to.Sub(s.from)
			nsvc++
		}
	}
	for _, l := range d.lags {
		if in(l.to) {
			lags = append(lags, l.to.Sub(l.from))
		}
	}
	r.Goodput = float64(good) / r.Window.Seconds() / shape.capacity()
	r.P50, r.P99 = ovQuantile(okLat, 0.5), ovQuantile(okLat, 0.99)
	r.SrvP50, r.SrvP99 = ovQuantile(srvLat, 0.5), ovQuantile(srvLat, 0.99)
	r.Busy = busy.Seconds() / r.Window.Seconds() / float64(shape.Slots)
	if nsvc > 0 {
		r.MeanService = svc / time.Duration(nsvc)
	}
	r.Lag99 = ovQuantile(lags, 0.99)

	var limits []int
	var p0, p1 ovProc
	for _, x := range d.samples {
		if !in(x.proc.at) {
			continue
		}
		if p0.at.IsZero() {
			p0 = x.proc
		}
		p1 = x.proc
		limits = append(limits, x.stats.Limit)
	}
	if len(limits) > 0 {
		slices.Sort(limits)
		r.Limit = [3]int{limits[0], limits[len(limits)/2], limits[len(limits)-1]}
	}
	if n := len(d.samples); n > 0 {
		r.Baseline = d.samples[n-1].stats.Baseline
	}
	r.CPU, r.Steal = p0.use(p1)
	r.LoadAvg = ovLoadavg()
	return r
}

// timeline returns the run second by second, up to end: the calls made
// and how late the latest was, the attempts answered (200, 503, timed out)
// in the second, the p99 of the 200s sent or arrived in it (client-side,
// server-side), the shedder's limit (median of the samples), requests in
// flight and queued (most), latency (of its last window) and baseline,
// the mean service time, and the CPU use.
func (d ovData) timeline(end time.Time) string {
	n := int(math.Ceil(end.Sub(d.begin).Seconds()))
	type sec struct {
		calls, ok, shed, timedOut int
		lag                       time.Duration
		cli, srv                  []time.Duration
		svc                       time.Duration
		nsvc                      int
		limits                    []int
		inflight, queued          int
		latency, baseline         time.Duration
		p0, p1                    ovProc
	}
	secs := make([]sec, n)
	at := func(x time.Time) *sec {
		if k := int(x.Sub(d.begin) / time.Second); k >= 0 && k < n {
			return &secs[k]
		}
		return nil
	}
	for _, l := range d.lags {
		if s := at(l.to); s != nil {
			s.calls++
			s.lag = max(s.lag, l.to.Sub(l.from))
		}
	}
	for _, a := range d.attempts {
		if s := at(a.done); s != nil {
			switch a.status {
			case http.StatusOK:
				s.ok++
			case http.StatusServiceUnavailable:
				s.shed++
			case 0:
				s.timedOut++
			}
		}
		if s := at(a.sent); s != nil && a.status == http.StatusOK {
			s.cli = append(s.cli, a.done.Sub(a.sent))
		}
	}
	for _, x := range d.served {
		if s := at(x.from); s != nil {
			s.srv = append(s.srv, x.to.Sub(x.from))
		}
	}
	for _, x := range d.service {
		if s := at(x.from); s != nil {
			s.svc += x.to.Sub(x.from)
			s.nsvc++
		}
	}
	for _, x := range d.samples {
		if s := at(x.proc.at); s != nil {
			s.limits = append(s.limits, x.stats.Limit)
			s.inflight, s.queued = max(s.inflight, x.stats.InFlight), max(s.queued, x.stats.Queued)
			s.latency, s.baseline = x.stats.Latency, x.stats.Baseline
			if s.p0.at.IsZero() {
				s.p0 = x.proc
			}
			s.p1 = x.proc
		}
	}
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64) }
	var sb strings.Builder
	sb.WriteString("| s | calls | lag max ms | 200 | 503 | timed out | p99 ms client / server | limit | in flight | queued | latency / baseline ms | service ms | CPU |\n")
	sb.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for k, s := range secs {
		lim := 0
		if len(s.limits) > 0 {
			slices.Sort(s.limits)
			lim = s.limits[len(s.limits)/2]
		}
		svc := time.Duration(0)
		if s.nsvc > 0 {
			svc = s.svc / time.Duration(s.nsvc)
		}
		cpu, _ := s.p0.use(s.p1)
		fmt.Fprintf(&sb, "| %d | %d | %s | %d | %d | %d | %s / %s | %d | %d | %d | %s / %s | %.1f | %.2f |\n",
			k, s.calls, ms(s.lag), s.ok, s.shed, s.timedOut, ms(ovQuantile(s.cli, 0.99)), ms(ovQuantile(s.srv, 0.99)),
			lim, s.inflight, s.queued, ms(s.latency), ms(s.baseline), float64(svc)/1e6, cpu)
	}
	return sb.String()
}

// errOvDescriptors fails a dial when the process is about to run out of
// file descriptors.
var errOvDescriptors = errors.New("overload test: out of file descriptors")

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// ovRand returns a seeded source of uniform numbers in [0, 1), safe for
// concurrent use.
func ovRand(seed, stream uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, stream))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// ovStatus notes the status a handler wrote.
type ovStatus struct {
	http.ResponseWriter
	status int
}

func (w *ovStatus) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *ovStatus) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ovConn calls closed once, when the connection is closed.
type ovConn struct {
	net.Conn
	once   sync.Once
	closed func()
}

func (c *ovConn) Close() error {
	c.once.Do(c.closed)
	return c.Conn.Close()
}

// ovQuantile is the q-quantile of d, as shed's TestOverload computes it.
func ovQuantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// ovRow is a line of the report: a run, its result, and the unloaded run
// its p99 is compared with.
type ovRow struct {
	name     string
	run      ovRun
	res      ovResult
	unloaded ovResult
}

func ovTable(rows []ovRow) string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
	ratio := func(a, b time.Duration) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", float64(a)/float64(b))
	}
	var sb strings.Builder
	sb.WriteString("| config | shape | load | seed | window | goodput | p50 / p99 ms (client) | p99 / unloaded | p50 / p99 ms (server) | p99 / unloaded (server) " +
		"| first shed | retries shed | timeouts first / retries | failed | limit min/med/max | busy | service | arrival lag p99 | sockets | CPU | steal | load1 |\n")
	sb.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		o, u := r.res, r.unloaded
		window := fmt.Sprintf("%.1f s", o.Window.Seconds())
		if o.Stopped != "" {
			window += " (" + o.Stopped + ")"
		}
		// A client more than a service time behind its schedule is
		// measuring its own machine, not the server.
		lag := ms(o.Lag99) + " ms"
		if o.Lag99 > r.run.Shape.Service {
			lag += " (client behind)"
		}
		limit := "-"
		if r.run.Shed {
			limit = fmt.Sprintf("%d/%d/%d (baseline %s ms)", o.Limit[0], o.Limit[1], o.Limit[2], ms(o.Baseline))
		}
		fmt.Fprintf(&sb, "| %s | %s | %.1fx | %d | %s | %.1f%% | %s / %s | %s | %s / %s | %s | %.1f%% | %.1f%% of %d | %d / %d | %d | %s | %.1f%% | %s ms | %s | %d | %.2f | %.1f%% | %s |\n",
			r.name, r.run.Shape, r.run.Load, r.run.Seed, window, o.Goodput*100,
			ms(o.P50), ms(o.P99), ratio(o.P99, u.P99), ms(o.SrvP50), ms(o.SrvP99), ratio(o.SrvP99, u.SrvP99),
			o.First.shedShare()*100, o.Retries.shedShare()*100, o.Retries.Sent,
			o.First.TimedOut, o.Retries.TimedOut, o.First.Failed+o.Retries.Failed, limit,
			o.Busy*100, ms(o.MeanService), lag, o.PeakSockets, o.CPU, o.Steal*100, o.LoadAvg)
	}
	return sb.String()
}

// The machine, best effort: these read Linux's /proc and report nothing
// elsewhere.

// ovTicksPerSecond is Linux's USER_HZ, 100 on every architecture Go runs on.
const ovTicksPerSecond = 100

// ovProc is a reading of the CPU counters: this process's user and system
// time, and the machine's total and stolen time, in ticks.
type ovProc struct {
	at                                time.Time
	ok                                bool
	selfTicks, totalTicks, stealTicks int64
}

// use returns the process's CPU use from p to q, in CPUs, and the share
// of the machine's CPU time stolen meanwhile; zeros when unknown.
func (p ovProc) use(q ovProc) (cpu, steal float64) {
	secs := q.at.Sub(p.at).Seconds()
	if !p.ok || !q.ok || secs <= 0 {
		return 0, 0
	}
	cpu = float64(q.selfTicks-p.selfTicks) / ovTicksPerSecond / secs
	if total := q.totalTicks - p.totalTicks; total > 0 {
		steal = float64(q.stealTicks-p.stealTicks) / float64(total)
	}
	return cpu, steal
}

func ovReadProc() ovProc {
	p := ovProc{at: time.Now()}
	self, err1 := os.ReadFile("/proc/self/stat")
	all, err2 := os.ReadFile("/proc/stat")
	if err1 != nil || err2 != nil {
		return p
	}
	// /proc/self/stat: utime and stime are fields 14 and 15, the 12th and
	// 13th after the command's closing parenthesis.
	s := string(self)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// /proc/stat's first line: cpu user nice system idle iowait irq
	// softirq steal guest guest_nice (guest time is within user time).
	line, _, _ := strings.Cut(string(all), "\n")
	g := strings.Fields(line)
	if len(f) < 13 || len(g) < 9 || g[0] != "cpu" {
		return p
	}
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	p.selfTicks = num(f[11]) + num(f[12])
	for _, v := range g[1:9] {
		p.totalTicks += num(v)
	}
	p.stealTicks = num(g[8])
	p.ok = true
	return p
}

// ovLoadavg is the 1-, 5- and 15-minute load averages, or "-".
func ovLoadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "-"
}

// ovMachine describes the CPUs the test has.
func ovMachine() string {
	return fmt.Sprintf("%d CPUs (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0))
}

// ovOpenFileLimit is the soft RLIMIT_NOFILE (which Go raises to the hard
// limit at start), or 4096 where /proc/self/limits cannot be read.
func ovOpenFileLimit() int {
	b, err := os.ReadFile("/proc/self/limits")
	if err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if n, err := strconv.Atoi(f[0]); err == nil && n > 0 {
						return n
					}
				}
			}
		}
	}
	return 4096
}
