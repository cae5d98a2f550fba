package heedtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A minimal HTTP/2 server side (RFC 9113) for FaultServer: enough to read
// requests from net/http's client with prior knowledge, answer them, and
// refuse or abandon them in the ways the faults need. It keeps to one
// goroutine per connection and answers streams in the order they end.

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Frame types and flags.
const (
	h2Data         = 0x0
	h2Headers      = 0x1
	h2RSTStream    = 0x3
	h2Settings     = 0x4
	h2Ping         = 0x6
	h2GoAway       = 0x7
	h2WindowUpdate = 0x8
	h2Continuation = 0x9

	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20

	h2MaxFrame = 16384 // SETTINGS_MAX_FRAME_SIZE's default, which the server keeps

	h2ErrInternal      = 0x2
	h2ErrRefusedStream = 0x7
)

type h2Stream struct {
	method, path string
	header       http.Header
	body         []byte
	fault        Fault
	entry        int
}

// serveH2 plays one entry per HTTP/2 stream, after the client's preface.
func (s *FaultServer) serveH2(c net.Conn, br *bufio.Reader) {
	if h2Write(c, h2Settings, 0, 0, nil) != nil {
		return
	}
	var (
		dec     hpackDecoder
		streams = map[uint32]*h2Stream{}
		block   []byte // header block being assembled
		blockID uint32
		blockES bool // the HEADERS frame ended its stream
	)
	dec.maxSize = 4096
	for {
		typ, flags, id, p, err := h2Read(br)
		if err != nil {
			return
		}
		switch typ {
		case h2Settings:
			if flags&h2FlagAck == 0 && h2Write(c, h2Settings, h2FlagAck, 0, nil) != nil {
				return
			}
		case h2Ping:
			if flags&h2FlagAck == 0 && h2Write(c, h2Ping, h2FlagAck, 0, p) != nil {
				return
			}
		case h2GoAway:
			return
		case h2RSTStream:
			delete(streams, id)
		case h2Headers, h2Continuation:
			if typ == h2Headers {
				if p, err = h2Unpad(flags, p); err != nil {
					return
				}
				if flags&h2FlagPriority != 0 {
					if len(p) < 5 {
						return
					}
					p = p[5:]
				}
				block, blockID, blockES = append(block[:0], p...), id, flags&h2FlagEndStream != 0
			} else {
				if id != blockID {
					return
				}
				block = append(block, p...)
			}
			if flags&h2FlagEndHeaders == 0 {
				continue
			}
			fields, err := dec.decode(block)
			if err != nil {
				return
			}
			st := newH2Stream(fields)
			st.fault, st.entry = s.take()
			switch st.fault.Kind {
			case AcceptClose:
				return
			case RefusedStream:
				s.record(st.request(blockES, false))
				if h2Write(c, h2RSTStream, 0, id, binary.BigEndian.AppendUint32(nil, h2ErrRefusedStream)) != nil {
					return
				}
				continue
			}
			if !blockES {
				streams[id] = st
				continue
			}
			if !s.endH2(c, br, id, st) {
				return
			}
		case h2Data:
			n := len(p)
			if p, err = h2Unpad(flags, p); err != nil {
				return
			}
			st := streams[id]
			if n > 0 {
				// Give the flow-control credit back at once, so bodies of
				// any size flow.
				inc := binary.BigEndian.AppendUint32(nil, uint32(n))
				if h2Write(c, h2WindowUpdate, 0, 0, inc) != nil {
					return
				}
				if st != nil && flags&h2FlagEndStream == 0 && h2Write(c, h2WindowUpdate, 0, id, inc) != nil {
					return
				}
			}
			if st == nil {
				continue // a stream refused or reset: its data is dropped
			}
			st.body = append(st.body, p...)
			if flags&h2FlagEndStream != 0 {
				delete(streams, id)
				if !s.endH2(c, br, id, st) {
					return
				}
			}
		}
	}
}

