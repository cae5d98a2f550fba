package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedprom"
	"github.com/heed-go/heed/internal/storm"
)

// metricsServer serves the demo's heed metrics on /metrics.
type metricsServer struct {
	reg  *prometheus.Registry
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

func serveMetrics(addr string) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	m := &metricsServer{reg: prometheus.NewRegistry(), addr: ln.Addr(), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "heed: metrics server:", err)
		}
	}()
	return m, nil
}

func (m *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.srv.Shutdown(ctx)
	<-m.done
}

// heed is the heed strategy named name, its clients counted by a collector
// whose series carry strategy=label. The shared client's policy is
// watched for its breaker, queue and pacing state.
func (m *metricsServer) heed(name, label string, shared bool) storm.Strategy {
	c := heedprom.New()
	prometheus.WrapRegistererWith(prometheus.Labels{"strategy": label}, m.reg).MustRegister(c)
	return storm.Strategy{Name: name, Shared: shared, NewClient: func(base http.RoundTripper) (*http.Client, error) {
		t, err := heed.New(heed.WithBase(base), heed.WithLogger(nil), heed.WithHook(c))
		if err != nil {
			return nil, err
		}
		if shared {
			c.Watch(t.Policy())
		}
		return &http.Client{Transport: t}, nil
	}}
}
