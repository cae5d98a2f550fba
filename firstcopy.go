package heed

import "net/http"

// firstCopy is what a call allocates, in one piece, when its first attempt
// cannot send the caller's request as it is (a header to add, a body
// buffered for replay): the request's copy, the in-memory body of the
// response read ahead and the Heed-Timeout value (and, in a bodyCopy, the
// buffered request body). A call that succeeds at once then costs one
// allocation beyond the header map its copy needs.
type firstCopy struct {
	req     http.Request
	mem     memBody
	memUsed bool
	timeout timeoutRoom
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
