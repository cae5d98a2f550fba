// Command proxylab measures reverse proxies side by side on loopback: the
// backend alone, nginx, HAProxy, Caddy, Go's httputil.ReverseProxy and
// `heed proxy`, each in front of the same small Go backend, each loaded in
// turn by wrk, with its memory read from /proc. It prints a Markdown table
// and the command that reproduces it; docs/benchmarks.md ("Reverse
// proxies") holds a run of it.
//
// From the repository root:
//
//	go build -o /tmp/heed ./cmd/heed
//	go run ./bench/proxylab -rounds 3 -heed-bin /tmp/heed
//
// Without -heed-bin (or HEED_BIN) the heed proxy row is left out. Progress
// goes to stderr, the table to stdout. It needs wrk, and nginx, haproxy
// and caddy unless -only leaves them out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	rounds    int
	duration  time.Duration
	warmup    time.Duration
	threads   int
	conns     int
	idleConns int
	body      int
	heedBin   string
	only      string
	timeout   time.Duration
}

func main() {
	var o options
	fs := flag.NewFlagSet("proxylab", flag.ExitOnError)
	fs.IntVar(&o.rounds, "rounds", 1, "rounds; each loads every contender once, in an order rotated by one per round; the table shows medians")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "wrk's measured run (-d) per contender and round")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "wrk run before each measured one, not recorded (0: none)")
	fs.IntVar(&o.threads, "threads", 1, "wrk threads (-t)")
	fs.IntVar(&o.conns, "conns", 32, "wrk connections (-c)")
	fs.IntVar(&o.idleConns, "idle-conns", 10000, "idle keep-alive client connections held open while reading RSS (0: skip that phase)")
	fs.IntVar(&o.body, "body", 64, "bytes in the backend's response body")
	fs.StringVar(&o.heedBin, "heed-bin", os.Getenv("HEED_BIN"), "heed binary (go build -o PATH ./cmd/heed) to run as `heed proxy`; default $HEED_BIN; empty: leave its row out")
	fs.StringVar(&o.only, "only", "", "comma-separated contenders to run ("+strings.Join(contenderKeys(), ",")+"); default all")
	fs.DurationVar(&o.timeout, "timeout", 0, "bound on the whole run (0: from the other flags)")
	serve := fs.String("serve", "", "internal: run the harness's `backend` or `stock` proxy server")
	listen := fs.String("listen", "", "internal: with -serve, the address to listen on")
	upstream := fs.String("upstream", "", "internal: with -serve stock, the backend's URL")
	_ = fs.Parse(os.Args[1:])

	switch *serve {
	case "":
	case "backend":
		fatal(serveBackend(*listen, o.body))
	case "stock":
		fatal(serveStock(*listen, *upstream))
	default:
		fatal(fmt.Errorf("-serve %q: want backend or stock", *serve))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rows, notes, err := run(ctx, o)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			err = errors.New("interrupted; every process it started is stopped")
		}
		stop()
		fatal(err)
	}
	fmt.Print(FormatTable(rows, "nginx"))
	fmt.Println()
	for _, n := range notes {
		fmt.Println("- " + n)
	}
	if len(notes) > 0 {
		fmt.Println()
	}
	fmt.Printf("Machine: %d CPUs, %s/%s, %s; %s.\n\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), toolVersions(rows))
	fmt.Println("Reproduce (from the repository root):")
	fmt.Println()
	fmt.Println("    " + reproduce(fs))
}

func fatal(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxylab:", err)
		os.Exit(1)
	}
}

// reproduce is the command line of this run, with the flags it was given.
func reproduce(fs *flag.FlagSet) string {
	var args []string
	var heed string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "heed-bin" {
			return
		}
		args = append(args, "-"+f.Name+" "+f.Value.String())
	})
	if bin := fs.Lookup("heed-bin").Value.String(); bin != "" {
		heed = "go build -o " + bin + " ./cmd/heed && "
		args = append(args, "-heed-bin "+bin)
	}
	return heed + strings.Join(append([]string{"go run ./bench/proxylab"}, args...), " ")
}

// progress goes to stderr.
func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "proxylab: "+format+"\n", a...)
}

