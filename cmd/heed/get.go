package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heed-go/heed"
)

const getAbout = `Sends one request through heed's defaults and writes the response body to
stdout (or -o FILE): curl for shell scripts, except that it retries what is
safe to retry, waits as long as the server asks (Retry-After, rate-limit
fields) within the limits, and says plainly why it stopped.

A POST or PATCH without an Idempotency-Key is not sent again once it may
have reached the server; --idempotency-key auto gives it one, so it can be.
Redirects are followed (at most 10). The exit status follows curl's codes:

   0  success, whatever the status without -f
   1  any other failure
   2  bad command line
   3  malformed URL
   6  could not resolve the host
   7  could not connect (refused, unreachable)
  18  the body was cut short (fewer bytes than Content-Length)
  22  -f and the final status was 400 or more
  23  could not write the output
  26  could not read the -d @file
  28  timeout: -m ran out, or the server asked to wait past it
      or past heed's 60 s cap on one wait
  35  TLS: handshake failed or certificate not trusted
  47  too many redirects
  52  the server closed the connection without answering
  56  failure receiving: connection reset
 130  interrupted`

// stdin is what -d @- reads; tests replace it.
var stdin io.Reader = os.Stdin

// exitError ends a command with a status of its own; the command has
// already said why on stderr (or kept quiet, with -s).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return fmt.Sprintf("exit %d: %v", e.code, e.err) }
func (e *exitError) Unwrap() error { return e.err }

// headerList collects repeated -H flags.
type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

// maxTime reads -m as seconds ("10", "2.5") or a Go duration ("500ms").
type maxTime time.Duration

func (m *maxTime) String() string { return time.Duration(*m).String() }
func (m *maxTime) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f != f {
			return errors.New("want seconds, such as 10 or 2.5, or a duration such as 500ms")
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	*m = maxTime(d)
	return nil
}

// errTooManyRedirects ends a chain of redirects.
var errTooManyRedirects = errors.New("stopped after 10 redirects")

// progressMin is the smallest body the progress meter shows.
const progressMin = 1 << 20

type getFlags struct {
	method, data, output, idemKey string
	headers                       headerList
	fail, verbose, silent         bool
	maxTime                       maxTime
	attempts                      int
}

