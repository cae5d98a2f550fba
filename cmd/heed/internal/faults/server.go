package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/heed-go/heed/internal/storm"
)

// Limits on what a request may ask for, so that one request cannot hold
// the server for long or make it allocate much.
const (
	MaxDelay       = 5 * time.Minute // the longest delay, trickle interval or Retry-After "in"
	MaxBytes       = 1 << 34         // /bytes/N: 16 GiB
	MaxTrickle     = 1 << 20         // /trickle?bytes=N
	MaxEchoBody    = 1 << 20         // /echo reads at most this much of the body
	maxKeys        = 10000           // distinct keys of times/then and /limited
	maxKeyLen      = 256             // longest key kept: longer ones are refused
	defaultTruncN  = 1000
	defaultTrickle = 10
)

// Server is the fault server's handler: every endpoint of heed faults.
// It is safe for concurrent use. Close ends every wait in progress.
type Server struct {
	// Stats counts what each path saw.
	Stats *Stats

	seed uint64
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	seen    map[string]int        // times/then: requests seen per key
	buckets map[string]*storm.API // /limited: a bucket per key, rate and burst

	mux *http.ServeMux
	h   http.Handler
}

// NewServer returns the fault server; seed drives every random choice
// (the bytes of /bytes/N).
func NewServer(seed uint64) *Server {
	s := &Server{
		Stats:   NewStats(),
		seed:    seed,
		done:    make(chan struct{}),
		seen:    map[string]int{},
		buckets: map[string]*storm.API{},
		mux:     http.NewServeMux(),
	}
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("/status/{code}", s.status)
	s.mux.HandleFunc("/limited", s.limited)
	s.mux.HandleFunc("/reset/before-headers", s.resetBefore)
	s.mux.HandleFunc("/reset/after-headers", s.resetAfter)
	s.mux.HandleFunc("/truncated", s.truncated)
	s.mux.HandleFunc("/trickle", s.trickle)
	s.mux.HandleFunc("/slow-headers", s.slowHeaders)
	s.mux.HandleFunc("/delay", s.delay)
	s.mux.HandleFunc("/redirect-loop", s.redirectLoop)
	s.mux.HandleFunc("/bytes/{n}", s.bytes)
	s.mux.HandleFunc("/echo", s.echo)
	s.h = s.Stats.Count(s.mux)
	return s
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.ServeHTTP(w, r) }

// Close ends every delay, trickle and hang in progress. The handler keeps
// answering requests that do not wait.
func (s *Server) Close() { s.once.Do(func() { close(s.done) }) }

// ResetCounters forgets the counters, the times/then keys and the buckets.
func (s *Server) ResetCounters() {
	s.Stats.Reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = map[string]int{}
	s.buckets = map[string]*storm.API{}
}

// Index is the text GET / answers: the endpoints, one a line.
const Index = `heed faults: endpoints
  /status/{code}[?retry-after=S | ?retry-after=date&in=S][&ratelimit=LIMIT,REMAINING,RESET[,WINDOW]]
                 [&times=N&then=CODE&key=K]   answer code (the first N requests of key K), then CODE
                                     (times/then/key work on /reset/* and /truncated too)
  /limited?rate=R&burst=B[&key=K]    token bucket: 200 while it holds a token, else 429 + Retry-After
  /reset/before-headers              TCP reset (RST) instead of an answer
  /reset/after-headers[?bytes=N]     status line and header promising N bytes, then a TCP reset
  /truncated?bytes=N[&sent=M]        Content-Length N, M (N/2) bytes sent, then the connection closes
  /trickle?bytes=N&every=100ms       N bytes, one every interval
  /slow-headers?delay=2s             nothing for delay, then 200
  /delay?d=500ms                     the request as JSON, after d
  /redirect-loop                     302 to itself, forever
  /bytes/{n}                         n pseudo-random bytes (seeded by -seed)
  /echo                              the request as JSON
`

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, Index)
}

// bad answers 400 with the problem.
func bad(w http.ResponseWriter, format string, args ...any) {
	http.Error(w, "heed faults: "+fmt.Sprintf(format, args...), http.StatusBadRequest)
}

// duration reads query parameter name as a Go duration ("250ms") or as
// seconds ("2", "0.5"), within [0, MaxDelay].
func duration(q url.Values, name string, def time.Duration) (time.Duration, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return 0, fmt.Errorf("%s=%q: want a duration such as 500ms or seconds", name, v)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 || d > MaxDelay {
		return 0, fmt.Errorf("%s=%q: want 0 to %v", name, v, MaxDelay)
	}
	return d, nil
}

