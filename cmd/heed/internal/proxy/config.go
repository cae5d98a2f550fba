// Package proxy is "heed proxy": a reverse proxy that sends every request
// to a configured upstream through a heed Transport, so clients in any
// language get heed's retries, pacing, breakers and budgets.
package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heed-go/heed"
	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration: the routes, the admin listener, and
// the servers' bounds.
type Config struct {
	// Admin is the loopback address of /metrics, /healthz, /readyz and
	// /routes; empty for none.
	Admin string
	// Grace bounds how long in-flight requests may take to finish on
	// shutdown. Default 10 s.
	Grace time.Duration
	// AccessLog turns the access log on (default on).
	AccessLog bool
	// ReadHeaderTimeout, IdleTimeout and MaxHeaderBytes bound every
	// listener's connections.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	Routes            []Route
}

// Route forwards the requests matching Host and Prefix on Listen to
// Upstream under a policy of its own.
type Route struct {
	Name   string
	Listen string
	Host   string // empty: any host
	Prefix string // default "/"
	// StripPrefix removes Prefix from the path before it is joined to the
	// upstream's path.
	StripPrefix bool
	// PreserveHost sends the client's Host to the upstream instead of the
	// upstream's own.
	PreserveHost bool
	Upstream     *url.URL
	TLS          TLSFiles
	Policy       PolicyConfig

	line int // where the route starts, for errors found later
}

// TLSFiles are the upstream's client certificate and extra CA, read when
// the configuration is loaded (so a reload sees changed files).
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
	cert, key, ca             []byte
}

// PolicyConfig holds a route's heed settings. Zero values mean heed's
// defaults.
type PolicyConfig struct {
	Attempts             int
	RetryStatus          map[int]int
	AttemptTimeout       time.Duration
	TotalTimeout         time.Duration
	MaxWait              time.Duration
	Rate                 float64
	Burst                int
	Concurrency          int
	Queue                int
	QueueTimeout         time.Duration
	NoPacing             bool
	NoBreaker            bool
	FailureRatio         float64
	MinCalls             int
	ConsecutiveFailures  int
	OpenTimeout          time.Duration
	NoRetryBudget        bool
	BudgetPercent        *float64
	BudgetMinPerSecond   *float64
	MaxConcurrentRetries int
	Hedging              bool
	HedgeDelay           time.Duration
	HedgePercentile      float64
	MaxHedges            int
	StaleIfError         bool
	StaleMaxBytes        int64
	StaleMaxStale        time.Duration
	AutoIdempotencyKey   bool
}

// Defaults of the servers' bounds.
const (
	DefaultGrace             = 10 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 1 << 20
)

func defaults() Config {
	return Config{
		Grace:             DefaultGrace,
		AccessLog:         true,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
	}
}

// Load reads and checks the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse checks the YAML configuration data, read from file (the name its
// errors give). Its error names every problem, one a line, as
// file:line: field: what is wrong.
func Parse(file string, data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s: %s", file, m[1], m[2])
		}
		return nil, fmt.Errorf("%s: %s", file, msg)
	}
	d := &decoder{file: file, dir: dirOf(file)}
	c := defaults()
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty configuration: routes are required", file)
	}
	root := doc.Content[0]
	routesSeen := false
	d.mapping(root, "", func(key string, k, v *yaml.Node) bool {
		switch key {
		case "admin":
			c.Admin = d.str(v, key)
		case "grace":
			c.Grace = d.dur(v, key, false)
		case "access_log":
			c.AccessLog = d.bool(v, key)
		case "read_header_timeout":
			c.ReadHeaderTimeout = d.dur(v, key, false)
		case "idle_timeout":
			c.IdleTimeout = d.dur(v, key, false)
		case "max_header_bytes":
			c.MaxHeaderBytes = d.intMin(v, key, 1)
		case "routes":
			routesSeen = true
			if v.Kind != yaml.SequenceNode {
				d.errf(v, key, "must be a list of routes")
				return true
			}
			for i, rn := range v.Content {
				c.Routes = append(c.Routes, d.route(rn, fmt.Sprintf("routes[%d]", i)))
			}
		default:
			return false
		}
		return true
	})
	if !routesSeen && root.Kind == yaml.MappingNode {
		d.errf(root, "routes", "at least one route is required")
	} else if routesSeen && len(c.Routes) == 0 && len(d.errs) == 0 {
		d.errf(root, "routes", "at least one route is required")
	}
	if c.Admin != "" {
		if err := checkLoopback(c.Admin); err != nil {
			d.errf(d.lineOf(root, "admin"), "admin", "%v", err)
		}
	}
	if len(d.errs) == 0 {
		d.crossCheck(&c)
	}
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return &c, nil
}

