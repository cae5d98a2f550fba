package heed_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/heedtest"
)

// The fault matrix: every fault of heedtest.FaultServer, once (the next
// attempt is answered) and always, against every kind of method, through
// heed.New's Transport. Each cell checks the safety properties:
//
//   - a request that is not safe to repeat (POST without a key) takes
//     effect at most once;
//   - every attempt sends the same body and the same Idempotency-Key;
//   - the call returns by its deadline, plus a slack for a loaded machine;
//   - the call ends as the table says: a response with a status, or an
//     *heed.Error with a Reason, after so many attempts and effects;
//   - so a fault that passes is ridden out wherever repeating is safe.
//
// go test -run 'TestFaultMatrix$' -matrix.doc rewrites the section
// "## Fault matrix" of docs/retries.md from the table, once every cell has
// passed; TestFaultMatrixDoc checks that the section is up to date.

var matrixDoc = flag.Bool("matrix.doc", false, "rewrite the fault matrix in docs/retries.md once TestFaultMatrix passes")

const (
	fmBody           = "heed fault matrix" // every answer's body: 17 bytes, trickled over 0.64 s
	fmSent           = `{"order":42}`      // the small request body
	fmKey            = "matrix-key-1"
	fmDeadline       = 3 * time.Second        // the caller's deadline on the real clock
	fmSlack          = time.Second            // generous: -race on a loaded 2-vCPU machine
	fmAttemptTimeout = 300 * time.Millisecond // on the rows where a fault hangs
	fmAttempts       = 4
	fmBuffer         = 64 << 10    // WithMaxBodyBuffer and WithResponseBuffer, to keep "large" small
	fmLarge          = 128 << 10   // the large request and response bodies: past the buffers
	fmShortDeadline  = time.Second // for the body that outlasts the deadline
	fmCancelAfter    = 300 * time.Millisecond
	fmHintDeadline   = 10 * time.Second
	fmWorkers        = 8 // cells in flight at once (t.Parallel would allow only GOMAXPROCS)
)

// fmMethod is a column: a method, its body and its key.
type fmMethod struct {
	name  string
	verb  string
	body  bool // sends fmSent, with GetBody
	key   bool // carries an Idempotency-Key
	auto  bool // through a transport with WithAutoIdempotencyKey
	large bool // sends fmLarge bytes without GetBody: not replayable
}

var fmMethods = []fmMethod{
	{name: "GET", verb: http.MethodGet},
	{name: "HEAD", verb: http.MethodHead},
	{name: "PUT", verb: http.MethodPut, body: true},
	{name: "DELETE", verb: http.MethodDelete},
	{name: "POST", verb: http.MethodPost, body: true},
	{name: "POST + key", verb: http.MethodPost, body: true, key: true},
	{name: "PATCH, auto key", verb: http.MethodPatch, body: true, auto: true},
	{name: "PUT, 128 KiB stream", verb: http.MethodPut, large: true},
}

// bare: not safe to repeat once it may have reached the server.
func (m fmMethod) bare() bool { return m.verb == http.MethodPost && !m.key }

func (m fmMethod) head() bool { return m.verb == http.MethodHead }

// fmWant is a cell's expected end.
type fmWant struct {
	status   int   // the response's status, or the one a reason's *StatusError carries (0: none)
	reason   error // heed's Reason; nil for a response
	read     error // the caller's read of the body fails with it; nil: the body reads whole
	attempts int
	upTo     int // when not zero, any number of attempts from attempts to upTo
	effects  int
	wait     time.Duration // the first attempt's wait and its source, when not zero
	source   heed.WaitSource
	or       *fmWant // the other end a race may give
}

func ok(attempts, effects int) fmWant {
	return fmWant{status: 200, attempts: attempts, effects: effects}
}

func gaveUp(reason error, attempts, effects int) fmWant {
	return fmWant{reason: reason, attempts: attempts, effects: effects}
}

func cutOff(read error, attempts, effects int) fmWant {
	return fmWant{status: 200, read: read, attempts: attempts, effects: effects}
}

func (w fmWant) orElse(o fmWant) fmWant { w.or = &o; return w }

