package heed

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
)

// ---- request bodies ----

// replayBody captures how each attempt gets its own copy of the request body.
type replayBody struct {
	// first is the body for the first attempt when it differs from the
	// caller's (buffered, or a buffered prefix followed by the rest).
	first io.ReadCloser
	// get returns a fresh copy for later attempts; nil when there is no body.
	get func() (io.ReadCloser, error)
	// replayable says every attempt can send the same bytes.
	replayable bool
	// copied says the first attempt cannot use the caller's request as is.
	copied bool
	// unsent guards a body that cannot be replayed, so that it can still
	// go out again when no attempt has taken a byte of it.
	unsent *unsentBody
	// buffered holds a body heed read in.
	buffered *bufferedBody
	// firstOut says first was handed to an attempt, whose sender closes it.
	firstOut bool
}

// takeFirst returns the first attempt's body.
func (b *replayBody) takeFirst() io.ReadCloser {
	b.firstOut = true
	return b.first
}

// release ends the call's hold on the body.
func (b *replayBody) release() {
	if b.unsent != nil {
		b.unsent.release()
	}
	if b.buffered != nil {
		if !b.firstOut {
			b.first.Close() // never sent: nobody else will
		}
		b.buffered.release()
	}
}

// canReplay says the next attempt can send the body whole: every attempt
// can, or an attempt whose connection failed before the request went out
// (err) left the unreplayable body untouched.
func (b *replayBody) canReplay(err error) bool {
	return b.replayable || err != nil && b.unsent != nil && dialFailed(err) && b.unsent.whole()
}

// dialFailed reports an error from connecting, before any byte of the
// request was written: no writer can still be reading its body.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect")
}

// unsentBody is a request body heed cannot replay (larger than the
// buffer, without GetBody), kept whole for another attempt until one reads
// from it: net/http closes a request's body when its connection fails,
// even when not a byte was written.
type unsentBody struct {
	mu     sync.Mutex
	r      io.Reader
	c      io.Closer
	taken  bool // a Read was made: the body is no longer whole
	closed bool
}

func (b *unsentBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errReqBodyClosed
	}
	b.taken = true
	return b.r.Read(p)
}

// Close closes the body once a byte of it went out; a body still whole
// stays open for another attempt, and release closes it when the call
// ends.
func (b *unsentBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.taken {
		return nil
	}
	return b.closeLocked()
}

func (b *unsentBody) whole() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.taken && !b.closed
}

// release closes a body no attempt read from, whose closes were held
// back. One that was read belongs to net/http, which closes it once done
// writing: closing it here could end a write still checking for the end
// of the body, and with it the connection of a response being read.
func (b *unsentBody) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.taken {
		b.closeLocked()
	}
}

func (b *unsentBody) closeLocked() error {
	if b.closed {
		return nil
	}
	b.closed = true
	return b.c.Close()
}

var errReqBodyClosed = errors.New("heed: read on a closed request body")

// prepareBody decides how the request body is sent again. A body with
// GetBody is rewound through it; one without is read in, up to limit
// bytes, and held by the bufferedBody room returns (only when another
// attempt may follow). A body larger than limit is sent once, its head
// followed by the rest, and the request is retried only when no byte of it
// left (its connection could not be made).
func prepareBody(req *http.Request, limit int64, mayRetry bool, room func() *bufferedBody) (replayBody, error) {
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		return replayBody{replayable: true}, nil
	case req.GetBody != nil:
		return replayBody{get: req.GetBody, replayable: true}, nil
	case !mayRetry:
		return replayBody{}, nil
	case limit <= 0 || req.ContentLength > limit:
		u := &unsentBody{r: req.Body, c: req.Body}
		return replayBody{first: u, unsent: u, copied: true}, nil
	}
	// A small body is read into the call's own room, which no pool shares:
	// it costs nothing more, and nothing depends on net/http closing it.
	var (
		bp  *[]byte
		buf *bufferedBody
		b   []byte
	)
	if want := min(max(req.ContentLength, 0), limit) + 1; want <= smallBody {
		buf = room()
		b = buf.small[:0]
	} else {
		bp = getBuf(want)
		b = *bp
	}
	b, err := readUpTo(req.Body, b, limit+1)
	if bp != nil {
		*bp = b
	}
	if err != nil {
		if bp != nil {
			putBuf(bp)
		}
		req.Body.Close()
		return replayBody{}, err
	}
	if int64(len(b)) > limit {
		// Too long to replay: the buffered head, then the rest, sent once.
		// The head is copied out, as the pooled buffer goes back at once.
		rest := req.Body
		u := &unsentBody{r: io.MultiReader(bytes.NewReader(bytes.Clone(b)), rest), c: rest}
		if bp != nil {
			putBuf(bp)
		}
		return replayBody{first: u, unsent: u, copied: true}, nil
	}
	req.Body.Close()
	if buf == nil {
		buf = room()
	}
	buf.fill(bp, b)
	first, _ := buf.reader(&buf.first) // just filled: cannot fail
	return replayBody{first: first, get: buf.get, replayable: true, copied: true, buffered: buf}, nil
}