func newH2Stream(fields []hfield) *h2Stream {
	st := &h2Stream{header: http.Header{}}
	for _, f := range fields {
		switch f.name {
		case ":method":
			st.method = f.value
		case ":path":
			st.path = f.value
		default:
			if !strings.HasPrefix(f.name, ":") {
				st.header.Add(f.name, f.value) // Add canonicalises the name
			}
		}
	}
	return st
}

func (st *h2Stream) request(complete, effect bool) FaultRequest {
	return FaultRequest{
		Method: st.method, URL: st.path, Proto: "HTTP/2.0", Header: st.header, Body: st.body,
		Complete: complete, Effect: effect, Entry: st.entry, Kind: st.fault.Kind,
	}
}

// endH2 plays the fault of a stream whose request was read in full, and
// reports whether the connection lives on.
func (s *FaultServer) endH2(c net.Conn, br *bufio.Reader, id uint32, st *h2Stream) bool {
	s.record(st.request(true, true))
	f := st.fault
	switch f.Kind {
	case Answer:
		return h2Answer(c, id, st.method == http.MethodHead, f) == nil
	case GoAway:
		p := binary.BigEndian.AppendUint32(nil, id)
		p = binary.BigEndian.AppendUint32(p, h2ErrInternal)
		if h2Write(c, h2GoAway, 0, 0, p) == nil {
			s.lingerClose(c, br)
		}
		return false
	}
	reset(c)
	return false
}

// lingerClose closes the sending side and reads until the client closes
// too (at most a second), so what was sent is not lost to a reset.
func (s *FaultServer) lingerClose(c net.Conn, br *bufio.Reader) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, br)
}

