package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/cmd/heed/internal/sim/table"
	"github.com/heed-go/heed/internal/redact"
	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/boltstore"
)

const outboxUsage = `Usage: heed outbox COMMAND -db FILE [flags]

Looks into the durable outbox that a heed.WithOutbox policy keeps in a
boltstore file (the writes heed could not deliver yet, waiting to be sent
again) and repairs it.

Commands:
  list     the entries, a page at a time: state, request, last failure, next try
  show     one entry: every field, its header and its body
  replay   make entries due now, reviving dead ones; with -send, send them now
  drop     delete entries: the ones named, or every dead one
  stats    how many entries are pending, dead and due now; the next due, the oldest

A boltstore file is open in one process at a time: stop the application whose
worker holds it before running these. Credentials (Authorization, Cookie,
headers naming a token, secret or key) and query values are shown REDACTED
unless -reveal is given; bodies are shown as they are.

Run "heed outbox COMMAND -h" for its flags.
`

func outboxCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, outboxUsage)
		return errNoCommand
	}
	switch args[0] {
	case "list":
		return outboxList(ctx, args[1:], stdout, stderr)
	case "show":
		return outboxShow(ctx, args[1:], stdout)
	case "replay":
		return outboxReplay(ctx, args[1:], stdout, stderr)
	case "drop":
		return outboxDrop(ctx, args[1:], stdout, stderr)
	case "stats":
		return outboxStats(ctx, args[1:], stdout)
	case "help":
		fmt.Fprint(stdout, outboxUsage)
		return nil
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, outboxUsage)
		return nil
	}
	if strings.HasPrefix(args[0], "-") {
		return &usageError{cmd: "outbox", err: fmt.Errorf("the command comes first, as in \"heed outbox list %s\"", strings.Join(args, " "))}
	}
	return &usageError{cmd: "outbox", err: fmt.Errorf("unknown command %q (want list, show, replay, drop or stats)", args[0])}
}

// outboxCommand is a subcommand of heed outbox: its flags, -db among them.
type outboxCommand struct {
	*command
	synopsis string // after "heed outbox "
	db       *string
}

func newOutboxCommand(name, synopsis, about string) *outboxCommand {
	c := newCommand("outbox "+name, about)
	return &outboxCommand{
		command:  c,
		synopsis: synopsis,
		db:       c.fs.String("db", "", "the outbox: the boltstore `FILE` the application's policy writes (required)"),
	}
}