// smallBody is the most a request body heed buffers in the call's own
// allocation rather than in a pooled buffer: most writes are small, and
// then the buffer's life does not hang on the transport closing the body.
const smallBody = 256

// bufferedBody is a request body heed read in, so that every attempt can
// send the same bytes: into small when it fits, else into a pooled buffer.
// A pooled buffer goes back to the pool once the call is over and every
// reader handed out is closed: net/http may still read a body after its
// RoundTrip returned (a response can arrive before the request is
// written), so the call's end alone does not free it.
type bufferedBody struct {
	mu    sync.Mutex
	data  []byte  // the body; nil once the call and its readers are done
	buf   *[]byte // the pooled buffer data lies in, if any
	refs  int     // the call's, and one per reader not yet closed
	first bufferedReader
	get   func() (io.ReadCloser, error) // b.getBody, for the requests' GetBody
	small [smallBody]byte
}

// fill makes data, held in the pooled buffer bp (nil when it is not
// pooled), the body.
func (b *bufferedBody) fill(bp *[]byte, data []byte) {
	b.data, b.buf, b.refs = data, bp, 1
	b.get = b.getBody
}

// reader returns r set to read the body from its start, or false once
// the buffer has gone back to the pool.
func (b *bufferedBody) reader(r *bufferedReader) (*bufferedReader, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs == 0 || b.data == nil {
		return nil, false
	}
	b.refs++
	r.from, r.rest = b, b.data
	return r, true
}

// getBody is the GetBody of every attempt's request: a fresh reader,
// until the call is over.
func (b *bufferedBody) getBody() (io.ReadCloser, error) {
	r, ok := b.reader(new(bufferedReader))
	if !ok {
		return nil, errReqBodyClosed
	}
	return r, nil
}

// release drops one reference; the last returns the buffer to the pool.
func (b *bufferedBody) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs--; b.refs == 0 && b.data != nil {
		if b.buf != nil {
			putBuf(b.buf)
		}
		b.data, b.buf = nil, nil
	}
}

// bufferedReader is one attempt's reader of a bufferedBody. A Read after
// Close fails rather than reaching a buffer the pool may have handed on.
type bufferedReader struct {
	mu     sync.Mutex
	from   *bufferedBody
	rest   []byte
	closed bool
}

func (r *bufferedReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errReqBodyClosed
	}
	if len(r.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

func (r *bufferedReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed, r.rest = true, nil
		r.from.release()
	}
	return nil
}