// lookTool finds a tool on PATH or in the sbin directories, which a user's
// PATH often lacks (nginx and haproxy live there on Debian).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	hint := ", or leave its contender out with -only"
	if name == "wrk" {
		hint = ""
	}
	return "", fmt.Errorf("%s not found on PATH nor in /usr/sbin (install it, e.g. apt-get install %s%s)", name, name, hint)
}

func run(ctx context.Context, o options) (rows []*Row, notes []string, err error) {
	if o.rounds < 1 || o.duration <= 0 || o.threads < 1 || o.conns < o.threads || o.idleConns < 0 || o.body < 0 {
		return nil, nil, errors.New("bad flags: want -rounds >= 1, -duration > 0, -threads >= 1, -conns >= -threads, -idle-conns >= 0, -body >= 0")
	}
	selected, err := selectContenders(o.only, o.heedBin)
	if err != nil {
		return nil, nil, err
	}
	wrk, err := lookTool("wrk")
	if err != nil {
		return nil, nil, err
	}
	tools := map[string]string{}
	for _, c := range selected {
		if c.Tool == "" {
			continue
		}
		if c.Key == "heed" {
			if st, err := os.Stat(o.heedBin); err != nil || st.IsDir() {
				return nil, nil, fmt.Errorf("-heed-bin %q: not a file (build it with go build -o PATH ./cmd/heed)", o.heedBin)
			}
			tools[c.Key] = o.heedBin
			continue
		}
		p, err := lookTool(c.Tool)
		if err != nil {
			return nil, nil, err
		}
		tools[c.Key] = p
	}
	if o.heedBin == "" && (o.only == "" || slices.Contains(strings.Split(o.only, ","), "heed")) {
		notes = append(notes, "heed proxy: no -heed-bin (nor HEED_BIN) given; its row is left out.")
	}

	timeout := o.timeout
	if timeout == 0 {
		perRun := o.warmup + o.duration + 20*time.Second
		timeout = time.Duration(o.rounds*len(selected))*perRun + time.Duration(len(selected))*90*time.Second + time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// Every client connection of the idle phase is a descriptor here and one
	// in the contender, which inherits this limit.
	want := uint64(o.idleConns + 4096)
	nofile, lerr := raiseNoFile(want)
	idleConns := o.idleConns
	if lerr != nil || nofile < want {
		allowed := max(0, int(nofile)-4096)
		notes = append(notes, fmt.Sprintf("open-file limit: wanted %d, the system allowed %d (%v); the idle phase opens at most %d connections.", want, nofile, lerr, allowed))
		idleConns = allowed
	}

	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "proxylab-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(tmp)
	// nginx's worker runs as nobody when the harness is root; let it in.
	_ = os.Chmod(tmp, 0o755)

	env := &labEnv{tmp: tmp, self: self, tools: tools, body: o.body, maxConn: idleConns + 1024, noFile: int(nofile)}
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	}()

	backendPort, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	backend, err := startProc(ctx, "backend", tmp, nil, self, "-serve", "backend", "-listen", fmt.Sprintf("127.0.0.1:%d", backendPort), "-body", fmt.Sprint(o.body))
	if err != nil {
		return nil, nil, err
	}
	procs = append(procs, backend)
	if err := backend.waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/", backendPort), 10*time.Second); err != nil {
		return nil, nil, err
	}
	env.upstream = backendPort

	// Start every contender, and read its memory once it answers.
	type live struct {
		c    Contender
		p    *proc
		port int
		row  *Row
	}
	var lives []*live
	for _, c := range selected {
		row := &Row{Key: c.Key, Name: c.Name, RSSIdle: -1, RSSLoad: -1, RSSConns: -1}
		rows = append(rows, row)
		l := &live{c: c, row: row}
		if c.Key == "direct" {
			l.p, l.port = backend, backendPort
		} else {
			port, err := freePort()
			if err == nil {
				l.p, err = c.start(ctx, env, port)
			}
			if err == nil {
				procs = append(procs, l.p)
				err = l.p.waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/", port), 15*time.Second)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, nil, ctx.Err()
				}
				row.Note = "did not start"
				notes = append(notes, fmt.Sprintf("%s did not start: %v", c.Name, err))
				progress("%s did not start: %v", c.Name, err)
				continue
			}
			l.port = port
		}
		time.Sleep(500 * time.Millisecond)
		row.RSSIdle = rssOrNone(l.p)
		progress("%s ready on 127.0.0.1:%d (pid %d), RSS %s", c.Name, l.port, l.p.cmd.Process.Pid, FormatKiB(row.RSSIdle))
		lives = append(lives, l)
	}

	// Rounds of wrk, the order rotated by one each round.
	for r := range o.rounds {
		for i := range lives {
			l := lives[(i+r)%len(lives)]
			if l.p.exited() {
				return nil, nil, fmt.Errorf("%s exited: %v: %s", l.c.Name, l.p.err, l.p.out.String())
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/", l.port)
			if o.warmup > 0 {
				if _, err := runWrk(ctx, wrk, o.threads, o.conns, o.warmup, url); err != nil {
					return nil, nil, fmt.Errorf("%s warm-up: %w", l.c.Name, err)
				}
			}
			res, err := runWrk(ctx, wrk, o.threads, o.conns, o.duration, url)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", l.c.Name, err)
			}
			l.row.Runs = append(l.row.Runs, res)
			l.row.RSSLoad = rssOrNone(l.p)
			progress("round %d/%d %-16s %10.0f req/s  p50 %-9v p99 %-9v errors %d  RSS %s",
				r+1, o.rounds, l.c.Name, res.ReqPerSec, res.P50, res.P99, res.Errors, FormatKiB(l.row.RSSLoad))
		}
	}

	// Idle keep-alive connections, one contender at a time.
	if idleConns > 0 {
		for _, l := range lives {
			addr := fmt.Sprintf("127.0.0.1:%d", l.port)
			conns, err := openIdle(ctx, addr, idleConns, 64)
			if ctx.Err() != nil {
				closeIdle(conns)
				return nil, nil, ctx.Err()
			}
			time.Sleep(time.Second)
			l.row.RSSConns = rssOrNone(l.p)
			l.row.IdleOpened = len(conns)
			if err != nil {
				notes = append(notes, fmt.Sprintf("%s: the idle phase opened %d of %d connections: %v", l.c.Name, len(conns), idleConns, err))
			}
			progress("%s with %d idle connections: RSS %s", l.c.Name, len(conns), FormatKiB(l.row.RSSConns))
			closeIdle(conns)
			time.Sleep(time.Second)
		}
		if idleConns != 10000 {
			notes = append(notes, fmt.Sprintf("the idle phase held %d connections.", idleConns))
		}
	}
	return rows, notes, nil
}

