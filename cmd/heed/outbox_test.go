package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/heed-go/heed/cmd/heed/internal/sim/table"
	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/boltstore"
	"github.com/heed-go/heed/outbox/outboxtest"
)

// Secrets the test entries carry, which no output may show without
// -reveal.
const (
	secretQuery  = "sk_live_querysecret"
	secretBearer = "Bearer tok_headersecret"
	secretAPIKey = "apikey_headersecret"
)

// testEntry is outboxtest's entry i, queued queuedAgo before now and due
// at now+next, with a secret in its query and header.
func testEntry(i int, now time.Time, queuedAgo, next time.Duration) *outbox.Entry {
	e := outboxtest.NewEntry(i, now.Add(next))
	e.URL += "&token=" + secretQuery
	e.Header.Set("Authorization", secretBearer)
	e.Header.Set("X-Api-Key", secretAPIKey)
	e.Queued = now.Add(-queuedAgo)
	e.Expires = e.Queued.Add(24 * time.Hour)
	return e
}

// newOutboxFile writes a boltstore file holding the entries, in their
// order, and closes it; it returns the file's path.
func newOutboxFile(t *testing.T, es ...*outbox.Entry) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, e := range es {
		if err := s.Add(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// demoOutbox is a file of five entries:
//
//	1 waiting, due in 40m, queued 3m ago
//	2 due 2m ago
//	3 dead (422), queued 26h ago and expired
//	4 waiting, due in 10m, with a binary body
//	5 dead after an error
func demoOutbox(t *testing.T) string {
	t.Helper()
	now := time.Now()
	e1 := testEntry(1, now, 3*time.Minute+2*time.Second, 40*time.Minute)
	e2 := testEntry(2, now, 5*time.Minute, -2*time.Minute)
	e3 := testEntry(3, now, 26*time.Hour, -time.Hour)
	e3.Dead, e3.LastStatus, e3.Replays = true, http.StatusUnprocessableEntity, 3
	e4 := testEntry(4, now, time.Minute, 10*time.Minute)
	e4.Body = []byte{0xff, 0xfe, 0x00, 0x01}
	e5 := testEntry(5, now, time.Hour, 0)
	e5.Dead, e5.LastStatus = true, 0
	e5.LastError = `heed: POST https://api.example/v1/orders?n=5&token=REDACTED: attempts exhausted after 1 attempt: ` +
		`dial tcp 10.0.0.9:443: connect: connection refused`
	return newOutboxFile(t, e1, e2, e3, e4, e5)
}

// runOutbox runs heed with args and returns its exit code, stdout and
// stderr.
func runOutbox(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runMain(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs heed with args and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runOutbox(t, args...)
	if code != 0 {
		t.Fatalf("%q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	return out
}

// noSecrets fails the test if out shows a secret.
func noSecrets(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range []string{secretQuery, secretBearer, "tok_headersecret", secretAPIKey} {
		if strings.Contains(out, s) {
			t.Errorf("%s shows the secret %q:\n%s", what, s, out)
		}
	}
}

// fits fails the test if a line of out is wider than table.MaxWidth.
func fits(t *testing.T, what, out string) {
	t.Helper()
	for i, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > table.MaxWidth {
			t.Errorf("%s: line %d is %d columns wide:\n%s", what, i+1, n, l)
		}
	}
}

// rows returns the table's rows by ID: the lines starting with a number.
func rows(out string) map[string][]string {
	m := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] != "" && strings.Trim(f[0], "0123456789") == "" {
			m[f[0]] = f
		}
	}
	return m
}

func TestOutboxList(t *testing.T) {
	db := demoOutbox(t)
	out := mustRun(t, "outbox", "list", "-db", db)
	fits(t, "list", out)
	noSecrets(t, "list", out)
	r := rows(out)
	if len(r) != 5 {
		t.Fatalf("want 5 rows, got %d:\n%s", len(r), out)
	}
	for id, want := range map[string][]string{
		// ID state method URL key replays last queued next
		"1": {"1", "waiting", "POST", "/v1/orders?…", "api.example", "0", "503", "3m", "ago", "in", "40m"},
		"2": {"2", "due", "POST", "/v1/orders?…", "api.example", "0", "503", "5m", "ago", "2m", "ago"},
		"3": {"3", "dead", "POST", "/v1/orders?…", "api.example", "3", "422", "1d2h", "ago", "-"},
		"5": {"5", "dead", "POST", "/v1/orders?…", "api.example", "0", "refused", "1h", "ago", "-"},
	} {
		if got := strings.Join(r[id], " "); got != strings.Join(want, " ") {
			t.Errorf("row %s:\n got %s\nwant %s", id, got, strings.Join(want, " "))
		}
	}
	for _, want := range []string{"3 pending, 2 dead", "ID  state", "replays", "state    due: to be sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "More") {
		t.Errorf("one page, yet a next one is offered:\n%s", out)
	}
}

// Pages of -limit entries: each says how to see the next, the last does
// not.
func TestOutboxListPaging(t *testing.T) {
	db := demoOutbox(t)
	var seen []string
	args := []string{"outbox", "list", "-db", db, "-limit", "2"}
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatal("more pages than entries")
		}
		out := mustRun(t, args...)
		r := rows(out)
		for id := range r {
			seen = append(seen, id)
		}
		_, next, ok := strings.Cut(out, "the next page: heed ")
		if !ok {
			if len(r) != 1 {
				t.Errorf("the last page has %d rows, want 1:\n%s", len(r), out)
			}
			break
		}
		if len(r) != 2 {
			t.Errorf("page %d has %d rows, want 2:\n%s", page, len(r), out)
		}
		args = strings.Fields(strings.TrimSpace(next))
		if !strings.Contains(next, "-limit 2 -after ") {
			t.Errorf("next page %q", next)
		}
	}
	if strings.Join(sortedIDs(seen), ",") != "1,2,3,4,5" {
		t.Errorf("pages showed %v", seen)
	}
	// -after past the end.
	if out := mustRun(t, "outbox", "list", "-db", db, "-after", "5"); !strings.Contains(out, "No entries after entry 5") {
		t.Errorf("after the end:\n%s", out)
	}
}