// fmRow is a fault and how every column must end under it.
type fmRow struct {
	name   string
	script func(t0 time.Time) []heedtest.Fault // t0: the fake clock's start, for hint rows
	tls    bool                                // call TLSURL
	h2     bool                                // the client speaks HTTP/2 with prior knowledge
	fake   bool                                // heed on a fake clock: waits of seconds take no time
	hangs  bool                                // WithAttemptTimeout(fmAttemptTimeout) ends attempts
	short  bool                                // the caller's deadline is fmShortDeadline
	cancel bool                                // the caller cancels after fmCancelAfter
	listen bool                                // the server listens once heed retries (Refused)
	large  bool                                // answer fmLarge bytes chunked (through heedtest.Server)
	want   func(m fmMethod) fmWant
}

func faults(fs ...heedtest.Fault) func(time.Time) []heedtest.Fault {
	return func(time.Time) []heedtest.Fault { return fs }
}

func fault(k heedtest.FaultKind) heedtest.Fault { return heedtest.Fault{Kind: k, Body: fmBody} }

var fmAnswer = heedtest.Fault{Body: fmBody}

// once and always make the two scripts of a fault.
func once(f heedtest.Fault) func(time.Time) []heedtest.Fault   { return faults(f, fmAnswer) }
func always(f heedtest.Fault) func(time.Time) []heedtest.Fault { return faults(f) }

// maybeProcessed: the server read the request and then failed; only a
// request safe to repeat, with a body that can be sent again, is retried.
func maybeProcessed(once bool) func(fmMethod) fmWant {
	return func(m fmMethod) fmWant {
		switch {
		case m.bare():
			return gaveUp(heed.ErrNotIdempotent, 1, 1)
		case m.large:
			return gaveUp(heed.ErrBodyNotReplayable, 1, 1)
		case once:
			return ok(2, 2)
		}
		return gaveUp(heed.ErrAttemptsExhausted, fmAttempts, fmAttempts)
	}
}

// bodyCut: the answer's body breaks off. heed reads it inside the attempt
// and retries for a request it may repeat; otherwise, and on the last
// attempt, the caller's read fails. A HEAD answer has no body to lose.
func bodyCut(once bool, read error) func(fmMethod) fmWant {
	return func(m fmMethod) fmWant {
		switch {
		case m.head():
			return ok(1, 1)
		case m.bare(), m.large:
			return cutOff(read, 1, 1)
		case once:
			return ok(2, 2)
		}
		// The last attempt's body is handed over unread: no retry could
		// follow, so the caller's read meets the fault.
		return cutOff(read, fmAttempts, fmAttempts)
	}
}

// trickled: a body slower than the attempt timeout. Read inside the
// attempt it times out and is retried; handed over unread (a request heed
// does not repeat, or the last attempt), the caller reads it whole, the
// attempt timeout no longer applying.
func trickled(once bool) func(fmMethod) fmWant {
	return func(m fmMethod) fmWant {
		switch {
		case m.head(), m.bare(), m.large:
			return ok(1, 1)
		case once:
			return ok(2, 2)
		}
		return ok(fmAttempts, fmAttempts) // the last attempt's body is the caller's to read
	}
}

// pastDeadline: a body that outlasts the caller's deadline. Read inside
// the attempt, the deadline ends the call with ErrDeadline; handed over,
// it ends the caller's read.
func pastDeadline(m fmMethod) fmWant {
	switch {
	case m.head():
		return ok(1, 1)
	case m.bare(), m.large:
		return cutOff(context.DeadlineExceeded, 1, 1)
	}
	return gaveUp(heed.ErrDeadline, 1, 1)
}

// canceled: the caller cancels while the body trickles in. Read inside
// the attempt, the call ends with ErrCanceled; handed over, the caller's
// read ends.
func canceled(m fmMethod) fmWant {
	switch {
	case m.head():
		return ok(1, 1)
	case m.bare(), m.large:
		return cutOff(context.Canceled, 1, 1)
	}
	return gaveUp(heed.ErrCanceled, 1, 1)
}

// notSent: nothing was sent, so every method is retried, a body without
// GetBody included (it is still whole).
func notSent(once bool) func(fmMethod) fmWant {
	return func(fmMethod) fmWant {
		if once {
			return ok(2, 1)
		}
		return gaveUp(heed.ErrAttemptsExhausted, fmAttempts, 0)
	}
}

