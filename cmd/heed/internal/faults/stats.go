// Package faults is heed's fault server and fault proxy: HTTP endpoints that
// fail in the ways real servers do (statuses with hints, rate limits,
// resets, truncated and trickled bodies, slow answers, redirect loops), a
// proxy that injects such faults in front of a real upstream, and the
// loopback-only admin API that reads their counters and changes the
// proxy's rates at run time. "heed faults" serves them.
package faults

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxPaths bounds how many distinct paths the counters keep; the others
// are counted under otherPath, so a client cannot grow them without bound.
const maxPaths = 1000

const otherPath = "(other)"

// PathStats are the counters of one path.
type PathStats struct {
	Requests int64            `json:"requests"`
	Statuses map[string]int64 `json:"statuses"`
	Resets   int64            `json:"resets"`
	// Injected counts the faults the proxy made up (statuses and resets)
	// rather than passed on from the upstream.
	Injected int64 `json:"injected,omitempty"`
	// BytesIn and BytesOut count the request and response bodies' bytes.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

// Snapshot is what GET /stats answers.
type Snapshot struct {
	Since    time.Time             `json:"since"`
	Requests int64                 `json:"requests"`
	Paths    map[string]*PathStats `json:"paths"`
}

// Stats counts what each path saw. It is safe for concurrent use.
type Stats struct {
	mu       sync.Mutex
	since    time.Time
	requests int64
	paths    map[string]*PathStats
}

// NewStats returns empty counters.
func NewStats() *Stats {
	return &Stats{since: time.Now(), paths: map[string]*PathStats{}}
}

// Reset empties the counters.
func (s *Stats) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.since, s.requests, s.paths = time.Now(), 0, map[string]*PathStats{}
}

// path returns path's counters; s.mu must be held.
func (s *Stats) path(p string) *PathStats {
	if len(p) > maxKeyLen {
		p = otherPath // a long path is not worth its memory as a key
	}
	ps := s.paths[p]
	if ps == nil {
		if len(s.paths) >= maxPaths {
			p = otherPath
			if ps = s.paths[p]; ps != nil {
				return ps
			}
		}
		ps = &PathStats{Statuses: map[string]int64{}}
		s.paths[p] = ps
	}
	return ps
}

func (s *Stats) update(p string, f func(*PathStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.path(p))
}

func (s *Stats) request(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.path(p).Requests++
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Since: s.since, Requests: s.requests, Paths: make(map[string]*PathStats, len(s.paths))}
	for p, ps := range s.paths {
		c := *ps
		c.Statuses = make(map[string]int64, len(ps.Statuses))
		for k, v := range ps.Statuses {
			c.Statuses[k] = v
		}
		snap.Paths[p] = &c
	}
	return snap
}

// Path returns a copy of one path's counters, zero if it saw nothing.
func (s *Stats) Path(p string) PathStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.paths[p]
	if ps == nil {
		return PathStats{Statuses: map[string]int64{}}
	}
	c := *ps
	c.Statuses = make(map[string]int64, len(ps.Statuses))
	for k, v := range ps.Statuses {
		c.Statuses[k] = v
	}
	return c
}

// counter wraps a ResponseWriter to count the status and bytes it sends
// for one path. It passes Flush and Hijack through.
type counter struct {
	http.ResponseWriter
	stats  *Stats
	path   string
	wrote  bool
	hijack bool
}

func (c *counter) WriteHeader(code int) {
	if !c.wrote && code >= 200 {
		c.wrote = true
		c.stats.update(c.path, func(ps *PathStats) { ps.Statuses[strconv.Itoa(code)]++ })
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *counter) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	n, err := c.ResponseWriter.Write(b)
	c.stats.update(c.path, func(ps *PathStats) { ps.BytesOut += int64(n) })
	return n, err
}

func (c *counter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *counter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := c.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("faults: connection cannot be hijacked")
	}
	c.hijack = true
	return h.Hijack()
}

// Unwrap lets http.ResponseController reach the connection.
func (c *counter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// sentRaw counts a status and bytes written on a hijacked connection.
func (c *counter) sentRaw(code, bytes int) {
	c.stats.update(c.path, func(ps *PathStats) {
		if code > 0 {
			ps.Statuses[strconv.Itoa(code)]++
		}
		ps.BytesOut += int64(bytes)
	})
}

func (c *counter) reset() { c.stats.update(c.path, func(ps *PathStats) { ps.Resets++ }) }

// countingBody counts the request body's bytes as the handler reads them.
type countingBody struct {
	rc    interface{ Read([]byte) (int, error) }
	close func() error
	stats *Stats
	path  string
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.stats.update(b.path, func(ps *PathStats) { ps.BytesIn += int64(n) })
	}
	return n, err
}

func (b *countingBody) Close() error { return b.close() }

// Count wraps h so that every request counts under its path.
func (s *Stats) Count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		s.request(p)
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &countingBody{rc: r.Body, close: r.Body.Close, stats: s, path: p}
		}
		h.ServeHTTP(&counter{ResponseWriter: w, stats: s, path: p}, r)
	})
}

// writeJSON answers v as indented JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
