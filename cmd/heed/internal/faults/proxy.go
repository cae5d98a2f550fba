package faults

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rates are the fault proxy's faults, changeable at run time.
type Rates struct {
	// Latency is added before each request goes upstream.
	Latency time.Duration
	// ResetRate is the share of requests answered with a TCP reset
	// instead of being passed on.
	ResetRate float64
	// StatusRates maps a status to the share of requests answered with
	// it instead of being passed on.
	StatusRates map[int]float64
	// RetryAfter is the Retry-After, in whole seconds, sent with an
	// injected 429 or 503; 0 sends none.
	RetryAfter int
	// Bandwidth caps each response body's bytes a second; 0 is no cap.
	Bandwidth int64
}

// ratesJSON is Rates on the wire: GET /faults answers it, PUT /faults
// takes any subset of its fields.
type ratesJSON struct {
	Latency     *string            `json:"latency,omitempty"`
	ResetRate   *float64           `json:"reset_rate,omitempty"`
	StatusRates map[string]float64 `json:"status_rates,omitempty"`
	RetryAfter  *int               `json:"retry_after,omitempty"`
	Bandwidth   *string            `json:"bandwidth,omitempty"`
}

func (r Rates) toJSON() ratesJSON {
	lat, bw := r.Latency.String(), FormatBandwidth(r.Bandwidth)
	j := ratesJSON{Latency: &lat, ResetRate: &r.ResetRate, RetryAfter: &r.RetryAfter, Bandwidth: &bw, StatusRates: map[string]float64{}}
	for c, p := range r.StatusRates {
		j.StatusRates[strconv.Itoa(c)] = p
	}
	return j
}

// apply changes r by the fields j sets, and checks the result.
func (r Rates) apply(j ratesJSON) (Rates, error) {
	if j.Latency != nil {
		d, err := time.ParseDuration(*j.Latency)
		if err != nil {
			return r, fmt.Errorf("latency: %v", err)
		}
		r.Latency = d
	}
	if j.ResetRate != nil {
		r.ResetRate = *j.ResetRate
	}
	if j.StatusRates != nil {
		m := map[int]float64{}
		for k, p := range j.StatusRates {
			c, err := strconv.Atoi(k)
			if err != nil {
				return r, fmt.Errorf("status_rates: %q is not a status", k)
			}
			m[c] = p
		}
		r.StatusRates = m
	}
	if j.RetryAfter != nil {
		r.RetryAfter = *j.RetryAfter
	}
	if j.Bandwidth != nil {
		bw, err := ParseBandwidth(*j.Bandwidth)
		if err != nil {
			return r, err
		}
		r.Bandwidth = bw
	}
	return r, r.Check()
}

// Check reports rates that make no sense.
func (r Rates) Check() error {
	if r.Latency < 0 || r.Latency > MaxDelay {
		return fmt.Errorf("latency %v: want 0 to %v", r.Latency, MaxDelay)
	}
	if r.RetryAfter < 0 || r.RetryAfter > int(MaxDelay/time.Second) {
		return fmt.Errorf("retry-after %d: want 0 to %d seconds", r.RetryAfter, int(MaxDelay/time.Second))
	}
	if r.Bandwidth < 0 {
		return fmt.Errorf("bandwidth %d: must not be negative", r.Bandwidth)
	}
	sum := r.ResetRate
	if !(r.ResetRate >= 0 && r.ResetRate <= 1) {
		return fmt.Errorf("reset rate %v: want 0 to 1", r.ResetRate)
	}
	for c, p := range r.StatusRates {
		if c < 200 || c > 599 {
			return fmt.Errorf("status %d: want 200 to 599", c)
		}
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("status %d rate %v: want 0 to 1", c, p)
		}
		sum += p
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("the reset and status rates add up to %v, more than 1", sum)
	}
	return nil
}

// ParseStatusRates reads "429:0.1,503:0.05".
func ParseStatusRates(s string) (map[int]float64, error) {
	m := map[int]float64{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, part := range strings.Split(s, ",") {
		code, rate, ok := strings.Cut(strings.TrimSpace(part), ":")
		c, err1 := strconv.Atoi(code)
		p, err2 := strconv.ParseFloat(rate, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%q: want STATUS:RATE, such as 503:0.05", part)
		}
		m[c] = p
	}
	return m, nil
}

// ParseBandwidth reads "1MB/s", "512KB/s", "100B/s" or a number of bytes
// a second; "" and "0" are no cap. KB and MB are 1000 and 1000000 bytes,
// KiB and MiB 1024 and 1048576.
func ParseBandwidth(s string) (int64, error) {
	v := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	if v == "" || v == "0" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || f*float64(mult) > 1e12 {
		return 0, fmt.Errorf("bandwidth %q: want bytes a second, such as 1MB/s or 64KiB/s", s)
	}
	return int64(f * float64(mult)), nil
}

// FormatBandwidth writes b as ParseBandwidth reads it.
func FormatBandwidth(b int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GB", 1e9}, {"GiB", 1 << 30}, {"MB", 1e6}, {"MiB", 1 << 20}, {"KB", 1e3}, {"KiB", 1 << 10}} {
		if b >= u.n && b%u.n == 0 {
			return strconv.FormatInt(b/u.n, 10) + u.suffix + "/s"
		}
	}
	if b == 0 {
		return "0"
	}
	return strconv.FormatInt(b, 10) + "B/s"
}

