package main

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The harness runs its Go servers as children of its own (re-executing
// itself with -serve), so each has a process, and an RSS, of its own.

// serveBackend answers every request 200 with a fixed body of size bytes.
func serveBackend(listen string, size int) error {
	body := []byte(strings.Repeat("x", size))
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain"}
		hd["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
	return newServer(listen, h).ListenAndServe()
}

// StockTransport is the stock proxy's upstream transport: Go's default
// with an idle pool big enough for any concurrency the harness uses.
func StockTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 120 * time.Second
	return tr
}

// serveStock is Go's httputil.ReverseProxy with StockTransport.
func serveStock(listen, upstream string) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("stock proxy: bad -upstream %q", upstream)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(u) },
		Transport: StockTransport(),
	}
	return newServer(listen, rp).ListenAndServe()
}

func newServer(listen string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              listen,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second, // longer than the idle phase holds its connections
		ErrorLog:          log.New(log.Writer(), "", log.LstdFlags),
	}
}
