package heedtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/heed-go/heed/clock"
)

// Transport is an in-memory [net/http.RoundTripper] that plays a script
// the way [Server] does, with no network: the i-th request gets the i-th
// [Step], the last step repeats once the script is used up, and an empty
// script answers 200 with an empty body. It starts no goroutines, so it
// works inside [testing/synctest] bubbles, where a Delay on the real clock
// passes in the bubble's fake time.
//
// Responses look like those of [net/http.Transport] for HTTP/1.1: Proto is
// "HTTP/1.1", Request is set, and a body that is not chunked has a
// Content-Length header and ContentLength. The failures look like network
// ones too:
//
//   - Reset returns a *[net.OpError] wrapping syscall.ECONNRESET.
//   - Truncate returns a response whose body yields the first half of Body
//     and then io.ErrUnexpectedEOF.
//   - Hang and an unfinished Delay return the cause of the request
//     context's end (context.Canceled or context.DeadlineExceeded unless
//     the context was given another cause). A Hang step on a request
//     whose context is never done blocks forever; give the request a
//     deadline or the client a Timeout.
//
// A Transport is safe for concurrent use.
type Transport struct {
	script *script
	clock  clock.Clock
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a transport playing steps. The steps are copied.
func NewTransport(steps []Step, opts ...Option) *Transport {
	o := buildOptions(opts)
	return &Transport{script: newScript(steps), clock: o.clock}
}

// Requests returns a copy of the requests received so far, in arrival
// order.
func (t *Transport) Requests() []Request { return t.script.requests() }

// Count returns how many requests the transport has received so far.
func (t *Transport) Count() int { return t.script.count() }

// RoundTrip reads and closes the request's body, records the request and
// plays the next step.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("heedtest: read request body: %w", err)
		}
	}
	if body == nil {
		body = []byte{}
	}
	step := t.script.next(req.Method, req.URL.RequestURI(), req.Header, body)
	if step.Handler != nil {
		return serveInMemory(req, body, step.Handler), nil
	}

	ctx := req.Context()
	if !clock.Sleep(t.clock, step.Delay, ctx.Done()) {
		return nil, context.Cause(ctx)
	}
	switch {
	case step.Hang:
		<-ctx.Done()
		return nil, context.Cause(ctx)
	case step.Reset:
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	}

	code := step.status()
	resp := &http.Response{
		Status:     strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode: code,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     step.responseHeader(),
		Request:    req,
	}
	content := step.Body
	if !bodyAllowed(code) {
		content = ""
	}
	if step.Chunked && bodyAllowed(code) {
		resp.ContentLength = -1
		resp.TransferEncoding = []string{"chunked"}
	} else {
		resp.ContentLength = int64(len(content))
		if bodyAllowed(code) {
			resp.Header.Set("Content-Length", strconv.Itoa(len(content)))
		}
	}

	var r io.Reader = strings.NewReader(content)
	if step.Truncate {
		r = &truncated{r: strings.NewReader(content[:len(content)/2])}
	}
	switch {
	case req.Method == http.MethodHead:
		resp.Body = http.NoBody
	case resp.ContentLength == 0:
		resp.Body = http.NoBody
	default:
		resp.Body = io.NopCloser(r)
	}
	return resp, nil
}

// truncated yields r and then io.ErrUnexpectedEOF, like a body cut short.
type truncated struct{ r io.Reader }

func (t *truncated) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// serveInMemory runs h on a server-side copy of req, whose body is the one
// the client sent, and returns what h wrote.
func serveInMemory(req *http.Request, body []byte, h http.HandlerFunc) *http.Response {
	sreq := req.Clone(req.Context())
	sreq.Body = io.NopCloser(bytes.NewReader(body))
	sreq.ContentLength = int64(len(body))
	sreq.RequestURI = req.URL.RequestURI()
	if sreq.Host == "" {
		sreq.Host = req.URL.Host
	}
	rec := httptest.NewRecorder()
	h(rec, sreq)
	resp := rec.Result()
	resp.Request = req
	// A server would send a small unflushed body with a Content-Length.
	if resp.ContentLength < 0 && !rec.Flushed && resp.Header.Get("Transfer-Encoding") == "" &&
		bodyAllowed(resp.StatusCode) {
		resp.ContentLength = int64(rec.Body.Len())
		resp.Header.Set("Content-Length", strconv.Itoa(rec.Body.Len()))
	}
	return resp
}