// integer reads query parameter name as an integer in [lo, hi].
func integer(q url.Values, name string, def, lo, hi int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: want an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// key is the client key of times/then and /limited: the key parameter,
// else the path; false when it is longer than maxKeyLen, so that the keys
// kept stay small.
func key(r *http.Request) (string, bool) {
	k := r.URL.Query().Get("key")
	if k == "" {
		k = r.URL.Path
	}
	return k, len(k) <= maxKeyLen
}

// status answers /status/{code}.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		bad(w, "status %q: want 200 to 599", r.PathValue("code"))
		return
	}
	if s.passed(w, r) {
		return
	}
	h := w.Header()
	switch ra := q.Get("retry-after"); ra {
	case "":
	case "date":
		in, err := duration(q, "in", 0)
		if err != nil {
			bad(w, "%v", err)
			return
		}
		h.Set("Retry-After", time.Now().Add(in).UTC().Format(http.TimeFormat))
	default:
		secs, err := strconv.Atoi(ra)
		if err != nil || secs < 0 || secs > int(MaxDelay/time.Second) {
			bad(w, "retry-after=%q: want whole seconds, 0 to %d, or date", ra, int(MaxDelay/time.Second))
			return
		}
		h.Set("Retry-After", strconv.Itoa(secs)) // delta-seconds, as HTTP has them
	}
	if rl := q.Get("ratelimit"); rl != "" {
		if err := rateLimitFields(h, rl); err != nil {
			bad(w, "%v", err)
			return
		}
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, MaxEchoBody))
	h.Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"status\":%d}\n", code)
}

// passed plays times=N&then=CODE, for /status and the resets and
// truncation: the first N requests of the key get the fault, the others
// are answered CODE (200 by default), which passed reports. A bad
// parameter is answered 400, and passed reports true.
func (s *Server) passed(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	if !q.Has("times") {
		return false
	}
	times, err := integer(q, "times", 0, 0, 1<<31)
	if err != nil {
		bad(w, "%v", err)
		return true
	}
	then, err := integer(q, "then", 200, 200, 599)
	if err != nil {
		bad(w, "%v", err)
		return true
	}
	k, ok := key(r)
	if !ok {
		bad(w, "key longer than %d bytes", maxKeyLen)
		return true
	}
	s.mu.Lock()
	n, seen := s.seen[k]
	if !seen && len(s.seen) >= maxKeys {
		s.mu.Unlock()
		// Counting no further would fail this key for ever, silently.
		http.Error(w, "heed faults: too many keys; reset the counters (DELETE /stats on the admin listener)", http.StatusServiceUnavailable)
		return true
	}
	s.seen[k] = n + 1
	s.mu.Unlock()
	if int64(n) < times {
		w.Header().Set("X-Heed-Faults-Request", strconv.Itoa(n+1))
		return false
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, MaxEchoBody))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(then))
	fmt.Fprintf(w, "{\"status\":%d,\"request\":%d}\n", then, n+1)
	return true
}

// rateLimitFields sets the IETF RateLimit and RateLimit-Policy fields and
// the X-RateLimit-* ones from "LIMIT,REMAINING,RESET[,WINDOW]".
func rateLimitFields(h http.Header, spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) < 3 || len(parts) > 4 {
		return fmt.Errorf("ratelimit=%q: want LIMIT,REMAINING,RESET[,WINDOW]", spec)
	}
	var n [4]int64
	n[3] = 60
	for i, p := range parts {
		v, err := strconv.ParseInt(strings.TrimSpace(p), 10, 64)
		if err != nil || v < 0 || v > 1<<31 {
			return fmt.Errorf("ratelimit=%q: %q is not a count or seconds", spec, p)
		}
		n[i] = v
	}
	limit, remaining, reset, window := n[0], n[1], n[2], n[3]
	h.Set("RateLimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, limit, window))
	h.Set("RateLimit", fmt.Sprintf(`"default";r=%d;t=%d`, remaining, reset))
	h.Set("X-RateLimit-Limit", strconv.FormatInt(limit, 10))
	h.Set("X-RateLimit-Remaining", strconv.FormatInt(remaining, 10))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
	return nil
}

// limited answers /limited from a token bucket: internal/storm's API, the
// server of heed's storm demo.
func (s *Server) limited(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rate := 100.0
	if v := q.Get("rate"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || f > 1e6 {
			bad(w, "rate=%q: want requests a second, above 0 and up to 1e6", v)
			return
		}
		rate = f
	}
	burst, err := integer(q, "burst", 10, 1, 1e6)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	kk, ok := key(r)
	if !ok {
		bad(w, "key longer than %d bytes", maxKeyLen)
		return
	}
	k := fmt.Sprintf("%s|%g|%d", kk, rate, burst)
	s.mu.Lock()
	api := s.buckets[k]
	if api == nil {
		if len(s.buckets) >= maxKeys {
			s.mu.Unlock()
			http.Error(w, "heed faults: too many buckets; reset the counters", http.StatusServiceUnavailable)
			return
		}
		api, err = storm.NewAPI(storm.ServerConfig{Rate: rate, Burst: int(burst)})
		if err != nil {
			s.mu.Unlock()
			bad(w, "%v", err)
			return
		}
		s.buckets[k] = api
	}
	s.mu.Unlock()
	api.ServeHTTP(w, r)
}

// abort resets the connection: SO_LINGER 0 makes Close send a TCP RST
// instead of a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (s *Server) resetBefore(w http.ResponseWriter, r *http.Request) {
	if s.passed(w, r) {
		return
	}
	c, _, ok := hijack(w, r, "reset")
	if !ok {
		return
	}
	noteReset(w)
	abort(c)
}

