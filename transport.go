package heed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/throttle"
)

// Transport is an [http.RoundTripper] that retries under a [Policy]: it
// sends each request through its base RoundTripper, reads the server's
// hints, and waits and tries again when the decision table says so.
//
// It keeps the RoundTripper contract: the caller's request is never
// modified (attempts after the first are shallow copies); a response, even a
// 503 after the last attempt, is returned with a nil error unless
// [WithErrorOnExhausted] is set; every discarded response body is drained
// and closed. A Transport is safe for concurrent use.
//
// When a heed Transport runs inside another heed retry loop (its base is a
// heed Transport, or the request's context comes from an attempt of another
// heed Transport or from [Do]), it makes a single attempt and leaves the
// retrying to the outer loop, so nested layers never multiply attempts.
//
// The zero Transport is usable: it sends through [http.DefaultTransport]
// under the default policy, whose per-key state every zero Transport
// shares, as every zero [http.Client] shares http.DefaultTransport.
type Transport struct {
	p     *Policy
	base  http.RoundTripper
	inner *Transport // the base, when it is itself a heed Transport
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport under a Policy built from the defaults and
// opts (see [NewPolicy]). It sends through the RoundTripper given by
// [WithBase], else [http.DefaultTransport].
func New(opts ...Option) (*Transport, error) {
	p, err := NewPolicy(opts...)
	if err != nil {
		return nil, err
	}
	return p.Transport(), nil
}

// NewClient returns an [http.Client] whose Transport is New(opts...).
func NewClient(opts ...Option) (*http.Client, error) {
	t, err := New(opts...)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}

// Transport returns a Transport under p, sending through the RoundTripper
// given by [WithBase], else [http.DefaultTransport]. Every Transport of p
// shares p's per-key state: build one Policy and hand its transports to
// clients that differ only in their own settings (a cookie jar, a
// redirect rule, a timeout).
func (p *Policy) Transport() *Transport {
	base := p.base
	if base == nil {
		base = http.DefaultTransport
	}
	t := &Transport{p: p, base: base}
	t.inner, _ = base.(*Transport)
	return t
}

// Policy returns the transport's policy, for use with [Do].
func (t *Transport) Policy() *Policy {
	if t.p == nil {
		return defaultTransport().p
	}
	return t.p
}

// defaultTransport is what a zero Transport sends through.
var defaultTransport = sync.OnceValue(func() *Transport {
	p, err := NewPolicy()
	if err != nil {
		panic(err) // the defaults are checked by the tests
	}
	return p.Transport()
})

// RoundTrip implements [http.RoundTripper].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.p == nil {
		return defaultTransport().RoundTrip(req)
	}
	p, err := t.p.forCall(req.Context())
	if err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, err
	}
	if callFrom(req.Context()) != nil {
		return t.send(req) // an outer heed loop does the retrying
	}
	l := loop{t: t, p: p, req: req, ks: p.keys.state(p.keyFor(req))}
	if !p.plain || req.Body != nil && req.Body != http.NoBody || !idempotentMethod(req.Method) || !l.ks.throttle.quiet() {
		return l.run()
	}
	// The common case, a bodiless idempotent request under a policy with
	// no hook, classifier or time bound, skips the loop's set-up when its
	// breaker lets it through and its first attempt succeeds.
	tk, refused := p.admit(l.ks)
	if refused != nil {
		l.ctx, l.method = req.Context(), cmp.Or(req.Method, http.MethodGet)
		return nil, l.refused(1, refused)
	}
	l.requested()
	areq := req
	if !p.noTierHeaders {
		if dl, ok := req.Context().Deadline(); ok { // a client's timeout: the time left goes downstream
			areq = l.spare().request(req, req.Header)
			areq.Header = tierHeaders(req.Header, 1, dl, p.clock.Now(), &l.fc.timeout)
		}
	}
	resp, err := t.send(areq)
	if err == nil && resp != nil && resp.StatusCode < 400 && req.Context().Err() == nil {
		if !p.readsAhead(req, resp) || readBodyInto(resp, p.respBuffer, l.memBody()) == nil {
			p.settle(l.ks, tk, Outcome{Response: resp}, time.Time{})
			if l.ks.throttle.quotaFields(resp.Header) {
				p.observe(&l.ks.throttle, time.Time{}, time.Time{}, resp, p.rand())
			}
			return resp, nil
		}
		// Cut short: a transport failure after all.
		l.firstStatus, resp, err = resp.StatusCode, nil, errCutShort
	}
	l.sent, l.ticket, l.firstResp, l.firstErr = true, tk, resp, err
	return l.run()
}

