package faults

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
)

// Admin returns the admin API's handler: GET /stats reads the counters,
// DELETE /stats resets them (and forgets the server's times/then keys and
// buckets); with a proxy, GET /faults reads its rates and PUT /faults
// changes them. srv or proxy may be nil. It answers only requests from
// loopback addresses.
func Admin(srv *Server, proxy *Proxy) http.Handler {
	mux := http.NewServeMux()
	stats := func() *Stats {
		if proxy != nil {
			return proxy.Stats
		}
		return srv.Stats
	}
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			writeJSON(w, http.StatusOK, stats().Snapshot())
		case http.MethodDelete:
			if srv != nil {
				srv.ResetCounters()
			}
			if proxy != nil {
				proxy.Stats.Reset()
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "GET, DELETE")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
	if proxy != nil {
		mux.HandleFunc("/faults", proxy.ratesHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ap.Addr().Unmap().IsLoopback() {
			http.Error(w, "heed faults: the admin API answers loopback only", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// ListenLoopback listens on addr, which must name a loopback address
// (127.0.0.1, ::1 or localhost), and refuses any other.
func ListenLoopback(ctx context.Context, addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "localhost" {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("%s is not a loopback address: the admin API listens on loopback only (127.0.0.1, ::1 or localhost)", addr)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().Unmap().IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("%s resolved to %s, not a loopback address", addr, ln.Addr())
	}
	return ln, nil
}