// acceptClose: the server closed before reading. Whether the request's
// header was written first is a race, so a POST without a key is retried
// while it was not, and given up as soon as it may have been.
func acceptClose(once bool) func(fmMethod) fmWant {
	return func(m fmMethod) fmWant {
		switch {
		case m.large:
			return gaveUp(heed.ErrBodyNotReplayable, 1, 0)
		case m.bare() && once:
			return gaveUp(heed.ErrNotIdempotent, 1, 0).orElse(ok(2, 1))
		case m.bare():
			w := gaveUp(heed.ErrNotIdempotent, 1, 0)
			w.upTo = fmAttempts
			return w.orElse(gaveUp(heed.ErrAttemptsExhausted, fmAttempts, 0))
		case once:
			return ok(2, 1)
		}
		return gaveUp(heed.ErrAttemptsExhausted, fmAttempts, 0)
	}
}

func every(w fmWant) func(fmMethod) fmWant { return func(fmMethod) fmWant { return w } }

// hinted: a 429 or 503 with a hint of one second, honoured to the
// millisecond (no jitter: the draws are zero). A request heed may not
// repeat gets the status back, as a response, or for a body it cannot
// send again as the cause of ErrBodyNotReplayable.
func hinted(code int, once bool, src heed.WaitSource) func(fmMethod) fmWant {
	return func(m fmMethod) fmWant {
		switch {
		case m.bare():
			return fmWant{status: code, attempts: 1, effects: 1}
		case m.large:
			return fmWant{status: code, reason: heed.ErrBodyNotReplayable, attempts: 1, effects: 1}
		case once:
			w := ok(2, 2)
			if src != heed.SourceNone {
				w.wait, w.source = time.Second, src
			}
			return w
		case code == http.StatusServiceUnavailable:
			return fmWant{status: code, attempts: fmAttempts, effects: fmAttempts, wait: time.Second, source: src}
		}
		// A 429 retried after its hint does not use up an attempt: the
		// deadline ends the call, when the next wait would reach it.
		n := int(fmHintDeadline / time.Second)
		return fmWant{status: code, reason: heed.ErrDeadline, attempts: n, effects: n, wait: time.Second, source: src}
	}
}

// hints are the forms of hint heed reads, each naming t0 + 1 s.
var hints = []struct {
	name   string
	header func(t0 time.Time) http.Header
	source heed.WaitSource
}{
	{"Retry-After: 1", func(time.Time) http.Header { return http.Header{"Retry-After": {"1"}} }, heed.SourceRetryAfter},
	{"Retry-After: HTTP-date", func(t0 time.Time) http.Header {
		return http.Header{"Retry-After": {t0.Add(time.Second).UTC().Format(http.TimeFormat)}}
	}, heed.SourceRetryAfter},
	{"X-RateLimit-Reset: epoch", func(t0 time.Time) http.Header {
		return http.Header{
			"X-Ratelimit-Limit":     {"100"},
			"X-Ratelimit-Remaining": {"0"},
			"X-Ratelimit-Reset":     {strconv.FormatInt(t0.Add(time.Second).Unix(), 10)},
		}
	}, heed.SourceRateLimitReset},
	{"RateLimit, RateLimit-Policy", func(time.Time) http.Header {
		return http.Header{"Ratelimit": {`"default";r=0;t=1`}, "Ratelimit-Policy": {`"default";q=100;w=60`}}
	}, heed.SourceRateLimitReset},
	{"no hint", func(time.Time) http.Header { return nil }, heed.SourceNone},
}