// errCutShort stands for a body the fast path found cut short; the loop
// classifies it like readBody's own error.
var errCutShort = &truncatedError{io.ErrUnexpectedEOF}

// readsAhead reports whether heed reads resp's body inside the attempt of a
// request that may be retried.
func (p *Policy) readsAhead(req *http.Request, resp *http.Response) bool {
	return p.maxAttempts > 1 && readAhead(req, resp, p.respBuffer)
}

// send makes one attempt through the base.
func (t *Transport) send(req *http.Request) (*http.Response, error) {
	if t.inner != nil {
		return t.inner.send(req)
	}
	if t.base == nil {
		return defaultTransport().send(req) // a zero Transport
	}
	return t.base.RoundTrip(req)
}

// timeoutError is the cause heed gives a context it ends itself. It is a
// net.Error whose Timeout is true, and it matches context.DeadlineExceeded.
type timeoutError string

func (e timeoutError) Error() string        { return string(e) }
func (e timeoutError) Timeout() bool        { return true }
func (e timeoutError) Temporary() bool      { return true }
func (e timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

const (
	errAttemptTimeout = timeoutError("heed: attempt timed out")
	errTotalTimeout   = timeoutError("heed: total time exhausted")
)

// loop is the state of one logical request in the retry loop. It lives on
// the stack: a request that succeeds at once allocates nothing here.
type loop struct {
	t   *Transport
	p   *Policy
	req *http.Request

	ctx         context.Context // the caller's, bounded by WithMaxTotal
	total       stopper
	start       time.Time
	deadline    time.Time
	method      string
	header      http.Header
	newHeader   bool // header differs from the caller's (an added key or refreshed credentials)
	holdsRetry  bool // the call holds one of the key's WithMaxConcurrentRetries places
	idempotent  bool
	body        replayBody
	fc          *firstCopy // what the first attempt's copy allocates in one piece
	c           *call      // allocated once the call needs a record or a marked context
	prev        time.Duration
	waited      time.Duration // the call's waiting so far: retry waits and slots
	rateLimited int           // 429s that did not count toward the attempt limit
	didRefresh  bool
	n           int // the current attempt's number
	// now is the time last read for the current attempt, reused by what
	// follows it at once (its events, the stale store): a clock read is
	// not free.
	now time.Time

	ks     *keyState
	ticket breaker.Ticket // the breaker's permission for the current attempt

	// Why heed stopped retrying a final response, for a fallback.
	reason  error
	retryAt time.Time

	// The first attempt, when RoundTrip's fast path already made it.
	sent        bool
	firstResp   *http.Response
	firstErr    error
	firstStatus int // status of a first response whose body was cut short
}

// stopper ends what an attempt holds: a timer and the context it would
// cancel, a concurrency slot, and the context of the hedged copy that
// answered.
type stopper struct {
	timer  clock.Timer
	cancel context.CancelCauseFunc
	slot   *throttle.Bulkhead // the bulkhead whose slot the attempt holds
	hedge  context.CancelCauseFunc
}

// disarm stops the timer without ending the context it would cancel: the
// bound no longer applies, but what reads on the context goes on.
func (s *stopper) disarm() {
	if s != nil && s.timer != nil {
		s.timer.Stop()
	}
}

func (s *stopper) stop() {
	if s == nil {
		return
	}
	if s.hedge != nil {
		s.hedge(nil)
		s.hedge = nil
	}
	if s.timer != nil {
		s.timer.Stop()
		s.cancel(nil)
		s.timer = nil
	}
	if s.slot != nil {
		s.slot.Release()
		s.slot = nil
	}
}

func (l *loop) getCall() *call {
	if l.c == nil {
		l.c = newCall(l.ctx, l.p)
	}
	return l.c
}

// requested counts the logical request in the key's budget, once its first
// attempt is let through.
func (l *loop) requested() {
	if l.ks.budget != nil {
		l.ks.budget.Request()
	}
	if l.ks.hedge != nil {
		l.ks.hedge.share.Request()
	}
}

func (l *loop) record(a Attempt) {
	c := l.getCall()
	c.attempts = append(c.attempts, a)
}

// run is the retry loop. Its first attempt sends the caller's request itself
// whenever it can, so a request that succeeds at once costs no allocation
// beyond the read-ahead body.
func (l *loop) run() (*http.Response, error) {
	p, req := l.p, l.req
	// The clock is read before the first attempt only when something needs
	// it: a request that succeeds at once then costs no clock read at all.
	if len(p.hooks) > 0 || p.maxTotal > 0 || p.attemptTimeout > 0 {
		l.start = p.clock.Now()
	}
	l.ctx = req.Context()
	l.method = req.Method
	if l.method == "" {
		l.method = http.MethodGet
	}
	l.header = req.Header
	l.idempotent = idempotentMethod(l.method) || hasIdempotencyKey(l.header) || p.idempotent
	if !l.idempotent && p.autoKey && (l.method == http.MethodPost || l.method == http.MethodPatch) {
		l.header = l.header.Clone()
		if l.header == nil {
			l.header = make(http.Header)
		}
		l.header.Set("Idempotency-Key", newIdempotencyKey())
		l.idempotent, l.newHeader = true, true
	}
	var err error
	l.body, err = prepareBody(req, p.maxBodyBuffer, p.maxAttempts > 1 || p.outbox != nil, l.bodyRoom)
	if err != nil {
		l.record(Attempt{Number: 1, Start: l.start, Err: err, Kind: KindOther})
		return nil, l.fail(req, ErrNotRetryable, fmt.Errorf("reading request body: %w", err), time.Time{})
	}
	defer l.body.release()
	if p.maxTotal > 0 {
		var cancel context.CancelCauseFunc
		l.ctx, cancel = context.WithCancelCause(l.ctx)
		l.total = stopper{timer: p.clock.AfterFunc(p.maxTotal, func() { cancel(errTotalTimeout) }), cancel: cancel}
		defer l.total.stop() // a no-op once a streamed body has taken it over
	}
	l.deadline = callDeadline(l.ctx, l.start, p.maxTotal)

	for l.n = 1; ; l.n++ {
		resp, stop, err := l.attempt(l.n)
		if err == errRetry {
			continue
		}
		l.holdsRetry = l.ks.endRetry(l.holdsRetry) // a retry that ended before its attempt
		if resp == nil {
			stop.stop()
		}
		if p.store != nil || p.fallback != nil || p.outbox != nil {
			return l.degrade(resp, err)
		}
		return resp, err
	}
}

// errRetry tells run that attempt has waited and wants another attempt.
var errRetry = errors.New("retry")

// attempt makes attempt n and decides what follows. It returns the final
// response or error, or errRetry after waiting for the next attempt.
func (l *loop) attempt(n int) (*http.Response, *stopper, error) {
	p := l.p
	var (
		areq  *http.Request
		stop  *stopper
		wrote *atomic.Bool
		resp  *http.Response
		err   error
		copy  int // the hedged copy that answered
	)
	aStart := l.start // zero for an untimed first attempt
	l.now = time.Time{}
	if n == 1 && l.sent {
		areq, resp, err = l.req, l.firstResp, l.firstErr
	} else {
		var justRead time.Time // the call's start, read a moment ago, is the first turn's time
		if n == 1 && !l.body.copied {
			justRead = l.start // (not after reading a body in, which may have taken a while)
		}
		slot, waited, retryAt, terr := p.turn(l.ctx, &l.ks.throttle, l.deadline, p.allowance(l.prev, l.waited, !l.deadline.IsZero()), justRead)
		l.waited += waited
		if len(p.hooks) > 0 && (waited > 0 || terr != nil) {
			l.emitThrottle(n, waited, terr)
		}
		if terr != nil {
			return nil, nil, l.throttled(n, terr, retryAt)
		}
		tk, refused := p.admit(l.ks)
		if refused != nil {
			if slot != nil {
				slot.Release()
			}
			return nil, nil, l.refused(n, refused)
		}
		if n == 1 {
			l.requested()
		}
		l.ticket = tk
		if slot != nil {
			stop = &stopper{slot: slot}
		}
		areq, stop, wrote, err = l.buildRequest(n, stop)
		if err != nil {
			stop.stop()
			return nil, nil, l.fail(l.req, ErrBodyNotReplayable, err, time.Time{})
		}
		if n > 1 || aStart.IsZero() && l.ks.throttle.pacing() {
			aStart = p.clock.Now()
		}
		if l.hedgeable() {
			resp, stop, copy, err = l.sendHedged(areq, stop, aStart)
		} else {
			resp, err = l.t.send(areq)
		}
	}
	if err == nil && resp == nil {
		err = errors.New("heed: base RoundTripper returned neither a response nor an error")
	}
	if err != nil && resp != nil { // a RoundTripper must not return both; be safe
		drainAndClose(resp.Body)
		resp = nil
	}

	// The caller gave up (or WithMaxTotal ran out): stop now.
	if l.ctx.Err() != nil {
		return nil, stop, l.ended(n, areq, aStart, resp, err)
	}
	if err != nil && stop != nil && stop.cancel != nil && errors.Is(context.Cause(areq.Context()), errAttemptTimeout) {
		err = fmt.Errorf("%w: %w", errAttemptTimeout, err)
	}
	// A failure a heed loop below has already decided on passes through.
	if handledBelow(resp, err, l.c) {
		p.settle(l.ks, l.ticket, l.outcome(n, areq, resp, err, wrote), time.Time{})
		if resp != nil && (stop != nil || l.total.timer != nil) {
			l.releaseOnClose(resp, stop)
		}
		return resp, stop, err
	}

	// What the server said teaches the pacer first, so a retry's jitter is
	// sized by the pace just learned.
	now := l.now // read already when hedging timed the answer
	draw := -1.0 // the attempt's random draw, once taken
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable ||
		l.ks.throttle.pacing() || l.ks.throttle.quotaFields(resp.Header)) {
		if now.IsZero() {
			now = p.clock.Now()
		}
		draw = p.rand()
		p.observe(&l.ks.throttle, aStart, now, resp, draw)
	}
	// A plain success needs neither a decision nor the time.
	var d decision
	if err != nil || resp.StatusCode >= 400 || p.classifier != nil || l.c != nil || len(p.hooks) > 0 {
		if now.IsZero() {
			now = p.clock.Now()
		}
		d = p.decide(l.outcome(n, areq, resp, err, wrote), l.timing(now, draw))
	}
	status := 0
	if resp != nil {
		status = resp.StatusCode
	} else if n == 1 {
		status = l.firstStatus
	}
	if !d.Retry && resp != nil && l.idempotent && l.body.replayable && n < p.maxAttempts && readAhead(areq, resp, p.respBuffer) {
		if rerr := readBodyInto(resp, p.respBuffer, l.memBody()); rerr != nil {
			if l.ctx.Err() != nil { // cut short by the caller's own end
				return nil, stop, l.ended(n, areq, aStart, &http.Response{StatusCode: resp.StatusCode}, rerr)
			}
			// The body was cut short: a transport failure after all.
			resp, err = nil, rerr
			now = p.clock.Now()
			d = p.decide(l.outcome(n, areq, nil, rerr, wrote), l.timing(now, draw))
		}
	}
	p.settle(l.ks, l.ticket, l.outcome(n, areq, resp, err, wrote), now)
	l.holdsRetry = l.ks.endRetry(l.holdsRetry) // this attempt, a retry, is over
	if d.Retry {
		d = p.gate(l.ks, d, status, now) // after settle: this attempt may have opened the breaker
		l.holdsRetry = d.holdsRetry
	}
	if l.c != nil || d.Retry || d.Reason != nil {
		l.record(Attempt{Number: n, Start: aStart, Duration: since(aStart, now), Status: status, Err: err, Kind: d.Kind, Hedge: copy})
	}
	l.now = now
	if len(p.hooks) > 0 {
		l.emitAttempt(areq, n, copy, status, err, d.Kind, since(aStart, now))
	}

	// 401: refresh credentials once and try again at once.
	if !d.Retry && status == http.StatusUnauthorized && resp != nil && p.refresh != nil && !l.didRefresh && l.body.replayable && n < p.maxAttempts {
		next := l.req.Clone(l.getCall())
		next.Header = l.header.Clone()
		if rerr := p.refresh(l.ctx, next); rerr != nil {
			drainAndClose(resp.Body)
			return nil, stop, l.fail(areq, ErrNotRetryable, fmt.Errorf("refreshing credentials: %w", rerr), time.Time{})
		}
		l.header, l.newHeader, l.didRefresh = next.Header, true, true
		d = decision{Retry: true, Source: SourceRefresh}
	}

	if !d.Retry {
		return l.final(areq, resp, err, d, stop)
	}

	// Retry: free this attempt's response and connection, then wait.
	if resp != nil {
		drainAndClose(resp.Body)
	}
	stop.stop()
	last := &l.c.attempts[len(l.c.attempts)-1]
	last.Wait, last.Source = d.Wait, d.Source
	l.retrying(areq, n, status, err, d)
	l.now = time.Time{} // stale once the wait begins
	if !clock.Sleep(p.clock, d.Wait, l.ctx.Done()) {
		return nil, nil, l.fail(areq, endReason(l.ctx), context.Cause(l.ctx), time.Time{})
	}
	l.prev = d.Wait
	l.waited += d.Wait
	if d.RateLimited {
		l.rateLimited++
	}
	return nil, nil, errRetry
}

