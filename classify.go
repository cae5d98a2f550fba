package heed

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// Verdict is a classifier's answer about one attempt.
type Verdict uint8

const (
	// VerdictDefault defers to heed's decision table.
	VerdictDefault Verdict = iota
	// VerdictRetry retries the attempt (within the attempt limit, the
	// waits and the retry budget).
	VerdictRetry
	// VerdictStop makes the attempt's outcome final.
	VerdictStop
)

// Outcome is what one attempt produced, as the decision core sees it.
type Outcome struct {
	// Attempt is the attempt's number, from 1.
	Attempt int
	// Request is the request as sent; nil for calls made through Do.
	Request *http.Request
	// Response is the response, nil if the attempt failed without one.
	// Classifiers must not read or close its body: [Outcome.Body] reads
	// it for them and keeps it for the caller.
	Response *http.Response
	// Err is the attempt's error, nil if a response arrived.
	Err error
	// Idempotent: repeating the request is safe (an idempotent method, an
	// Idempotency-Key, or a call made through Do).
	Idempotent bool
	// Replayable: the request body can be sent again.
	Replayable bool
	// NotSent: the failure happened before the request could reach the
	// server (a dial error, refused connection, failed DNS lookup or TLS
	// handshake), or the server says it did not process it (an HTTP/2
	// stream it refused), so it is safe to retry whatever the method.
	// decide also infers it from Err.
	NotSent bool

	bodyLimit int64 // how much of the body Body reads: the response buffer
}

// Body returns the response's body, for a classifier whose decision needs
// it (an error code in a JSON body, say), reading at most the policy's
// response buffer ([WithResponseBuffer], 1 MiB by default): of a longer
// body it returns the first part, and complete is false. The caller still
// gets the whole body: what Body read is put back in front of the rest.
// Calling it again returns the same bytes. It returns nil and true for an
// outcome without a response. An error reading the body is returned with
// what was read, and the caller's read of the body meets it too.
func (o Outcome) Body() (body []byte, complete bool, err error) {
	resp := o.Response
	if resp == nil || resp.Body == nil || resp.Body == http.NoBody {
		return nil, true, nil
	}
	if pb, ok := resp.Body.(*peekedBody); ok {
		return pb.prefix, pb.complete, pb.err
	}
	limit := o.bodyLimit
	if limit <= 0 {
		limit = defaultResponseBuffer
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	pb := &peekedBody{prefix: buf, complete: int64(len(buf)) <= limit && err == nil, err: err, rest: resp.Body}
	if !pb.complete && err == nil {
		pb.prefix = buf[:limit]
	}
	pb.r = io.MultiReader(bytes.NewReader(buf), pb.tail())
	resp.Body = pb
	return pb.prefix, pb.complete, err
}

// peekedBody is a response body Outcome.Body has read the start of: the
// bytes read, then the rest (or the error the read met).
type peekedBody struct {
	prefix   []byte
	complete bool
	err      error
	rest     io.ReadCloser
	r        io.Reader
}

func (b *peekedBody) tail() io.Reader {
	if b.err != nil {
		return errorReader{b.err}
	}
	return b.rest
}

func (b *peekedBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *peekedBody) Close() error               { return b.rest.Close() }

type errorReader struct{ err error }

func (r errorReader) Read([]byte) (int, error) { return 0, r.err }

// status returns the outcome's HTTP status and header: from the response,
// or from a [*StatusError] in the error chain.
func (o *Outcome) status() (int, http.Header) {
	if o.Response != nil {
		return o.Response.StatusCode, o.Response.Header
	}
	var se *StatusError
	if o.Err != nil && errors.As(o.Err, &se) {
		return se.StatusCode, se.Header
	}
	return 0, nil
}

// ErrorKind classifies a transport error, for logs and metrics.
type ErrorKind string

const (
	KindNone      ErrorKind = ""
	KindRefused   ErrorKind = "refused"   // connection refused
	KindDNS       ErrorKind = "dns"       // name lookup failed
	KindDial      ErrorKind = "dial"      // other failure to connect
	KindReset     ErrorKind = "reset"     // connection reset or broken pipe
	KindTimeout   ErrorKind = "timeout"   // dial, TLS handshake, read or attempt timeout
	KindEOF       ErrorKind = "eof"       // connection closed early, or a truncated body
	KindTLS       ErrorKind = "tls"       // certificate not trusted or not valid
	KindCanceled  ErrorKind = "canceled"  // the caller's context ended
	KindRetryable ErrorKind = "retryable" // marked by Retryable or RetryableAfter
	KindOther     ErrorKind = "other"     // anything else: not retried by default
)

// classifyError tells whether err is a transient transport failure, what
// kind it is, and whether it happened before the request could reach the
// server. Unknown errors are not retried: an unsupported scheme, too many
// redirects or a malformed request do not heal on their own.
func classifyError(err error) (kind ErrorKind, retryable, notSent bool) {
	var (
		cve  *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		he   x509.HostnameError
		cie  x509.CertificateInvalidError
		dns  *net.DNSError
		op   *net.OpError
		re   *retryableError
		hint *hintError
		nerr net.Error
		h2   h2StreamError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return KindCanceled, false, false
	case errors.As(err, &re), errors.As(err, &hint):
		return KindRetryable, true, false
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &he), errors.As(err, &cie):
		return KindTLS, false, false
	case errors.As(err, &dns):
		return KindDNS, true, true
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused, true, true
	}
	dial := errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect")
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return KindReset, true, dial
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return KindEOF, true, false
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return KindTimeout, true, dial
	case dial:
		return KindDial, true, true
	case errors.As(err, &h2):
		return h2StreamKind(h2.Code)
	}
	if kind, notSent, ok := h2ConnFailure(err.Error()); ok {
		return kind, true, notSent
	}
	switch {
	case closedConn(err), errors.Is(err, net.ErrClosed):
		// net.ErrClosed here is net/http's write hitting a connection it
		// closed itself, on seeing the server close it: the request may or
		// may not have reached the server.
		return KindEOF, true, false
	}
	return KindOther, false, false
}

