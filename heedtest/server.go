package heedtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/heed-go/heed/clock"
)

// Server is an HTTP/1.1 server on loopback (127.0.0.1) that plays a script:
// the i-th request it receives gets the i-th [Step]. Once the script is used
// up the last step repeats; an empty script answers 200 with an empty body.
// It records every request it receives.
//
// Server is built on [net/http/httptest.Server]. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:port, with no
	// trailing slash.
	URL string

	srv    *httptest.Server
	script *script
	clock  clock.Clock

	// ctx is the base of every request's context; cancel ends it on Close,
	// which releases hanging and delayed steps.
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce sync.Once
	handlers  sync.WaitGroup // running handlers; Add only under mu while !closed

	mu       sync.Mutex
	closed   bool
	hijacked map[net.Conn]struct{}
}

// NewServer starts a server playing steps and arranges, through tb.Cleanup,
// for it to be closed when the test ends. The steps are copied.
//
// tb may be nil, for example in an example function or TestMain; the caller
// must then call [Server.Close], and NewServer panics if it cannot listen.
func NewServer(tb testing.TB, steps []Step, opts ...Option) *Server {
	if tb != nil {
		tb.Helper()
	}
	o := buildOptions(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(tb, "heedtest: listen on loopback: %v", err)
		return nil
	}
	s := &Server{
		script:   newScript(steps),
		clock:    o.clock,
		hijacked: make(map[net.Conn]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	hs := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	hs.Listener.Close() // httptest may fall back to [::1]; use exactly 127.0.0.1
	hs.Listener = l
	hs.Config.BaseContext = func(net.Listener) context.Context { return s.ctx }
	hs.Start()
	s.srv = hs
	s.URL = hs.URL
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

// Requests returns a copy of the requests received so far, in arrival
// order.
func (s *Server) Requests() []Request { return s.script.requests() }

// Count returns how many requests the server has received so far. A
// request counts as soon as its body has been read, before its step is
// played.
func (s *Server) Count() int { return s.script.count() }

// Client returns a plain [net/http.Client] for the server, with no retries
// of its own beyond what [net/http.Transport] does. Close closes its idle
// connections.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Close shuts the server down: it releases every hanging or delayed step,
// closes every connection, hijacked ones included, and waits for every
// handler to return. It may be called more than once; NewServer arranges
// for it to be called when the test ends.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := s.hijacked
		s.hijacked = nil
		s.mu.Unlock()

		s.cancel()
		for c := range conns {
			c.Close()
		}
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.handlers.Wait()
	})
}

// DeadAddr returns a loopback address, host:port, on which nothing listens,
// so connecting to it is refused (syscall.ECONNREFUSED). It listens on
// 127.0.0.1:0 and closes the listener at once; the port is not reserved, but
// the kernel rarely hands it out again soon.
//
// tb may be nil; DeadAddr then panics if it cannot listen.
func DeadAddr(tb testing.TB) string {
	if tb != nil {
		tb.Helper()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(tb, "heedtest: listen on loopback: %v", err)
		return ""
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		fail(tb, "heedtest: close listener: %v", err)
	}
	return addr
}

func fail(tb testing.TB, format string, args ...any) {
	if tb == nil {
		panic(fmt.Sprintf(format, args...))
	}
	tb.Helper()
	tb.Fatalf(format, args...)
}

// enter registers a running handler; it reports false once the server is
// closing.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		panic(http.ErrAbortHandler) // drop the connection without answering
	}
	defer s.handlers.Done()

	body, err := io.ReadAll(r.Body)
	step := s.script.next(r.Method, r.RequestURI, r.Header, body)
	if err != nil {
		panic(http.ErrAbortHandler) // the client went away mid-body
	}
	if step.Handler != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		step.Handler(w, r)
		return
	}

	// r.Context is done when the client goes away or the server closes.
	// Either way, end without answering: returning normally would send an
	// empty 200.
	if !clock.Sleep(s.clock, step.Delay, r.Context().Done()) {
		panic(http.ErrAbortHandler)
	}
	switch {
	case step.Hang:
		<-r.Context().Done()
		panic(http.ErrAbortHandler)
	case step.Reset:
		s.reset(w)
	case step.Truncate:
		s.truncate(w, step)
	default:
		write(w, step)
	}
}

// write answers normally, with a Content-Length unless the step is
// chunked.
func write(w http.ResponseWriter, step Step) {
	code := step.status()
	h := w.Header()
	for k, vs := range step.responseHeader() {
		h[k] = vs
	}
	if !step.Chunked {
		if bodyAllowed(code) {
			h.Set("Content-Length", strconv.Itoa(len(step.Body)))
		}
		w.WriteHeader(code)
		io.WriteString(w, step.Body)
		return
	}
	// Flushing before the handler returns, with no Content-Length, makes
	// net/http send the body chunked.
	rc := http.NewResponseController(w)
	w.WriteHeader(code)
	rc.Flush()
	half := len(step.Body) / 2
	io.WriteString(w, step.Body[:half])
	rc.Flush()
	io.WriteString(w, step.Body[half:])
}

// hijack takes the connection over from net/http and tracks it so that
// Close can close it.
func (s *Server) hijack(w http.ResponseWriter) net.Conn {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		conn.Close()
		panic(http.ErrAbortHandler)
	}
	s.hijacked[conn] = struct{}{}
	return conn
}

func (s *Server) release(conn net.Conn) {
	conn.Close()
	s.mu.Lock()
	delete(s.hijacked, conn) // no-op once Close has taken the map
	s.mu.Unlock()
}

// reset closes the connection with SO_LINGER set to 0, so the kernel sends
// a TCP RST instead of a FIN.
func (s *Server) reset(w http.ResponseWriter) {
	conn := s.hijack(w)
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	s.release(conn)
}

// truncate writes a raw HTTP/1.1 response that promises the whole body but
// carries only its first half, then closes the connection.
func (s *Server) truncate(w http.ResponseWriter, step Step) {
	conn := s.hijack(w)
	defer s.release(conn)

	code := step.status()
	h := step.responseHeader()
	h.Set("Connection", "close")
	half := step.Body[:len(step.Body)/2]
	if step.Chunked {
		h.Set("Transfer-Encoding", "chunked")
	} else {
		h.Set("Content-Length", strconv.Itoa(len(step.Body)))
	}

	var head bytes.Buffer
	fmt.Fprintf(&head, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
	h.Write(&head)
	head.WriteString("\r\n")
	tail := ""
	if step.Chunked {
		// One chunk, and never the zero-length chunk that ends the body.
		// An empty first half sends no chunk at all: a zero-length chunk
		// would end the body cleanly.
		if len(half) == 0 {
			conn.Write(head.Bytes())
			return
		}
		fmt.Fprintf(&head, "%x\r\n", len(half))
		tail = "\r\n"
	}
	// The body goes in its own write, unbuffered, as it may be large.
	if _, err := conn.Write(head.Bytes()); err != nil {
		return
	}
	if _, err := io.WriteString(conn, half); err != nil {
		return
	}
	io.WriteString(conn, tail)
}