// hijack takes the connection over to break HTTP on it; over a protocol
// that cannot (HTTP/2) it answers 501 naming what it could not do.
func hijack(w http.ResponseWriter, r *http.Request, what string) (net.Conn, *bufio.ReadWriter, bool) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "heed faults: cannot "+what+" over "+r.Proto, http.StatusNotImplemented)
		return nil, nil, false
	}
	return c, brw, true
}

func (s *Server) resetAfter(w http.ResponseWriter, r *http.Request) {
	n, err := integer(r.URL.Query(), "bytes", defaultTruncN, 1, MaxBytes)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	if s.passed(w, r) {
		return
	}
	c, brw, ok := hijack(w, r, "reset")
	if !ok {
		return
	}
	fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", n)
	brw.Flush()
	noteRaw(w, http.StatusOK, 0)
	noteReset(w)
	// Give the header time to reach the client before the reset, which
	// would otherwise discard it from the client's buffers.
	s.sleep(r, 50*time.Millisecond)
	abort(c)
}

func (s *Server) truncated(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := integer(q, "bytes", defaultTruncN, 1, MaxBytes)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	sent, err := integer(q, "sent", n/2, 0, n-1)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	if s.passed(w, r) {
		return
	}
	c, brw, ok := hijack(w, r, "truncate")
	if !ok {
		return
	}
	defer c.Close()
	fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", n)
	m, _ := io.Copy(brw, io.LimitReader(newBytes(s.seed, n), sent))
	brw.Flush()
	noteRaw(w, http.StatusOK, int(m))
}

// sleep waits d; it returns false, early, when the client went away or
// the server is closing.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

func (s *Server) trickle(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := integer(q, "bytes", defaultTrickle, 1, MaxTrickle)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	every, err := duration(q, "every", 100*time.Millisecond)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	if time.Duration(n-1)*every > MaxDelay {
		bad(w, "bytes=%d every %v takes longer than %v", n, every, MaxDelay)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	for i := int64(0); i < n; i++ {
		if i > 0 && !s.sleep(r, every) {
			return
		}
		if _, err := w.Write([]byte{'.'}); err != nil {
			return
		}
		rc.Flush()
	}
}

func (s *Server) slowHeaders(w http.ResponseWriter, r *http.Request) {
	d, err := duration(r.URL.Query(), "delay", 2*time.Second)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	if !s.sleep(r, d) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"delayed\":%q}\n", d)
}

func (s *Server) delay(w http.ResponseWriter, r *http.Request) {
	d, err := duration(r.URL.Query(), "d", 500*time.Millisecond)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	if !s.sleep(r, d) {
		return
	}
	s.echo(w, r)
}

func (s *Server) redirectLoop(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	http.Redirect(w, r, "/redirect-loop?n="+strconv.Itoa(n+1), http.StatusFound)
}

func (s *Server) bytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	if err != nil || n < 0 || n > MaxBytes {
		bad(w, "bytes %q: want 0 to %d", r.PathValue("n"), int64(MaxBytes))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	if r.Method == http.MethodHead {
		return
	}
	io.Copy(w, newBytes(s.seed, n))
}

// Echo is the JSON /echo and /delay answer.
type Echo struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Path   string              `json:"path"`
	Query  map[string][]string `json:"query"`
	Proto  string              `json:"proto"`
	Header map[string][]string `json:"headers"`
	Remote string              `json:"remote"`
	// Body is the request body as text, or Base64 when it is not UTF-8.
	Body       string `json:"body"`
	BodyBase64 bool   `json:"body_base64,omitempty"`
	BodyBytes  int64  `json:"body_bytes"`
}

func (s *Server) echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, MaxEchoBody))
	rest, _ := io.Copy(io.Discard, r.Body)
	e := Echo{
		Method: r.Method, URL: r.URL.String(), Path: r.URL.Path, Query: r.URL.Query(),
		Proto: r.Proto, Header: r.Header, Remote: r.RemoteAddr, BodyBytes: int64(len(body)) + rest,
	}
	if utf8.Valid(body) {
		e.Body = string(body)
	} else {
		b, _ := json.Marshal(body) // Base64, quoted
		e.Body, e.BodyBase64 = strings.Trim(string(b), `"`), true
	}
	writeJSON(w, http.StatusOK, e)
}

// newBytes returns n bytes drawn from a generator seeded by seed and n,
// the same for every request of the same size.
func newBytes(seed uint64, n int64) io.Reader {
	return io.LimitReader(&randReader{r: rand.NewChaCha8(seedBytes(seed, uint64(n)))}, n)
}

type randReader struct{ r *rand.ChaCha8 }

func (r *randReader) Read(p []byte) (int, error) { return r.r.Read(p) }

func seedBytes(a, b uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(a >> (8 * i))
		s[8+i] = byte(b >> (8 * i))
	}
	return s
}

func noteReset(w http.ResponseWriter) {
	if c, ok := w.(*counter); ok {
		c.reset()
	}
}

func noteRaw(w http.ResponseWriter, code, n int) {
	if c, ok := w.(*counter); ok {
		c.sentRaw(code, n)
	}
}
