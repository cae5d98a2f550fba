package heedtest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FaultKind is a way a [FaultServer] fails.
type FaultKind uint8

const (
	// Answer is no fault: the server reads the request and answers the
	// entry's Status, Header and Body.
	Answer FaultKind = iota
	// Refused: nothing listens on the server's port, so connecting is
	// refused (syscall.ECONNREFUSED) and no request arrives. A refused
	// connection never reaches the server, which cannot count it: Refused
	// entries may only lead the script, and they last until
	// [FaultServer.Listen] is called.
	Refused
	// AcceptClose accepts the connection and closes it before reading
	// the request. On a kept-alive connection it closes when the next
	// request's first byte arrives, again without reading it.
	AcceptClose
	// ResetAfterRequest reads the whole request, then aborts the
	// connection with a TCP reset (SO_LINGER 0) instead of answering.
	ResetAfterRequest
	// ResetAfterHeaders reads the whole request, sends the status line and
	// header fields of the answer, promising len(Body) bytes, and resets
	// the connection shortly after, before any of the body.
	ResetAfterHeaders
	// TruncateBody reads the whole request, sends the answer's header and
	// the first half of Body, promising all of it, and closes the
	// connection.
	TruncateBody
	// SlowHeaders reads the whole request and answers after Delay (one
	// minute if Delay is zero). The wait ends early, without an answer,
	// when the client closes the connection or the server is closed.
	SlowHeaders
	// TrickleBody sends the answer's header at once and then its body one
	// byte every Delay (10 ms if Delay is zero).
	TrickleBody
	// MalformedStatus answers a status line without a status code.
	MalformedStatus
	// InvalidHeader answers with a header field whose name holds a
	// control byte.
	InvalidHeader
	// EarlyHintsStorm sends 200 interim "103 Early Hints" responses and
	// then the answer.
	EarlyHintsStorm
	// RefusedStream refuses an HTTP/2 stream with RST_STREAM
	// (REFUSED_STREAM) as soon as its HEADERS frame arrives: the request
	// is not processed, and a client may send it again.
	RefusedStream
	// GoAway reads the whole HTTP/2 request, then sends GOAWAY naming the
	// stream as the last one (so the request may have been processed)
	// with INTERNAL_ERROR, and closes the connection.
	GoAway
)

var faultNames = [...]string{
	Answer:            "answer",
	Refused:           "refused",
	AcceptClose:       "accept-close",
	ResetAfterRequest: "reset-after-request",
	ResetAfterHeaders: "reset-after-headers",
	TruncateBody:      "truncate-body",
	SlowHeaders:       "slow-headers",
	TrickleBody:       "trickle-body",
	MalformedStatus:   "malformed-status",
	InvalidHeader:     "invalid-header",
	EarlyHintsStorm:   "early-hints-storm",
	RefusedStream:     "refused-stream",
	GoAway:            "goaway",
}