func get(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("get", getAbout)
	fs := c.fs
	var f getFlags
	for _, n := range []string{"X", "request"} {
		fs.StringVar(&f.method, n, "", "request `method`; GET, or POST with -d")
	}
	for _, n := range []string{"d", "data"} {
		fs.StringVar(&f.data, n, "", "request body: `DATA`, @FILE for a file's bytes (sent unchanged), @- for stdin;\nContent-Type application/x-www-form-urlencoded unless -H sets one")
	}
	for _, n := range []string{"H", "header"} {
		fs.Var(&f.headers, n, "request header field `'Name: value'`; repeatable")
	}
	for _, n := range []string{"o", "output"} {
		fs.StringVar(&f.output, n, "", "write the body to `FILE` instead of stdout")
	}
	for _, n := range []string{"f", "fail"} {
		fs.BoolVar(&f.fail, n, false, "exit 22, writing no body, when the final status is 400 or more")
	}
	for _, n := range []string{"v", "verbose"} {
		fs.BoolVar(&f.verbose, n, false, "print the request, every attempt (status or error, wait and its source)\nand the response header on stderr")
	}
	for _, n := range []string{"s", "silent"} {
		fs.BoolVar(&f.silent, n, false, "no progress meter and no error message")
	}
	for _, n := range []string{"m", "max-time"} {
		fs.Var(&f.maxTime, n, "the whole call's time limit, retries and waits included: `seconds` or a duration")
	}
	fs.IntVar(&f.attempts, "attempts", 0, "attempts at most, the first included (`N`; default heed's, 6; 1 turns retrying off)")
	fs.StringVar(&f.idemKey, "idempotency-key", "", "send an Idempotency-Key: `KEY`, or auto for a random one, so a POST may be retried")
	if wantsHelp(args) {
		fmt.Fprintf(stdout, "Usage: heed get [flags] URL\n\n%s\n\nFlags (-X or --request, and so on):\n", getAbout)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return nil
	}
	// Flags may come after the URL too, as with curl.
	var pos []string
	rest := args
	for {
		before := rest
		if err := fs.Parse(rest); err != nil {
			return c.bad(err)
		}
		rest = fs.Args() // a suffix of before
		if n := len(before) - len(rest); n > 0 && before[n-1] == "--" {
			pos = append(pos, rest...) // "--" ends the flags for good
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	switch {
	case len(pos) == 0:
		return c.bad(errors.New("no URL"))
	case len(pos) > 1:
		return c.bad(fmt.Errorf("one URL only, got %q", pos))
	case f.attempts < 0:
		return c.bad(fmt.Errorf("--attempts %d: want 1 or more", f.attempts))
	}
	setFlags := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { setFlags[fl.Name] = true })
	return fetch(ctx, pos[0], f, setFlags["d"] || setFlags["data"], stdout, stderr)
}

// syncWriter serialises writes from heed's hooks and the command.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func fetch(ctx context.Context, rawURL string, f getFlags, hasData bool, stdout, stderr io.Writer) error {
	errw := &syncWriter{w: stderr}
	fail := func(code int, format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		if !f.silent || f.verbose {
			fmt.Fprintf(errw, "heed get: (%d) %v\n", code, err)
		}
		return &exitError{code: code, err: err}
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		if err == nil {
			err = errors.New("want http:// or https:// and a host")
		}
		return fail(3, "URL %q: %v", rawURL, err)
	}

	var body []byte
	if hasData {
		switch {
		case f.data == "@-":
			body, err = io.ReadAll(stdin)
		case strings.HasPrefix(f.data, "@"):
			body, err = os.ReadFile(f.data[1:])
		default:
			body = []byte(f.data)
		}
		if err != nil {
			return fail(26, "-d %s: %v", f.data, err)
		}
	}
	method := f.method
	if method == "" {
		method = http.MethodGet
		if hasData {
			method = http.MethodPost
		}
	}
	if f.maxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(f.maxTime))
		defer cancel()
	}
	var rd io.Reader
	if hasData {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fail(2, "%v", err)
	}
	if hasData {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, h := range f.headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return &usageError{cmd: "get", err: fmt.Errorf("-H %q: want 'Name: value'", h)}
		}
		value = strings.TrimSpace(value)
		if strings.EqualFold(name, "Host") {
			req.Host = value
			continue
		}
		req.Header.Set(name, value)
	}
	switch f.idemKey {
	case "", "auto":
	default:
		req.Header.Set("Idempotency-Key", f.idemKey)
	}

	// The hook catches why heed gave up, which a response heed returns
	// (a final 503, say) does not carry, and shows the waits as they start.
	var mu sync.Mutex
	var giveUp error
	opts := []heed.Option{heed.WithHook(heed.HookFunc(func(_ context.Context, e heed.Event) {
		switch e.Kind {
		case heed.EventGiveUp:
			mu.Lock()
			giveUp = e.Reason
			mu.Unlock()
		case heed.EventRetry:
			if f.verbose {
				fmt.Fprintf(errw, "* attempt %d: %s; waiting %v (%v) before attempt %d\n", e.Attempt, outcome(e.Status, e.Err), round(e.Wait), e.Source, e.Attempt+1)
			}
		}
	}))}
	// -v says what heed's log would, in the command's own words.
	opts = append(opts, heed.WithLogger(slog.New(slog.DiscardHandler)))
	if f.attempts > 0 {
		opts = append(opts, heed.WithMaxAttempts(f.attempts))
	}
	if f.idemKey == "auto" {
		opts = append(opts, heed.WithAutoIdempotencyKey())
	}
	client, err := heed.NewClient(opts...)
	if err != nil {
		return fail(2, "%v", err)
	}
	defer client.CloseIdleConnections()
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errTooManyRedirects
		}
		return nil
	}
	if f.verbose {
		fmt.Fprintf(errw, "> %s %s\n", req.Method, u.Redacted())
		for _, h := range f.headers {
			fmt.Fprintf(errw, "> %s\n", h)
		}
		if hasData {
			fmt.Fprintf(errw, "> (%d bytes of body)\n", len(body))
		}
	}
	start := time.Now()
	resp, err := client.Do(req)
	mu.Lock()
	reason := giveUp
	mu.Unlock()
	if err != nil {
		code, what := exitCode(err)
		if f.verbose {
			var he *heed.Error
			if errors.As(err, &he) {
				printAttempts(errw, he.Attempts)
				if !he.RetryAt.IsZero() {
					fmt.Fprintf(errw, "* the server will accept again at %s (in %v)\n", he.RetryAt.UTC().Format(time.RFC3339), round(time.Until(he.RetryAt)))
				}
				reason = he.Reason
			}
			explain(errw, reason, method, req.Header)
		}
		return fail(code, "%s: %v", what, err)
	}
	defer resp.Body.Close()
	if f.verbose {
		printAttempts(errw, heed.Attempts(resp))
		if reason != nil {
			explain(errw, reason, method, req.Header)
		}
		fmt.Fprintf(errw, "< %s %s\n", resp.Proto, resp.Status)
		for _, k := range slices.Sorted(maps.Keys(resp.Header)) {
			for _, v := range resp.Header[k] {
				fmt.Fprintf(errw, "< %s: %s\n", k, v)
			}
		}
		fmt.Fprintf(errw, "* %v so far\n", round(time.Since(start)))
	}
	if f.fail && resp.StatusCode >= 400 {
		return fail(22, "the server answered %s", resp.Status)
	}

	out := stdout
	if f.output != "" {
		file, err := os.Create(f.output)
		if err != nil {
			return fail(23, "%v", err)
		}
		defer file.Close()
		out = file
	}
	var dst io.Writer = &errWriter{w: out}
	var m *meter
	if !f.silent && resp.ContentLength >= progressMin && isTerminal(stderr) {
		m = newMeter(stderr, "heed get", false)
		dst = &progressWriter{w: dst, m: m, total: int(resp.ContentLength)}
	}
	_, err = io.Copy(dst, resp.Body)
	if m != nil {
		m.finish()
	}
	if err != nil {
		if we, ok := errors.AsType[*writeErr](err); ok {
			return fail(23, "writing the body: %v", we.err)
		}
		code, what := exitCode(err)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			code, what = 18, "the body was cut short"
		}
		return fail(code, "%s: %v", what, err)
	}
	if f.output != "" {
		if err := out.(*os.File).Close(); err != nil {
			return fail(23, "%v", err)
		}
	}
	return nil
}