// when is the time side of the decision after an attempt at now, with the
// attempt's random draw (a fresh one if it has none yet).
func (l *loop) timing(now time.Time, draw float64) when {
	if draw < 0 {
		draw = l.p.rand()
	}
	return when{Now: now, Deadline: l.deadline, Prev: l.prev, Draw: draw, Pace: l.ks.throttle.interval(), Waited: l.waited, RateLimited: l.rateLimited}
}

// outcome describes attempt n for the decision core.
func (l *loop) outcome(n int, areq *http.Request, resp *http.Response, err error, wrote *atomic.Bool) Outcome {
	o := Outcome{Attempt: n, Request: areq, Response: resp, Err: err, Idempotent: l.idempotent, Replayable: l.body.canReplay(err), bodyLimit: l.p.respBuffer}
	if err != nil {
		_, _, o.NotSent = classifyError(err)
		o.NotSent = o.NotSent || wrote != nil && !wrote.Load()
	}
	return o
}

// buildRequest returns the request for attempt n. The first attempt is the
// caller's own request unless something must differ (its body was buffered,
// a header added, a timer or trace attached); later attempts are shallow
// copies carrying the call in their context, with a fresh body.
func (l *loop) buildRequest(n int, stop *stopper) (*http.Request, *stopper, *atomic.Bool, error) {
	p, req := l.p, l.req
	needTrace := !l.idempotent
	tiered := !p.noTierHeaders && (n > 1 || !l.deadline.IsZero())
	if n == 1 && p.attemptTimeout == 0 && !needTrace && p.maxTotal == 0 {
		// Nothing rides on the context: the caller's request, or one copy
		// of it with the header or body that must differ.
		if !l.body.copied && !l.newHeader && !tiered {
			return req, stop, nil, nil
		}
		areq := l.spare().request(req, l.header)
		if tiered {
			areq.Header = tierHeaders(l.header, 1, l.deadline, p.clock.Now(), &l.fc.timeout)
		}
		if l.body.copied {
			areq.Body, areq.GetBody = l.body.takeFirst(), l.body.get
		}
		return areq, stop, nil, nil
	}
	var ctx context.Context = l.getCall()
	if p.attemptTimeout > 0 {
		actx, cancel := context.WithCancelCause(ctx)
		if stop == nil {
			stop = &stopper{}
		}
		stop.timer, stop.cancel = p.clock.AfterFunc(p.attemptTimeout, func() { cancel(errAttemptTimeout) }), cancel
		ctx = actx
	}
	var wrote *atomic.Bool
	if needTrace {
		// Whether the headers were written tells a request that never left
		// from one the server may have processed.
		wrote = new(atomic.Bool)
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	}
	areq := req.WithContext(ctx)
	areq.Header = l.header
	if tiered {
		areq.Header = tierHeaders(l.header, n, l.deadline, p.clock.Now(), nil)
	}
	b, err := l.body.next(n)
	if err != nil {
		return nil, stop, nil, fmt.Errorf("rewinding request body: %w", err)
	}
	if b != nil {
		areq.Body, areq.GetBody = b, l.body.get
	}
	return areq, stop, wrote, nil
}