// String returns the kind's name in lower case, words joined by hyphens
// ("reset-after-request").
func (k FaultKind) String() string {
	if int(k) < len(faultNames) {
		return faultNames[k]
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// earlyHints is how many interim responses EarlyHintsStorm sends.
const earlyHints = 200

// resetPause is how long ResetAfterHeaders leaves the header to reach the
// client before the reset, which could otherwise overtake it.
const resetPause = 20 * time.Millisecond

// Fault is one entry of a [FaultServer]'s script: a fault and the answer
// it spoils. The zero Fault answers 200 with an empty body.
type Fault struct {
	// Kind is the fault; Answer (the zero value) is none.
	Kind FaultKind
	// Status, Header and Body make up the answer: the whole of it for
	// Answer, SlowHeaders, TrickleBody and EarlyHintsStorm, the part sent
	// for ResetAfterHeaders and TruncateBody. Status 0 means 200. The
	// server sets Content-Length itself.
	Status int
	Header http.Header
	Body   string
	// Delay is SlowHeaders' wait before the answer and TrickleBody's wait
	// between two body bytes.
	Delay time.Duration
}

func (f Fault) status() int {
	if f.Status == 0 {
		return http.StatusOK
	}
	return f.Status
}

// FaultRequest is a request a [FaultServer] read.
type FaultRequest struct {
	Method string
	// URL is the path and query, as received.
	URL string
	// Proto is "HTTP/1.1" or "HTTP/2.0".
	Proto string
	// Header is a copy of the request's header fields.
	Header http.Header
	// Body is the part of the request body the server read.
	Body []byte
	// Complete says the server read the request to its end.
	Complete bool
	// Effect says the server would have acted on the request: it read it
	// to its end and did not refuse it (RefusedStream). A request that is
	// not safe to repeat must have at most one.
	Effect bool
	// IdempotencyKey is the Idempotency-Key header field (or
	// X-Idempotency-Key), "" if the request had none.
	IdempotencyKey string
	// Entry is the index of the script entry that answered, and Kind its
	// fault.
	Entry int
	Kind  FaultKind
}

// FaultServer is a server on loopback (127.0.0.1) that fails below HTTP
// semantics: at the TCP, TLS, HTTP/1.1 or HTTP/2 level. It plays a script
// of [Fault] values, one per request: the i-th request (or, for
// AcceptClose, connection) meets the i-th entry, and once the script is
// used up the last entry repeats. It records every request it reads.
//
// It speaks HTTP/1.1, HTTP/2 with prior knowledge (h2c, as a client whose
// [net/http.Protocols] allow only unencrypted HTTP/2 speaks it), and TLS
// on the same port, with a self-signed certificate that no client trusts:
// use TLSURL to meet an untrusted certificate. Over HTTP/2 only Answer,
// RefusedStream and GoAway are played as such; AcceptClose closes the
// connection when the stream's HEADERS frame arrives, and every other
// fault resets the connection once the request is read. Over HTTP/1.1,
// RefusedStream and GoAway close the connection without answering.
//
// Every wait is bounded and ends when the server is closed. Its methods
// are safe for concurrent use.
type FaultServer struct {
	// URL is http://127.0.0.1:port, with no trailing slash.
	URL string
	// TLSURL is https://127.0.0.1:port: the same server behind TLS, with a
	// certificate no client trusts.
	TLSURL string

	addr     string
	done     chan struct{} // closed by Close: ends every wait
	wg       sync.WaitGroup
	listenMu sync.Mutex // one Listen at a time

	mu       sync.Mutex
	script   []Fault
	next     int // index of the next entry to play
	ln       net.Listener
	reserved *reservedPort // the port leading Refused entries keep bound, not listening
	closed   bool
	conns    map[net.Conn]struct{}
	accepted int
	reqs     []FaultRequest
}

// NewFaultServer starts a server playing script and arranges, through
// tb.Cleanup, for it to be closed when the test ends. The script is copied;
// an empty one answers 200 with an empty body to every request.
//
// tb may be nil, for example in an example function; the caller must then
// call [FaultServer.Close], and NewFaultServer panics where it would fail
// the test.
func NewFaultServer(tb testing.TB, script []Fault) *FaultServer {
	if tb != nil {
		tb.Helper()
	}
	s := &FaultServer{done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	for i, f := range script {
		if f.Kind == Refused && i > 0 && script[i-1].Kind != Refused {
			fail(tb, "heedtest: Refused at entry %d: Refused entries may only lead the script", i)
			return nil
		}
		f.Header = f.Header.Clone()
		s.script = append(s.script, f)
	}
	if len(s.script) == 0 {
		s.script = []Fault{{}}
	}
	refused := s.script[0].Kind == Refused
	if refused {
		r, err := reservePort()
		if err != nil {
			fail(tb, "heedtest: reserve a loopback port: %v", err)
			return nil
		}
		s.reserved, s.addr = r, r.addr
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail(tb, "heedtest: listen on loopback: %v", err)
			return nil
		}
		s.addr = l.Addr().String()
		s.start(l)
	}
	s.URL, s.TLSURL = "http://"+s.addr, "https://"+s.addr
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

// Listen makes the server listen on its port, which the leading Refused
// entries of its script left unbound; it then plays the entries after
// them. It does nothing if the server already listens. It fails if the
// port was taken meanwhile, which on Unix cannot happen: the port stays
// bound, without listening, until then.
func (s *FaultServer) Listen() error {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	s.mu.Lock()
	if s.ln != nil || s.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	l, err := s.reserved.listen()
	if err != nil {
		return fmt.Errorf("heedtest: listen on %s: %w", s.addr, err)
	}
	s.start(l)
	return nil
}

// start accepts connections on l until the server is closed.
func (s *FaultServer) start(l net.Listener) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return
	}
	s.ln = l
	for s.next < len(s.script)-1 && s.script[s.next].Kind == Refused {
		s.next++
	}
	if s.script[s.next].Kind == Refused {
		s.script = append(s.script, Fault{}) // all Refused: answer from now on
		s.next++
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				s.serveConn(c)
			}()
		}
	}()
}

