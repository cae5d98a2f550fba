package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/heed-go/heed/cmd/heed/internal/faults"
)

const faultsAbout = `Serves HTTP endpoints that fail the way real servers do, for the tests of
clients in any language: statuses with Retry-After and rate-limit fields,
failing the first N requests of a key, a token-bucket 429 endpoint, TCP resets
before and after the header, truncated and trickled bodies, slow answers,
a redirect loop, large bodies and an echo. GET / lists them.

With -admin, a second listener, on loopback only, serves the counters:
GET /stats (JSON, per path), DELETE /stats to reset them.

"heed faults proxy -h" describes the fault proxy.`

const proxyAbout = `Passes requests to -upstream, adding latency, TCP resets, statuses and a
bandwidth cap at the given rates, every choice drawn from -seed. With -admin,
on loopback only: GET /faults reads the rates, PUT /faults changes them
(JSON, any subset: {"latency":"20ms","reset_rate":0.05,
"status_rates":{"429":0.1,"503":0.05},"retry_after":1,"bandwidth":"1MB/s"}),
GET /stats reads the counters and DELETE /stats resets them.`

// shutdownGrace is how long a stopping server waits for requests in
// flight before closing their connections.
const shutdownGrace = 5 * time.Second

func faultsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "proxy" {
		return faultsProxy(ctx, args[1:], stdout, stderr)
	}
	c := newCommand("faults", faultsAbout)
	fs := c.fs
	listen := fs.String("listen", "127.0.0.1:8081", "`address` of the fault endpoints")
	admin := fs.String("admin", "", "loopback `address` of the admin API (GET /stats); none if empty")
	seed := fs.Uint64("seed", 1, "seed of every random choice")
	if help, err := c.parse(args, stdout); help || err != nil {
		return err
	}
	srv := faults.NewServer(*seed)
	defer srv.Close()
	return serveFaults(ctx, c, *listen, *admin, srv, faults.Admin(srv, nil), srv.Close, stderr, "fault server")
}

func faultsProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("faults proxy", proxyAbout)
	fs := c.fs
	listen := fs.String("listen", "127.0.0.1:8083", "`address` the proxy listens on")
	upstream := fs.String("upstream", "", "`URL` of the upstream, such as http://127.0.0.1:9000 (required)")
	admin := fs.String("admin", "", "loopback `address` of the admin API (GET/PUT /faults, GET /stats); none if empty")
	seed := fs.Uint64("seed", 1, "seed of every random choice")
	var r faults.Rates
	fs.DurationVar(&r.Latency, "latency", 0, "`delay` added before each request goes upstream")
	fs.Float64Var(&r.ResetRate, "reset-rate", 0, "share of requests answered with a TCP reset, 0 to 1")
	statusRates := fs.String("status-rate", "", "`STATUS:RATE,...` statuses answered instead of the upstream's, such as 429:0.1,503:0.05")
	fs.IntVar(&r.RetryAfter, "retry-after", 1, "Retry-After `seconds` sent with an injected 429 or 503; 0 sends none")
	bandwidth := fs.String("bandwidth", "", "cap on each response body's `rate`, such as 1MB/s or 64KiB/s; none if empty")
	if help, err := c.parse(args, stdout); help || err != nil {
		return err
	}
	if *upstream == "" {
		return c.bad(errors.New("-upstream is required"))
	}
	u, err := url.Parse(*upstream)
	if err != nil {
		return c.bad(fmt.Errorf("-upstream: %v", err))
	}
	if r.StatusRates, err = faults.ParseStatusRates(*statusRates); err != nil {
		return c.bad(fmt.Errorf("-status-rate: %v", err))
	}
	if r.Bandwidth, err = faults.ParseBandwidth(*bandwidth); err != nil {
		return c.bad(fmt.Errorf("-bandwidth: %v", err))
	}
	p, err := faults.NewProxy(u, r, *seed)
	if err != nil {
		return c.bad(err)
	}
	defer p.Close()
	return serveFaults(ctx, c, *listen, *admin, p, faults.Admin(nil, p), p.Close, stderr, "fault proxy to "+u.String())
}

// serveFaults serves h on listen and the admin API on admin until ctx is
// done or SIGTERM arrives, then shuts both down: stop ends the handler's
// waits, and the requests in flight get shutdownGrace to finish.
func serveFaults(ctx context.Context, c *command, listen, admin string, h, adminH http.Handler, stop func(), stderr io.Writer, what string) error {
	ctx, cancel := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer cancel()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return c.bad(fmt.Errorf("-listen: %v", err))
	}
	servers := []*http.Server{{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}}
	lns := []net.Listener{ln}
	fmt.Fprintf(stderr, "heed faults: %s on http://%s\n", what, ln.Addr())
	if admin != "" {
		aln, err := faults.ListenLoopback(ctx, admin)
		if err != nil {
			ln.Close()
			return c.bad(fmt.Errorf("-admin: %v", err))
		}
		servers = append(servers, &http.Server{Handler: adminH, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10})
		lns = append(lns, aln)
		fmt.Fprintf(stderr, "heed faults: admin API on http://%s\n", aln.Addr())
	}
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			if err := s.Serve(lns[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	stop()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			s.Close()
		}
	}
	wg.Wait()
	fmt.Fprintln(stderr, "heed faults: stopped")
	return serveErr
}
