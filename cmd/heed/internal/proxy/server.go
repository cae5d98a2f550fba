package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed/cmd/heed/internal/faults"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server runs the route listeners and the admin listener of a
// configuration, and reloads it.
type Server struct {
	logger *slog.Logger
	reg    *prometheus.Registry

	mu        sync.Mutex // held by Reload and Shutdown
	cfg       *Config
	table     atomic.Pointer[table]
	listeners map[string]*listener
	admin     *listener
	wg        sync.WaitGroup // the Serve loops and background shutdowns

	ready    atomic.Bool
	draining atomic.Bool
}

// table is the routes in force; requests read it without a lock.
type table struct {
	cfg      *Config
	routes   []*route // in configuration order
	byListen map[string][]*route
}

type listener struct {
	addr string // as configured
	ln   net.Listener
	srv  *http.Server
}

// Start opens the listeners of cfg and serves them. logger receives the
// access log and heed's own log lines.
func Start(cfg *Config, logger *slog.Logger) (*Server, error) {
	reg := prometheus.NewRegistry()
	// The process's own health beside heed's: goroutines, memory, file
	// descriptors, so a sidecar's leaks show on the same page.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{logger: logger, reg: reg, cfg: cfg, listeners: map[string]*listener{}}
	t, err := s.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	opened, err := s.open(cfg, t)
	if err != nil {
		s.drop(t.routes)
		return nil, err
	}
	if cfg.Admin != "" {
		// The configuration said loopback; the address bound must be
		// one too (localhost could resolve elsewhere).
		ln, err := faults.ListenLoopback(context.Background(), cfg.Admin)
		if err != nil {
			s.closeAll(opened)
			s.drop(t.routes)
			return nil, fmt.Errorf("admin: %w", err)
		}
		s.admin = &listener{addr: cfg.Admin, ln: ln, srv: s.server(cfg, s.adminHandler())}
		s.serve(s.admin)
	}
	s.commit(t, nil)
	s.table.Store(t)
	for _, l := range opened {
		s.listeners[l.addr] = l
		s.serve(l)
	}
	s.ready.Store(true)
	return s, nil
}

// build makes the routes of cfg, keeping those of old that are unchanged
// (their policies, and so their per-key state). The routes it made are
// registered for metrics only by commit.
func (s *Server) build(cfg *Config, old *table) (*table, error) {
	t := &table{cfg: cfg, byListen: map[string][]*route{}}
	for _, rc := range cfg.Routes {
		var r *route
		if old != nil {
			for _, o := range old.routes {
				if o.cfg.Name == rc.Name && sameRoute(o.cfg, rc) {
					r = o
					break
				}
			}
		}
		if r == nil {
			var err error
			r, err = newRoute(rc, s.logger)
			if err != nil {
				s.drop(fresh(t.routes, old))
				return nil, err
			}
		}
		t.routes = append(t.routes, r)
		t.byListen[rc.Listen] = append(t.byListen[rc.Listen], r)
	}
	for _, rs := range t.byListen {
		sortRoutes(rs)
	}
	return t, nil
}

// fresh returns the routes of rs that old does not hold.
func fresh(rs []*route, old *table) []*route {
	var out []*route
	for _, r := range rs {
		if old == nil || !holds(old, r) {
			out = append(out, r)
		}
	}
	return out
}

func holds(t *table, r *route) bool {
	for _, o := range t.routes {
		if o == r {
			return true
		}
	}
	return false
}

// drop lets go of routes that will not serve.
func (s *Server) drop(rs []*route) {
	for _, r := range rs {
		r.close()
	}
}

// open listens on the addresses of t that have no listener yet.
func (s *Server) open(cfg *Config, t *table) ([]*listener, error) {
	var opened []*listener
	for _, r := range t.routes {
		addr := r.cfg.Listen
		if s.listeners[addr] != nil || containsAddr(opened, addr) {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			s.closeAll(opened)
			return nil, fmt.Errorf("route %s: %w", r.cfg.Name, err)
		}
		opened = append(opened, &listener{addr: addr, ln: ln, srv: s.server(cfg, s.routeHandler(addr))})
	}
	return opened, nil
}

func containsAddr(ls []*listener, addr string) bool {
	for _, l := range ls {
		if l.addr == addr {
			return true
		}
	}
	return false
}

func (s *Server) closeAll(ls []*listener) {
	for _, l := range ls {
		l.ln.Close()
	}
}

func (s *Server) server(cfg *Config, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
}

func (s *Server) serve(l *listener) {
	s.logger.Info("listening", "addr", l.ln.Addr().String())
	s.wg.Go(func() {
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("serve", "addr", l.addr, "err", err.Error())
		}
	})
}