// closedConn reports net/http's own errors for a connection that closed
// under a request: "http: server closed idle connection" (the server shut
// a kept-alive connection as the request went out on it) and "net/http:
// HTTP/1.x transport connection broken" (the connection failed after the
// request was written, as when net/http closes it for its idle pool being
// full). net/http exports no type or sentinel for either, so they are
// recognised by their text, as of Go 1.26 (TestClosedConnErrors pins
// them); the request may have reached the server, so only a request safe
// to repeat is retried.
func closedConn(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "http: server closed idle connection") ||
		strings.Contains(msg, "transport connection broken")
}

// h2StreamError has the shape of net/http's HTTP/2 stream error, which
// converts itself into any struct of that shape through errors.As (the
// type itself is not exported).
type h2StreamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

// Error makes h2StreamError a target errors.As accepts; heed never
// returns one.
func (e h2StreamError) Error() string {
	return fmt.Sprintf("stream error: stream ID %d; code %#x", e.StreamID, e.Code)
}

// HTTP/2 error codes (RFC 9113, section 7) that end a stream for reasons
// of the server's, not the request's.
const (
	h2InternalError   = 0x2
	h2RefusedStream   = 0x7
	h2Cancel          = 0x8
	h2EnhanceYourCalm = 0xb
)

// h2StreamKind classifies an HTTP/2 stream reset by its code. A refused
// stream is one the server guarantees it did not process (RFC 9113,
// section 8.7), so any request may be sent again; an internal error, a
// cancel or a plea to calm down may come after the server acted, so only a
// request safe to repeat is. Other codes (a protocol or flow-control
// error) speak of a fault in the exchange that a retry will not heal.
func h2StreamKind(code uint32) (ErrorKind, bool, bool) {
	switch code {
	case h2RefusedStream:
		return KindRefused, true, true
	case h2InternalError, h2Cancel, h2EnhanceYourCalm:
		return KindReset, true, false
	}
	return KindOther, false, false
}

// h2ConnFailure recognises net/http's (and golang.org/x/net/http2's) errors
// for an HTTP/2 connection that failed under a request, which are plain
// errors or unexported types known only by their text (as of Go 1.26;
// TestHTTP2Errors pins them). A stream reset quoted in another error's
// text (net/http refusing to resend a body it cannot rewind) counts by
// its code too. notSent: the connection could not take the request at
// all.
func h2ConnFailure(msg string) (kind ErrorKind, notSent, ok bool) {
	switch {
	case !strings.Contains(msg, "http2") && !strings.Contains(msg, "stream error"):
		return "", false, false
	case strings.Contains(msg, "client conn not usable"),
		strings.Contains(msg, "graceful shutdown GOAWAY"):
		return KindEOF, true, true
	case strings.Contains(msg, "server sent GOAWAY and closed the connection"),
		strings.Contains(msg, "client connection lost"),
		strings.Contains(msg, "client connection force closed"),
		strings.Contains(msg, "client conn is closed"):
		return KindEOF, false, true
	case strings.Contains(msg, "stream error: stream ID"):
		for _, c := range h2CodeNames {
			if strings.Contains(msg, "; "+c.name) {
				k, _, notSent := h2StreamKind(c.code)
				return k, notSent, true
			}
		}
	}
	return "", false, false
}

var h2CodeNames = []struct {
	code uint32
	name string
}{{h2RefusedStream, "REFUSED_STREAM"}, {h2InternalError, "INTERNAL_ERROR"}, {h2Cancel, "CANCEL"}, {h2EnhanceYourCalm, "ENHANCE_YOUR_CALM"}}

// idempotentMethod reports the methods RFC 9110 defines as idempotent.
func idempotentMethod(m string) bool {
	switch m {
	case "", http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// hasIdempotencyKey reports an Idempotency-Key header, under either of the
// names net/http itself recognises.
func hasIdempotencyKey(h http.Header) bool {
	if h == nil {
		return false
	}
	_, ok := h["Idempotency-Key"]
	if !ok {
		_, ok = h["X-Idempotency-Key"]
	}
	return ok
}