// sortedIDs sorts IDs as numbers.
func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return cmp.Compare(x, y)
	})
	return out
}

func TestOutboxListFilters(t *testing.T) {
	db := demoOutbox(t)
	for _, tc := range []struct {
		flag string
		ids  string
	}{
		{"-dead", "3,5"},
		{"-due", "2"},
	} {
		out := mustRun(t, "outbox", "list", "-db", db, tc.flag)
		var ids []string
		for id := range rows(out) {
			ids = append(ids, id)
		}
		if got := strings.Join(sortedIDs(ids), ","); got != tc.ids {
			t.Errorf("%s: rows %s, want %s:\n%s", tc.flag, got, tc.ids, out)
		}
	}
	// A filter pages over the entries it keeps.
	out := mustRun(t, "outbox", "list", "-db", db, "-dead", "-limit", "1")
	if r := rows(out); len(r) != 1 || r["3"] == nil || !strings.Contains(out, "-dead -limit 1 -after 3") {
		t.Errorf("-dead -limit 1:\n%s", out)
	}
	out = mustRun(t, "outbox", "list", "-db", db, "-dead", "-limit", "1", "-after", "3")
	if r := rows(out); len(r) != 1 || r["5"] == nil || strings.Contains(out, "More") {
		t.Errorf("-dead -limit 1 -after 3:\n%s", out)
	}
}

