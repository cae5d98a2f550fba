package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/budget"
	"github.com/heed-go/heed/heedprom"
	"github.com/heed-go/heed/internal/vocab"
	"github.com/heed-go/heed/tier"
)

// HeaderAttempts is the header the proxy adds to every response it
// forwards: how many attempts heed made for it.
const HeaderAttempts = "Heed-Attempts"

// route is a configured route at run time: its policy (and so its
// per-key breaker, budget and pacing state), metrics and proxies.
type route struct {
	cfg     Route
	policy  *heed.Policy
	metrics *heedprom.Collector
	base    *http.Transport
	plain   *http.Transport // for upgrades: no retries, HTTP/1.1
	proxy   http.Handler    // tier.Middleware around the heed proxy
	upgrade http.Handler
}

// options are the heed options of p, without the transport and hooks.
func (p PolicyConfig) options() []heed.Option {
	var o []heed.Option
	if p.Attempts > 0 {
		o = append(o, heed.WithMaxAttempts(p.Attempts))
	}
	for code, n := range p.RetryStatus {
		o = append(o, heed.WithRetryStatus(code, n))
	}
	if p.AttemptTimeout > 0 {
		o = append(o, heed.WithAttemptTimeout(p.AttemptTimeout))
	}
	if p.TotalTimeout > 0 {
		o = append(o, heed.WithMaxTotal(p.TotalTimeout))
	}
	if p.MaxWait > 0 {
		o = append(o, heed.WithMaxWait(p.MaxWait))
	}
	if p.Rate > 0 || p.Burst > 0 || p.Concurrency > 0 || p.Queue > 0 || p.QueueTimeout > 0 || p.NoPacing {
		o = append(o, heed.WithLimits(heed.Limits{
			Rate: p.Rate, Burst: p.Burst, Concurrency: p.Concurrency, Queue: p.Queue,
			QueueTimeout: p.QueueTimeout, NoPacing: p.NoPacing,
		}))
	}
	if p.NoBreaker {
		o = append(o, heed.WithoutBreaker())
	} else if p.FailureRatio > 0 || p.MinCalls > 0 || p.ConsecutiveFailures > 0 || p.OpenTimeout > 0 {
		s := breaker.Settings{
			FailureRatio: p.FailureRatio, MinCalls: p.MinCalls,
			ConsecutiveFailures: p.ConsecutiveFailures, OpenTimeout: p.OpenTimeout,
		}
		if s.OpenTimeout > 0 && s.OpenTimeout > 5*time.Minute {
			s.MaxOpenTimeout = s.OpenTimeout
		}
		o = append(o, heed.WithBreaker(s))
	}
	if p.NoRetryBudget {
		o = append(o, heed.WithoutRetryBudget())
	} else if p.BudgetPercent != nil || p.BudgetMinPerSecond != nil {
		c := budget.RatioConfig{}.WithDefaults()
		if p.BudgetPercent != nil {
			c.Percent = *p.BudgetPercent
		}
		if p.BudgetMinPerSecond != nil {
			c.MinPerSecond = *p.BudgetMinPerSecond
		}
		o = append(o, heed.WithRetryBudget(c))
	}
	if p.MaxConcurrentRetries > 0 {
		o = append(o, heed.WithMaxConcurrentRetries(p.MaxConcurrentRetries))
	}
	if p.Hedging {
		o = append(o, heed.WithHedging(heed.HedgeConfig{
			Delay: p.HedgeDelay, Percentile: p.HedgePercentile, MaxHedges: p.MaxHedges,
		}))
	}
	if p.StaleIfError {
		o = append(o, heed.WithStaleIfError(heed.StaleConfig{MaxBytes: p.StaleMaxBytes, MaxStale: p.StaleMaxStale}))
	}
	if p.AutoIdempotencyKey {
		o = append(o, heed.WithAutoIdempotencyKey())
	}
	return o
}

// transports returns the tuned transport heed sends through, and a plain
// HTTP/1.1 one for upgrades.
func transports(r Route) (*http.Transport, *http.Transport, error) {
	var tc *tls.Config
	if r.TLS.cert != nil || r.TLS.ca != nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
		if r.TLS.cert != nil {
			c, err := tls.X509KeyPair(r.TLS.cert, r.TLS.key)
			if err != nil {
				return nil, nil, err
			}
			tc.Certificates = []tls.Certificate{c}
		}
		if r.TLS.ca != nil {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			pool.AppendCertsFromPEM(r.TLS.ca)
			tc.RootCAs = pool
		}
	}
	base := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 0, // heed's attempt timeout bounds it when set
		// A proxy passes bodies as the upstream encodes them: no gzip
		// asked for on the client's behalf, none undone.
		DisableCompression: true,
	}
	plain := base.Clone()
	plain.ForceAttemptHTTP2 = false
	plain.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if plain.TLSClientConfig != nil {
		plain.TLSClientConfig.NextProtos = nil
	}
	return base, plain, nil
}