func fmRows() []fmRow {
	kind := func(k heedtest.FaultKind) heedtest.Fault { return fault(k) }
	slow := heedtest.Fault{Kind: heedtest.SlowHeaders, Body: fmBody, Delay: time.Minute}
	trickle := heedtest.Fault{Kind: heedtest.TrickleBody, Body: fmBody, Delay: 40 * time.Millisecond}
	rows := []fmRow{
		{name: "none", script: always(fmAnswer), want: every(ok(1, 1))},
		{name: "refused, once", script: faults(heedtest.Fault{Kind: heedtest.Refused}, fmAnswer), listen: true, want: notSent(true)},
		{name: "refused, always", script: faults(heedtest.Fault{Kind: heedtest.Refused}), want: notSent(false)},
		{name: "accept, then close, once", script: once(kind(heedtest.AcceptClose)), want: acceptClose(true)},
		{name: "accept, then close, always", script: always(kind(heedtest.AcceptClose)), want: acceptClose(false)},
		{name: "reset after the request, once", script: once(kind(heedtest.ResetAfterRequest)), want: maybeProcessed(true)},
		{name: "reset after the request, always", script: always(kind(heedtest.ResetAfterRequest)), want: maybeProcessed(false)},
		{name: "reset after the headers, once", script: once(kind(heedtest.ResetAfterHeaders)), want: bodyCut(true, syscall.ECONNRESET)},
		{name: "reset after the headers, always", script: always(kind(heedtest.ResetAfterHeaders)), want: bodyCut(false, syscall.ECONNRESET)},
		{name: "truncated body, once", script: once(kind(heedtest.TruncateBody)), want: bodyCut(true, io.ErrUnexpectedEOF)},
		{name: "truncated body, always", script: always(kind(heedtest.TruncateBody)), want: bodyCut(false, io.ErrUnexpectedEOF)},
		{name: "headers after 1 min, once", script: once(slow), hangs: true, want: maybeProcessed(true)},
		{name: "headers after 1 min, always", script: always(slow), hangs: true, want: maybeProcessed(false)},
		{name: "body trickled over 0.6 s, once", script: once(trickle), hangs: true, want: trickled(true)},
		{name: "body trickled over 0.6 s, always", script: always(trickle), hangs: true, want: trickled(false)},
		{name: "body trickled past a 1 s deadline", script: always(heedtest.Fault{Kind: heedtest.TrickleBody, Body: fmBody, Delay: 100 * time.Millisecond}),
			short: true, want: pastDeadline},
		{name: "caller cancels during a trickled body", script: always(heedtest.Fault{Kind: heedtest.TrickleBody, Body: fmBody, Delay: 100 * time.Millisecond}),
			cancel: true, want: canceled},
		// net/http reports a malformed answer as "transport connection
		// broken", and heed retries it like a connection that broke.
		{name: "malformed status line, once", script: once(kind(heedtest.MalformedStatus)), want: maybeProcessed(true)},
		{name: "malformed status line, always", script: always(kind(heedtest.MalformedStatus)), want: maybeProcessed(false)},
		{name: "invalid header bytes, once", script: once(kind(heedtest.InvalidHeader)), want: maybeProcessed(true)},
		{name: "invalid header bytes, always", script: always(kind(heedtest.InvalidHeader)), want: maybeProcessed(false)},
		{name: "200 × 103 Early Hints, then 200", script: always(kind(heedtest.EarlyHintsStorm)), want: every(ok(1, 1))},
		{name: "untrusted certificate", script: always(fmAnswer), tls: true, want: every(gaveUp(heed.ErrNotRetryable, 1, 0))},
		// With an attempt timeout, which must not cut the part of the body
		// past the buffer, handed over still streaming.
		{name: "128 KiB chunked answer", large: true, hangs: true, want: every(ok(1, 1))},
		{name: "HTTP/2 REFUSED_STREAM, first stream", script: once(kind(heedtest.RefusedStream)), h2: true, want: func(m fmMethod) fmWant {
			if m.large { // net/http cannot send it again, nor can heed
				return gaveUp(heed.ErrBodyNotReplayable, 1, 0)
			}
			return ok(1, 1) // net/http sent it again at once, below heed
		}},
		{name: "HTTP/2 GOAWAY, once", script: once(kind(heedtest.GoAway)), h2: true, want: maybeProcessed(true)},
		{name: "HTTP/2 GOAWAY, always", script: always(kind(heedtest.GoAway)), h2: true, want: maybeProcessed(false)},
		{name: "HTTP/2 connection lost, once", script: once(kind(heedtest.ResetAfterRequest)), h2: true, want: maybeProcessed(true)},
		{name: "HTTP/2 connection lost, always", script: always(kind(heedtest.ResetAfterRequest)), h2: true, want: maybeProcessed(false)},
	}
	for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		for _, h := range hints {
			rows = append(rows, fmRow{
				name: fmt.Sprintf("%d, %s, once", code, h.name),
				script: func(t0 time.Time) []heedtest.Fault {
					return []heedtest.Fault{{Status: code, Header: h.header(t0), Body: fmBody}, fmAnswer}
				},
				fake: true, want: hinted(code, true, h.source),
			})
		}
		rows = append(rows, fmRow{
			name:   fmt.Sprintf("%d, Retry-After: 1, always", code),
			script: faults(heedtest.Fault{Status: code, Header: http.Header{"Retry-After": {"1"}}, Body: fmBody}),
			fake:   true, want: hinted(code, false, heed.SourceRetryAfter),
		})
	}
	return rows
}

// fmResult is what a cell saw.
type fmResult struct {
	status    int
	err       error
	body      string
	readErr   error
	attempts  []heed.Attempt
	reqs      []heedtest.FaultRequest
	elapsed   time.Duration
	deadline  time.Duration // the real time the call was allowed
	setupErr  error
	sentLarge []byte
}