// h2Answer sends f's status, header and body on stream id.
func h2Answer(c net.Conn, id uint32, head bool, f Fault) error {
	code := f.status()
	body := f.Body
	if !bodyAllowed(code) {
		body = ""
	}
	var b []byte
	if code == http.StatusOK {
		b = append(b, 0x88) // :status 200, indexed in the static table
	} else {
		b = hpackInt(b, 0x00, 4, 8) // literal, not indexed, name :status
		b = hpackString(b, strconv.Itoa(code))
	}
	h := f.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	for _, k := range []string{"Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive"} {
		h.Del(k)
	}
	if bodyAllowed(code) {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	for k, vs := range h {
		for _, v := range vs {
			b = append(b, 0x00) // literal, not indexed, new name
			b = hpackString(b, strings.ToLower(k))
			b = hpackString(b, v)
		}
	}
	if len(b) > h2MaxFrame {
		return errors.New("heedtest: HTTP/2 header too large")
	}
	flags := byte(h2FlagEndHeaders)
	if head || body == "" {
		flags |= h2FlagEndStream
	}
	if err := h2Write(c, h2Headers, flags, id, b); err != nil || flags&h2FlagEndStream != 0 {
		return err
	}
	for len(body) > 0 {
		n := min(len(body), h2MaxFrame)
		flags = 0
		if n == len(body) {
			flags = h2FlagEndStream
		}
		if err := h2Write(c, h2Data, flags, id, []byte(body[:n])); err != nil {
			return err
		}
		body = body[n:]
	}
	return nil
}

// h2Read reads one frame.
func h2Read(r io.Reader) (typ, flags byte, id uint32, payload []byte, err error) {
	var h [9]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	if n > h2MaxFrame {
		err = errors.New("heedtest: HTTP/2 frame too large")
		return
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return h[3], h[4], binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1), payload, err
}

// h2Write writes one frame.
func h2Write(w io.Writer, typ, flags byte, id uint32, payload []byte) error {
	n := len(payload)
	f := make([]byte, 9, 9+n)
	f[0], f[1], f[2], f[3], f[4] = byte(n>>16), byte(n>>8), byte(n), typ, flags
	binary.BigEndian.PutUint32(f[5:], id)
	_, err := w.Write(append(f, payload...))
	return err
}

// h2Unpad strips the padding of a DATA or HEADERS frame.
func h2Unpad(flags byte, p []byte) ([]byte, error) {
	if flags&h2FlagPadded == 0 {
		return p, nil
	}
	if len(p) == 0 || int(p[0]) >= len(p) {
		return nil, errors.New("heedtest: bad HTTP/2 padding")
	}
	return p[1 : len(p)-int(p[0])], nil
}

// ---- HPACK (RFC 7541), the decoding side and literal encoding ----

type hfield struct{ name, value string }

func (f hfield) size() int { return len(f.name) + len(f.value) + 32 }

// hpackDecoder decodes header blocks of one connection, keeping its
// dynamic table.
type hpackDecoder struct {
	dyn     []hfield // newest first
	size    int
	maxSize int
}

var errHpack = errors.New("heedtest: malformed HPACK block")

func (d *hpackDecoder) decode(p []byte) ([]hfield, error) {
	var out []hfield
	for len(p) > 0 {
		b := p[0]
		var (
			idx uint64
			err error
		)
		switch {
		case b&0x80 != 0: // indexed field
			if idx, p, err = hpackReadInt(p, 7); err != nil {
				return nil, err
			}
			f, ok := d.at(idx)
			if !ok {
				return nil, errHpack
			}
			out = append(out, f)
		case b&0xe0 == 0x20: // dynamic table size update
			if idx, p, err = hpackReadInt(p, 5); err != nil {
				return nil, err
			}
			d.maxSize = int(min(idx, 1<<20))
			d.evict()
		default: // a literal: with incremental indexing (01), or not (0000, 0001)
			prefix, index := 4, false
			if b&0xc0 == 0x40 {
				prefix, index = 6, true
			}
			if idx, p, err = hpackReadInt(p, prefix); err != nil {
				return nil, err
			}
			var f hfield
			if idx == 0 {
				if f.name, p, err = hpackReadString(p); err != nil {
					return nil, err
				}
			} else {
				nf, ok := d.at(idx)
				if !ok {
					return nil, errHpack
				}
				f.name = nf.name
			}
			if f.value, p, err = hpackReadString(p); err != nil {
				return nil, err
			}
			out = append(out, f)
			if index {
				d.dyn = append([]hfield{f}, d.dyn...)
				d.size += f.size()
				d.evict()
			}
		}
	}
	return out, nil
}

func (d *hpackDecoder) evict() {
	for d.size > d.maxSize && len(d.dyn) > 0 {
		d.size -= d.dyn[len(d.dyn)-1].size()
		d.dyn = d.dyn[:len(d.dyn)-1]
	}
}

// at returns the field at index i of the static table followed by the
// dynamic one.
func (d *hpackDecoder) at(i uint64) (hfield, bool) {
	switch {
	case i == 0:
		return hfield{}, false
	case i <= uint64(len(hpackStatic)):
		return hpackStatic[i-1], true
	case i-uint64(len(hpackStatic)) <= uint64(len(d.dyn)):
		return d.dyn[i-uint64(len(hpackStatic))-1], true
	}
	return hfield{}, false
}

func hpackReadInt(p []byte, prefix int) (uint64, []byte, error) {
	if len(p) == 0 {
		return 0, nil, errHpack
	}
	mask := byte(1<<prefix - 1)
	v := uint64(p[0] & mask)
	p = p[1:]
	if v < uint64(mask) {
		return v, p, nil
	}
	for shift := uint(0); len(p) > 0 && shift < 56; shift += 7 {
		b := p[0]
		p = p[1:]
		v += uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return v, p, nil
		}
	}
	return 0, nil, errHpack
}

func hpackReadString(p []byte) (string, []byte, error) {
	if len(p) == 0 {
		return "", nil, errHpack
	}
	huff := p[0]&0x80 != 0
	n, p, err := hpackReadInt(p, 7)
	if err != nil || n > uint64(len(p)) {
		return "", nil, errHpack
	}
	s, p := p[:n], p[n:]
	if !huff {
		return string(s), p, nil
	}
	dec, err := huffmanDecode(s)
	return dec, p, err
}

func hpackInt(b []byte, first byte, prefix int, v uint64) []byte {
	mask := uint64(1<<prefix - 1)
	if v < mask {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(mask))
	for v -= mask; v >= 0x80; v >>= 7 {
		b = append(b, byte(v)|0x80)
	}
	return append(b, byte(v))
}