// newRoute builds a route's policy, metrics and proxies.
func newRoute(cfg Route, logger *slog.Logger) (*route, error) {
	base, plain, err := transports(cfg)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", cfg.Name, err)
	}
	rl := logger.With("route", cfg.Name)
	m := heedprom.New()
	// No read-ahead: a proxy hands the upstream's answer on as it comes,
	// header first, so streams and slow bodies reach the client at once;
	// a body cut short reaches the client cut short, as it would without
	// the proxy.
	opts := append(cfg.Policy.options(), heed.WithResponseBuffer(0), heed.WithBase(base), heed.WithHook(m), heed.WithLogger(rl))
	p, err := heed.NewPolicy(opts...)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", cfg.Name, err)
	}
	m.Watch(p)
	r := &route{cfg: cfg, policy: p, metrics: m, base: base, plain: plain}
	errLog := slog.NewLogLogger(rl.Handler(), slog.LevelWarn)
	rewrite := func(pr *httputil.ProxyRequest) {
		if cfg.StripPrefix && cfg.Prefix != "/" {
			u := pr.Out.URL
			u.Path = "/" + strings.TrimPrefix(strings.TrimPrefix(u.Path, strings.TrimSuffix(cfg.Prefix, "/")), "/")
			if u.RawPath != "" {
				u.RawPath = "/" + strings.TrimPrefix(strings.TrimPrefix(u.RawPath, strings.TrimSuffix(cfg.Prefix, "/")), "/")
			}
		}
		pr.SetURL(cfg.Upstream)
		pr.SetXForwarded()
		if cfg.PreserveHost {
			pr.Out.Host = pr.In.Host
		}
	}
	hp := &httputil.ReverseProxy{
		Rewrite:   rewrite,
		Transport: p.Transport(),
		// Zero: the standard library flushes streams (text/event-stream,
		// bodies of unknown length) after every write, and others when
		// its buffer fills.
		FlushInterval: 0,
		BufferPool:    copyBuffers,
		ErrorLog:      errLog,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set(HeaderAttempts, strconv.Itoa(len(heed.Attempts(resp))))
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			writeError(w, req, err, rl)
		},
	}
	r.proxy = tier.Middleware(hp)
	r.upgrade = &httputil.ReverseProxy{
		Rewrite:    rewrite,
		Transport:  plain,
		BufferPool: copyBuffers,
		ErrorLog:   errLog,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set(HeaderAttempts, "1")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			writeError(w, req, err, rl)
		},
	}
	return r, nil
}

// copyBuffers lends the proxies the buffers they copy bodies through:
// without a pool, httputil.ReverseProxy allocates 32 KiB for every
// request, which costs a proxy under load more than anything it does.
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		buf = buf[:cap(buf)]
		b.p.Put(&buf)
	}
}

// close lets go of the route's idle connections.
func (r *route) close() {
	r.base.CloseIdleConnections()
	r.plain.CloseIdleConnections()
}

// sameRoute reports whether b configures what a does, so a reload keeps
// a's policy and its state.
func sameRoute(a, b Route) bool {
	a.line, b.line = 0, 0
	return reflect.DeepEqual(a, b)
}

// statusClientClosed is logged (and written, to nobody) when the client
// went away before the answer: nginx's 499.
const statusClientClosed = 499

// errorStatus maps the error heed's transport returned to the status the
// client gets, and names its reason.
func errorStatus(req *http.Request, err error) (status int, reason string) {
	var he *heed.Error
	isHeed := errors.As(err, &he)
	if isHeed {
		reason = vocab.Reason(he.Reason)
	}
	var se *heed.StatusError
	switch {
	case req.Context().Err() != nil && errors.Is(context.Cause(req.Context()), context.Canceled):
		return statusClientClosed, "canceled"
	case errors.Is(err, heed.ErrBodyNotReplayable) && errors.As(err, &se):
		// The upstream answered a body heed could not keep to send again:
		// its answer is the client's.
		return se.StatusCode, reason
	case errors.Is(err, heed.ErrBreakerOpen), errors.Is(err, heed.ErrBudgetExhausted),
		errors.Is(err, heed.ErrThrottled), errors.Is(err, heed.ErrWaitTooLong):
		if !isHeed {
			reason = vocab.Reason(err)
		}
		return http.StatusServiceUnavailable, reason
	case errors.Is(err, heed.ErrDeadline), errors.Is(err, context.DeadlineExceeded):
		if reason == "" || reason == "other" {
			reason = "deadline"
		}
		return http.StatusGatewayTimeout, reason
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if reason == "" {
			reason = "timeout"
		}
		return http.StatusGatewayTimeout, reason
	}
	if reason == "" {
		reason = "transport_error"
	}
	return http.StatusBadGateway, reason
}

// writeError answers a request whose upstream call failed.
func writeError(w http.ResponseWriter, req *http.Request, err error, logger *slog.Logger) {
	status, reason := errorStatus(req, err)
	h := w.Header()
	var he *heed.Error
	if errors.As(err, &he) {
		h.Set(HeaderAttempts, strconv.Itoa(len(he.Attempts)))
	} else {
		h.Set(HeaderAttempts, "1")
	}
	var se *heed.StatusError
	if errors.Is(err, heed.ErrBodyNotReplayable) && errors.As(err, &se) {
		if ra := se.Header.Get("Retry-After"); ra != "" {
			h.Set("Retry-After", ra)
		}
	} else if status == http.StatusServiceUnavailable {
		secs := 1
		if he != nil && !he.RetryAt.IsZero() {
			secs = int(math.Ceil(time.Until(he.RetryAt).Seconds()))
			secs = max(secs, 0)
		}
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	if status == statusClientClosed {
		return
	}
	fmt.Fprintf(w, "heed: %s: %s\n", reason, strings.TrimPrefix(err.Error(), "heed: "))
	logger.Warn("upstream call failed", "status", status, "reason", reason, "err", err.Error())
}