// yamlLine picks the line out of the YAML parser's errors.
var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// FromFlags builds the configuration of the one-route case.
func FromFlags(listen, upstream, prefix, admin string) (*Config, error) {
	c := defaults()
	c.Admin = admin
	r := Route{Name: "default", Listen: listen, Prefix: prefix}
	if r.Prefix == "" {
		r.Prefix = "/"
	}
	var errs []error
	if err := checkListen(listen); err != nil {
		errs = append(errs, fmt.Errorf("-listen: %v", err))
	}
	u, err := parseUpstream(upstream)
	if err != nil {
		errs = append(errs, fmt.Errorf("-upstream: %v", err))
	}
	r.Upstream = u
	if err := checkPrefix(r.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("-prefix: %v", err))
	}
	if admin != "" {
		if err := checkLoopback(admin); err != nil {
			errs = append(errs, fmt.Errorf("-admin: %v", err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c.Routes = []Route{r}
	return &c, nil
}

// decoder walks the YAML nodes, collecting errors that name the file, the
// line and the field.
type decoder struct {
	file, dir string
	errs      []error
}

func dirOf(file string) string {
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		return file[:i+1]
	}
	return ""
}

func (d *decoder) errf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, fmt.Errorf("%s:%d: %s: %s", d.file, line, field, fmt.Sprintf(format, args...)))
}

// lineOf returns the key node named key of mapping m, for an error about
// its value found after decoding.
func (d *decoder) lineOf(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return m
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping calls f for each key of the mapping n; f returns false for a key
// it does not know, which is an error, as are duplicate keys.
func (d *decoder) mapping(n *yaml.Node, path string, f func(key string, k, v *yaml.Node) bool) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		name := path
		if name == "" {
			name = "(top level)"
		}
		d.errf(n, name, "must be a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errf(k, path, "keys must be plain names")
			continue
		}
		field := join(path, k.Value)
		if k.Value == "<<" {
			d.errf(k, field, "merge keys are not supported")
			continue
		}
		if seen[k.Value] {
			d.errf(k, field, "given twice")
			continue
		}
		seen[k.Value] = true
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if !f(k.Value, k, v) {
			d.errf(k, field, "unknown field")
		}
	}
}

func (d *decoder) scalar(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errf(n, field, "must be a single value")
		return "", false
	}
	return n.Value, true
}

func (d *decoder) str(n *yaml.Node, field string) string {
	s, _ := d.scalar(n, field)
	return s
}

func (d *decoder) bool(n *yaml.Node, field string) bool {
	s, ok := d.scalar(n, field)
	if !ok {
		return false
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true
	case "false", "no", "off":
		return false
	}
	d.errf(n, field, "must be true or false, not %q", s)
	return false
}

func (d *decoder) intMin(n *yaml.Node, field string, least int) int {
	s, ok := d.scalar(n, field)
	if !ok {
		return 0
	}
	i, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil {
		d.errf(n, field, "must be a whole number, not %q", s)
		return 0
	}
	if i < least {
		d.errf(n, field, "must be at least %d", least)
		return 0
	}
	return i
}