// endsWithError reports the reasons that end a call with an error even
// when the last attempt got a response: heed chose not to retry a response
// it otherwise would have (the wait was too long, the deadline too close,
// the budget spent, the breaker open, the body could not be sent again).
func endsWithError(reason error) bool {
	return reason == ErrWaitTooLong || reason == ErrDeadline || reason == ErrBudgetExhausted || reason == ErrBreakerOpen ||
		reason == ErrBodyNotReplayable
}

// final ends the call with resp or err after decision d.
func (l *loop) final(areq *http.Request, resp *http.Response, err error, d decision, stop *stopper) (*http.Response, *stopper, error) {
	p := l.p
	if resp == nil || d.Reason != nil && (p.errorOnFinal || endsWithError(d.Reason)) {
		cause := err
		if resp != nil {
			cause = &StatusError{StatusCode: resp.StatusCode, Header: resp.Header}
			drainAndClose(resp.Body)
		}
		reason := d.Reason
		if reason == nil {
			reason = ErrNotRetryable
		}
		return nil, stop, l.fail(areq, reason, cause, d.RetryAt)
	}
	if d.Reason != nil {
		l.reason, l.retryAt = d.Reason, d.RetryAt
		l.giveUp(areq, d.Reason, d.RetryAt)
	}
	if l.c != nil {
		if callFrom(areq.Context()) != l.c {
			areq = areq.WithContext(l.c)
		}
		resp.Request = areq
	}
	if stop != nil || l.total.timer != nil {
		l.releaseOnClose(resp, stop)
	}
	if len(p.hooks) > 0 {
		l.emitDone(areq, resp.StatusCode, nil)
	}
	return resp, nil, nil
}

