package heed

import (
	"bytes"
	"container/list"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StaleConfig configures the stale-if-error store (RFC 5861, in a private
// client's sense): heed keeps the successful GET responses it sees, and when
// a later call for the same resource fails it answers with the stored one
// instead, if it is not too old. It is not an HTTP cache: while the server
// answers, every request goes to the server. The zero value of a field
// means its default.
type StaleConfig struct {
	// MaxBytes bounds the store: bodies, header fields and URLs counted,
	// the least recently used entries evicted first. Default 16 MiB.
	MaxBytes int64
	// MaxEntryBytes bounds one entry; larger responses are not kept, so
	// one of them cannot wipe the store. Default MaxBytes/8.
	MaxEntryBytes int64
	// MaxStale is how long past its freshness a response may still be
	// served when it says nothing itself; a response's own
	// `Cache-Control: stale-if-error=N` wins. Default 1 hour.
	MaxStale time.Duration
}

// Default sizes of the stale-if-error store.
const (
	defaultStaleBytes = 16 << 20
	defaultMaxStale   = time.Hour
)

func (c *StaleConfig) defaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = defaultStaleBytes
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = c.MaxBytes / 8
	}
	if c.MaxStale == 0 {
		c.MaxStale = defaultMaxStale
	}
}

func (c StaleConfig) validate() error {
	switch {
	case c.MaxBytes < 0 || c.MaxEntryBytes < 0:
		return fmt.Errorf("max bytes %d and max entry bytes %d must not be negative", c.MaxBytes, c.MaxEntryBytes)
	case c.MaxEntryBytes > c.MaxBytes:
		return fmt.Errorf("max entry bytes %d exceed max bytes %d", c.MaxEntryBytes, c.MaxBytes)
	case c.MaxStale < 0:
		return fmt.Errorf("max stale %v must not be negative", c.MaxStale)
	}
	return nil
}

// WithStaleIfError turns the stale-if-error store on (it is off by
// default). A call for a GET that fails (every attempt failed, or the
// retry budget, the circuit breaker, a wait too long or the deadline ended
// it, but not the caller's cancellation) is answered with the stored
// response for the same URL and the same values of the fields its Vary
// names, when that response is no more stale than its
// `stale-if-error=N`, else than MaxStale. The response served carries an
// `Age` and a `Cache-Status` (RFC 9211) field, [Degraded] returns the
// failure behind it, and an [EventStale] is emitted. A response marked
// `no-store`, `no-cache` or `must-revalidate`, or with `Vary: *`, is never
// stored.
func WithStaleIfError(c StaleConfig) Option {
	return optionFunc(func(cfg *config) {
		c.defaults()
		if err := c.validate(); err != nil {
			cfg.problem("WithStaleIfError: %v", err)
			return
		}
		cfg.stale = &c
	})
}

// staleStore is the bounded store of responses. Entries for one URL are
// its variants (by Vary); every variant is an element of one LRU list.
type staleStore struct {
	cfg StaleConfig

	mu    sync.Mutex
	lru   list.List // of *staleEntry, the most recently used first
	byURL map[urlKey][]*list.Element
	bytes int64
}

// urlKey names a resource without building its URL's string: the fields
// a request sends (not the fragment). Its strings are the request's own.
type urlKey struct {
	scheme, user, host, path, rawPath, rawQuery, opaque string
}

func keyOf(u *url.URL) urlKey {
	k := urlKey{scheme: u.Scheme, host: u.Host, path: u.Path, rawPath: u.RawPath, rawQuery: u.RawQuery, opaque: u.Opaque}
	if u.User != nil {
		k.user = u.User.String()
	}
	return k
}

func (k *urlKey) size() int {
	return len(k.scheme) + len(k.user) + len(k.host) + len(k.path) + len(k.rawPath) + len(k.rawQuery) + len(k.opaque)
}

