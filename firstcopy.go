package heed

import (
	"net/http"
	"strconv"
	"time"
	"unsafe"
)

// firstCopy is what a call allocates, in one piece, when its first attempt
// cannot send the caller's request as it is (a header to add, a body
// buffered for replay): the request's copy, the buffered body, the
// in-memory body of the response read ahead, and the Heed-Timeout value. A
// call that succeeds at once then costs one allocation beyond the header
// map its copy needs.
type firstCopy struct {
	req     http.Request
	mem     memBody
	memUsed bool
	timeout [1]string
	digits  [20]byte
}

// bodyCopy is a firstCopy with room for a buffered request body.
type bodyCopy struct {
	firstCopy
	body bufferedBody
}

// spare returns the call's firstCopy, allocating it on first use.
func (l *loop) spare() *firstCopy {
	if l.fc == nil {
		l.fc = new(firstCopy)
	}
	return l.fc
}

// bodyRoom returns room for the request body heed buffers; it is called
// before the first attempt's copy is made, which then shares its
// allocation.
func (l *loop) bodyRoom() *bufferedBody {
	bc := new(bodyCopy)
	l.fc = &bc.firstCopy
	return &bc.body
}

// memBody returns room for a response body read ahead: the first copy's
// the first time, a new one after.
func (l *loop) memBody() *memBody {
	if l.fc != nil && !l.fc.memUsed {
		l.fc.memUsed = true
		return &l.fc.mem
	}
	return new(memBody)
}

// request returns a shallow copy of req with header h.
func (fc *firstCopy) request(req *http.Request, h http.Header) *http.Request {
	fc.req = *req
	fc.req.Header = h
	return &fc.req
}

// tierHeaders returns h with a first attempt's Heed-Timeout: the time
// from now to the deadline. The values are h's own, capped, so that an
// append by a layer below cannot reach the caller's arrays; the new value
// lives in fc.
func (fc *firstCopy) tierHeaders(h http.Header, deadline, now time.Time) http.Header {
	out := make(http.Header, len(h)+1)
	for k, v := range h {
		out[k] = v[:len(v):len(v)]
	}
	b := strconv.AppendInt(fc.digits[:0], timeoutMillis(deadline, now), 10)
	// The digits are written once, here, and never again: a string over
	// them is as immutable as any, and saves an allocation per request.
	fc.timeout[0] = unsafe.String(&b[0], len(b))
	out[headerTimeout] = fc.timeout[:]
	return out
}

// timeoutMillis is the Heed-Timeout value for a deadline seen at now: the
// milliseconds left, rounded up, so that a tiny remainder never reads as
// none, and at least 1.
func timeoutMillis(deadline, now time.Time) int64 {
	ms := (deadline.Sub(now) + time.Millisecond - 1) / time.Millisecond
	return max(1, int64(ms))
}