// commit registers the metrics of t's routes that old does not hold, and
// unregisters those of old's routes that t does not hold.
func (s *Server) commit(t, old *table) {
	if old != nil {
		for _, r := range old.routes {
			if !holds(t, r) {
				s.registerer(r).Unregister(r.metrics)
			}
		}
	}
	for _, r := range fresh(t.routes, old) {
		if err := s.registerer(r).Register(r.metrics); err != nil {
			s.logger.Error("metrics", "route", r.cfg.Name, "err", err.Error())
		}
	}
}

func (s *Server) registerer(r *route) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"route": r.cfg.Name}, s.reg)
}

// Reload replaces the configuration with cfg: unchanged routes keep their
// policy and listener, changed ones are replaced, and listeners no route
// uses any more are shut down gracefully. On error nothing changes.
func (s *Server) Reload(cfg *Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	old := s.table.Load()
	if cfg.Admin != s.cfg.Admin {
		s.logger.Warn("the admin address changes only on restart", "admin", s.cfg.Admin)
		cfg.Admin = s.cfg.Admin
	}
	t, err := s.build(cfg, old)
	if err != nil {
		return err
	}
	opened, err := s.open(cfg, t)
	if err != nil {
		s.drop(fresh(t.routes, old))
		return err
	}
	s.commit(t, old)
	s.table.Store(t)
	for _, l := range opened {
		s.listeners[l.addr] = l
		s.serve(l)
	}
	for addr, l := range s.listeners {
		if _, used := t.byListen[addr]; !used {
			delete(s.listeners, addr)
			s.wg.Go(func() { s.stop(l, cfg.Grace) })
		}
	}
	var kept, added int
	for _, r := range t.routes {
		if holds(old, r) {
			kept++
		} else {
			added++
		}
	}
	for _, r := range old.routes {
		if !holds(t, r) {
			r.close()
		}
	}
	s.cfg = cfg
	s.logger.Info("reloaded", "routes", len(t.routes), "kept", kept, "new", added, "removed", len(old.routes)-kept)
	return nil
}

// stop shuts l down, letting its requests finish within grace.
func (s *Server) stop(l *listener, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		s.logger.Warn("grace period over: closing connections", "addr", l.addr, "grace", grace.String())
		l.srv.Close()
	}
}

// Shutdown stops accepting, reports not ready, lets requests in flight
// finish within the configured grace, and closes everything.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Swap(true) {
		return
	}
	grace := s.cfg.Grace
	s.logger.Info("draining", "grace", grace.String())
	var wg sync.WaitGroup
	for addr, l := range s.listeners {
		delete(s.listeners, addr)
		wg.Go(func() { s.stop(l, grace) })
	}
	wg.Wait()
	if s.admin != nil {
		s.stop(s.admin, time.Second)
	}
	s.wg.Wait()
	if t := s.table.Load(); t != nil {
		s.drop(t.routes)
	}
	s.logger.Info("stopped")
}

// Addr returns the address a route listener listens on, as configured,
// for tests that listen on port 0.
func (s *Server) Addr(configured string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.listeners[configured]; l != nil {
		return l.ln.Addr().String()
	}
	return ""
}

// AdminAddr returns the admin listener's address, empty without one.
func (s *Server) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.ln.Addr().String()
}

// match finds the route of a request on the listener addr: the routes
// naming a host first, then the longest prefix.
func (t *table) match(addr string, r *http.Request) *route {
	host := strings.TrimSuffix(strings.ToLower(r.Host), ".")
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = strings.TrimSuffix(h, ".")
	}
	for _, rt := range t.byListen[addr] {
		if rt.cfg.Host != "" && rt.cfg.Host != host && rt.cfg.Host != name {
			continue
		}
		if matchPrefix(rt.cfg.Prefix, r.URL.Path) {
			return rt
		}
	}
	return nil
}