func TestOutboxListJSON(t *testing.T) {
	db := demoOutbox(t)
	code, out, errOut := runOutbox(t, "outbox", "list", "-db", db, "-json", "-limit", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	noSecrets(t, "list -json", out)
	if !strings.Contains(errOut, "-json -after 4") {
		t.Errorf("no pointer to the next page on stderr: %q", errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), out)
	}
	var got []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		got = append(got, m)
	}
	e1 := got[0]
	if e1["id"] != "1" || e1["state"] != "waiting" || e1["method"] != "POST" || e1["body"] != `{"order":1}` ||
		e1["url"] != "https://api.example/v1/orders?n=REDACTED&token=REDACTED" || e1["last_status"] != 503.0 {
		t.Errorf("entry 1: %v", e1)
	}
	h := e1["header"].(map[string]any)
	if h["Authorization"].([]any)[0] != "REDACTED" || h["X-Api-Key"].([]any)[0] != "REDACTED" ||
		h["Idempotency-Key"].([]any)[0] != "key-1" || h["Content-Type"].([]any)[0] != "application/json" {
		t.Errorf("entry 1's header: %v", h)
	}
	if e4 := got[3]; e4["body"] != nil || e4["body_base64"] != "//4AAQ==" {
		t.Errorf("entry 4's binary body: %v", e4)
	}
	// -reveal shows everything.
	out = mustRun(t, "outbox", "list", "-db", db, "-json", "-reveal", "-limit", "1")
	for _, s := range []string{secretQuery, secretBearer, secretAPIKey} {
		if !strings.Contains(out, s) {
			t.Errorf("-reveal hides %q:\n%s", s, out)
		}
	}
}

