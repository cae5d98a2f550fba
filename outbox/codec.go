package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// codecVersion starts every encoded entry, so a later format can still
// read what an earlier one wrote.
const codecVersion = 1

// AppendBinary appends e's encoding to b: a compact binary form, the one
// every store of heed's writes.
func (e *Entry) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, codecVersion)
	for _, s := range [...]string{e.ID, e.Key, e.Method, e.URL} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for name, values := range e.Header {
		b = appendString(b, name)
		b = binary.AppendUvarint(b, uint64(len(values)))
		for _, v := range values {
			b = appendString(b, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(e.Body)))
	b = append(b, e.Body...)
	for _, t := range [...]time.Time{e.Queued, e.Expires, e.NextAt} {
		b = binary.AppendVarint(b, unixNano(t))
	}
	if e.Replays < 0 || e.LastStatus < 0 {
		return nil, fmt.Errorf("outbox: entry %s: negative Replays or LastStatus", e.ID)
	}
	b = binary.AppendUvarint(b, uint64(e.Replays))
	b = binary.AppendUvarint(b, uint64(e.LastStatus))
	b = appendString(b, e.LastError)
	if e.Dead {
		return append(b, 1), nil
	}
	return append(b, 0), nil
}

// MarshalBinary returns e's encoding (see AppendBinary).
func (e *Entry) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, 128+len(e.URL)+len(e.Body)+64*len(e.Header)))
}

// ErrCorrupt is the cause of an error decoding an entry.
var ErrCorrupt = errors.New("outbox: corrupt entry")

// UnmarshalBinary decodes what AppendBinary wrote into e. The entry keeps
// no reference to data.
func (e *Entry) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	if v := d.byte(); v != codecVersion {
		return fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, v, codecVersion)
	}
	*e = Entry{ID: d.string(), Key: d.string(), Method: d.string(), URL: d.string()}
	if n := d.count(); n > 0 {
		e.Header = make(http.Header, n)
		for range n {
			name := d.string()
			values := make([]string, d.count())
			for i := range values {
				values[i] = d.string()
			}
			e.Header[name] = values
		}
	}
	if n := d.count(); n > 0 {
		e.Body = append([]byte(nil), d.take(n)...)
	}
	e.Queued, e.Expires, e.NextAt = d.time(), d.time(), d.time()
	e.Replays, e.LastStatus = d.number(), d.number()
	e.LastError = d.string()
	e.Dead = d.byte() == 1
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d bytes left over", ErrCorrupt, len(d.b))
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// decoder reads an encoded entry, remembering the first error so the
// caller checks once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// count reads a length or the number of items that follow, refusing one
// larger than the bytes left (each item takes one at least): a corrupt
// length must not make the decoder allocate gigabytes.
func (d *decoder) count() int {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > uint64(len(d.b)-n) {
		d.fail("length")
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

// number reads a counter.
func (d *decoder) number() int {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > 1<<31 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

func (d *decoder) take(n int) []byte {
	if n > len(d.b) {
		d.fail("field")
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) string() string { return string(d.take(d.count())) }

func (d *decoder) time() time.Time {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("time")
		return time.Time{}
	}
	d.b = d.b[n:]
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v)
}