// float reads a number in [lo, hi].
func (d *decoder) float(n *yaml.Node, field string, lo, hi float64, loOpen bool) float64 {
	s, ok := d.scalar(n, field)
	if !ok {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.errf(n, field, "must be a number, not %q", s)
		return 0
	}
	if f < lo || f > hi || (loOpen && f == lo) {
		lb := "["
		if loOpen {
			lb = "("
		}
		if math.IsInf(hi, 1) {
			if loOpen {
				d.errf(n, field, "must be above %g", lo)
			} else {
				d.errf(n, field, "must be at least %g", lo)
			}
		} else {
			d.errf(n, field, "must be in %s%g, %g]", lb, lo, hi)
		}
		return 0
	}
	return f
}

// dur reads a Go duration ("1.5s", "250ms"); zero is refused unless
// zeroOK.
func (d *decoder) dur(n *yaml.Node, field string, zeroOK bool) time.Duration {
	s, ok := d.scalar(n, field)
	if !ok {
		return 0
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		d.errf(n, field, "bad duration %q: write it like 500ms, 2s or 1m30s", s)
		return 0
	}
	if t < 0 || (t == 0 && !zeroOK) {
		d.errf(n, field, "must be positive, not %q", s)
		return 0
	}
	return t
}

func (d *decoder) readFile(n *yaml.Node, field string) (string, []byte) {
	name := d.str(n, field)
	if name == "" {
		d.errf(n, field, "must name a file")
		return "", nil
	}
	p := name
	if !strings.HasPrefix(p, "/") {
		p = d.dir + p // relative to the configuration file
	}
	b, err := os.ReadFile(p)
	if err != nil {
		d.errf(n, field, "%v", err)
		return name, nil
	}
	return name, b
}

