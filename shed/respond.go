package shed

import (
	"math/rand/v2"
	"net/http"
	"strconv"
)

// The problem types of the shed responses' bodies (RFC 9457). Each is the
// address of its own documentation.
const (
	// ProblemOverloaded: the server refused the request to keep its
	// latency, without starting it. Retry-After says when to come back;
	// the request may be sent again as it is, even if it is not
	// idempotent, since nothing of it was done. The body's "retry_after"
	// repeats Retry-After in seconds.
	ProblemOverloaded = "https://pkg.go.dev/github.com/heed-go/heed/shed#ProblemOverloaded"
	// ProblemDeadline: the caller's deadline had passed (its Heed-Timeout
	// ran out, or it went away) before the request could start, so it was
	// not started. Nobody is waiting for the answer; the body is for logs.
	ProblemDeadline = "https://pkg.go.dev/github.com/heed-go/heed/shed#ProblemDeadline"
)

// verdict is why a request was shed.
type verdict uint8

const (
	pending   verdict = iota
	admitted          // a slot was handed over
	shedFull          // no room, and no room in the queue
	shedQueue         // waited past the queue's target or interval
	shedDead          // its caller's deadline passed (or it went away) before it started
	shedLate          // as shedDead, while it waited in the queue
)

// retryAfter draws the Retry-After of a shed response, in seconds.
func (s *Shedder) retryAfter() int {
	n := s.s.retryAfter
	if j := s.s.retryAfterJitter; j > 0 {
		n += rand.IntN(j + 1)
	}
	return max(n, 1)
}

// respond writes the shed response: 503 Service Unavailable with a
// problem-details body, and Retry-After when the refusal was for load
// (wait > 0).
//
// Why 503 for a passed deadline too, not 504: 504 says a gateway timed out
// waiting for an upstream, which may have done the work; here nothing was
// started, which is what 503 says, and what makes the request safe to
// send again. Why no Retry-After then: the caller's deadline has passed,
// it will not come back for this call, and a Retry-After would wake the
// adaptive pacing of heed clients for an overload the server may not have.
// A request that ran out of time while waiting in the queue did meet an
// overload, and gets one.
//
// Why no Heed-Retried: that mark tells a heed client a tier below already
// retried a failure of its own dependency, and makes the client give up
// on it. A shed is the opposite: nothing below failed, the server itself is
// busy, and the client (the tier closest to the failure) is the one that
// should retry, after Retry-After, possibly on another replica. Marking
// it would make every caller above give up at once.
func respond(w http.ResponseWriter, why verdict, wait int) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	var body []byte
	if why == shedDead || why == shedLate {
		body = append(body, `{"type":"`+ProblemDeadline+`","title":"Deadline passed","status":503,"detail":"The caller's deadline passed before the request could start; it was not started."`...)
	} else {
		body = append(body, `{"type":"`+ProblemOverloaded+`","title":"Server overloaded","status":503,"detail":"The server is shedding load to keep its latency; the request was not started."`...)
	}
	if wait > 0 {
		ra := strconv.Itoa(wait)
		h.Set("Retry-After", ra)
		body = append(body, `,"retry_after":`...)
		body = append(body, ra...)
	}
	body = append(body, "}\n"...)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(body)
}
