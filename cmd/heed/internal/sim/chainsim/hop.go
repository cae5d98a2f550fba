package chainsim

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/cmd/heed/internal/sim/vclock"
	"github.com/heed-go/heed/tier"
)

// hop carries a request from one tier to the next in virtual time, as
// vclock.Network does with Detach: the round trip is spent on the clock,
// then the handler serves a fresh request carrying only the method, URL and
// header, on the caller's actor. Three things cross it besides:
//
//   - the caller's cancellation: a request whose caller has given up (its
//     top-level deadline has passed) is not delivered, and the handler's
//     context ends with the caller's, as a Go server's request context ends
//     when its client closes the connection;
//   - Heed-Timeout, for a handler wrapped in tier.Middleware, as a deadline
//     on the virtual clock (see virtualTimeout);
//   - a fault: refuse, if set, is asked once per request that arrives and
//     refuses the connection when it answers true.
type hop struct {
	clk     *vclock.Clock
	rtt     time.Duration
	handler http.Handler
	// middleware: handler is wrapped in tier.Middleware.
	middleware bool
	refuse     func() bool
}

// errRefused is what a dial to a closed port returns on Linux, which heed
// classifies as KindRefused: retryable, and never sent.
var errRefused error = &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 80}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

// RoundTrip implements http.RoundTripper.
func (h *hop) RoundTrip(req *http.Request) (*http.Response, error) {
	up := scopeOf(req.Context())
	if err := up.err(req.Context()); err != nil {
		return nil, err
	}
	clock.Sleep(h.clk, h.rtt, nil)
	if err := up.err(req.Context()); err != nil {
		return nil, err // the caller gave up while the request travelled
	}
	if h.refuse != nil && h.refuse() {
		return nil, errRefused
	}
	header := req.Header.Clone()
	deadline := virtualTimeout(h.clk, header, h.middleware)
	ctx := context.Background()
	if up != nil || !deadline.IsZero() {
		s := newScope(h.clk, up, deadline)
		defer s.cancel(nil) // as a server ends a request's context once served
		ctx = &simCtx{Context: s.ctx, s: s, deadline: deadline}
	}
	sreq := httptest.NewRequestWithContext(ctx, req.Method, req.URL.String(), nil)
	sreq.Header = header
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, sreq)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// virtualTimeout removes Heed-Timeout from header and returns the deadline
// tier.Middleware would set from it, on the virtual clock; zero when the
// handler is not a Middleware or the header is absent or invalid.
//
// tier.Middleware reads the header itself with context.WithTimeout, which
// runs on the real clock: in virtual time its deadline would lie months
// from the virtual now, and its timer would fire, in real time, in the
// middle of the run. So the hop takes the header away before the
// Middleware sees it and gives the handler's context the deadline instead,
// with the Middleware's rules (whole milliseconds, positive, at most a
// day). The Middleware's other work (Heed-Attempt, Heed-Retried) is its own.
func virtualTimeout(clk *vclock.Clock, header http.Header, middleware bool) time.Time {
	v := header.Get(tier.HeaderTimeout)
	if v == "" {
		return time.Time{}
	}
	header.Del(tier.HeaderTimeout)
	if !middleware || len(v) > 12 {
		return time.Time{}
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return clk.Now().Add(min(time.Duration(ms)*time.Millisecond, 24*time.Hour))
}

// timeoutHeader is Heed-Timeout for d, rounded up to whole milliseconds as
// heed rounds it.
func timeoutHeader(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Millisecond-1)/time.Millisecond)), 10)
}

// A scope is the cancellation of one top-level request (or of one tier's
// part of it, when the tier was given a deadline of its own) in virtual
// time.
//
// A context whose timer fired on the scheduler would wake an actor asleep
// on its Done channel while another actor runs, and break vclock's one
// actor at a time. A scope instead ends lazily: every look at its
// context's Done or Err, and every hop, first checks the virtual time
// against the expiry and cancels the scope if it has passed. Only the
// request's own actor looks, so the cancellation happens at a fixed point
// of the run. What it misses is an actor asleep when the deadline passes:
// it sleeps to the end (a retry's backoff, by a tier that was not told the
// deadline) and finds the request cancelled when it wakes. Nothing reaches
// another tier meanwhile, and the top-level client counts the request as
// failed at its deadline, so only that actor's own timing is late.
type scope struct {
	clk     *vclock.Clock
	up      *scope
	ctx     context.Context // cancellation only: no values, no deadline
	cancel  context.CancelCauseFunc
	expiry  time.Time // zero: none of its own
	expired bool      // ended by its own expiry
}

func newScope(clk *vclock.Clock, up *scope, expiry time.Time) *scope {
	parent := context.Background()
	if up != nil {
		parent = up.ctx
	}
	ctx, cancel := context.WithCancelCause(parent)
	return &scope{clk: clk, up: up, ctx: ctx, cancel: cancel, expiry: expiry}
}

// check cancels the scope, or the scope above it, whose expiry has passed.
// Cancelling a scope cancels the ones below it at once (context's own
// propagation between cancelCtxs, which needs no goroutine).
func (s *scope) check() {
	if s.up != nil {
		s.up.check()
	}
	if !s.expiry.IsZero() && s.ctx.Err() == nil && !s.clk.Now().Before(s.expiry) {
		s.expired = true
		s.cancel(context.DeadlineExceeded)
	}
}

// err returns ctx's error after checking s; nil for a nil scope.
func (s *scope) err(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.check()
	return ctx.Err()
}

type scopeKey struct{}

func scopeOf(ctx context.Context) *scope {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	return s
}

// simCtx is a request's context in virtual time: the cancellation of its
// scope, a deadline on the virtual clock (zero for none), and no values
// but the scope. Err reports context.DeadlineExceeded when the scope's own
// expiry ended it and context.Canceled when its caller's did, as a Go
// server sees a client that hung up.
type simCtx struct {
	context.Context // s.ctx
	s               *scope
	deadline        time.Time
}

func (c *simCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *simCtx) Done() <-chan struct{} {
	c.s.check()
	return c.Context.Done()
}

func (c *simCtx) Err() error {
	c.s.check()
	switch {
	case c.Context.Err() == nil:
		return nil
	case c.s.expired:
		return context.DeadlineExceeded
	}
	return context.Canceled
}

func (c *simCtx) Value(key any) any {
	if key == (scopeKey{}) {
		return c.s
	}
	return c.Context.Value(key)
}