func TestOutboxShow(t *testing.T) {
	db := demoOutbox(t)
	out := mustRun(t, "outbox", "show", "-db", db, "1")
	noSecrets(t, "show", out)
	fits(t, "show", out)
	for _, want := range []string{
		"Entry 1 of " + db + ": waiting",
		"request   POST https://api.example/v1/orders?n=REDACTED&token=REDACTED",
		"key       api.example",
		"(3m ago)", "(in 40m)", "(in 23h57m)",
		"last      503 Service Unavailable",
		"header    Authorization: REDACTED",
		"          Idempotency-Key: key-1",
		"          X-Api-Key: REDACTED",
		"body      11 bytes (-body prints it)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	// Flags after the ID; -body prints it.
	out = mustRun(t, "outbox", "show", "-db", db, "1", "-body")
	if !strings.HasSuffix(out, "\n{\"order\":1}\n") {
		t.Errorf("show -body:\n%s", out)
	}
	out = mustRun(t, "outbox", "show", "-db", db, "-body", "4")
	if !strings.Contains(out, "base64") || !strings.Contains(out, "//4AAQ==") {
		t.Errorf("show -body of a binary body:\n%s", out)
	}
	out = mustRun(t, "outbox", "show", "-db", db, "5")
	if !strings.Contains(out, "never: dead") || !strings.Contains(out, "connect: connection refused") {
		t.Errorf("show of a dead entry:\n%s", out)
	}
	noSecrets(t, "show", out)
	out = mustRun(t, "outbox", "show", "-db", db, "-reveal", "1")
	if !strings.Contains(out, secretBearer) || !strings.Contains(out, secretQuery) {
		t.Errorf("show -reveal:\n%s", out)
	}
	out = mustRun(t, "outbox", "show", "-db", db, "-json", "1")
	noSecrets(t, "show -json", out)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || m["id"] != "1" {
		t.Errorf("show -json: %v\n%s", err, out)
	}
}

// Unknown IDs are named in the error, and exit 1.
func TestOutboxUnknownID(t *testing.T) {
	db := demoOutbox(t)
	for _, args := range [][]string{
		{"outbox", "show", "-db", db, "42"},
		{"outbox", "show", "-db", db, "x"},
		{"outbox", "replay", "-db", db, "42"},
		{"outbox", "drop", "-db", db, "42"},
	} {
		code, _, errOut := runOutbox(t, args...)
		id := args[len(args)-1]
		if code != 1 || errOut != "heed: outbox "+db+" has no entry "+id+"\n" {
			t.Errorf("%q: exit %d, stderr %q", args[:2], code, errOut)
		}
	}
	// The known ones are still done.
	code, out, _ := runOutbox(t, "outbox", "drop", "-db", db, "1", "42")
	if code != 1 || !strings.Contains(out, "Dropped entry 1") {
		t.Errorf("drop 1 42: exit %d\n%s", code, out)
	}
}

// openStore opens the file for a test to look at, and closes it at the end
// of the test.
func openStore(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func getEntry(t *testing.T, path, id string) *outbox.Entry {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Replay without -send makes a waiting entry due now and revives a dead
// one, giving it its time to live again when it had run out.
func TestOutboxReplay(t *testing.T) {
	db := demoOutbox(t)
	before := time.Now()
	out := mustRun(t, "outbox", "replay", "-db", db, "1", "3", "2")
	for _, want := range []string{
		"Entry 1: due now (was due in 40m).",
		"Entry 3: due now (revived: was dead, last 422 Unprocessable Entity; time to live restarted: expires in 1d).",
		"Entry 2: due already.",
		"-due -send",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay lacks %q:\n%s", want, out)
		}
	}
	after := time.Now()
	e1, e3 := getEntry(t, db, "1"), getEntry(t, db, "3")
	if e1.NextAt.Before(before) || e1.NextAt.After(after) || e1.Dead {
		t.Errorf("entry 1: next %v, dead %v", e1.NextAt, e1.Dead)
	}
	if e3.Dead || e3.NextAt.After(after) || e3.Replays != 3 {
		t.Errorf("entry 3 not revived: %+v", e3)
	}
	if ttl := e3.Expires.Sub(e3.NextAt); ttl < 24*time.Hour-time.Second || ttl > 24*time.Hour+time.Second {
		t.Errorf("entry 3 expires %v after now, want 24h", ttl)
	}
	// -all-dead revives the other dead one, whose time to live still runs.
	e5 := getEntry(t, db, "5")
	out = mustRun(t, "outbox", "replay", "-db", db, "-all-dead")
	if out != "Entry 5: due now (revived: was dead, last refused).\n"+
		"The application's outbox worker sends it at its next pass; or send it now:\n"+
		"  heed outbox replay -db "+db+" -due -send\n" {
		t.Errorf("replay -all-dead:\n%s", out)
	}
	noSecrets(t, "replay", out)
	if e := getEntry(t, db, "5"); e.Dead || !e.Expires.Equal(e5.Expires) {
		t.Errorf("entry 5 after -all-dead: dead %v, expires %v (was %v)", e.Dead, e.Expires, e5.Expires)
	}
	out = mustRun(t, "outbox", "replay", "-db", db, "-all-dead")
	if !strings.Contains(out, "No dead entries") {
		t.Errorf("replay -all-dead with none:\n%s", out)
	}
	out = mustRun(t, "outbox", "replay", "-db", db, "-due")
	if !strings.Contains(out, "4 entries due now") {
		t.Errorf("replay -due:\n%s", out)
	}
}

// api is a loopback API that answers 201 to /ok and 503 to the rest, and
// records what it got.
type api struct {
	*httptest.Server
	mu   sync.Mutex
	got  []string // method, path, Idempotency-Key and body of each request
	hits int
}

func newAPI(t *testing.T) *api {
	a := &api{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.got = append(a.got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Idempotency-Key")+" "+string(body))
		a.hits++
		a.mu.Unlock()
		if r.URL.Path == "/ok" {
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *api) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

// apiEntry is an entry for a's path, due at now+next.
func apiEntry(a *api, i int, path string, now time.Time, next time.Duration) *outbox.Entry {
	e := testEntry(i, now, time.Minute, next)
	e.URL = a.URL + path + "?token=" + secretQuery
	e.Key = strings.TrimPrefix(a.URL, "http://")
	return e
}

// Replay -send delivers through heed's default policy: the entry named is
// made due and sent, and leaves the outbox.
func TestOutboxReplaySend(t *testing.T) {
	a := newAPI(t)
	now := time.Now()
	db := newOutboxFile(t, apiEntry(a, 1, "/ok", now, time.Hour), apiEntry(a, 2, "/ok", now, time.Hour))
	out := mustRun(t, "outbox", "replay", "-db", db, "-send", "1")
	for _, want := range []string{"Entry 1: due now", "Sending 1 entry due now", "entry 1  POST " + a.URL + "/ok?…: delivered (201)", "Delivered 1, rescheduled 0, deferred 0, dead 0."} {
		if !strings.Contains(out, want) {
			t.Errorf("replay -send lacks %q:\n%s", want, out)
		}
	}
	noSecrets(t, "replay -send", out)
	if got := a.requests(); len(got) != 1 || got[0] != `POST /ok key-1 {"order":1}` {
		t.Errorf("the API got %q", got)
	}
	s := openStore(t, db)
	if _, err := s.Get(context.Background(), "1"); err != outbox.ErrNotFound {
		t.Errorf("entry 1 still in the outbox: %v", err)
	}
	if _, err := s.Get(context.Background(), "2"); err != nil {
		t.Errorf("entry 2, not due, gone: %v", err)
	}
}

// An entry the server refuses again stays pending, and replay -send exits
// 1; the delivered ones are gone.
func TestOutboxReplaySendFails(t *testing.T) {
	a := newAPI(t)
	now := time.Now()
	expired := apiEntry(a, 3, "/ok", now, -time.Second)
	expired.Expires = now.Add(-time.Second)
	db := newOutboxFile(t, apiEntry(a, 1, "/ok", now, -time.Second), apiEntry(a, 2, "/down", now, -time.Second), expired)
	code, out, errOut := runOutbox(t, "outbox", "replay", "-db", db, "-due", "-send", "-timeout", "10s")
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"entry 1  POST " + a.URL + "/ok?…: delivered (201)", "entry 2  POST " + a.URL + "/down?…: failed (503 Service Unavailable), due again", "entry 3  POST " + a.URL + "/ok?…: dead (outbox entry's time to live ran out)", "Delivered 1, rescheduled 1, deferred 0, dead 1."} {
		if !strings.Contains(out, want) {
			t.Errorf("replay -send lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "2 of 3 entries not delivered") {
		t.Errorf("stderr: %q", errOut)
	}
	e := getEntry(t, db, "2")
	if e.Dead || e.Replays != 1 || e.LastStatus != 503 || !e.NextAt.After(now) {
		t.Errorf("entry 2 after a 503: %+v", e)
	}
	// Nothing due: nothing to send, and done.
	db = newOutboxFile(t, apiEntry(a, 1, "/ok", now, time.Hour))
	out = mustRun(t, "outbox", "replay", "-db", db, "-due", "-send")
	if !strings.Contains(out, "Nothing due now") {
		t.Errorf("replay -due -send with nothing due:\n%s", out)
	}
}

func TestOutboxDrop(t *testing.T) {
	db := demoOutbox(t)
	out := mustRun(t, "outbox", "drop", "-db", db, "1", "2")
	if !strings.Contains(out, "Dropped entry 1: POST https://api.example/v1/orders?… (waiting).") || !strings.Contains(out, "Dropped entry 2") {
		t.Errorf("drop 1 2:\n%s", out)
	}
	noSecrets(t, "drop", out)
	code, out, errOut := runOutbox(t, "outbox", "drop", "-db", db, "-dead")
	if code != 1 || out != "" || !strings.Contains(errOut, "would drop 2 dead entries") || !strings.Contains(errOut, "add -yes") {
		t.Errorf("drop -dead without -yes: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	if st := stats(t, db); st.Pending != 1 || st.Dead != 2 {
		t.Errorf("after drop 1 2 and a refused drop -dead: %+v", st)
	}
	out = mustRun(t, "outbox", "drop", "-db", db, "-dead", "-yes")
	if out != "Dropped 2 dead entries.\n" {
		t.Errorf("drop -dead -yes: %q", out)
	}
	if st := stats(t, db); st.Pending != 1 || st.Dead != 0 {
		t.Errorf("after drop -dead -yes: %+v", st)
	}
	if out := mustRun(t, "outbox", "drop", "-db", db, "-dead"); !strings.Contains(out, "No dead entries") {
		t.Errorf("drop -dead with none: %q", out)
	}
}

func stats(t *testing.T, path string) outbox.Stats {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestOutboxStats(t *testing.T) {
	db := demoOutbox(t)
	out := mustRun(t, "outbox", "stats", "-db", db)
	fits(t, "stats", out)
	for _, want := range []string{
		"Outbox " + db + " (32 KiB)",
		"pending     3 (1 due now)",
		"dead        2",
		"next due    ", "(2m ago)",
		"oldest      queued ", "(1d2h ago)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "outbox", "stats", "-db", db, "-json")
	var j statsJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err, out)
	}
	if j.Pending != 3 || j.Dead != 2 || j.Due != 1 || j.FileBytes != 32<<10 || j.NextDue == nil || j.OldestQueued == nil ||
		time.Since(*j.OldestQueued).Round(time.Hour) != 26*time.Hour {
		t.Errorf("stats -json: %s", out)
	}
	empty := newOutboxFile(t)
	out = mustRun(t, "outbox", "stats", "-db", empty)
	if !strings.Contains(out, "pending     0 (0 due now)") || !strings.Contains(out, "next due    -") {
		t.Errorf("stats of an empty outbox:\n%s", out)
	}
}

// The file must exist: a mistyped path is an error, not an empty outbox,
// and it is not created.
func TestOutboxMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.db")
	for _, args := range [][]string{
		{"outbox", "list", "-db", path},
		{"outbox", "stats", "-db", path},
		{"outbox", "replay", "-db", path, "-due"},
		{"outbox", "drop", "-db", path, "-dead"},
	} {
		code, out, errOut := runOutbox(t, args...)
		if code != 1 || out != "" || !strings.Contains(errOut, "no such file") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args[:2], code, out, errOut)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the file was created: %v", err)
	}
	code, _, errOut := runOutbox(t, "outbox", "list", "-db", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "a directory") {
		t.Errorf("-db DIR: exit %d, %q", code, errOut)
	}
}

// A file another process (here: this one) has open is named, with what to
// do.
func TestOutboxLocked(t *testing.T) {
	db := demoOutbox(t)
	openStore(t, db)
	defer func(d time.Duration) { outboxLockWait = d }(outboxLockWait)
	outboxLockWait = 20 * time.Millisecond
	code, _, errOut := runOutbox(t, "outbox", "stats", "-db", db)
	if code != 1 || !strings.Contains(errOut, "open in another process") || !strings.Contains(errOut, "stop it") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// Bad command lines exit 2 with one error line and a pointer to -h, before
// the file is opened; help exits 0.
func TestOutboxUsage(t *testing.T) {
	db := demoOutbox(t)
	for _, tc := range []struct {
		args    []string
		errLine string
	}{
		{[]string{"outbox", "list"}, "heed outbox list: -db FILE is required"},
		{[]string{"outbox", "list", "-db", db, "-dead", "-due"}, "heed outbox list: -dead and -due"},
		{[]string{"outbox", "list", "-db", db, "-limit", "0"}, "heed outbox list: -limit 0: want 1 or more"},
		{[]string{"outbox", "list", "-db", db, "extra"}, `heed outbox list: unexpected arguments ["extra"]`},
		{[]string{"outbox", "list", "-db", db, "-bogus"}, "heed outbox list: flag provided but not defined: -bogus"},
		{[]string{"outbox", "show", "-db", db}, "heed outbox show: want one entry ID, got 0"},
		{[]string{"outbox", "show", "-db", db, "1", "2"}, "heed outbox show: want one entry ID, got 2"},
		{[]string{"outbox", "replay", "-db", db}, "heed outbox replay: name the entries"},
		{[]string{"outbox", "replay", "-db", db, "1", "-due"}, "heed outbox replay: IDs, -all-dead and -due exclude each other"},
		{[]string{"outbox", "replay", "-db", db, "-due", "-send", "-timeout", "0s"}, "heed outbox replay: -timeout 0s"},
		{[]string{"outbox", "drop", "-db", db}, "heed outbox drop: name the entries"},
		{[]string{"outbox", "drop", "-db", db, "1", "-dead"}, "heed outbox drop: IDs and -dead exclude each other"},
		{[]string{"outbox", "stats", "-db", db, "1"}, `heed outbox stats: unexpected arguments ["1"]`},
		{[]string{"outbox", "bogus"}, `heed outbox: unknown command "bogus"`},
		{[]string{"outbox", "-db", db, "list"}, `heed outbox: the command comes first`},
	} {
		code, out, errOut := runOutbox(t, tc.args...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 2 || out != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], tc.errLine) || !strings.HasSuffix(lines[1], " -h\" for usage.") {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s", tc.args, code, out, errOut)
		}
	}
	for _, args := range [][]string{
		{"outbox", "-h"}, {"outbox", "help"}, {"help", "outbox"},
		{"outbox", "list", "-h"}, {"outbox", "show", "1", "-h"}, {"outbox", "replay", "-bogus", "--help"},
		{"outbox", "drop", "-help"}, {"outbox", "stats", "-h"}, {"help", "outbox", "stats"},
	} {
		code, out, errOut := runOutbox(t, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Usage: heed outbox") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		fits(t, strings.Join(args, " "), out)
	}
	_, out, _ := runOutbox(t, "outbox", "-h")
	for _, cmd := range []string{"list", "show", "replay", "drop", "stats"} {
		if !strings.Contains(out, "\n  "+cmd+" ") {
			t.Errorf("outbox -h lacks %s:\n%s", cmd, out)
		}
	}
	code, out, errOut := runOutbox(t, "outbox")
	if code != 2 || out != "" || strings.Count(errOut, "Usage: heed outbox") != 1 {
		t.Errorf("bare outbox: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, out, _ := runOutbox(t, "-h"); !strings.Contains(out, "heed outbox COMMAND") {
		t.Errorf("heed -h lacks outbox:\n%s", out)
	}
}

// The list fits table.MaxWidth columns however long the URLs, keys, errors
// and IDs.
func TestOutboxListFits(t *testing.T) {
	now := time.Now()
	long := strings.Repeat("segment/", 20)
	var es []*outbox.Entry
	for i := range 3 {
		e := testEntry(i+1, now, 400*24*time.Hour, 300*24*time.Hour)
		e.URL = "https://a-very-long-host-name.eu-west-1.example.com:8443/" + long + "end?x=1"
		e.Key = strings.Repeat("k", 60)
		e.LastStatus, e.LastError = 0, strings.Repeat("an error of no known kind, ", 8)
		e.Replays = 123456
		e.Method = "PROPFIND"
		es = append(es, e)
	}
	db := newOutboxFile(t, es...)
	for _, args := range [][]string{{}, {"-reveal"}} {
		out := mustRun(t, append([]string{"outbox", "list", "-db", db}, args...)...)
		fits(t, "list", out)
		if !strings.Contains(out, "/end?…") && len(args) == 0 {
			t.Errorf("the URL does not keep its last segment:\n%s", out)
		}
	}
	out := mustRun(t, "outbox", "show", "-db", db, "1")
	if !strings.Contains(out, long) {
		t.Errorf("show shortens the URL:\n%s", out)
	}
}

func TestSpan(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		up   bool
		want string
	}{
		{0, false, "0s"},
		{40 * time.Second, true, "40s"},
		{39*time.Second + time.Millisecond, true, "40s"},
		{59*time.Second + 500*time.Millisecond, true, "1m"},
		{3*time.Minute + 59*time.Second, false, "3m"},
		{3*time.Minute + 1*time.Second, true, "4m"},
		{time.Hour, false, "1h"},
		{95 * time.Minute, false, "1h35m"},
		{26 * time.Hour, false, "1d2h"},
		{48*time.Hour + 30*time.Minute, false, "2d"},
		{48*time.Hour + 30*time.Minute, true, "2d1h"},
	} {
		if got := span(tc.d, tc.up); got != tc.want {
			t.Errorf("span(%v, %v) = %q, want %q", tc.d, tc.up, got, tc.want)
		}
	}
	now := time.Now()
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{now, "now"},
		{now.Add(40 * time.Second), "in 40s"},
		{now.Add(-3 * time.Minute), "3m ago"},
	} {
		if got := relTime(now, tc.t); got != tc.want {
			t.Errorf("relTime(%v) = %q, want %q", tc.t.Sub(now), got, tc.want)
		}
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		f    func(string, int) string
		s    string
		w    int
		want string
	}{
		{clipMiddle, "/v1/customers/c_1842/address?…", 25, "/v1/customers/…/address?…"},
		{clipMiddle, "/abcdefghijklmnopqrstuvwxyz", 10, "/abcde…xyz"},
		{clipLeft, "heed: POST x: attempts exhausted: dial tcp: connection refused", 20, "connection refused"},
		{clipLeft, "abcdefghij", 5, "…ghij"},
		{clip, "api.example.com", 8, "api.exa…"},
		{clip, "short", 8, "short"},
	} {
		if got := tc.f(tc.s, tc.w); got != tc.want || utf8.RuneCountInString(got) > tc.w {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.s, tc.w, got, tc.want)
		}
	}
}