// An entry is never changed once stored (a lookup's answer is read
// outside the lock): a newer response for the same variant replaces it,
// sharing its header and body when they are the same.
type staleEntry struct {
	key    urlKey
	vary   []string // canonical names of the fields the response varies on
	values []string // the request's values of those fields
	status int
	header http.Header // without its Date, which changes on every response
	date   string      // the Date field, if any
	hsize  int64       // the header's size, as counted against the bounds
	body   []byte
	size   int64
	prev   *staleEntry // the variant stored when this one was seen, until stored

	stored   time.Time     // when heed stored it
	ageThen  time.Duration // its age when stored (Age, or the Date's lag)
	lifetime time.Duration // its freshness lifetime (max-age, or Expires)
	allowed  time.Duration // how long past it it may be served on error
}

func newStaleStore(c StaleConfig) *staleStore {
	return &staleStore{cfg: c, byURL: make(map[urlKey][]*list.Element)}
}

// bytesUsed reports the store's current size.
func (s *staleStore) bytesUsed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// cacheableStatus: the statuses RFC 9110 (15.1) makes cacheable by
// default, but 206 (a part is no answer to the request) and 501 (not
// worth serving in place of a failure).
func cacheableStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414:
		return true
	}
	return false
}

// keep arranges for resp, the successful answer to req, to be stored once
// its body is known: for a body heed read ahead, when the caller has read
// it or closed it (the copy is not on the caller's way to the response);
// for any other, when the caller reads it to the end. A response the same
// as the one stored for its variant (but for its Date) costs no copy.
func (s *staleStore) keep(req *http.Request, resp *http.Response, now time.Time) {
	if req.Method != http.MethodGet && req.Method != "" || !cacheableStatus(resp.StatusCode) ||
		field(req.Header, "Range") != "" || hasDirective(req.Header, "no-store") ||
		hasDirective(resp.Header, "no-store") || hasDirective(resp.Header, "no-cache") ||
		hasDirective(resp.Header, "must-revalidate") {
		return
	}
	vary := varyNames(resp.Header)
	if len(vary) == 1 && vary[0] == "*" {
		return
	}
	e := &staleEntry{key: keyOf(req.URL), vary: vary, status: resp.StatusCode, date: field(resp.Header, "Date"), stored: now}
	if len(vary) > 0 {
		e.values = make([]string, len(vary))
		for i, name := range vary {
			e.values[i] = strings.Join(req.Header.Values(name), ",")
		}
	}
	e.ageThen, e.lifetime = freshness(resp.Header, now)
	e.allowed = s.cfg.MaxStale
	if v, ok := directive(resp.Header, "stale-if-error"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			e.allowed = time.Duration(min(n, 1<<31)) * time.Second
		}
	}
	// The header is copied now, as the caller may change resp.Header once
	// it has it; unless it is the stored variant's.
	if old := s.variant(e); old != nil && old.status == e.status && sameHeader(old.header, resp.Header) {
		e.header, e.hsize, e.prev = old.header, old.hsize, old
	} else {
		e.header = resp.Header.Clone()
		delete(e.header, "Date")
		e.hsize = headerSize(e.header)
	}
	e.size = e.overhead()
	if e.size > s.cfg.MaxEntryBytes {
		return
	}
	if m, ok := resp.Body.(*memBody); ok && m.tail == nil {
		m.mu.Lock()
		m.store, m.entry = s, e
		m.mu.Unlock()
		return
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		s.put(e)
		return
	}
	resp.Body = &keepingBody{ReadCloser: resp.Body, store: s, entry: e}
}

// keepBody stores e with body, a response body read whole, once the
// caller is done with it. owned says body is e's to keep; else it is
// copied, unless the stored variant's body is the same and is kept.
func (s *staleStore) keepBody(e *staleEntry, body []byte, owned bool) {
	switch {
	case e.prev != nil && bytes.Equal(e.prev.body, body):
		e.body = e.prev.body
	case owned:
		e.body = body
	default:
		e.body = bytes.Clone(body)
	}
	s.put(e)
}

// variant returns the entry stored for e's resource and variant, if any.
func (s *staleStore) variant(e *staleEntry) *staleEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, el := range s.byURL[e.key] {
		if old := el.Value.(*staleEntry); sameVariant(old, e.vary, e.values) {
			return old
		}
	}
	return nil
}