// readUpTo appends from r to buf until EOF or until buf holds max bytes.
func readUpTo(r io.Reader, buf []byte, max int64) ([]byte, error) {
	for int64(len(buf)) < max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		room := buf[len(buf):min(int64(cap(buf)), max)]
		n, err := r.Read(room)
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// ---- response bodies ----

// streamTypes are media types whose bodies arrive over time: reading them
// ahead would hold the caller until the stream ends.
var streamTypes = []string{
	"text/event-stream",
	"application/x-ndjson",
	"application/jsonl",
	"application/json-seq",
	"application/stream+json",
	"multipart/x-mixed-replace",
}

// isStream reports a Content-Type naming a streaming media type. The hot
// path sees this on every response, so it compares without allocating and
// rules most types out by length alone.
func isStream(contentType string) bool {
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	for len(mt) > 0 && (mt[len(mt)-1] == ' ' || mt[len(mt)-1] == '\t') {
		mt = mt[:len(mt)-1]
	}
	for len(mt) > 0 && (mt[0] == ' ' || mt[0] == '\t') {
		mt = mt[1:]
	}
	for _, s := range streamTypes {
		if len(mt) == len(s) && strings.EqualFold(mt, s) {
			return true
		}
	}
	return false
}

// readAhead reports whether heed should read resp's body inside the attempt:
// a body of known length up to limit, or one of unknown length that is not a
// stream (a stream has no length, and reading it ahead would hold the caller
// until it ends; readBody stops at limit in any case).
func readAhead(req *http.Request, resp *http.Response, limit int64) bool {
	if limit <= 0 || resp.Body == nil || resp.Body == http.NoBody || req.Method == http.MethodHead {
		return false
	}
	if resp.ContentLength >= 0 {
		// A known length bounds the read, whatever the media type says.
		return resp.ContentLength > 0 && resp.ContentLength <= limit
	}
	ct := resp.Header["Content-Type"]
	return len(ct) == 0 || !isStream(ct[0])
}

// errTruncated marks a response body that ended early while heed read it.
type truncatedError struct{ err error }

func (e *truncatedError) Error() string { return "response body cut short: " + e.err.Error() }
func (e *truncatedError) Unwrap() error { return e.err }

// bufPools holds read-ahead buffers by size class (512 B, 4 KiB, 32 KiB,
// 256 KiB, 2 MiB), so reading a response ahead costs no allocation beyond
// the body handed to the caller.
var bufPools [5]sync.Pool

const minBufClass = 512

func classFor(n int64) int {
	size := int64(minBufClass)
	for i := range bufPools {
		if n <= size {
			return i
		}
		size *= 8
	}
	return -1
}

func getBuf(n int64) *[]byte {
	if c := classFor(n); c >= 0 {
		if b, ok := bufPools[c].Get().(*[]byte); ok {
			*b = (*b)[:0]
			return b
		}
		b := make([]byte, 0, int64(minBufClass)<<(3*c))
		return &b
	}
	b := make([]byte, 0, n)
	return &b
}

func putBuf(b *[]byte) {
	if c := classFor(int64(cap(*b))); c >= 0 && cap(*b) == minBufClass<<(3*c) {
		bufPools[c].Put(b)
	}
}

// readBodyInto reads resp's body inside the attempt, up to limit bytes. On
// success the body is replaced by mb, an in-memory copy (or, past the limit, by
// the part read followed by the rest, streamed) and the original is closed
// so its connection returns to the pool. An error means the body was cut
// short; resp.Body is then closed.
func readBodyInto(resp *http.Response, limit int64, mb *memBody) error {
	want := min(4<<10, limit+1) // unknown length: start small, grow by size class
	if resp.ContentLength >= 0 {
		want = resp.ContentLength + 1 // +1 to meet the EOF, which frees the connection
	}
	bp := getBuf(want)
	buf := *bp
	var err error
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= limit+1 {
				break // more than the limit: hand the rest over unread
			}
			nb := getBuf(min(int64(cap(buf))*8, limit+1))
			*nb = append(*nb, buf...)
			*bp = buf
			putBuf(bp)
			bp, buf = nb, *nb
		}
		var n int
		n, err = resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	*bp = buf
	switch {
	case err == io.EOF:
		resp.Body.Close()
		mb.buf, mb.rest = bp, buf
		resp.Body = mb
		return nil
	case err != nil:
		resp.Body.Close()
		putBuf(bp)
		return &truncatedError{err}
	default: // past the limit: the buffered head, then the live body
		mb.buf, mb.rest, mb.tail = bp, buf, resp.Body
		resp.Body = mb
		return nil
	}
}

// errBodyClosed matches net/http's error for reading a closed body.
var errBodyClosed = errors.New("http: read on closed response body")

// memBody is a response body heed read ahead, optionally followed by the
// unread rest of the original body. Its buffer goes back to the pool once
// read to the end or closed; the mutex keeps a Close racing a Read from
// recycling a buffer still in use.
type memBody struct {
	mu     sync.Mutex
	buf    *[]byte // pooled backing array; nil once released
	rest   []byte  // unread part of *buf
	tail   io.ReadCloser
	closed bool
	// A response the stale store keeps once its reader is done with it.
	store *staleStore
	entry *staleEntry
}

func (b *memBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	if len(b.rest) > 0 {
		n := copy(p, b.rest)
		b.rest = b.rest[n:]
		return n, nil
	}
	b.releaseLocked()
	if b.tail != nil {
		return b.tail.Read(p)
	}
	return 0, io.EOF
}

// WriteTo lets io.Copy skip an intermediate buffer.
func (b *memBody) WriteTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	n, err := w.Write(b.rest)
	b.rest = b.rest[n:]
	total := int64(n)
	if err != nil {
		return total, err
	}
	b.releaseLocked()
	if b.tail != nil {
		m, err := io.Copy(w, b.tail)
		return total + m, err
	}
	return total, nil
}

func (b *memBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.releaseLocked()
	if b.tail != nil {
		return b.tail.Close()
	}
	return nil
}

func (b *memBody) releaseLocked() {
	if b.buf != nil {
		if b.entry != nil {
			b.store.keepBody(b.entry, *b.buf, false) // the buffer goes back to the pool
			b.store, b.entry = nil, nil
		}
		b.rest = nil
		putBuf(b.buf)
		b.buf = nil
	}
}

// drainAndClose reads what is left of a discarded body, up to maxDrain, so
// the connection can carry the next attempt, then closes it.
func drainAndClose(body io.ReadCloser) {
	if body == nil {
		return
	}
	io.CopyN(io.Discard, body, maxDrain)
	body.Close()
}