// ended ends a call whose context ended during attempt n (the caller gave
// up, or WithMaxTotal ran out): the attempt says nothing of the
// dependency, and the call fails as canceled or past its deadline. resp,
// if any, is what the attempt had received; its body is discarded.
func (l *loop) ended(n int, areq *http.Request, aStart time.Time, resp *http.Response, err error) error {
	p := l.p
	p.settle(l.ks, l.ticket, Outcome{Err: context.Canceled}, time.Time{})
	a := Attempt{Number: n, Start: aStart, Duration: since(aStart, p.clock.Now()), Kind: KindCanceled}
	if resp != nil {
		a.Status = resp.StatusCode
		drainAndClose(resp.Body)
	}
	ctxErr := l.ctx.Err()
	cause := err
	if cause == nil || !errors.Is(cause, ctxErr) {
		cause = context.Cause(l.ctx)
	}
	a.Err = cause
	l.record(a)
	return l.fail(areq, endReason(l.ctx), cause, time.Time{})
}

// releaseOnClose hands resp over to the caller. An attempt's timeout
// bounds it until then, so its timer stops now; a body wholly in memory
// needs nothing more and every context is released at once. A body still
// streaming (not read ahead, or longer than the read-ahead) reads on the
// attempt's context, which must then live until the caller closes the
// body: releasing it earlier would cut the caller's read short. The total
// timer keeps running meanwhile, as a deadline on the request's context
// would.
func (l *loop) releaseOnClose(resp *http.Response, attempt *stopper) {
	if mb, inMemory := resp.Body.(*memBody); inMemory && mb.tail == nil || resp.Body == nil || resp.Body == http.NoBody {
		attempt.stop()
		l.total.stop()
		return
	}
	attempt.disarm()
	total := l.total
	l.total = stopper{} // the deferred stop must not cancel the context under the caller
	resp.Body = &onCloseBody{ReadCloser: resp.Body, onClose: func() {
		attempt.stop()
		total.stop()
	}}
}

