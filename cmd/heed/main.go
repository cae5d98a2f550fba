// Command heed shows what heed does.
//
//	heed demo          run the public 429 storm with no retries, a naive retry
//	                   loop and heed's defaults, and print the results side by side
//	heed sim brooker   Brooker's backoff-and-jitter contention model
//	heed sim storm     the 429 storm in virtual time, at any scale
//	heed sim chain     retry amplification through K tiers
//	heed proxy         a reverse proxy sending every request through heed
//	heed faults        serve endpoints that fail like real servers, for any
//	                   client's tests; "heed faults proxy" injects faults in
//	                   front of a real upstream
//	heed get URL       curl that heeds: one request through heed's defaults,
//	                   with curl's exit codes, for shell scripts
//	heed outbox        look into and repair a durable outbox file (boltstore):
//	                   list, show, replay, drop and stats of its entries
//
// Help (-h, -help or --help, anywhere) goes to stdout with exit status 0; a
// bad command or flag prints one error line and a pointer to -h on stderr
// and exits 2; a run that fails after its flags were accepted exits 1
// (heed get exits with curl's codes instead).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
)

const usage = `heed makes HTTP API clients heed the servers they call.

Usage:
  heed demo [flags]           run the 429 storm scenario and compare strategies
  heed sim brooker [flags]    Brooker's contention model: work and time against N
  heed sim storm [flags]      the 429 storm in virtual time, heed beside plain strategies
  heed sim chain [flags]      retry amplification through K tiers
  heed proxy [flags]          a sidecar: a reverse proxy that sends every request through heed
  heed faults [flags]         serve endpoints that fail like real servers, for any client's tests
  heed faults proxy [flags]   inject resets, statuses, latency and slow bodies before an upstream
  heed get [flags] URL        fetch a URL through heed, curl-like, for shell scripts
  heed outbox COMMAND -db F   list, show, replay, drop the entries of an outbox file; stats

Run "heed COMMAND -h" (such as "heed demo -h", "heed sim storm -h") for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs the command and reports its error, returning the exit
// status: 0, 2 for a usage error, 1 for a run that failed.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	if err == nil {
		return 0
	}
	if ue, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintf(stderr, "%s: %v\nRun \"%s -h\" for usage.\n", ue.prog(), ue.err, ue.prog())
		return 2
	}
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code // the command said why, unless told to be silent
	}
	if errors.Is(err, errNoCommand) {
		return 2 // the usage was the message
	}
	fmt.Fprintln(stderr, "heed:", err)
	return 1
}

// errNoCommand is returned after printing the usage for a bare "heed".
var errNoCommand = errors.New("no command given")

// usageError is a bad command line: cmd ("demo", "sim storm") names where
// to look for help.
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.prog() + ": " + e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// prog is the command line that -h would help with: "heed demo".
func (e *usageError) prog() string {
	if e.cmd == "" {
		return "heed"
	}
	return "heed " + e.cmd
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errNoCommand
	}
	switch args[0] {
	case "demo":
		return demo(ctx, args[1:], stdout, stderr)
	case "sim":
		return sim(ctx, args[1:], stdout, stderr)
	case "proxy":
		return runProxy(ctx, args[1:], stdout, stderr)
	case "faults":
		return faultsCmd(ctx, args[1:], stdout, stderr)
	case "get":
		return get(ctx, args[1:], stdout, stderr)
	case "outbox":
		return outboxCmd(ctx, args[1:], stdout, stderr)
	case "help":
		if len(args) > 1 { // "heed help sim storm" is "heed sim storm -h"
			return run(ctx, append(slices.Clone(args[1:]), "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	return &usageError{cmd: "", err: fmt.Errorf("unknown command %q", args[0])}
}

// isHelp reports whether arg asks for help the way the flag package
// understands it.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

// wantsHelp reports whether any argument before a "--" asks for help. It
// is checked before parsing, so "-h" works after a positional argument or
// a bad flag too.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelp(a) {
			return true
		}
	}
	return false
}

// command is a subcommand's flag set and help text.
type command struct {
	name  string // "demo", "sim storm"
	about string
	fs    *flag.FlagSet
}

func newCommand(name, about string) *command {
	fs := flag.NewFlagSet("heed "+name, flag.ContinueOnError)
	// The flag package would print the error and the whole usage on every
	// bad flag; runMain prints the error once instead.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &command{name: name, about: about, fs: fs}
}

// usage writes the command's help and flags to w.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: heed %s [flags]\n\n%s\n\nFlags:\n", c.name, c.about)
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

// parse parses args. It returns help true, having printed the usage to
// stdout, when the arguments ask for it; a bad flag or a stray argument
// is a usageError.
func (c *command) parse(args []string, stdout io.Writer) (help bool, err error) {
	if wantsHelp(args) {
		c.usage(stdout)
		return true, nil
	}
	if err := c.fs.Parse(args); err != nil {
		return false, c.bad(err)
	}
	if c.fs.NArg() > 0 {
		return false, c.bad(fmt.Errorf("unexpected arguments %q", c.fs.Args()))
	}
	return false, nil
}

// bad makes err a usage error of c.
func (c *command) bad(err error) error { return &usageError{cmd: c.name, err: err} }