// parse parses args, flags before and after the positional arguments
// (heed outbox show 3 -body), and returns the positional ones. It returns
// help true, having printed the usage to stdout, when an argument asks for
// it. -db is required.
func (c *outboxCommand) parse(args []string, stdout io.Writer) (pos []string, help bool, err error) {
	if wantsHelp(args) {
		fmt.Fprintf(stdout, "Usage: heed outbox %s\n\n%s\n\nFlags:\n", c.synopsis, c.about)
		c.fs.SetOutput(stdout)
		c.fs.PrintDefaults()
		c.fs.SetOutput(io.Discard)
		return nil, true, nil
	}
	rest := args
	for {
		before := rest
		if err := c.fs.Parse(rest); err != nil {
			return nil, false, c.bad(err)
		}
		rest = c.fs.Args()
		if n := len(before) - len(rest); n > 0 && before[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	if *c.db == "" {
		return nil, false, c.bad(errors.New("-db FILE is required: the outbox's boltstore file"))
	}
	return pos, false, nil
}

// noArgs refuses positional arguments.
func (c *outboxCommand) noArgs(pos []string) error {
	if len(pos) > 0 {
		return c.bad(fmt.Errorf("unexpected arguments %q", pos))
	}
	return nil
}

// open opens the -db file, which must exist: boltstore.Open would create
// an empty store, and a mistyped path would look like an empty outbox.
func (c *outboxCommand) open() (*boltstore.Store, error) {
	path := *c.db
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("-db %s: no such file (heed outbox opens an existing outbox only)", path)
	case err != nil:
		return nil, fmt.Errorf("-db: %w", err)
	case fi.IsDir():
		return nil, fmt.Errorf("-db %s: a directory, not an outbox file", path)
	}
	s, err := boltstore.Open(path, boltstore.Options{LockTimeout: outboxLockWait})
	if err != nil {
		if errors.Is(err, boltstore.ErrLocked) {
			return nil, fmt.Errorf("%w: stop it (its outbox worker holds the file) and run this again", err)
		}
		return nil, err
	}
	return s, nil
}

// outboxLockWait is how long opening the file waits for another process
// to close it; 0 is boltstore's default (1 s). Tests shorten it.
var outboxLockWait time.Duration

// missingEntry is the error for an ID the store does not hold.
type missingEntry struct{ id, path string }

func (e *missingEntry) Error() string { return fmt.Sprintf("outbox %s has no entry %s", e.path, e.id) }
func (e *missingEntry) Unwrap() error { return outbox.ErrNotFound }

// get returns entry id, or a *missingEntry naming it.
func (c *outboxCommand) get(ctx context.Context, s outbox.Store, id string) (*outbox.Entry, error) {
	e, err := s.Get(ctx, id)
	if errors.Is(err, outbox.ErrNotFound) {
		return nil, &missingEntry{id: id, path: *c.db}
	}
	return e, err
}

// scanPage is how many entries a scan reads from the store at a time.
const scanPage = 256

// scan calls f with each entry after the ID after, in the order they were
// added, until f returns false. The stores can neither filter by state nor
// count the due entries, so this reads them all.
func scan(ctx context.Context, s outbox.Store, after string, f func(*outbox.Entry) bool) error {
	for {
		page, err := s.List(ctx, after, scanPage)
		if err != nil {
			return err
		}
		for _, e := range page {
			if !f(e) {
				return nil
			}
		}
		if len(page) == 0 {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// collect returns the entries for which keep is true.
func collect(ctx context.Context, s outbox.Store, keep func(*outbox.Entry) bool) ([]*outbox.Entry, error) {
	var out []*outbox.Entry
	err := scan(ctx, s, "", func(e *outbox.Entry) bool {
		if keep(e) {
			out = append(out, e)
		}
		return true
	})
	return out, err
}

// --- list -------------------------------------------------------------------

const listAbout = `Lists the outbox's entries in the order they were queued, -limit a page;
-after ID shows the page after entry ID. -dead and -due keep the dead entries,
or the ones due now, only. -json prints one JSON object a line, the whole
entry (header credentials and query values REDACTED unless -reveal, the body
under "body", or "body_base64" when it is not UTF-8).`

func outboxList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newOutboxCommand("list", "list -db FILE [-dead | -due] [-limit N] [-after ID] [-json] [-reveal]", listAbout)
	fs := c.fs
	dead := fs.Bool("dead", false, "dead entries only")
	due := fs.Bool("due", false, "entries due now only")
	limit := fs.Int("limit", 50, "entries a page, at most `N`")
	after := fs.String("after", "", "start after entry `ID` (the last of the page before)")
	asJSON := fs.Bool("json", false, "one JSON object a line instead of the table")
	reveal := fs.Bool("reveal", false, "show credentials and query values instead of REDACTED")
	pos, help, err := c.parse(args, stdout)
	if help || err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	switch {
	case *dead && *due:
		return c.bad(errors.New("-dead and -due: an entry is one or the other; give one"))
	case *limit < 1:
		return c.bad(fmt.Errorf("-limit %d: want 1 or more", *limit))
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	keep := func(e *outbox.Entry) bool {
		switch {
		case *dead:
			return e.Dead
		case *due:
			return e.State(now) == "due"
		}
		return true
	}
	var page []*outbox.Entry
	more := false
	err = scan(ctx, s, *after, func(e *outbox.Entry) bool {
		if !keep(e) {
			return true
		}
		if len(page) == *limit {
			more = true
			return false
		}
		page = append(page, e)
		return true
	})
	if err != nil {
		return err
	}
	var next string // the command for the next page
	if more {
		next = "heed outbox list -db " + shellQuote(*c.db)
		switch {
		case *dead:
			next += " -dead"
		case *due:
			next += " -due"
		}
		if *limit != 50 {
			next += " -limit " + strconv.Itoa(*limit)
		}
		if *asJSON {
			next += " -json"
		}
		if *reveal {
			next += " -reveal"
		}
		next += " -after " + page[len(page)-1].ID
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		for _, e := range page {
			if err := enc.Encode(jsonEntry(e, now, *reveal)); err != nil {
				return err
			}
		}
		if more {
			fmt.Fprintf(stderr, "heed outbox list: more follow; next page: %s\n", next)
		}
		return nil
	}
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	what := "entries"
	switch {
	case *dead:
		what = "dead entries"
	case *due:
		what = "entries due now"
	}
	if len(page) == 0 {
		where := ""
		if *after != "" {
			where = " after entry " + *after
		}
		fmt.Fprintf(stdout, "No %s%s in %s (%d pending, %d dead).\n", what, where, *c.db, st.Pending, st.Dead)
		return nil
	}
	t := entryTable(page, now, *reveal)
	t.Title = fmt.Sprintf("Outbox %s: %d pending, %d dead. %s %s to %s:", *c.db, st.Pending, st.Dead,
		capitalize(what), page[0].ID, page[len(page)-1].ID)
	if more {
		t.Notes = append(t.Notes, "More "+what+" follow; the next page: "+next)
	}
	return t.Write(stdout)
}

// entryTable lays the entries out in table.MaxWidth columns, shortening
// the URL, key and last failure as needed.
func entryTable(es []*outbox.Entry, now time.Time, reveal bool) table.Table {
	head := []string{"ID", "state", "method", "URL", "key", "replays", "last", "queued", "next"}
	const iURL, iKey, iLast = 3, 4, 6
	rows := make([][]string, len(es))
	for i, e := range es {
		next := "-"
		if !e.Dead {
			next = relTime(now, e.NextAt)
		}
		rows[i] = []string{
			e.ID, e.State(now), e.Method, listURL(e, reveal), e.Key, strconv.Itoa(e.Replays),
			shortFailure(e, reveal), ago(now, e.Queued), next,
		}
	}
	widths := make([]int, len(head))
	for i, h := range head {
		widths[i] = utf8.RuneCountInString(h)
		for _, r := range rows {
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	total := 2 * (len(head) - 1)
	for _, w := range widths {
		total += w
	}
	// Shrink the free-text columns, in turn, down to each floor, until the
	// table fits.
	for _, step := range []struct{ col, floor int }{
		{iLast, 14}, {iKey, 20}, {iURL, 32}, {iURL, 24}, {iKey, 12}, {iLast, 8}, {iURL, 16}, {iKey, 6},
	} {
		if total <= table.MaxWidth {
			break
		}
		cut := min(total-table.MaxWidth, max(widths[step.col]-step.floor, 0))
		widths[step.col] -= cut
		total -= cut
	}
	for _, r := range rows {
		r[iURL] = clipMiddle(r[iURL], widths[iURL])
		r[iKey] = clip(r[iKey], widths[iKey])
		r[iLast] = clipLeft(r[iLast], widths[iLast])
	}
	return table.Table{
		Head: head, Labels: 5, Rows: rows,
		Legend: [][2]string{
			{"state", "due: to be sent at the worker's next pass; waiting: backing off until next; " +
				"dead: never sent again (heed outbox replay revives it, drop deletes it)"},
			{"URL", "the path, after the host when the key is not the host; \"?…\" stands for a query, " +
				"whose values may be secrets (heed outbox show ID prints the whole entry)"},
			{"key", "the policy key the request was filed under: its replays share that key's breaker, " +
				"retry budget and pacing"},
			{"replays", "sends from the outbox so far"},
			{"last", "how the last send failed: the status, or the error in short (show ID spells it out)"},
			{"queued", "how long ago the request failed and was queued"},
			{"next", "when the entry is due; a time ago means it is overdue (no worker is sending)"},
		},
	}
}

// shortURL is raw as scheme://host/path, and "?…" for a query, unless
// reveal.
func shortURL(raw string, reveal bool) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if reveal {
		return u.String()
	}
	s := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	return s
}

// listURL is e's URL for the list: its path (and "?…" for a query,
// unless reveal), after its host when that is not e's key.
func listURL(e *outbox.Entry, reveal bool) string {
	u, err := url.Parse(e.URL)
	if err != nil {
		return "(unparsable URL)"
	}
	s := u.EscapedPath()
	if s == "" {
		s = "/"
	}
	if e.Key != u.Host && e.Key != u.Hostname() {
		s = u.Host + s
	}
	switch {
	case reveal && u.RawQuery != "":
		s += "?" + u.RawQuery
	case u.RawQuery != "" || u.ForceQuery:
		s += "?…"
	}
	return s
}

// safeURL is raw with its userinfo and query values REDACTED, unless
// reveal.
func safeURL(raw string, reveal bool) string {
	if reveal {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return redact.URL(u)
}

// lastFailure describes how the entry's last send failed; long spells
// out the status.
func lastFailure(e *outbox.Entry, reveal, long bool) string {
	switch {
	case e.LastStatus != 0 && long:
		return strconv.Itoa(e.LastStatus) + " " + http.StatusText(e.LastStatus)
	case e.LastStatus != 0:
		return strconv.Itoa(e.LastStatus)
	case e.LastError == "":
		return "-"
	case reveal:
		return e.LastError
	}
	// heed redacts the errors it stores; redact again, for entries written
	// by other means.
	u, err := url.Parse(e.URL)
	if err != nil {
		return e.LastError
	}
	return redact.Text(e.LastError, u, redact.Copy(u), nil)
}

// shortErrors name common failures in a word, for the list.
var shortErrors = []struct{ match, name string }{
	{"connection refused", "refused"},
	{"connection reset", "reset"},
	{"no such host", "no such host"},
	{"i/o timeout", "timeout"},
	{"deadline exceeded", "timeout"},
	{"Client.Timeout", "timeout"},
	{"certificate", "TLS"},
	{"tls:", "TLS"},
	{"circuit breaker open", "breaker open"},
	{"retry budget exhausted", "budget"},
	{"throttled", "throttled"},
	{"time to live ran out", "expired"},
	{"unexpected EOF", "EOF"},
	{": EOF", "EOF"},
}

// shortFailure is lastFailure in a few columns: the status, a word for a
// common error, or the end of the error's text (its root cause).
func shortFailure(e *outbox.Entry, reveal bool) string {
	s := lastFailure(e, reveal, false)
	if e.LastStatus != 0 || e.LastError == "" {
		return s
	}
	for _, k := range shortErrors {
		if strings.Contains(s, k.match) {
			return k.name
		}
	}
	return s
}

// sensitiveHeader matches the names of header fields shown REDACTED.
var sensitiveHeader = regexp.MustCompile(`(?i)^(authorization|proxy-authorization|cookie)$|token|secret|key|passw|session|credential`)

// safeHeader returns h with the values of credential fields REDACTED,
// unless reveal.
func safeHeader(h http.Header, reveal bool) http.Header {
	h = h.Clone()
	if reveal {
		return h
	}
	for name, vs := range h {
		c := http.CanonicalHeaderKey(name)
		if c == "Idempotency-Key" || c == "X-Idempotency-Key" || !sensitiveHeader.MatchString(name) {
			continue
		}
		for i := range vs {
			vs[i] = redact.Marker
		}
	}
	return h
}

// entryJSON is an entry as heed outbox list -json and show -json print it.
type entryJSON struct {
	ID         string      `json:"id"`
	State      string      `json:"state"`
	Key        string      `json:"key"`
	Method     string      `json:"method"`
	URL        string      `json:"url"`
	Header     http.Header `json:"header"`
	Body       *string     `json:"body,omitempty"`
	BodyBase64 []byte      `json:"body_base64,omitempty"`
	BodySize   int         `json:"body_size"`
	Queued     time.Time   `json:"queued"`
	Expires    time.Time   `json:"expires"`
	NextAt     time.Time   `json:"next_at"`
	Replays    int         `json:"replays"`
	LastStatus int         `json:"last_status"`
	LastError  string      `json:"last_error"`
	Dead       bool        `json:"dead"`
}

func jsonEntry(e *outbox.Entry, now time.Time, reveal bool) entryJSON {
	j := entryJSON{
		ID: e.ID, State: e.State(now), Key: e.Key, Method: e.Method, URL: safeURL(e.URL, reveal),
		Header: safeHeader(e.Header, reveal), BodySize: len(e.Body),
		Queued: e.Queued.UTC(), Expires: e.Expires.UTC(), NextAt: e.NextAt.UTC(),
		Replays: e.Replays, LastStatus: e.LastStatus, Dead: e.Dead,
	}
	if e.LastError != "" {
		j.LastError = lastFailure(&outbox.Entry{URL: e.URL, LastError: e.LastError}, reveal, false)
	}
	if j.Header == nil {
		j.Header = http.Header{}
	}
	if utf8.Valid(e.Body) {
		b := string(e.Body)
		j.Body = &b
	} else {
		j.BodyBase64 = e.Body
	}
	return j
}

// --- show -------------------------------------------------------------------

const showAbout = `Prints every field of entry ID: its request (query values REDACTED), state,
times, replays, last failure and header (credentials REDACTED), and the body's
size; -body prints the body too (base64 when it is not UTF-8), -json the
entry as one JSON object.`

func outboxShow(ctx context.Context, args []string, stdout io.Writer) error {
	c := newOutboxCommand("show", "show -db FILE [-body] [-reveal] [-json] ID", showAbout)
	body := c.fs.Bool("body", false, "print the body too")
	reveal := c.fs.Bool("reveal", false, "show credentials and query values instead of REDACTED")
	asJSON := c.fs.Bool("json", false, "print the entry as one JSON object, body included")
	pos, help, err := c.parse(args, stdout)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		return c.bad(fmt.Errorf("want one entry ID, got %d arguments", len(pos)))
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	e, err := c.get(ctx, s, pos[0])
	if err != nil {
		return err
	}
	now := time.Now()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(jsonEntry(e, now, *reveal))
	}
	var b strings.Builder
	field := func(name, format string, args ...any) {
		fmt.Fprintf(&b, "  %-9s %s\n", name, fmt.Sprintf(format, args...))
	}
	state := e.State(now)
	fmt.Fprintf(&b, "Entry %s of %s: %s\n\n", e.ID, *c.db, state)
	field("request", "%s %s", e.Method, safeURL(e.URL, *reveal))
	field("key", "%s", e.Key)
	field("queued", "%s (%s)", stamp(e.Queued), ago(now, e.Queued))
	field("expires", "%s (%s)", stamp(e.Expires), relTime(now, e.Expires))
	switch state {
	case "dead":
		field("next", "never: dead (heed outbox replay %s revives it)", e.ID)
	default:
		field("next", "%s (%s)", stamp(e.NextAt), relTime(now, e.NextAt))
	}
	field("replays", "%d", e.Replays)
	// An error's text may be long: wrapped, its words whole.
	label := "last"
	for _, l := range table.Wrap(lastFailure(e, *reveal, true), table.MaxWidth-12, "") {
		field(label, "%s", l)
		label = ""
	}
	h := safeHeader(e.Header, *reveal)
	names := slices.Sorted(maps.Keys(h))
	if len(names) == 0 {
		field("header", "(none)")
	}
	label = "header"
	for _, n := range names {
		for _, v := range h[n] {
			field(label, "%s: %s", n, v)
			label = ""
		}
	}
	switch {
	case len(e.Body) == 0:
		field("body", "none")
	case *body:
		field("body", "%d bytes:", len(e.Body))
	default:
		field("body", "%d bytes (-body prints it)", len(e.Body))
	}
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		return err
	}
	if *body && len(e.Body) > 0 {
		out := e.Body
		if !utf8.Valid(out) {
			fmt.Fprintln(stdout, "(not UTF-8; base64:)")
			out = []byte(base64.StdEncoding.EncodeToString(out))
		}
		fmt.Fprintln(stdout)
		if _, err := stdout.Write(out); err != nil {
			return err
		}
		if out[len(out)-1] != '\n' {
			fmt.Fprintln(stdout)
		}
	}
	return nil
}

// --- replay -----------------------------------------------------------------

const replayAbout = `Makes entries due now: the ones named, every dead one (-all-dead), or the
ones due already (-due). A dead entry is revived: it will be sent again, and
if its time to live has run out it gets as long again from now. The
application's outbox worker sends them at its next pass.

With -send, sends every entry due now at once, through heed's default policy,
one attempt each (as the worker does), and waits at most -timeout: note that
this sends the other entries due now too, not only those named. It exits 0
when every entry it sent was delivered, 1 when some were not (they stay
pending, or dead). It cannot run the application's Outbox.Prepare or its
other options: an entry whose credentials Outbox.Scrub removed goes out
without them, and a 401 makes it dead; leave such entries to the
application's worker.`

func outboxReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newOutboxCommand("replay", "replay -db FILE (ID... | -all-dead | -due) [-send] [-timeout D]", replayAbout)
	fs := c.fs
	allDead := fs.Bool("all-dead", false, "revive every dead entry")
	due := fs.Bool("due", false, "the entries due now (to send them with -send)")
	send := fs.Bool("send", false, "send the entries due now, instead of leaving them to the application's worker")
	timeout := fs.Duration("timeout", 30*time.Second, "how long -send may take at most, a duration `D` such as 1m")
	ids, help, err := c.parse(args, stdout)
	if help || err != nil {
		return err
	}
	switch n := btoi(len(ids) > 0) + btoi(*allDead) + btoi(*due); {
	case n == 0:
		return c.bad(errors.New("name the entries: IDs, -all-dead or -due"))
	case n > 1:
		return c.bad(errors.New("IDs, -all-dead and -due exclude each other: give one"))
	case *timeout <= 0:
		return c.bad(fmt.Errorf("-timeout %v: want a positive duration", *timeout))
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	failed := false
	var targets []*outbox.Entry
	switch {
	case len(ids) > 0:
		for _, id := range ids {
			e, err := c.get(ctx, s, id)
			if errors.Is(err, outbox.ErrNotFound) {
				fmt.Fprintln(stderr, "heed:", err)
				failed = true
				continue
			}
			if err != nil {
				return err
			}
			targets = append(targets, e)
		}
	case *allDead:
		if targets, err = collect(ctx, s, func(e *outbox.Entry) bool { return e.Dead }); err != nil {
			return err
		}
		if len(targets) == 0 {
			fmt.Fprintf(stdout, "No dead entries in %s.\n", *c.db)
		}
	}
	changed := 0
	for _, e := range targets {
		line, ok := makeDue(e, now)
		if ok {
			if err := s.Update(ctx, e); err != nil {
				return fmt.Errorf("entry %s: %w", e.ID, err)
			}
			changed++
		}
		if len(targets) <= 20 {
			fmt.Fprintf(stdout, "Entry %s: %s.\n", e.ID, line)
		}
	}
	if len(targets) > 20 {
		fmt.Fprintf(stdout, "Made %d entries due now.\n", changed)
	}
	if !*send {
		if *due {
			n, err := collect(ctx, s, func(e *outbox.Entry) bool { return e.State(now) == "due" })
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s due now in %s; add -send to send them now.\n", plural(len(n), "entry", "entries"), *c.db)
		} else if changed > 0 {
			them := pronoun(changed)
			fmt.Fprintf(stdout, "The application's outbox worker sends %s at its next pass; or send %s now:\n"+
				"  heed outbox replay -db %s -due -send\n", them, them, shellQuote(*c.db))
		}
		if failed {
			return &exitError{code: 1, err: errors.New("some entries were not found")}
		}
		return nil
	}
	sent, err := sendDue(ctx, s, *c.db, *timeout, stdout, stderr)
	if err != nil {
		return err
	}
	if failed || !sent {
		return &exitError{code: 1, err: errors.New("some entries were not delivered")}
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// makeDue makes e due at now, reviving it if dead, and says what it did;
// ok false means e was due already and unchanged.
func makeDue(e *outbox.Entry, now time.Time) (what string, ok bool) {
	var parts []string
	switch e.State(now) {
	case "waiting":
		parts = append(parts, "was due "+relTime(now, e.NextAt))
	case "dead":
		last := shortFailure(e, false)
		if e.LastStatus != 0 {
			last = lastFailure(e, false, true)
		}
		parts = append(parts, "revived: was dead, last "+last)
	}
	if !e.Expires.After(now) {
		ttl := e.Expires.Sub(e.Queued)
		if ttl <= 0 {
			ttl = 24 * time.Hour // heed's default TTL
		}
		e.Expires = now.Add(ttl)
		parts = append(parts, "time to live restarted: expires "+relTime(now, e.Expires))
	}
	if len(parts) == 0 {
		return "due already", false
	}
	e.Dead = false
	e.NextAt = now
	return "due now (" + strings.Join(parts, "; ") + ")", true
}

// sendOutcome is what one send did to an entry.
type sendOutcome struct {
	kind   heed.EventKind
	status int
	err    string
	next   time.Time
}

// sendDue sends the entries due now through heed's default policy and
// prints each one's outcome; sent is false when some were not delivered.
func sendDue(ctx context.Context, s outbox.Store, path string, timeout time.Duration, stdout, stderr io.Writer) (sent bool, err error) {
	now := time.Now()
	due, err := collect(ctx, s, func(e *outbox.Entry) bool { return e.State(now) == "due" })
	if err != nil {
		return false, err
	}
	if len(due) == 0 {
		fmt.Fprintf(stdout, "Nothing due now in %s: nothing to send.\n", path)
		return true, nil
	}
	var mu sync.Mutex
	outcomes := map[string]sendOutcome{}
	hook := heed.HookFunc(func(_ context.Context, ev heed.Event) {
		switch ev.Kind {
		case heed.EventDelivered, heed.EventReplayed, heed.EventDead:
			o := sendOutcome{kind: ev.Kind, status: ev.Status, next: ev.NextAt}
			switch {
			case ev.Err != nil:
				o.err = ev.Err.Error()
			case ev.Reason != nil:
				o.err = ev.Reason.Error() // an expired entry's
			}
			mu.Lock()
			outcomes[ev.Entry] = o
			mu.Unlock()
		}
	})
	// A transport of its own, to close its connections when done.
	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	p, err := heed.NewPolicy(heed.WithOutbox(heed.Outbox{Store: s}), heed.WithBase(base),
		heed.WithHook(hook), heed.WithLogger(nil))
	if err != nil {
		return false, err
	}
	fmt.Fprintf(stdout, "Sending %s due now (at most %v)...\n", plural(len(due), "entry", "entries"), timeout)
	sctx, cancel := context.WithTimeout(ctx, timeout)
	res, err := p.ReplayDue(sctx)
	interrupted, timedOut := ctx.Err() != nil, sctx.Err() != nil
	cancel()
	if err != nil {
		return false, err
	}
	ctx = context.WithoutCancel(ctx) // an interrupted send still gets its report
	cutShort := "not sent: -timeout ran out"
	if interrupted {
		cutShort = "not sent: interrupted"
	}
	after := time.Now()
	undelivered := 0
	for _, e := range due {
		mu.Lock()
		o, ok := outcomes[e.ID]
		mu.Unlock()
		var line string
		switch {
		case ok && o.kind == heed.EventDelivered:
			line = fmt.Sprintf("delivered (%d)", o.status)
		case ok:
			undelivered++
			line = describeFailure(o, after)
		default:
			undelivered++
			cur, err := s.Get(ctx, e.ID)
			switch {
			case errors.Is(err, outbox.ErrNotFound):
				undelivered-- // gone: delivered or dropped
				line = "gone from the outbox"
			case err != nil:
				return false, err
			case timedOut && cur.State(after) == "due":
				line = cutShort
			case cur.Dead:
				line = "dead, last " + lastFailure(cur, false, true)
			default:
				line = "not sent: its key must wait, due again " + relTime(after, cur.NextAt)
			}
		}
		fmt.Fprintf(stdout, "  entry %s  %s %s: %s\n", e.ID, e.Method, shortURL(e.URL, false), line)
	}
	fmt.Fprintf(stdout, "Delivered %d, rescheduled %d, deferred %d, dead %d.\n",
		res.Delivered, res.Rescheduled, res.Deferred, res.Dead)
	switch {
	case interrupted:
		fmt.Fprintln(stderr, "heed outbox replay: interrupted before every entry was sent")
	case timedOut:
		fmt.Fprintf(stderr, "heed outbox replay: -timeout %v ran out before every entry was sent\n", timeout)
	}
	if undelivered > 0 {
		fmt.Fprintf(stderr, "heed outbox replay: %d of %d entries not delivered\n", undelivered, len(due))
		return false, nil
	}
	return true, nil
}

func describeFailure(o sendOutcome, now time.Time) string {
	why := o.err
	if o.status != 0 {
		why = strconv.Itoa(o.status) + " " + http.StatusText(o.status)
	}
	if why == "" {
		why = "no reason given"
	}
	if o.kind == heed.EventDead {
		return "dead (" + why + ")"
	}
	return "failed (" + why + "), due again " + relTime(now, o.next)
}

// --- drop -------------------------------------------------------------------

const dropAbout = `Deletes the entries named, or with -dead every dead entry (which asks for
-yes). A dropped entry is never sent: its write is lost.`

func outboxDrop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newOutboxCommand("drop", "drop -db FILE (ID... | -dead -yes)", dropAbout)
	dead := c.fs.Bool("dead", false, "drop every dead entry")
	yes := c.fs.Bool("yes", false, "confirm -dead")
	ids, help, err := c.parse(args, stdout)
	if help || err != nil {
		return err
	}
	switch {
	case len(ids) == 0 && !*dead:
		return c.bad(errors.New("name the entries: IDs or -dead"))
	case len(ids) > 0 && *dead:
		return c.bad(errors.New("IDs and -dead exclude each other: give one"))
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	if len(ids) > 0 {
		failed := false
		for _, id := range ids {
			e, err := c.get(ctx, s, id)
			if err == nil {
				err = s.Delete(ctx, id)
			}
			if errors.Is(err, outbox.ErrNotFound) {
				fmt.Fprintln(stderr, "heed:", &missingEntry{id: id, path: *c.db})
				failed = true
				continue
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Dropped entry %s: %s %s (%s).\n", e.ID, e.Method, shortURL(e.URL, false), e.State(time.Now()))
		}
		if failed {
			return &exitError{code: 1, err: errors.New("some entries were not found")}
		}
		return nil
	}
	es, err := collect(ctx, s, func(e *outbox.Entry) bool { return e.Dead })
	if err != nil {
		return err
	}
	switch {
	case len(es) == 0:
		fmt.Fprintf(stdout, "No dead entries in %s.\n", *c.db)
		return nil
	case !*yes:
		fmt.Fprintf(stderr, "heed outbox drop: would drop %s of %s for good; add -yes to drop %s\n",
			plural(len(es), "dead entry", "dead entries"), *c.db, pronoun(len(es)))
		return &exitError{code: 1, err: errors.New("-dead without -yes")}
	}
	for _, e := range es {
		if err := s.Delete(ctx, e.ID); err != nil && !errors.Is(err, outbox.ErrNotFound) {
			return fmt.Errorf("entry %s: %w", e.ID, err)
		}
	}
	fmt.Fprintf(stdout, "Dropped %s.\n", plural(len(es), "dead entry", "dead entries"))
	return nil
}

// --- stats ------------------------------------------------------------------

const statsAbout = `Counts the outbox's entries: pending (due now among them) and dead; says
when the next one is due and when the oldest was queued, and the file's size.`

// statsJSON is heed outbox stats -json.
type statsJSON struct {
	File         string     `json:"file"`
	FileBytes    int64      `json:"file_bytes"`
	Pending      int        `json:"pending"`
	Dead         int        `json:"dead"`
	Due          int        `json:"due"`
	NextDue      *time.Time `json:"next_due"`
	OldestQueued *time.Time `json:"oldest_queued"`
}

func outboxStats(ctx context.Context, args []string, stdout io.Writer) error {
	c := newOutboxCommand("stats", "stats -db FILE [-json]", statsAbout)
	asJSON := c.fs.Bool("json", false, "print one JSON object")
	pos, help, err := c.parse(args, stdout)
	if help || err != nil {
		return err
	}
	if err := c.noArgs(pos); err != nil {
		return err
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	j := statsJSON{File: *c.db, Pending: st.Pending, Dead: st.Dead}
	if fi, err := os.Stat(*c.db); err == nil {
		j.FileBytes = fi.Size()
	}
	if !st.NextAt.IsZero() {
		t := st.NextAt.UTC()
		j.NextDue = &t
	}
	// Neither the due count nor the oldest entry is kept: count them.
	err = scan(ctx, s, "", func(e *outbox.Entry) bool {
		if e.State(now) == "due" {
			j.Due++
		}
		if j.OldestQueued == nil || e.Queued.Before(*j.OldestQueued) {
			t := e.Queued.UTC()
			j.OldestQueued = &t
		}
		return true
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(j)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Outbox %s (%s)\n\n", *c.db, byteSize(j.FileBytes))
	fmt.Fprintf(&b, "  pending     %d (%d due now): to be sent by the application's outbox worker\n", j.Pending, j.Due)
	fmt.Fprintf(&b, "  dead        %d: never sent again; heed outbox replay revives, drop deletes\n", j.Dead)
	if j.NextDue != nil {
		fmt.Fprintf(&b, "  next due    %s (%s)\n", stamp(*j.NextDue), relTime(now, *j.NextDue))
	} else {
		fmt.Fprintf(&b, "  next due    -\n")
	}
	if j.OldestQueued != nil {
		fmt.Fprintf(&b, "  oldest      queued %s (%s)\n", stamp(*j.OldestQueued), ago(now, *j.OldestQueued))
	} else {
		fmt.Fprintf(&b, "  oldest      - (the outbox is empty)\n")
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

// --- formatting -------------------------------------------------------------

// stamp formats t to the second, in UTC.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// relTime says when t is from now: "in 40s", "3m ago" or "now".
func relTime(now, t time.Time) string {
	d := t.Sub(now)
	switch {
	case d >= time.Second:
		return "in " + span(d, true)
	case d > -time.Second:
		return "now"
	}
	return span(-d, false) + " ago"
}

// ago says how long ago t was: "3m ago".
func ago(now, t time.Time) string {
	if d := now.Sub(t); d < time.Second {
		return relTime(now, t)
	}
	return span(now.Sub(t), false) + " ago"
}

// span writes d in its largest one or two units: 40s, 3m, 2h5m, 3d4h,
// rounded up or down to the smallest unit shown.
func span(d time.Duration, up bool) string {
	unit := time.Second
	switch {
	case d >= 24*time.Hour:
		unit = time.Hour
	case d >= time.Minute:
		unit = time.Minute
	}
	r := d.Truncate(unit)
	if up && r < d {
		r += unit
	}
	switch {
	case r < time.Minute:
		return fmt.Sprintf("%ds", r/time.Second)
	case r < time.Hour:
		return fmt.Sprintf("%dm", r/time.Minute)
	case r < 24*time.Hour:
		if m := r % time.Hour / time.Minute; m != 0 {
			return fmt.Sprintf("%dh%dm", r/time.Hour, m)
		}
		return fmt.Sprintf("%dh", r/time.Hour)
	}
	if h := r % (24 * time.Hour) / time.Hour; h != 0 {
		return fmt.Sprintf("%dd%dh", r/(24*time.Hour), h)
	}
	return fmt.Sprintf("%dd", r/(24*time.Hour))
}

// byteSize writes n bytes in a binary unit: "32 KiB".
func byteSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, units := float64(n)/1024, []string{"KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, units[i])
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}

// clip shortens s to w columns, ending it with "…".
func clip(s string, w int) string {
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	r := []rune(s)
	return string(r[:max(w-1, 0)]) + "…"
}

// clipLeft shortens s to w columns, keeping its end: an error's root
// cause. It cuts at a ": " when what follows fits.
func clipLeft(s string, w int) string {
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], ": ")
		if j < 0 {
			break
		}
		i += j + 2
		if utf8.RuneCountInString(s[i:]) <= w {
			return s[i:]
		}
	}
	r := []rune(s)
	if w < 1 {
		return ""
	}
	return "…" + string(r[len(r)-(w-1):])
}

// clipMiddle shortens s to w columns, keeping its start and end: a URL's
// first and last path segments.
func clipMiddle(s string, w int) string {
	r := []rune(s)
	if len(r) <= w {
		return s
	}
	if w < 2 {
		return clip(s, w)
	}
	tail := (w - 1) / 3
	// Rather a whole last segment, if it takes at most half.
	for i := len(r) - 1; i > 0 && len(r)-i <= (w-1)/2; i-- {
		if r[i] == '/' {
			tail = len(r) - i
		}
	}
	return string(r[:w-1-tail]) + "…" + string(r[len(r)-tail:])
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// pronoun is "it" for one entry, "them" for more.
func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// safeArg matches an argument the shell takes as it is.
var safeArg = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if safeArg.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
