package main

import (
	"context"
	"fmt"
	"io"

	"github.com/heed-go/heed/cmd/heed/internal/sim/stormsim"
	"github.com/heed-go/heed/internal/storm"
)

func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("demo", `Starts a token-bucket API on loopback that answers 429 with Retry-After and
X-RateLimit-* headers, runs the clients against it with each strategy (no
retries, a naive retry loop, heed's defaults with one shared client and with a
client per caller), and prints a table with a legend and a conclusion.`)
	fs := c.fs
	sc := storm.Default
	fs.IntVar(&sc.Clients, "clients", sc.Clients, "number of clients")
	fs.IntVar(&sc.PerClient, "requests", sc.PerClient, "successful GETs each client needs")
	fs.Float64Var(&sc.Server.Rate, "rate", sc.Server.Rate, "requests per second the API allows")
	fs.IntVar(&sc.Server.Burst, "burst", sc.Server.Burst, "the API's burst")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	metricsAddr := fs.String("metrics", "", "serve the heed clients' Prometheus metrics at http://`ADDR`/metrics while\nthe demo runs and afterwards, until interrupted (e.g. 127.0.0.1:9464)")
	if help, err := c.parse(args, stdout); help || err != nil {
		return err
	}
	switch {
	case sc.Clients < 1 || sc.Clients > 10000:
		return c.bad(fmt.Errorf("-clients %d: want 1 to 10000", sc.Clients))
	case sc.PerClient < 1 || sc.PerClient > 1000:
		return c.bad(fmt.Errorf("-requests %d: want 1 to 1000", sc.PerClient))
	case !(sc.Server.Rate > 0) || sc.Server.Rate > 1e6:
		return c.bad(fmt.Errorf("-rate %v: want a positive rate up to 1e6", sc.Server.Rate))
	case sc.Server.Burst < 1:
		return c.bad(fmt.Errorf("-burst %d: want at least 1", sc.Server.Burst))
	}

	strategies := []storm.Strategy{
		storm.NoRetry(),
		storm.Naive(),
		storm.Heed("heed defaults, shared client", true),
		storm.Heed("heed defaults, client per caller", false),
	}
	var metrics *metricsServer
	if *metricsAddr != "" {
		var err error
		if metrics, err = serveMetrics(*metricsAddr); err != nil {
			return err
		}
		defer metrics.close()
		fmt.Fprintf(stderr, "metrics: http://%s/metrics\n", metrics.addr)
		strategies[2] = metrics.heed("heed defaults, shared client", "shared", true)
		strategies[3] = metrics.heed("heed defaults, client per caller", "per_caller", false)
	}
	total := sc.Clients * sc.PerClient
	var results []storm.Result
	for _, st := range strategies {
		m := newMeter(stderr, st.Name, *quiet)
		r, err := storm.Run(ctx, sc, st, func(done int) { m.update(done, total) })
		m.finish()
		if err != nil {
			return fmt.Errorf("%s: %w", st.Name, err)
		}
		results = append(results, r)
	}
	if err := stormsim.WriteTable(stdout, sc, results); err != nil {
		return err
	}
	if metrics != nil {
		fmt.Fprintf(stderr, "serving metrics at http://%s/metrics until interrupted\n", metrics.addr)
		<-ctx.Done()
	}
	return nil
}
