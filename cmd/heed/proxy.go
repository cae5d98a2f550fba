package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"

	"github.com/heed-go/heed/cmd/heed/internal/proxy"
)

func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("proxy", `Runs a reverse proxy that sends every request to its configured upstream
through heed: retries, pacing, circuit breakers and retry budgets for clients
in any language. Either one route from flags:

  heed proxy -listen 127.0.0.1:8080 -upstream https://api.example.com [-prefix /v1] [-admin 127.0.0.1:9090]

or the routes of a YAML file (reloaded on SIGHUP):

  heed proxy -config proxy.yaml

SIGTERM or SIGINT drains: the listeners close, /readyz answers 503, and the
requests in flight get the grace period to finish. See docs/proxy.md.`)
	fs := c.fs
	config := fs.String("config", "", "read the routes from the YAML `FILE` (reloaded on SIGHUP)")
	listen := fs.String("listen", "", "the one route's listen `ADDR` (with -upstream)")
	upstream := fs.String("upstream", "", "the one route's upstream `URL`, http or https (with -listen)")
	prefix := fs.String("prefix", "/", "the one route's path `PREFIX`")
	admin := fs.String("admin", "", "serve /metrics, /healthz, /readyz and /routes on this loopback `ADDR`")
	grace := fs.Duration("grace", proxy.DefaultGrace, "how long requests in flight may take to finish on shutdown")
	accessLog := fs.Bool("access-log", true, "log every request as a JSON line on stderr")
	if help, err := c.parse(args, stdout); help || err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var cfg *proxy.Config
	var err error
	switch {
	case *config != "":
		for _, n := range []string{"listen", "upstream", "prefix", "admin"} {
			if set[n] {
				return c.bad(errors.New("-" + n + " goes with the one-route case, not -config: put it in the file"))
			}
		}
		cfg, err = proxy.Load(*config)
		if err != nil {
			return err
		}
	case *listen == "" || *upstream == "":
		return c.bad(errors.New("give -listen and -upstream, or -config"))
	default:
		cfg, err = proxy.FromFlags(*listen, *upstream, *prefix, *admin)
		if err != nil {
			return c.bad(err)
		}
	}
	if set["grace"] && *grace <= 0 {
		return c.bad(errors.New("-grace must be positive"))
	}
	override := func(cfg *proxy.Config) { // also after each reload
		if set["grace"] {
			cfg.Grace = *grace
		}
		if set["access-log"] {
			cfg.AccessLog = *accessLog
		}
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	return proxy.Run(ctx, cfg, *config, override, logger)
}