type onCloseBody struct {
	io.ReadCloser
	onClose func()
}

func (b *onCloseBody) Close() error {
	err := b.ReadCloser.Close()
	b.onClose()
	return err
}

// next returns the body for attempt n: the prepared first body, then fresh
// copies.
func (b *replayBody) next(n int) (io.ReadCloser, error) {
	if n == 1 {
		return b.takeFirst(), nil
	}
	if b.get == nil {
		if b.unsent != nil {
			return b.unsent, nil // still whole: canReplay let this attempt go
		}
		return nil, nil
	}
	return b.get()
}

// since is now-start, or zero for an attempt whose start was not read.
func since(start, now time.Time) time.Duration {
	if start.IsZero() {
		return 0
	}
	return now.Sub(start)
}

// callDeadline is the earlier of the context's deadline and start+maxTotal.
func callDeadline(ctx context.Context, start time.Time, maxTotal time.Duration) time.Time {
	dl, ok := ctx.Deadline()
	if maxTotal > 0 {
		if t := start.Add(maxTotal); !ok || t.Before(dl) {
			return t
		}
	}
	if ok {
		return dl
	}
	return time.Time{}
}

// endReason says whether a context ended by cancellation or by a deadline.
func endReason(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(context.Cause(ctx), errTotalTimeout) {
		return ErrDeadline
	}
	return ErrCanceled
}

// handledBelow reports a failure that a heed retry loop below this one has
// already decided on: its *Error, or a response carrying its record.
func handledBelow(resp *http.Response, err error, own *call) bool {
	if err != nil {
		var he *Error
		return errors.As(err, &he) && (own == nil || he.call != own)
	}
	if resp.StatusCode < 400 || resp.Request == nil {
		return false
	}
	below := callFrom(resp.Request.Context())
	return below != nil && below != own
}
