package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// labEnv is what starting a contender needs.
type labEnv struct {
	tmp      string            // the run's temp dir; each contender has a subdirectory
	self     string            // the harness's own binary, for its Go servers
	tools    map[string]string // contender key -> binary
	upstream int               // the backend's port
	body     int
	maxConn  int // client connections a contender must take at once
	noFile   int // the open-file limit in force
}

// Contender is a reverse proxy (or the backend alone) in the table.
type Contender struct {
	Key   string // for -only
	Name  string // in the table
	Tool  string // binary it needs on PATH ("" for the harness's own)
	start func(ctx context.Context, env *labEnv, port int) (*proc, error)
}

// Contenders in table order. The backend alone ("direct") is the ceiling
// every proxy is measured under.
var Contenders = []Contender{
	{Key: "direct", Name: "backend direct"},
	{Key: "nginx", Name: "nginx", Tool: "nginx", start: startNginx},
	{Key: "haproxy", Name: "haproxy", Tool: "haproxy", start: startHAProxy},
	{Key: "caddy", Name: "caddy", Tool: "caddy", start: startCaddy},
	{Key: "stock", Name: "go ReverseProxy", start: startStock},
	{Key: "heed", Name: "heed proxy", Tool: "heed", start: startHeed},
}

func contenderKeys() []string {
	var keys []string
	for _, c := range Contenders {
		keys = append(keys, c.Key)
	}
	return keys
}

// selectContenders picks the contenders of -only (all if empty); heed
// proxy only with a binary to run.
func selectContenders(only, heedBin string) ([]Contender, error) {
	var want []string
	if only != "" {
		for k := range strings.SplitSeq(only, ",") {
			k = strings.TrimSpace(k)
			if !slices.Contains(contenderKeys(), k) {
				return nil, fmt.Errorf("-only: unknown contender %q (have %s)", k, strings.Join(contenderKeys(), ","))
			}
			want = append(want, k)
		}
	}
	var out []Contender
	for _, c := range Contenders {
		if want != nil && !slices.Contains(want, c.Key) {
			continue
		}
		if c.Key == "heed" && heedBin == "" {
			continue
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no contender to run")
	}
	return out, nil
}

func (e *labEnv) dir(key string) (string, error) {
	d := filepath.Join(e.tmp, key)
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", err
	}
	return d, nil
}

func (e *labEnv) params(dir string, port int) ConfigParams {
	return ConfigParams{Dir: dir, Port: port, Upstream: e.upstream, MaxConn: e.maxConn, NoFile: e.noFile}
}

func (e *labEnv) upstreamURL() string { return fmt.Sprintf("http://127.0.0.1:%d", e.upstream) }

func startNginx(ctx context.Context, e *labEnv, port int) (*proc, error) {
	dir, err := e.dir("nginx")
	if err != nil {
		return nil, err
	}
	conf, err := writeConfig("nginx.conf.tmpl", "nginx.conf", e.params(dir, port))
	if err != nil {
		return nil, err
	}
	return startProc(ctx, "nginx", dir, nil, e.tools["nginx"], "-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "error.log"))
}

func startHAProxy(ctx context.Context, e *labEnv, port int) (*proc, error) {
	dir, err := e.dir("haproxy")
	if err != nil {
		return nil, err
	}
	conf, err := writeConfig("haproxy.cfg.tmpl", "haproxy.cfg", e.params(dir, port))
	if err != nil {
		return nil, err
	}
	// -db: in the foreground, one process.
	return startProc(ctx, "haproxy", dir, nil, e.tools["haproxy"], "-db", "-f", conf)
}

func startCaddy(ctx context.Context, e *labEnv, port int) (*proc, error) {
	dir, err := e.dir("caddy")
	if err != nil {
		return nil, err
	}
	conf, err := writeConfig("Caddyfile.tmpl", "Caddyfile", e.params(dir, port))
	if err != nil {
		return nil, err
	}
	// Caddy's storage and autosave stay in the temp dir.
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	return startProc(ctx, "caddy", dir, env, e.tools["caddy"], "run", "--config", conf, "--adapter", "caddyfile")
}

func startStock(ctx context.Context, e *labEnv, port int) (*proc, error) {
	dir, err := e.dir("stock")
	if err != nil {
		return nil, err
	}
	return startProc(ctx, "go ReverseProxy", dir, nil, e.self, "-serve", "stock", "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-upstream", e.upstreamURL())
}

// HeedArgs is how the harness starts heed's proxy.
func HeedArgs(bin string, port int, upstream string) []string {
	return []string{bin, "proxy", "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-upstream", upstream}
}

func startHeed(ctx context.Context, e *labEnv, port int) (*proc, error) {
	dir, err := e.dir("heed")
	if err != nil {
		return nil, err
	}
	return startProc(ctx, "heed proxy", dir, nil, HeedArgs(e.tools["heed"], port, e.upstreamURL())...)
}