// matchPrefix reports whether path is under prefix: /v1 matches /v1 and
// /v1/users, not /v10.
func matchPrefix(prefix, path string) bool {
	if prefix == "/" || path == prefix {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// isUpgrade reports whether r asks to switch protocols (a WebSocket).
func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

// upgradeAllowed reports an upgrade the proxy tunnels: WebSocket only. Any
// other protocol (h2c among them) would carry requests past the route's
// matching, heed's limits and the access log once the upstream switched.
func upgradeAllowed(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		for t := range strings.SplitSeq(v, ",") {
			if !strings.EqualFold(strings.TrimSpace(t), "websocket") {
				return false
			}
		}
	}
	return true
}

// dotSegments reports a path with "." or ".." segments: an upstream that
// resolves them would serve a path outside the route's prefix.
func dotSegments(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

const notOpen = "it is not an open proxy: it forwards only to its configured upstreams"

// routeHandler serves the listener addr: it refuses proxy-style requests,
// finds the route, and logs the request.
func (s *Server) routeHandler(addr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		t := s.table.Load()
		var lw http.ResponseWriter = w
		var logged *logWriter
		if t.cfg.AccessLog { // the status and size are wanted only for the log
			logged = &logWriter{ResponseWriter: w}
			lw = logged
		}
		var rt *route
		switch {
		case r.Method == http.MethodConnect:
			lw.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
			plain(lw, http.StatusMethodNotAllowed, "heed proxy: CONNECT refused: "+notOpen)
		case r.URL.Scheme != "" || r.URL.Host != "":
			plain(lw, http.StatusBadRequest, "heed proxy: absolute-form request refused: "+notOpen)
		case dotSegments(r.URL.Path):
			plain(lw, http.StatusBadRequest, "heed proxy: a path with . or .. segments is refused: it could leave the route's prefix")
		case isUpgrade(r) && !upgradeAllowed(r):
			plain(lw, http.StatusBadRequest, "heed proxy: only WebSocket upgrades are passed through")
		default:
			rt = t.match(addr, r)
			if rt == nil {
				plain(lw, http.StatusNotFound, fmt.Sprintf("heed proxy: no route matches %s %s %s", r.Method, r.Host, r.URL.Path))
			} else if isUpgrade(r) {
				rt.upgrade.ServeHTTP(lw, r)
			} else {
				rt.proxy.ServeHTTP(lw, r)
			}
		}
		if !t.cfg.AccessLog {
			return
		}
		attrs := make([]slog.Attr, 0, 9)
		name, upstream := "", ""
		if rt != nil {
			name, upstream = rt.cfg.Name, rt.cfg.Upstream.String()
		}
		attempts, _ := strconv.Atoi(lw.Header().Get(HeaderAttempts))
		status := logged.status
		if status == 0 {
			status = http.StatusOK
		}
		attrs = append(attrs,
			slog.String("route", name),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Int("attempts", attempts),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.Int64("bytes", logged.bytes),
			slog.String("upstream", upstream),
		)
		s.logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// logWriter records a response's status and size for the access log.
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *logWriter) WriteHeader(code int) {
	if w.status == 0 || w.status < 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps streams streaming.
func (w *logWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack lets the proxy switch protocols; the upstream's 101 goes
// straight to the connection.
func (w *logWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// RouteInfo is a route as /routes shows it.
type RouteInfo struct {
	Name     string     `json:"name"`
	Listen   string     `json:"listen"`
	Host     string     `json:"host,omitempty"`
	Prefix   string     `json:"prefix"`
	Upstream string     `json:"upstream"`
	Keys     []KeyState `json:"keys"`
}

// KeyState is one key's state in a route's policy (heed.KeyStats).
type KeyState struct {
	Key      string  `json:"key"`
	Breaker  string  `json:"breaker,omitempty"`
	InFlight int     `json:"in_flight"`
	Queued   int     `json:"queued"`
	Pacing   bool    `json:"pacing"`
	PaceRate float64 `json:"pace_rate,omitempty"`
}

func (s *Server) routesInfo() []RouteInfo {
	t := s.table.Load()
	out := make([]RouteInfo, 0, len(t.routes))
	for _, r := range t.routes {
		ri := RouteInfo{Name: r.cfg.Name, Listen: r.cfg.Listen, Host: r.cfg.Host, Prefix: r.cfg.Prefix, Upstream: r.cfg.Upstream.String(), Keys: []KeyState{}}
		for _, k := range r.policy.Stats() {
			ks := KeyState{Key: k.Key, InFlight: k.InFlight, Queued: k.Queued, Pacing: k.Pacing, PaceRate: k.PaceRate}
			if k.HasBreaker {
				ks.Breaker = strings.ReplaceAll(strings.ToLower(k.Breaker.String()), "-", "_")
			}
			ri.Keys = append(ri.Keys, ks)
		}
		out = append(out, ri)
	}
	return out
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.draining.Load():
			plain(w, http.StatusServiceUnavailable, "draining")
		case !s.ready.Load():
			plain(w, http.StatusServiceUnavailable, "starting")
		default:
			plain(w, http.StatusOK, "ready")
		}
	})
	// Profiles, on the loopback-only admin listener: where a sidecar
	// spends its time is the first question when it is slow.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"routes": s.routesInfo()})
	})
	return mux
}