// zeroSource draws 0 every time: no jitter, so waits are exact.
type zeroSource struct{}

func (zeroSource) Uint64() uint64 { return 0 }

// fmStream is a request body without GetBody that, like a file or a pipe,
// cannot be read after it is closed.
type fmStream struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
}

func (s *fmStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("read after close")
	}
	return s.r.Read(p)
}

func (s *fmStream) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func fmLargeBody() []byte {
	b := make([]byte, fmLarge)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// runCell sends one request of column m under row r and records the end.
func runCell(t *testing.T, r fmRow, m fmMethod) (res fmResult) {
	var (
		url     string
		reqs    func() []heedtest.FaultRequest
		stop    func()
		listen  func() error
		t0      = time.Now().Truncate(time.Second)
		timeout = fmDeadline
	)
	if r.large {
		srv := heedtest.NewServer(t, []heedtest.Step{{Body: string(fmLargeBody()), Chunked: true}})
		url, stop = srv.URL, srv.Close
		reqs = func() []heedtest.FaultRequest {
			var out []heedtest.FaultRequest
			for _, q := range srv.Requests() {
				out = append(out, heedtest.FaultRequest{Method: q.Method, Header: q.Header, Body: q.Body, Complete: true, Effect: true,
					IdempotencyKey: q.Header.Get("Idempotency-Key")})
			}
			return out
		}
	} else {
		srv := heedtest.NewFaultServer(t, r.script(t0))
		url, reqs, stop, listen = srv.URL, srv.Requests, srv.Close, srv.Listen
		if r.tls {
			url = srv.TLSURL
		}
	}
	defer stop()

	base := &http.Transport{DisableCompression: true}
	if r.h2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		base.Protocols = &p
	}
	defer base.CloseIdleConnections()
	opts := []heed.Option{
		heed.WithBase(base), heed.WithLogger(nil), heed.WithRand(zeroSource{}),
		heed.WithBackoff(backoff.Constant(time.Millisecond)), heed.WithMaxWait(5 * time.Second),
		heed.WithMaxAttempts(fmAttempts), heed.WithMaxBodyBuffer(fmBuffer), heed.WithResponseBuffer(fmBuffer),
	}
	if r.hangs {
		opts = append(opts, heed.WithAttemptTimeout(fmAttemptTimeout))
	}
	if m.auto {
		opts = append(opts, heed.WithAutoIdempotencyKey())
	}
	if r.fake {
		opts = append(opts, heed.WithClock(heedtest.NewClock(t0).AutoAdvance()))
	}
	if r.listen {
		// A refused connection reaches no server: listen as heed decides
		// to retry, so the next attempt finds the server up.
		opts = append(opts, heed.WithHook(heed.HookFunc(func(_ context.Context, e heed.Event) {
			if e.Kind == heed.EventRetry {
				if err := listen(); err != nil {
					res.setupErr = err
				}
			}
		})))
	}
	tr, err := heed.New(opts...)
	if err != nil {
		res.setupErr = err
		return res
	}

	if r.short {
		timeout = fmShortDeadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if r.fake {
		// The deadline is read against the fake clock, which starts at t0.
		ctx, cancel = context.WithDeadline(context.Background(), t0.Add(fmHintDeadline))
		timeout = time.Until(t0.Add(fmHintDeadline))
	}
	defer cancel()
	if r.cancel {
		defer time.AfterFunc(fmCancelAfter, cancel).Stop()
	}
	res.deadline = timeout
	var body io.Reader
	switch {
	case m.body:
		body = strings.NewReader(fmSent)
	case m.large:
		res.sentLarge = fmLargeBody()
		body = &fmStream{r: bytes.NewReader(res.sentLarge)}
	}
	req, err := http.NewRequestWithContext(ctx, m.verb, url+"/orders/42", body)
	if err != nil {
		res.setupErr = err
		return res
	}
	if m.large {
		req.ContentLength = fmLarge
	}
	if m.key {
		req.Header.Set("Idempotency-Key", fmKey)
	}

	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err == nil {
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		res.status, res.body, res.readErr, res.attempts = resp.StatusCode, string(b), rerr, heed.Attempts(resp)
	} else {
		res.err = err
		var he *heed.Error
		if errors.As(err, &he) {
			res.attempts = he.Attempts
		}
	}
	res.elapsed = time.Since(start)
	stop() // before reading the record: no request is still being read
	res.reqs = reqs()
	return res
}

// check holds a cell's result against the safety properties and the
// table.
func (w fmWant) check(t *testing.T, r fmRow, m fmMethod, res fmResult) {
	t.Helper()
	if res.setupErr != nil {
		t.Fatalf("setup: %v", res.setupErr)
	}
	effects := 0
	for _, q := range res.reqs {
		if q.Effect {
			effects++
		}
	}
	// (i) Not safe to repeat: at most one effect, whatever happened.
	if m.bare() && effects > 1 {
		t.Errorf("a POST without a key took effect %d times", effects)
	}
	// (ii) The same body and key on every attempt.
	sent := []byte(nil)
	switch {
	case m.body:
		sent = []byte(fmSent)
	case m.large:
		sent = res.sentLarge
	}
	key := ""
	for i, q := range res.reqs {
		if q.Method != m.verb {
			t.Errorf("request %d: method %s, want %s", i, q.Method, m.verb)
		}
		if q.Complete && !bytes.Equal(q.Body, sent) || !q.Complete && !bytes.HasPrefix(sent, q.Body) {
			t.Errorf("request %d: body of %d bytes (complete %v) differs from the %d sent", i, len(q.Body), q.Complete, len(sent))
		}
		if i == 0 {
			key = q.IdempotencyKey
		} else if q.IdempotencyKey != key {
			t.Errorf("request %d: Idempotency-Key %q, the first had %q", i, q.IdempotencyKey, key)
		}
	}
	if len(res.reqs) > 0 {
		switch {
		case m.key && key != fmKey:
			t.Errorf("Idempotency-Key %q, want the caller's %q", key, fmKey)
		case m.auto && len(key) != 36:
			t.Errorf("Idempotency-Key %q, want a UUID", key)
		case !m.key && !m.auto && key != "":
			t.Errorf("Idempotency-Key %q on a request without one", key)
		}
	}
	// (iii) Back by the deadline.
	if res.elapsed > res.deadline+fmSlack {
		t.Errorf("returned after %v, deadline %v (+%v slack)", res.elapsed, res.deadline, fmSlack)
	}
	// (iv), (v) The end the table says, or the other end a race allows.
	var problems []string
	for alt := &w; alt != nil; alt = alt.or {
		p := alt.mismatch(r, m, res, effects)
		if p == "" {
			if alt != &w {
				t.Logf("the race's other end: %s", describe(res, effects))
			}
			return
		}
		problems = append(problems, p)
	}
	t.Errorf("got %s; want %s", describe(res, effects), strings.Join(problems, "; or "))
}

// mismatch says how res differs from w, "" if it does not.
func (w *fmWant) mismatch(r fmRow, m fmMethod, res fmResult, effects int) string {
	var diffs []string
	if w.reason != nil {
		var he *heed.Error
		switch {
		case !errors.As(res.err, &he):
			diffs = append(diffs, fmt.Sprintf("an *heed.Error %v", short(w.reason)))
		case !errors.Is(res.err, w.reason):
			diffs = append(diffs, fmt.Sprintf("reason %v", short(w.reason)))
		}
		var se *heed.StatusError
		if w.status != 0 && (!errors.As(res.err, &se) || se.StatusCode != w.status) {
			diffs = append(diffs, fmt.Sprintf("cause status %d", w.status))
		}
	} else {
		if res.err != nil || res.status != w.status {
			diffs = append(diffs, fmt.Sprintf("status %d", w.status))
		}
		want := fmBody
		if r.large {
			want = string(fmLargeBody())
		}
		if m.head() {
			want = ""
		}
		switch {
		case w.read == nil && res.err == nil && (res.readErr != nil || res.body != want):
			diffs = append(diffs, "the whole body")
		case w.read != nil && !errors.Is(res.readErr, w.read):
			diffs = append(diffs, fmt.Sprintf("a read failing with %v", w.read))
		}
	}
	if n := len(res.attempts); n < w.attempts || n > max(w.attempts, w.upTo) {
		diffs = append(diffs, fmt.Sprintf("%s attempts", w.attemptsText()))
	}
	if effects != w.effects {
		diffs = append(diffs, fmt.Sprintf("%d effects", w.effects))
	}
	if w.source != heed.SourceNone && len(res.attempts) > 0 {
		if a := res.attempts[0]; a.Wait != w.wait || a.Source != w.source {
			diffs = append(diffs, fmt.Sprintf("a first wait of %v from %v", w.wait, w.source))
		}
	}
	return strings.Join(diffs, ", ")
}

func describe(res fmResult, effects int) string {
	var b strings.Builder
	if res.err != nil {
		fmt.Fprintf(&b, "error %v", res.err)
	} else {
		fmt.Fprintf(&b, "status %d, body of %d bytes", res.status, len(res.body))
		if res.readErr != nil {
			fmt.Fprintf(&b, ", read error %v", res.readErr)
		}
	}
	fmt.Fprintf(&b, ", %d attempts [", len(res.attempts))
	for i, a := range res.attempts {
		if i > 0 {
			b.WriteString(" ")
		}
		if a.Err != nil {
			fmt.Fprintf(&b, "%s", a.Kind)
		} else {
			fmt.Fprintf(&b, "%d", a.Status)
		}
		fmt.Fprintf(&b, "@%v", a.Duration.Round(time.Millisecond))
		if a.Wait > 0 {
			fmt.Fprintf(&b, "+%v(%v)", a.Wait, a.Source)
		}
	}
	fmt.Fprintf(&b, "], %d effects, %d requests seen, %v", effects, len(res.reqs), res.elapsed.Round(time.Millisecond))
	return b.String()
}

func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault matrix takes a few seconds")
	}
	// Every server, connection and timer of the matrix is gone when it
	// ends; the package's TestMain checks the same at the very end.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	rows := fmRows()
	results := make([][]fmResult, len(rows))
	type cell struct{ r, m int }
	cells := make(chan cell)
	var wg sync.WaitGroup
	for range fmWorkers {
		wg.Go(func() {
			for c := range cells {
				results[c.r][c.m] = runCell(t, rows[c.r], fmMethods[c.m])
			}
		})
	}
	start := time.Now()
	for i := range rows {
		results[i] = make([]fmResult, len(fmMethods))
		for j := range fmMethods {
			cells <- cell{i, j}
		}
	}
	close(cells)
	wg.Wait()
	t.Logf("%d cells in %v", len(rows)*len(fmMethods), time.Since(start).Round(time.Millisecond))

	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			for j, m := range fmMethods {
				t.Run(m.name, func(t *testing.T) {
					r.want(m).check(t, r, m, results[i][j])
				})
			}
		})
	}
	if *matrixDoc && !t.Failed() {
		if err := writeMatrixDoc(rows); err != nil {
			t.Fatal(err)
		}
	}
}