// sameHeader reports whether stored, a stored header (without its Date),
// holds the same fields as h but for h's Date.
func sameHeader(stored, h http.Header) bool {
	n := len(h)
	if _, ok := h["Date"]; ok {
		n--
	}
	if len(stored) != n {
		return false
	}
	for k, vs := range stored {
		if !slices.Equal(vs, h[k]) {
			return false
		}
	}
	return true
}

func headerSize(h http.Header) int64 {
	var n int64
	for k, vs := range h {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// overhead is the entry's size without its body.
func (e *staleEntry) overhead() int64 {
	n := int64(e.key.size()+len(e.date)) + 128 + e.hsize
	for i := range e.vary {
		n += int64(len(e.vary[i]) + len(e.values[i]))
	}
	return n
}

// put stores e in place of the variant it matches, evicting the least
// recently used entries past the bound.
func (s *staleStore) put(e *staleEntry) {
	e.size += int64(len(e.body))
	if e.size > s.cfg.MaxEntryBytes {
		return
	}
	e.prev = nil // the store keeps no chain of old entries alive
	s.mu.Lock()
	defer s.mu.Unlock()
	replaced := false
	for _, el := range s.byURL[e.key] {
		if old := el.Value.(*staleEntry); sameVariant(old, e.vary, e.values) {
			// Entries are never changed once stored (a lookup reads one
			// outside the lock), but the element can carry the new one.
			s.bytes -= old.size
			el.Value = e
			s.lru.MoveToFront(el)
			replaced = true
			break
		}
	}
	if !replaced {
		s.byURL[e.key] = append(s.byURL[e.key], s.lru.PushFront(e))
	}
	s.bytes += e.size
	for s.bytes > s.cfg.MaxBytes {
		s.remove(s.lru.Back())
	}
}

func (s *staleStore) remove(el *list.Element) {
	e := s.lru.Remove(el).(*staleEntry)
	s.bytes -= e.size
	vs := s.byURL[e.key]
	for i := range vs {
		if vs[i] == el {
			vs = append(vs[:i], vs[i+1:]...)
			break
		}
	}
	if len(vs) == 0 {
		delete(s.byURL, e.key)
	} else {
		s.byURL[e.key] = vs
	}
}

func sameVariant(e *staleEntry, vary, values []string) bool {
	if len(e.vary) != len(vary) {
		return false
	}
	for i := range vary {
		if e.vary[i] != vary[i] || e.values[i] != values[i] {
			return false
		}
	}
	return true
}

// lookup returns the entry stored for req, if any, and how old it is now.
func (s *staleStore) lookup(req *http.Request, now time.Time) (*staleEntry, time.Duration, bool) {
	if req.Method != http.MethodGet && req.Method != "" {
		return nil, 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, el := range s.byURL[keyOf(req.URL)] {
		e := el.Value.(*staleEntry)
		if !matches(e, req.Header) {
			continue
		}
		age := e.ageThen + max(now.Sub(e.stored), 0)
		if age-e.lifetime > e.allowed {
			return nil, 0, false
		}
		s.lru.MoveToFront(el)
		return e, age, true
	}
	return nil, 0, false
}

// matches reports whether a request with header h selects e: its values
// of the fields e varies on are the ones e was stored for.
func matches(e *staleEntry, h http.Header) bool {
	for i, name := range e.vary {
		if strings.Join(h.Values(name), ",") != e.values[i] {
			return false
		}
	}
	return true
}

// response builds the response served from e for req at age age, after
// the failure fe.
func (e *staleEntry) response(req *http.Request, age time.Duration, fe *Error) *http.Response {
	h := e.header.Clone()
	if e.date != "" {
		h["Date"] = []string{e.date}
	}
	h.Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
	h.Add("Cache-Status", cacheStatus(e, age, fe))
	resp := &http.Response{
		Status:        strconv.Itoa(e.status) + " " + http.StatusText(e.status),
		StatusCode:    e.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          http.NoBody,
		ContentLength: int64(len(e.body)),
		Request:       req,
	}
	if len(e.body) > 0 {
		resp.Body = io.NopCloser(bytes.NewReader(e.body))
	}
	return resp
}

// cacheStatus is the RFC 9211 Cache-Status member for a stored response
// served after a failure: "fwd=stale" when heed asked the server (with
// the status the server answered), "hit" when nothing was sent (the
// breaker or the budget refused); ttl is the freshness left, negative
// once stale.
func cacheStatus(e *staleEntry, age time.Duration, fe *Error) string {
	var b strings.Builder
	b.WriteString("heed; ")
	if len(fe.Attempts) > 0 {
		b.WriteString("fwd=stale")
		if st := lastStatus(fe.Attempts); st != 0 {
			b.WriteString("; fwd-status=")
			b.WriteString(strconv.Itoa(st))
		}
	} else {
		b.WriteString("hit")
	}
	b.WriteString("; ttl=")
	b.WriteString(strconv.FormatInt(int64(e.lifetime/time.Second)-int64(age/time.Second), 10)) // agrees with Age
	b.WriteString(`; detail="stale-if-error: `)
	b.WriteString(fe.Reason.Error())
	b.WriteString(`"`)
	return b.String()
}

// keepingBody stores its response once the caller has read it to the end,
// unless it outgrew the entry bound on the way.
type keepingBody struct {
	io.ReadCloser
	store *staleStore
	entry *staleEntry
	buf   []byte
	over  bool
}

func (b *keepingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if !b.over && n > 0 {
		if b.entry.size+int64(len(b.buf)+n) > b.store.cfg.MaxEntryBytes {
			b.over, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	if err == io.EOF && !b.over && b.entry != nil {
		b.store.keepBody(b.entry, b.buf, true)
		b.entry, b.buf = nil, nil
	}
	return n, err
}

// varyNames returns the canonical field names resp's Vary lists, or "*".
func varyNames(h http.Header) []string {
	var names []string
	for _, v := range h["Vary"] {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "*" {
				return []string{"*"}
			}
			if f != "" {
				names = append(names, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	return names
}

// directive finds a Cache-Control directive in h and its value.
func directive(h http.Header, name string) (string, bool) {
	for _, v := range h["Cache-Control"] { // the canonical name: Values would canonicalize it on every call
		for d := range strings.SplitSeq(v, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			if strings.EqualFold(strings.TrimSpace(k), name) {
				return strings.Trim(strings.TrimSpace(val), `"`), true
			}
		}
	}
	return "", false
}

func hasDirective(h http.Header, name string) bool {
	_, ok := directive(h, name)
	return ok
}

// freshness returns a response's age when received at now (RFC 9111
// 4.2.3: the larger of its Age and the lag of its Date) and its freshness
// lifetime (max-age, else Expires minus Date; no heuristic: heed serves
// stored responses only on failure, so a lifetime of zero just makes every
// entry stale at once).
func freshness(h http.Header, now time.Time) (age, lifetime time.Duration) {
	// Absent fields are skipped before parsing: a failed parse allocates.
	if v := field(h, "Age"); v != "" {
		if a, err := strconv.ParseInt(v, 10, 64); err == nil && a > 0 {
			age = time.Duration(min(a, 1<<31)) * time.Second
		}
	}
	var date time.Time
	if v := field(h, "Date"); v != "" {
		if d, err := parseDate(v); err == nil {
			date = d
			if now.After(d) {
				age = max(age, now.Sub(d))
			}
		}
	}
	if v, ok := directive(h, "max-age"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return age, time.Duration(min(n, 1<<31)) * time.Second
		}
	}
	if v := field(h, "Expires"); v != "" && !date.IsZero() {
		if exp, err := http.ParseTime(v); err == nil && exp.After(date) {
			lifetime = exp.Sub(date)
		}
	}
	return age, lifetime
}

// field is h's first value for name, a canonical field name (Get would
// canonicalize it again on every call).
func field(h http.Header, name string) string {
	if vs := h[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// lastDate remembers the Date value parsed last: a server's Date changes
// once a second, and parsing it on every response is not free.
var lastDate atomic.Pointer[parsedDate]

type parsedDate struct {
	text string
	t    time.Time
	err  error
}

func parseDate(v string) (time.Time, error) {
	if d := lastDate.Load(); d != nil && d.text == v {
		return d.t, d.err
	}
	t, err := http.ParseTime(v)
	lastDate.Store(&parsedDate{text: v, t: t, err: err})
	return t, err
}