func rssOrNone(p *proc) int64 {
	kib, err := p.rssKiB()
	if err != nil {
		return -1
	}
	return kib
}

// runWrk runs `wrk -tT -cC -dD --latency url` and parses its output.
func runWrk(ctx context.Context, wrk string, threads, conns int, d time.Duration, url string) (WrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, wrk, fmt.Sprintf("-t%d", threads), fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs), "--latency", url)
	childAttr(cmd)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("%v: %w: %s", cmd.Args, err, out)
	}
	return ParseWrk(string(out))
}

// toolVersions names the version of wrk and of each contender's tool, as
// each prints it.
func toolVersions(rows []*Row) string {
	versions := []string{toolVersion("wrk", "-v")}
	for _, r := range rows {
		switch r.Key {
		case "nginx":
			versions = append(versions, toolVersion("nginx", "-v"))
		case "haproxy":
			versions = append(versions, toolVersion("haproxy", "-v"))
		case "caddy":
			versions = append(versions, "caddy "+toolVersion("caddy", "version"))
		}
	}
	return strings.Join(versions, ", ")
}

func toolVersion(tool string, args ...string) string {
	p, err := lookTool(tool)
	if err != nil {
		return tool + " (not found)"
	}
	out, _ := exec.Command(p, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	line = strings.TrimPrefix(line, "nginx version: ")
	if i := strings.Index(line, " Copyright"); i > 0 {
		line = line[:i] // wrk's
	}
	if i := strings.Index(line, " - https://"); i > 0 {
		line = line[:i] // haproxy's
	}
	return strings.TrimSpace(line)
}