// writeErr marks a failure to write the output, to tell it from a failure
// to read the body.
type writeErr struct{ err error }

func (e *writeErr) Error() string { return e.err.Error() }

type errWriter struct{ w io.Writer }

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		err = &writeErr{err}
	}
	return n, err
}

type progressWriter struct {
	w     io.Writer
	m     *meter
	done  int
	total int
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += n
	p.m.update(p.done, p.total)
	return n, err
}

func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

func outcome(status int, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", status, http.StatusText(status))
}

// printAttempts writes heed's record of each attempt.
func printAttempts(w io.Writer, as []heed.Attempt) {
	for _, a := range as {
		line := fmt.Sprintf("* attempt %d: %s", a.Number, outcome(a.Status, a.Err))
		if a.Err != nil && a.Kind != heed.KindNone {
			line += fmt.Sprintf(" [%s]", a.Kind)
		}
		if a.Duration > 0 {
			line += fmt.Sprintf(" in %v", round(a.Duration))
		}
		if a.Wait > 0 {
			line += fmt.Sprintf(", then waited %v (%v)", round(a.Wait), a.Source)
		}
		fmt.Fprintln(w, line)
	}
}

// explain says why heed stopped retrying, in the words a script's author
// needs.
func explain(w io.Writer, reason error, method string, h http.Header) {
	switch {
	case reason == nil:
	case errors.Is(reason, heed.ErrNotIdempotent):
		fmt.Fprintf(w, "* heed did not repeat the %s: it may have been processed, and a %s without an\n"+
			"* Idempotency-Key is not safe to send twice. Add --idempotency-key auto (or\n"+
			"* -H 'Idempotency-Key: ...') if the server honours the header.\n", method, method)
	default:
		fmt.Fprintf(w, "* heed stopped: %v\n", reason)
	}
}

// exitCode maps a failed call to curl's exit status and a few words.
func exitCode(err error) (int, string) {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var alert tls.AlertError
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, errTooManyRedirects):
		return 47, "too many redirects"
	case errors.Is(err, context.Canceled):
		return 130, "interrupted"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, heed.ErrDeadline), errors.Is(err, heed.ErrWaitTooLong):
		return 28, "timeout"
	case errors.As(err, &dnsErr):
		return 6, "could not resolve host"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return 7, "could not connect"
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr),
		errors.As(err, &invalid), errors.As(err, &recordErr), errors.As(err, &alert):
		return 35, "TLS failed"
	case errors.As(err, &netErr) && netErr.Timeout():
		return 28, "timeout"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return 7, "could not connect"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return 56, "failure receiving"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return 56, "failure receiving"
	case errors.Is(err, io.EOF):
		return 52, "empty reply from server"
	}
	return 1, "failed"
}
