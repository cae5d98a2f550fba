// Command heed shows what heed does.
//
//	heed demo          run the public 429 storm with no retries, a naive retry
//	                   loop and heed's defaults, and print the results side by side
//	heed sim brooker   Brooker's backoff-and-jitter contention model
//	heed sim storm     the 429 storm in virtual time, at any scale
//	heed sim chain     retry amplification through K tiers
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

const usage = `heed makes HTTP API clients heed the servers they call.

Usage:
  heed demo [flags]           run the 429 storm scenario and compare strategies
  heed sim brooker [flags]    Brooker's contention model: work and time against N
  heed sim storm [flags]      the 429 storm in virtual time, heed beside plain strategies
  heed sim chain [flags]      retry amplification through K tiers

Run "heed demo -h" or "heed sim MODEL -h" for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "heed:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "demo":
		return demo(ctx, args[1:], stdout, stderr)
	case "sim":
		return sim(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