// Close stops the server: it closes the listener and every connection,
// ends every wait, and waits for every goroutine of the server to return.
// It may be called more than once.
func (s *FaultServer) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return
	}
	s.closed = true
	close(s.done)
	if s.ln != nil {
		s.ln.Close()
	}
	if s.reserved != nil {
		s.reserved.release()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Requests returns a copy of the requests read so far, in arrival order.
func (s *FaultServer) Requests() []FaultRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FaultRequest, len(s.reqs))
	for i, r := range s.reqs {
		r.Header = r.Header.Clone()
		r.Body = bytes.Clone(r.Body)
		out[i] = r
	}
	return out
}

// Count returns how many requests the server has read, in full or not.
func (s *FaultServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// Effects returns how many of the requests read the server would have
// acted on (see FaultRequest.Effect). When a test sends one logical
// request to a server, it is how many times that request took effect.
func (s *FaultServer) Effects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.reqs {
		if r.Effect {
			n++
		}
	}
	return n
}

// Conns returns how many TCP connections the server has accepted.
func (s *FaultServer) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

func (s *FaultServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.accepted++
	return true
}

func (s *FaultServer) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// takeIf plays the next entry if it is of kind k.
func (s *FaultServer) takeIf(k FaultKind) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.script[s.next].Kind != k {
		return false
	}
	if s.next < len(s.script)-1 {
		s.next++
	}
	return true
}

// take plays the next entry: it returns it with its index and moves on,
// unless it is the last.
func (s *FaultServer) take() (Fault, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.next
	if s.next < len(s.script)-1 {
		s.next++
	}
	return s.script[i], i
}