// ---- the table in docs/retries.md ----

const fmDocPath = "docs/retries.md"

func TestFaultMatrixDoc(t *testing.T) {
	doc, err := os.ReadFile(fmDocPath)
	if err != nil {
		t.Fatal(err)
	}
	_, got, _ := cutSection(string(doc))
	if want := matrixSection(fmRows()); got != want {
		t.Errorf("the fault matrix in %s is out of date; run go test -run 'TestFaultMatrix$' -matrix.doc .", fmDocPath)
	}
}

func writeMatrixDoc(rows []fmRow) error {
	doc, err := os.ReadFile(fmDocPath)
	if err != nil {
		return err
	}
	before, _, after := cutSection(string(doc))
	return os.WriteFile(fmDocPath, []byte(before+matrixSection(rows)+after), 0o644)
}

const fmHeading = "## Fault matrix\n"

// cutSection splits doc around its fault matrix section, which runs from
// its heading to the next "## " heading; a doc without one gets it at the
// end.
func cutSection(doc string) (before, section, after string) {
	i := strings.Index(doc, fmHeading)
	if i < 0 {
		return strings.TrimRight(doc, "\n") + "\n\n", "", ""
	}
	rest := doc[i+len(fmHeading):]
	j := strings.Index(rest, "\n## ")
	if j < 0 {
		return doc[:i], doc[i:], ""
	}
	return doc[:i], doc[i : i+len(fmHeading)+j+1], rest[j+1:]
}