// Proxy is the fault proxy: it passes requests to an upstream, injecting
// latency, resets, statuses and a bandwidth cap at the rates it is set to,
// every choice drawn from a generator seeded once.
type Proxy struct {
	Stats *Stats

	rp   *httputil.ReverseProxy
	done chan struct{}
	once sync.Once

	mu    sync.Mutex
	rates Rates
	rng   *rand.Rand
	h     http.Handler
}

// NewProxy returns a proxy to upstream with the rates r.
func NewProxy(upstream *url.URL, r Rates, seed uint64) (*Proxy, error) {
	if upstream.Scheme != "http" && upstream.Scheme != "https" || upstream.Host == "" {
		return nil, fmt.Errorf("upstream %q: want http://host:port or https://host:port", upstream)
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	p := &Proxy{
		Stats: NewStats(),
		done:  make(chan struct{}),
		rates: r,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			if bw := p.Rates().Bandwidth; bw > 0 {
				resp.Body = &paced{rc: resp.Body, rate: bw, start: time.Now(), done: p.done, ctx: resp.Request.Context().Done()}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "heed faults proxy: upstream: "+err.Error(), http.StatusBadGateway)
		},
		FlushInterval: 100 * time.Millisecond,
	}
	p.h = p.Stats.Count(http.HandlerFunc(p.serve))
	return p, nil
}

// Rates returns the current rates.
func (p *Proxy) Rates() Rates {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rates
	r.StatusRates = make(map[int]float64, len(p.rates.StatusRates))
	for c, v := range p.rates.StatusRates {
		r.StatusRates[c] = v
	}
	return r
}

// SetRates replaces the rates.
func (p *Proxy) SetRates(r Rates) error {
	if err := r.Check(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rates = r
	return nil
}

// Close ends every added latency and paced body in progress.
func (p *Proxy) Close() { p.once.Do(func() { close(p.done) }) }

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.h.ServeHTTP(w, r) }

// choice is the fault drawn for one request.
type choice struct {
	reset      bool
	status     int
	retryAfter int
	latency    time.Duration
}

func (p *Proxy) choose() choice {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rates
	c := choice{latency: r.Latency, retryAfter: r.RetryAfter}
	x := p.rng.Float64()
	if x < r.ResetRate {
		c.reset = true
		return c
	}
	x -= r.ResetRate
	// In status order, so that the same seed makes the same choices.
	codes := make([]int, 0, len(r.StatusRates))
	for code := range r.StatusRates {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	for _, code := range codes {
		if x < r.StatusRates[code] {
			c.status = code
			return c
		}
		x -= r.StatusRates[code]
	}
	return c
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	c := p.choose()
	if c.latency > 0 {
		t := time.NewTimer(c.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-p.done:
			t.Stop()
			http.Error(w, "heed faults proxy: shutting down", http.StatusServiceUnavailable)
			return
		}
	}
	switch {
	case c.reset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, "heed faults proxy: cannot reset over "+r.Proto, http.StatusNotImplemented)
			return
		}
		noteReset(w)
		noteInjected(w)
		abort(conn)
	case c.status != 0:
		io.Copy(io.Discard, io.LimitReader(r.Body, MaxEchoBody))
		if c.retryAfter > 0 && (c.status == http.StatusTooManyRequests || c.status == http.StatusServiceUnavailable) {
			w.Header().Set("Retry-After", strconv.Itoa(c.retryAfter))
		}
		w.Header().Set("X-Heed-Fault", "injected")
		noteInjected(w)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(c.status)
		fmt.Fprintf(w, "{\"status\":%d,\"injected\":true}\n", c.status)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

func noteInjected(w http.ResponseWriter) {
	if c, ok := w.(*counter); ok {
		c.stats.update(c.path, func(ps *PathStats) { ps.Injected++ })
	}
}

// paced reads a body no faster than rate bytes a second.
type paced struct {
	rc    io.ReadCloser
	rate  int64
	start time.Time
	read  int64
	done  <-chan struct{}
	ctx   <-chan struct{}
}

func (b *paced) Read(p []byte) (int, error) {
	// Read at most a tenth of a second's worth at once, so the pace is
	// smooth, and wait until the bytes read are due.
	chunk := max(b.rate/10, 1)
	if int64(len(p)) > chunk {
		p = p[:chunk]
	}
	due := b.start.Add(time.Duration(float64(b.read) / float64(b.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-b.done:
			t.Stop()
			return 0, errors.New("heed faults proxy: shutting down")
		case <-b.ctx:
			t.Stop()
			return 0, errors.New("heed faults proxy: client went away")
		}
	}
	n, err := b.rc.Read(p)
	b.read += int64(n)
	return n, err
}

func (b *paced) Close() error { return b.rc.Close() }

// ratesHandler serves GET and PUT /faults.
func (p *Proxy) ratesHandler(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, p.Rates().toJSON())
	case http.MethodPut, http.MethodPatch:
		var j ratesJSON
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			bad(w, "PUT /faults: %v", err)
			return
		}
		p.mu.Lock()
		nr, err := p.rates.apply(j)
		if err == nil {
			p.rates = nr
		}
		p.mu.Unlock()
		if err != nil {
			bad(w, "PUT /faults: %v", err)
			return
		}
		writeJSON(w, http.StatusOK, p.Rates().toJSON())
	default:
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
