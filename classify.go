package heed

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// Verdict is a classifier's answer about one attempt.
type Verdict uint8

const (
	// Default defers to heed's decision table.
	Default Verdict = iota
	// Retry retries the attempt (within the attempt limit and waits).
	Retry
	// Stop makes the attempt's outcome final.
	Stop
)

// Outcome is what one attempt produced, as the decision core sees it.
type Outcome struct {
	// Attempt is the attempt's number, from 1.
	Attempt int
	// Request is the request as sent; nil for calls made through Do.
	Request *http.Request
	// Response is the response, nil if the attempt failed without one.
	// Classifiers must not read or close its body.
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
	// handshake), so it is safe to retry whatever the method.
	NotSent bool
}

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
	KindRetryable ErrorKind = "retryable" // marked by Retryable or RetryAfter
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
	case closedConn(err):
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