func matrixSection(rows []fmRow) string {
	var b strings.Builder
	b.WriteString(fmHeading)
	b.WriteString(`
What each fault of ` + "`heedtest.FaultServer`" + ` does to each kind of request sent
through ` + "`heed.New`" + `'s Transport, as ` + "`TestFaultMatrix`" + ` (matrix_test.go) checks
it, cell by cell. Each fault is played once (the next attempt is answered)
or always. The policy is the default but for ` + strconv.Itoa(fmAttempts) + ` attempts, a constant
backoff of 1 ms, no jitter, request and response buffers of 64 KiB (so
the 128 KiB bodies are past them), and ` + "`WithAttemptTimeout(300ms)`" + ` on the
rows where a fault hangs (headers after a minute, trickled bodies, the
chunked answer). The caller's deadline is 3 s, 1 s in the row that says
so; the caller that cancels does so after 0.3 s. The 429 and 503 rows run
heed on a fake clock, on which a second's wait takes no time, with the
deadline 10 s after the clock's start; every hint names one second.

"POST + key" carries an Idempotency-Key; PATCH goes through a transport
with ` + "`WithAutoIdempotencyKey`" + `; the last column is a PUT of 128 KiB
without ` + "`GetBody`" + `, which heed cannot buffer. A cell reads *end a/e*: the
status of the response (its body read whole, unless the read fails as
said), or the ` + "`*heed.Error`" + `'s reason (with the status it carries); then
heed's attempts and the server's effects: the requests it read in full and
did not refuse, so would have acted on. "or" marks a race. Every cell also
checks that a POST without a key takes effect at most once, that every
attempt sends the same body and Idempotency-Key, and that the call returns
by its deadline (plus 1 s for a loaded machine).

Reproduce it with ` + "`go test -race -run 'TestFaultMatrix$' -v .`" + ` (a few
seconds); ` + "`-matrix.doc`" + ` rewrites this section from the test's table once
every cell passes, and ` + "`TestFaultMatrixDoc`" + ` fails while it is out of date.

`)
	b.WriteString("| Fault |")
	for _, m := range fmMethods {
		b.WriteString(" " + m.name + " |")
	}
	b.WriteString("\n|---|")
	for range fmMethods {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + r.name + " |")
		for _, m := range fmMethods {
			b.WriteString(" " + r.want(m).cell() + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString(`
Notes:

- A connection closed before the request was read: whether net/http wrote
  the request first is a race, so a POST without a key is retried while it
  was not written, and given up as soon as it may have been.
- The last attempt's body is handed over unread, since no retry could
  follow: a fault in it is the caller's to see, as for the requests heed
  does not repeat. Once handed over, the attempt timeout no longer applies.
- net/http reports a malformed status line or header as "transport
  connection broken", which heed retries like a connection that broke,
  when the request is safe to repeat.
- net/http ignores interim (1xx) responses it is not asked about, however
  many, within its limit on header bytes (10 MB by default).
- net/http itself sends a refused HTTP/2 stream again at once, below heed:
  heed sees one attempt, the server two streams and one effect. It cannot
  for a body without ` + "`GetBody`" + `, nor can heed.
`)
	return b.String()
}

func (w fmWant) cell() string {
	var s string
	switch {
	case w.reason != nil && w.status != 0:
		s = fmt.Sprintf("%s (%d)", short(w.reason), w.status)
	case w.reason != nil:
		s = short(w.reason)
	case w.read != nil:
		s = fmt.Sprintf("%d, read: %s", w.status, readName(w.read))
	default:
		s = strconv.Itoa(w.status)
	}
	s += fmt.Sprintf(" %s/%d", w.attemptsText(), w.effects)
	if w.wait > 0 {
		s += fmt.Sprintf(", waits %v", w.wait)
	}
	if w.or != nil {
		s += " or " + w.or.cell()
	}
	return s
}

func (w *fmWant) attemptsText() string {
	if w.upTo > w.attempts {
		return fmt.Sprintf("%d–%d", w.attempts, w.upTo)
	}
	return strconv.Itoa(w.attempts)
}

// short names a reason as the variable that holds it, without Err.
func short(reason error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{heed.ErrAttemptsExhausted, "AttemptsExhausted"},
		{heed.ErrNotRetryable, "NotRetryable"},
		{heed.ErrNotIdempotent, "NotIdempotent"},
		{heed.ErrBodyNotReplayable, "BodyNotReplayable"},
		{heed.ErrWaitTooLong, "WaitTooLong"},
		{heed.ErrDeadline, "Deadline"},
		{heed.ErrCanceled, "Canceled"},
	} {
		if reason == r.err {
			return r.name
		}
	}
	return reason.Error()
}

func readName(err error) string {
	switch err {
	case syscall.ECONNRESET:
		return "reset"
	case io.ErrUnexpectedEOF:
		return "unexpected EOF"
	case context.DeadlineExceeded:
		return "deadline"
	case context.Canceled:
		return "canceled"
	}
	return err.Error()
}