func (d *decoder) route(n *yaml.Node, path string) Route {
	r := Route{Prefix: "/", line: n.Line}
	var upstreamNode *yaml.Node
	d.mapping(n, path, func(key string, k, v *yaml.Node) bool {
		f := join(path, key)
		p := &r.Policy
		switch key {
		case "name":
			r.Name = d.str(v, f)
		case "listen":
			r.Listen = d.str(v, f)
			if err := checkListen(r.Listen); err != nil {
				d.errf(v, f, "%v", err)
			}
		case "host":
			r.Host = strings.ToLower(d.str(v, f))
			if r.Host == "" || strings.ContainsAny(r.Host, "/ ") {
				d.errf(v, f, "must be a host name, not %q", r.Host)
			}
		case "prefix":
			r.Prefix = d.str(v, f)
			if err := checkPrefix(r.Prefix); err != nil {
				d.errf(v, f, "%v", err)
			}
		case "strip_prefix":
			r.StripPrefix = d.bool(v, f)
		case "preserve_host":
			r.PreserveHost = d.bool(v, f)
		case "upstream":
			upstreamNode = v
			u, err := parseUpstream(d.str(v, f))
			if err != nil {
				d.errf(v, f, "%v", err)
			}
			r.Upstream = u
		case "tls":
			d.mapping(v, f, func(key string, k, v *yaml.Node) bool {
				g := join(f, key)
				switch key {
				case "cert_file":
					r.TLS.CertFile, r.TLS.cert = d.readFile(v, g)
				case "key_file":
					r.TLS.KeyFile, r.TLS.key = d.readFile(v, g)
				case "ca_file":
					r.TLS.CAFile, r.TLS.ca = d.readFile(v, g)
					if r.TLS.ca != nil && !x509.NewCertPool().AppendCertsFromPEM(r.TLS.ca) {
						d.errf(v, g, "no PEM certificate in %s", r.TLS.CAFile)
					}
				default:
					return false
				}
				return true
			})
			if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
				d.errf(v, f, "cert_file and key_file go together")
			} else if r.TLS.cert != nil && r.TLS.key != nil {
				if _, err := tls.X509KeyPair(r.TLS.cert, r.TLS.key); err != nil {
					d.errf(v, f, "client certificate: %v", err)
				}
			}
		case "attempts":
			p.Attempts = d.intMin(v, f, 1)
		case "retry_status":
			d.mapping(v, f, func(key string, k, v *yaml.Node) bool {
				g := join(f, key)
				code, err := strconv.Atoi(key)
				if err != nil || code < 100 || code > 599 {
					d.errf(k, g, "must be an HTTP status code (100 to 599)")
					return true
				}
				if p.RetryStatus == nil {
					p.RetryStatus = map[int]int{}
				}
				p.RetryStatus[code] = d.intMin(v, g, 0)
				return true
			})
		case "attempt_timeout":
			p.AttemptTimeout = d.dur(v, f, true)
		case "total_timeout":
			p.TotalTimeout = d.dur(v, f, true)
		case "max_wait":
			p.MaxWait = d.dur(v, f, false)
		case "limits":
			d.mapping(v, f, func(key string, k, v *yaml.Node) bool {
				g := join(f, key)
				switch key {
				case "rate":
					p.Rate = d.float(v, g, 0, math.Inf(1), false)
				case "burst":
					p.Burst = d.intMin(v, g, 1)
				case "concurrency":
					p.Concurrency = d.intMin(v, g, 0)
				case "queue":
					p.Queue = d.intMin(v, g, 0)
				case "queue_timeout":
					p.QueueTimeout = d.dur(v, g, true)
				default:
					return false
				}
				return true
			})
		case "pacing":
			p.NoPacing = !d.bool(v, f)
		case "breaker":
			d.mapping(v, f, func(key string, k, v *yaml.Node) bool {
				g := join(f, key)
				switch key {
				case "enabled":
					p.NoBreaker = !d.bool(v, g)
				case "failure_ratio":
					p.FailureRatio = d.float(v, g, 0, 1, true)
				case "min_calls":
					p.MinCalls = d.intMin(v, g, 1)
				case "consecutive_failures":
					p.ConsecutiveFailures = d.intMin(v, g, 1)
				case "open_timeout":
					p.OpenTimeout = d.dur(v, g, false)
				default:
					return false
				}
				return true
			})
		case "retry_budget":
			d.mapping(v, f, func(key string, k, v *yaml.Node) bool {
				g := join(f, key)
				switch key {
				case "enabled":
					p.NoRetryBudget = !d.bool(v, g)
				case "percent":
					x := d.float(v, g, 0, 100, false) / 100
					p.BudgetPercent = &x
				case "min_per_second":
					x := d.float(v, g, 0, math.Inf(1), false)
					p.BudgetMinPerSecond = &x
				default:
					return false
				}
				return true
			})
		case "max_concurrent_retries":
			p.MaxConcurrentRetries = d.intMin(v, f, 0)
		case "hedging":
			d.mapping(v, f, func(key string, k, v *yaml.Node) bool {
				g := join(f, key)
				switch key {
				case "enabled":
					p.Hedging = d.bool(v, g)
				case "delay":
					p.HedgeDelay = d.dur(v, g, true)
				case "percentile":
					p.HedgePercentile = d.float(v, g, 0, 1, true)
				case "max_hedges":
					p.MaxHedges = d.intMin(v, g, 1)
				default:
					return false
				}
				return true
			})
		case "stale_if_error":
			d.mapping(v, f, func(key string, k, v *yaml.Node) bool {
				g := join(f, key)
				switch key {
				case "enabled":
					p.StaleIfError = d.bool(v, g)
				case "max_bytes":
					p.StaleMaxBytes = int64(d.intMin(v, g, 1))
				case "max_stale":
					p.StaleMaxStale = d.dur(v, g, false)
				default:
					return false
				}
				return true
			})
		case "auto_idempotency_key":
			p.AutoIdempotencyKey = d.bool(v, f)
		default:
			return false
		}
		return true
	})
	if n.Kind != yaml.MappingNode {
		return r
	}
	if r.Listen == "" {
		d.errf(n, join(path, "listen"), "required")
	}
	if upstreamNode == nil {
		d.errf(n, join(path, "upstream"), "required")
	}
	if r.Upstream != nil && r.Upstream.Scheme != "https" && (r.TLS.CertFile != "" || r.TLS.CAFile != "") {
		d.errf(d.lineOf(n, "tls"), join(path, "tls"), "needs an https upstream")
	}
	p := r.Policy
	if p.NoRetryBudget && p.MaxConcurrentRetries > 0 {
		d.errf(d.lineOf(n, "max_concurrent_retries"), join(path, "max_concurrent_retries"), "the cap is part of the retry budget, which retry_budget.enabled: false turns off")
	}
	if p.NoBreaker && (p.FailureRatio > 0 || p.MinCalls > 0 || p.ConsecutiveFailures > 0 || p.OpenTimeout > 0) {
		d.errf(d.lineOf(n, "breaker"), join(path, "breaker"), "settings given for a breaker that enabled: false turns off")
	}
	if p.NoRetryBudget && (p.BudgetPercent != nil || p.BudgetMinPerSecond != nil) {
		d.errf(d.lineOf(n, "retry_budget"), join(path, "retry_budget"), "settings given for a budget that enabled: false turns off")
	}
	if !p.Hedging && (p.HedgeDelay > 0 || p.HedgePercentile > 0 || p.MaxHedges > 0) {
		d.errf(d.lineOf(n, "hedging"), join(path, "hedging"), "settings given without enabled: true")
	}
	if !p.StaleIfError && (p.StaleMaxBytes > 0 || p.StaleMaxStale > 0) {
		d.errf(d.lineOf(n, "stale_if_error"), join(path, "stale_if_error"), "settings given without enabled: true")
	}
	if r.Name == "" {
		r.Name = path
	}
	return r
}