// hpackString encodes s as a string literal, without Huffman coding.
func hpackString(b []byte, s string) []byte {
	return append(hpackInt(b, 0, 7, uint64(len(s))), s...)
}

// huffmanDecode decodes the canonical Huffman code of RFC 7541 Appendix B,
// rebuilt from its code lengths: within one length, codes are consecutive
// in symbol order, and the first code of a length follows the last code of
// the shorter ones, shifted left.
func huffmanDecode(p []byte) (string, error) {
	t := huffman()
	var out []byte
	code, length, ones := 0, 0, true
	for _, b := range p {
		for i := 7; i >= 0; i-- {
			bit := int(b>>i) & 1
			code, length = code<<1|bit, length+1
			ones = ones && bit == 1
			if length > 30 {
				return "", errHpack
			}
			if k := code - t.first[length]; k >= 0 && k < t.count[length] {
				out = append(out, t.symbols[t.start[length]+k])
				code, length, ones = 0, 0, true
			}
		}
	}
	if length > 7 || !ones { // padding is at most 7 one bits (a prefix of EOS)
		return "", errHpack
	}
	return string(out), nil
}

type huffmanTable struct {
	symbols             []byte // by code length, then symbol
	first, count, start [31]int
}

var huffman = sync.OnceValue(func() *huffmanTable {
	t := &huffmanTable{}
	for l := 1; l <= 30; l++ {
		t.start[l] = len(t.symbols)
		for sym, n := range huffmanLen {
			if int(n) == l {
				t.symbols = append(t.symbols, byte(sym))
			}
		}
		t.count[l] = len(t.symbols) - t.start[l]
	}
	code := 0
	for l := 1; l <= 30; l++ {
		t.first[l] = code
		code = (code + t.count[l]) << 1
	}
	return t
})

// huffmanLen holds the code length of each symbol of RFC 7541 Appendix B
// (EOS, 30 bits, left out: it only pads).
var huffmanLen = [256]uint8{
	13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
	28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
	6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
	5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
	13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
	15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
	6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
	20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
	24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
	22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
	21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
	26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
	19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
	20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
	26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
}

// hpackStatic is the static table of RFC 7541 Appendix A.
var hpackStatic = [...]hfield{
	{":authority", ""}, {":method", "GET"}, {":method", "POST"}, {":path", "/"},
	{":path", "/index.html"}, {":scheme", "http"}, {":scheme", "https"}, {":status", "200"},
	{":status", "204"}, {":status", "206"}, {":status", "304"}, {":status", "400"},
	{":status", "404"}, {":status", "500"}, {"accept-charset", ""}, {"accept-encoding", "gzip, deflate"},
	{"accept-language", ""}, {"accept-ranges", ""}, {"accept", ""}, {"access-control-allow-origin", ""},
	{"age", ""}, {"allow", ""}, {"authorization", ""}, {"cache-control", ""},
	{"content-disposition", ""}, {"content-encoding", ""}, {"content-language", ""}, {"content-length", ""},
	{"content-location", ""}, {"content-range", ""}, {"content-type", ""}, {"cookie", ""},
	{"date", ""}, {"etag", ""}, {"expect", ""}, {"expires", ""},
	{"from", ""}, {"host", ""}, {"if-match", ""}, {"if-modified-since", ""},
	{"if-none-match", ""}, {"if-range", ""}, {"if-unmodified-since", ""}, {"last-modified", ""},
	{"link", ""}, {"location", ""}, {"max-forwards", ""}, {"proxy-authenticate", ""},
	{"proxy-authorization", ""}, {"range", ""}, {"referer", ""}, {"refresh", ""},
	{"retry-after", ""}, {"server", ""}, {"set-cookie", ""}, {"strict-transport-security", ""},
	{"transfer-encoding", ""}, {"user-agent", ""}, {"vary", ""}, {"via", ""},
	{"www-authenticate", ""},
}