func (s *FaultServer) record(r FaultRequest) {
	r.IdempotencyKey = r.Header.Get("Idempotency-Key")
	if r.IdempotencyKey == "" {
		r.IdempotencyKey = r.Header.Get("X-Idempotency-Key")
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
}

// sleep waits d, and reports false if the server was closed first.
func (s *FaultServer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// serveConn plays the script on one connection, in whichever protocol the
// client speaks.
func (s *FaultServer) serveConn(c net.Conn) {
	if s.takeIf(AcceptClose) {
		return // closed unread by the caller
	}
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	if first[0] == 0x16 { // a TLS handshake record
		cert, err := untrustedCert()
		if err != nil {
			return
		}
		tc := tls.Server(&bufferedConn{Conn: c, r: br}, &tls.Config{Certificates: []tls.Certificate{cert}})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() != nil {
			return // the client refused the certificate
		}
		tc.SetDeadline(time.Time{})
		c, br = tc, bufio.NewReader(tc)
	}
	if p, err := br.Peek(3); err == nil && string(p) == "PRI" {
		if p, err := br.Peek(len(h2Preface)); err == nil && string(p) == h2Preface {
			br.Discard(len(h2Preface))
			s.serveH2(c, br)
		}
		return
	}
	s.serveH1(c, br)
}

// bufferedConn reads through r, which holds bytes already peeked from the
// connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveH1 plays one entry per HTTP/1.1 request until the connection ends.
func (s *FaultServer) serveH1(c net.Conn, br *bufio.Reader) {
	for {
		if _, err := br.Peek(1); err != nil {
			return // the client closed the connection
		}
		f, i := s.take()
		if f.Kind == AcceptClose {
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		complete := err == nil
		s.record(FaultRequest{
			Method: req.Method, URL: req.RequestURI, Proto: req.Proto, Header: req.Header.Clone(),
			Body: body, Complete: complete, Effect: complete, Entry: i, Kind: f.Kind,
		})
		if !complete || !s.answerH1(c, br, req, f) || req.Close {
			return
		}
	}
}

// answerH1 plays f for req and reports whether the connection may carry
// another request.
func (s *FaultServer) answerH1(c net.Conn, br *bufio.Reader, req *http.Request, f Fault) bool {
	head := req.Method == http.MethodHead
	code := f.status()
	body := f.Body
	if !bodyAllowed(code) {
		body = ""
	}
	switch f.Kind {
	case ResetAfterRequest:
		reset(c)
		return false
	case RefusedStream, GoAway:
		return false
	case MalformedStatus:
		io.WriteString(c, "HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n")
		return false
	case InvalidHeader:
		fmt.Fprintf(c, "HTTP/1.1 %03d %s\r\nX-Bad\x01Name: v\r\nContent-Length: %d\r\n\r\n", code, http.StatusText(code), len(body))
		return false
	case SlowHeaders:
		if !s.awaitHangUp(c, br, cmpOr(f.Delay, time.Minute)) {
			return false
		}
	case EarlyHintsStorm:
		var b bytes.Buffer
		for range earlyHints {
			b.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
		}
		if _, err := c.Write(b.Bytes()); err != nil {
			return false
		}
	}
	if _, err := c.Write(h1Head(code, f.Header, len(body))); err != nil {
		return false
	}
	if head {
		return f.Kind != ResetAfterHeaders && f.Kind != TruncateBody
	}
	switch f.Kind {
	case ResetAfterHeaders:
		s.sleep(resetPause)
		reset(c)
		return false
	case TruncateBody:
		io.WriteString(c, body[:len(body)/2])
		return false
	case TrickleBody:
		gap := cmpOr(f.Delay, 10*time.Millisecond)
		for i := range len(body) {
			if i > 0 && !s.sleep(gap) {
				return false
			}
			if _, err := io.WriteString(c, body[i:i+1]); err != nil {
				return false
			}
		}
		return true
	}
	_, err := io.WriteString(c, body)
	return err == nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// h1Head is the status line and header of an HTTP/1.1 answer with a body
// of n bytes.
func h1Head(code int, h http.Header, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Del("Transfer-Encoding")
	h.Del("Content-Length")
	if bodyAllowed(code) {
		h.Set("Content-Length", strconv.Itoa(n))
	}
	h.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// awaitHangUp waits d, watching the connection, and reports false if the
// client hung up or the server was closed first. It watches by reading
// with short deadlines: anything the client sends early stays buffered.
func (s *FaultServer) awaitHangUp(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	defer c.SetReadDeadline(time.Time{})
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		select {
		case <-s.done:
			return false
		default:
		}
		c.SetReadDeadline(time.Now().Add(min(left, 20*time.Millisecond)))
		_, err := br.Peek(1)
		var ne net.Error
		switch {
		case err == nil: // a pipelined request: nothing more to watch
			c.SetReadDeadline(time.Time{})
			return s.sleep(time.Until(end))
		case errors.As(err, &ne) && ne.Timeout():
		default:
			return false
		}
	}
}

// reset closes c with SO_LINGER set to 0, so the kernel sends a TCP RST
// instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if bc, ok := c.(*bufferedConn); ok {
		c = bc.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// untrustedCert is a self-signed certificate for 127.0.0.1, made once per
// process: no client trusts it, so a client that checks certificates fails
// the handshake with x509.UnknownAuthorityError.
var untrustedCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "heedtest untrusted"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
})