// crossCheck checks what involves several routes, and builds each route's
// policy once to let heed refuse settings that contradict each other.
func (d *decoder) crossCheck(c *Config) {
	names := map[string]int{}
	matches := map[string]int{}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if j, dup := names[r.Name]; dup {
			d.errs = append(d.errs, fmt.Errorf("%s:%d: %s.name: %q is also the name of routes[%d]", d.file, r.line, path, r.Name, j))
		}
		names[r.Name] = i
		m := r.Listen + " " + r.Host + " " + r.Prefix
		if j, dup := matches[m]; dup {
			d.errs = append(d.errs, fmt.Errorf("%s:%d: %s: matches the same listen, host and prefix as routes[%d]", d.file, r.line, path, j))
		}
		matches[m] = i
		if c.Admin != "" && r.Listen == c.Admin && !strings.HasSuffix(c.Admin, ":0") {
			d.errs = append(d.errs, fmt.Errorf("%s:%d: %s.listen: is the admin address", d.file, r.line, path))
		}
		if _, err := heed.NewPolicy(r.Policy.options()...); err != nil {
			d.errs = append(d.errs, fmt.Errorf("%s:%d: %s: %v", d.file, r.line, path, err))
		}
	}
}

func parseUpstream(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("required: the URL requests are sent to, like https://api.example.com")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("bad URL %q: the scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bad URL %q: no host", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("bad URL %q: no userinfo, query or fragment", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("bad URL %q: the port must be 1 to 65535", s)
		}
	}
	return u, nil
}

func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad address %q: want host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port in %q", addr)
	}
	return nil
}

func checkPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("must start with /, not %q", p)
	}
	if strings.ContainsAny(p, "?#") {
		return fmt.Errorf("must be a path, not %q", p)
	}
	return nil
}

// checkLoopback refuses an admin address that is not a loopback one: the
// admin endpoints show the routes and their state and need no
// authentication.
func checkLoopback(addr string) error {
	if err := checkListen(addr); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (127.0.0.1, [::1] or localhost): the admin endpoints have no authentication", addr)
	}
	return nil
}

// sortRoutes orders routes as they are matched: those naming a host first,
// then the longest prefix.
func sortRoutes(rs []*route) {
	slices.SortStableFunc(rs, func(a, b *route) int {
		if (a.cfg.Host == "") != (b.cfg.Host == "") {
			if a.cfg.Host != "" {
				return -1
			}
			return 1
		}
		return len(b.cfg.Prefix) - len(a.cfg.Prefix)
	})
}
