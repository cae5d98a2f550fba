package ratelimit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/hint"
	"github.com/heed-go/heed/ratelimit"
)

func TestNewNamesEveryBadField(t *testing.T) {
	sec := time.Second
	for _, c := range []struct {
		name string
		cfg  ratelimit.Config
		want []string
	}{
		{"no windows", ratelimit.Config{}, []string{"Windows: at least one window"}},
		{"bad window fields", ratelimit.Config{Windows: []ratelimit.Window{
			{Limit: 0, Per: sec, Burst: 1},
			{Limit: 10, Per: -sec, Burst: 0},
			{Limit: 10, Per: 1500 * time.Millisecond, Burst: 1},
			{Limit: 2_000_000_000, Per: sec, Burst: 1},
			{Limit: 1, Per: 300 * 24 * time.Hour, Burst: 1 << 40},
			{Name: `bad"name`, Limit: 1, Per: sec, Burst: 1},
		}}, []string{
			"Windows[0].Limit: 0", "Windows[1].Per", "Windows[1].Burst: 0", "Windows[2].Per: 1.5s must be whole seconds",
			"Windows[3].Limit: 2000000000 per 1s is more than one a nanosecond", "Windows[4].Burst", "Windows[5].Name",
		}},
		{"too many windows", ratelimit.Config{Windows: make([]ratelimit.Window, 9)}, []string{"Windows: 9 windows, at most 8"}},
		{"duplicate names", ratelimit.Config{Windows: []ratelimit.Window{
			{Limit: 10, Per: sec, Burst: 1}, {Limit: 20, Per: sec, Burst: 1},
		}}, []string{`Windows[1].Name: "second" is the name of Windows[0] too`}},
		{"the rest", ratelimit.Config{
			Windows:       []ratelimit.Window{{Limit: 1, Per: sec, Burst: 1}},
			MaxKeys:       -1,
			MaxHold:       2 * sec,
			NoSpread:      true,
			HoldRefusals:  true,
			SpreadHorizon: -sec,
			Hooks:         []heed.Hook{nil},
		}, []string{"MaxKeys: -1", "MaxHold: 2s must be from 1ms to 1s", "HoldRefusals: set with NoSpread", "SpreadHorizon: -1s", "Hooks[0]: nil"}},
		{"MaxKeys with a Store", ratelimit.Config{
			Windows: []ratelimit.Window{{Limit: 1, Per: sec, Burst: 1}}, MaxKeys: 10, Store: ratelimit.NewMemoryStore(10),
		}, []string{"MaxKeys: set with Store"}},
		{"MaxHold without holding", ratelimit.Config{
			Windows: []ratelimit.Window{{Limit: 1, Per: sec, Burst: 1}}, MaxHold: sec,
		}, []string{"MaxHold: set without HoldRefusals"}},
		{"bad delay", ratelimit.Config{
			Windows: []ratelimit.Window{{Limit: 1, Per: sec, Burst: 1}}, MaxDelay: -sec,
		}, []string{"MaxDelay: -1s must not be negative"}},
		{"MaxWaiting without MaxDelay", ratelimit.Config{
			Windows: []ratelimit.Window{{Limit: 1, Per: sec, Burst: 1}}, MaxWaiting: 5,
		}, []string{"MaxWaiting: set without MaxDelay"}},
		{"negative MaxWaiting", ratelimit.Config{
			Windows: []ratelimit.Window{{Limit: 1, Per: sec, Burst: 1}}, MaxDelay: sec, MaxWaiting: -1,
		}, []string{"MaxWaiting: -1 must not be negative"}},
	} {
		l, err := ratelimit.New(c.cfg)
		if err == nil || l != nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", c.name, err, w)
			}
		}
	}
	if _, err := ratelimit.New(ratelimit.Config{Windows: []ratelimit.Window{{Limit: 100, Per: sec, Burst: 10}}}); err != nil {
		t.Errorf("a good config: %v", err)
	}
}

// problem is the RFC 9457 body.
type problem struct {
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Status     int      `json:"status"`
	Detail     string   `json:"detail"`
	Policy     string   `json:"policy"`
	RetryAfter *float64 `json:"retry_after"`
}

// get sends a GET to url and returns the response with its body read.
func get(t *testing.T, c *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// Over loopback: the quota fields on admitted and refused responses, read
// back by heed's own parser; the refusal's Retry-After and problem body.
func TestFieldsOverLoopback(t *testing.T) {
	clk := heedtest.NewClock(t0)
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 3}},
		Clock:   clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l.Handler(ok))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("not on loopback: %s", srv.URL)
	}
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()

	for i, want := range []int64{2, 1, 0} {
		resp, _ := get(t, c, srv.URL)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		if got := resp.Header.Get("RateLimit-Policy"); got != `"default";q=100;w=1` {
			t.Fatalf("RateLimit-Policy %q", got)
		}
		if got, w := resp.Header.Get("RateLimit"), `"default";r=`+string(rune('0'+want))+`;t=1`; got != w {
			t.Fatalf("request %d: RateLimit %q, want %q", i, got, w)
		}
		q, ok := hint.RateLimit(resp.Header, clk.Now())
		if !ok || q.Source != hint.SourceIETF || q.Policy != "default" || q.Limit != 100 || q.Window != time.Second ||
			q.Remaining != want || q.Reset != time.Second {
			t.Fatalf("request %d: hint read %+v", i, q)
		}
	}

	resp, body := get(t, c, srv.URL)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth request: %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q", got)
	}
	if d, ok := hint.RetryAfter(resp.Header, clk.Now()); !ok || d != time.Second {
		t.Fatalf("hint read Retry-After %v %v", d, ok)
	}
	if q, ok := hint.RateLimit(resp.Header, clk.Now()); !ok || !q.Exhausted() || q.Reset != time.Second || q.Limit != 100 {
		t.Fatalf("refusal's quota %+v", q)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if p.Type != "about:blank" || p.Title != "Too Many Requests" || p.Status != 429 || p.Policy != "default" ||
		p.RetryAfter == nil || *p.RetryAfter != 1 || !strings.Contains(p.Detail, "100 requests per second") {
		t.Fatalf("problem %s", body)
	}
	if !strings.Contains(string(body), `"retry_after":1.000`) {
		t.Fatalf("retry_after without its fraction: %s", body)
	}
	// The promised slot is honoured: at 1 s the client is admitted.
	clk.Advance(time.Second)
	if resp, _ := get(t, c, srv.URL); resp.StatusCode != 200 {
		t.Fatalf("at the told time: %d", resp.StatusCode)
	}
}

// Several windows: the policy lists them all, RateLimit reports the most
// constraining, and the legacy fields say the same of it.
func TestSeveralWindowsAndLegacy(t *testing.T) {
	clk := heedtest.NewClock(t0)
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{
			{Limit: 100, Per: time.Second, Burst: 10},
			{Limit: 1000, Per: 24 * time.Hour, Burst: 5},
		},
		Clock:         clk,
		LegacyHeaders: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := l.Handler(ok)
	serve := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		return rec
	}
	rec := serve()
	hd := rec.Header()
	if got := hd.Get("RateLimit-Policy"); got != `"second";q=100;w=1, "day";q=1000;w=86400` {
		t.Fatalf("RateLimit-Policy %q", got)
	}
	// second: 9 left, full in 10 ms; day: 4 left, full in 86.4 s.
	if got := hd.Get("RateLimit"); got != `"day";r=4;t=87` {
		t.Fatalf("RateLimit %q", got)
	}
	if hd.Get("X-RateLimit-Limit") != "1000" || hd.Get("X-RateLimit-Remaining") != "4" || hd.Get("X-RateLimit-Reset") != "87" {
		t.Fatalf("legacy fields %v", hd)
	}
	q, ok := hint.RateLimit(hd, clk.Now())
	if !ok || q.Policy != "day" || q.Limit != 1000 || q.Window != 24*time.Hour || q.Remaining != 4 || q.Reset != 87*time.Second {
		t.Fatalf("hint read %+v", q)
	}
	// With the IETF fields gone, hint reads the legacy ones alike.
	delete(hd, "Ratelimit")
	delete(hd, "Ratelimit-Policy")
	if q, ok := hint.RateLimit(hd, clk.Now()); !ok || q.Source != hint.SourceXRateLimit || q.Limit != 1000 || q.Remaining != 4 || q.Reset != 87*time.Second {
		t.Fatalf("hint read the legacy fields as %+v", q)
	}
	for range 4 {
		serve()
	}
	rec = serve()
	if rec.Code != 429 || rec.Header().Get("RateLimit") != `"day";r=0;t=432` {
		t.Fatalf("the day refuses: %d %q", rec.Code, rec.Header().Get("RateLimit"))
	}
	// The day's interval is 86.4 s: the slot is on the next whole second.
	if ra := rec.Header().Get("Retry-After"); ra != "87" {
		t.Fatalf("Retry-After %q, want 87", ra)
	}
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Policy != "day" || !strings.Contains(p.Detail, `"day" of 1000 requests per day`) {
		t.Fatalf("problem %s (%v)", rec.Body, err)
	}
}

// heed's own client, with its default policy, meets a refusal, waits as
// told and is admitted; its other requests are paced by the quota fields
// and never refused.
func TestHeedClient(t *testing.T) {
	clk := heedtest.NewClock(t0).AutoAdvance()
	var (
		mu     sync.Mutex
		events []heed.Event
	)
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{{Limit: 1, Per: time.Second, Burst: 1}},
		Key:     ratelimit.ByHeader("X-Client"),
		Clock:   clk,
		Hooks: []heed.Hook{heed.HookFunc(func(_ context.Context, e heed.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l.Handler(ok))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := func() *http.Client {
		c, err := heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil), heed.WithBase(base))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	send := func(c *http.Client, team string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("X-Client", team)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	// Client one takes the team's only token; client two, which has
	// heard nothing yet, is refused, waits and is admitted.
	one, two := client(), client()
	if resp := send(one, "team-a"); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	resp := send(two, "team-a")
	if resp.StatusCode != 200 || len(heed.Attempts(resp)) != 2 {
		t.Fatalf("second client: %d after %d attempts, want 200 after 2", resp.StatusCode, len(heed.Attempts(resp)))
	}
	mu.Lock()
	if len(events) != 3 || events[1].Kind != heed.EventLimited || events[2].Kind != heed.EventAdmitted {
		t.Fatalf("events %v", events)
	}
	refused, retried := events[1], events[2]
	mu.Unlock()
	if refused.Wait != time.Second || !refused.RetryAt.Equal(refused.Time.Add(time.Second)) {
		t.Fatalf("told to wait %v until %v", refused.Wait, refused.RetryAt)
	}
	if retried.Time.Before(refused.RetryAt) {
		t.Fatalf("heed retried at %v, before the told %v", retried.Time.Sub(t0), refused.RetryAt.Sub(t0))
	}
	// A client alone on its key reads r=0 on its first answer: it paces
	// its next requests at the policy's rate and is never refused.
	mu.Lock()
	events = nil
	mu.Unlock()
	three := client()
	for i := range 4 {
		if resp := send(three, "team-b"); resp.StatusCode != 200 || len(heed.Attempts(resp)) != 1 {
			t.Fatalf("paced request %d: %d after %d attempts", i, resp.StatusCode, len(heed.Attempts(resp)))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range events {
		if e.Kind != heed.EventAdmitted {
			t.Fatalf("a paced request was refused: %+v", e)
		}
	}
}

// Events carry the class, never the key, and the URL without query
// values; Class is never called without hooks.
func TestEvents(t *testing.T) {
	var got []heed.Event
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{{Limit: 1, Per: time.Hour, Burst: 1}},
		Key:     ratelimit.ByHeader("X-Api-Key"),
		Class: func(key string, r *http.Request) string {
			if strings.HasPrefix(key, "sk_paid") {
				return "paid"
			}
			return "free"
		},
		Clock: heedtest.NewClock(t0),
		Hooks: []heed.Hook{heed.HookFunc(func(_ context.Context, e heed.Event) { got = append(got, e) })},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := l.Handler(ok)
	for range 2 {
		r := httptest.NewRequest("POST", "/v1/items?token=secret", nil)
		r.Header.Set("X-Api-Key", "sk_paid_123")
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if len(got) != 2 || got[0].Kind != heed.EventAdmitted || got[1].Kind != heed.EventLimited {
		t.Fatalf("events %+v", got)
	}
	for _, e := range got {
		if e.Key != "paid" || e.Method != "POST" || strings.Contains(e.URL.String(), "secret") || !e.Time.Equal(t0) {
			t.Fatalf("event %+v (URL %s)", e, e.URL)
		}
	}
	if got[0].Status != 0 || got[1].Status != 429 || got[1].Wait != time.Hour || !got[1].RetryAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("statuses and waits: %+v", got)
	}

	quiet, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{{Limit: 1, Per: time.Hour, Burst: 1}},
		Class:   func(string, *http.Request) string { panic("Class called without hooks") },
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		quiet.Handler(ok).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
}

// OnLimited replaces the body; Retry-After and the quota are set already.
func TestOnLimited(t *testing.T) {
	var ref ratelimit.Refusal
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{{Name: "api", Limit: 2, Per: time.Second, Burst: 1}},
		Clock:   heedtest.NewClock(t0),
		OnLimited: func(w http.ResponseWriter, r *http.Request, rf ratelimit.Refusal) {
			ref = rf
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "slow down\n")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := l.Handler(ok)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 429 || rec.Body.String() != "slow down\n" || rec.Header().Get("Retry-After") != "1" ||
		rec.Header().Get("RateLimit") != `"api";r=0;t=1` {
		t.Fatalf("%d %q %v", rec.Code, rec.Body, rec.Header())
	}
	if ref.RetryAfter != time.Second || ref.Wait != time.Second || ref.Window.Name != "api" || ref.Decision.Allowed ||
		!ref.Decision.ConformAt.Equal(t0.Add(500*time.Millisecond)) || !ref.RetryAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("refusal %+v", ref)
	}
}

// Exempt requests pass untouched: no quota taken, no fields.
func TestExempt(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{{Limit: 1, Per: time.Hour, Burst: 1}},
		Exempt:  func(r *http.Request) bool { return r.URL.Path == "/healthz" },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := l.Handler(ok)
	for range 5 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != 200 || rec.Header().Get("RateLimit") != "" {
			t.Fatalf("exempt: %d %v", rec.Code, rec.Header())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 {
		t.Fatalf("first limited request: %d", rec.Code)
	}
}

type failingStore struct{}

func (failingStore) Take(context.Context, string, time.Time, []ratelimit.Window, ratelimit.Spread) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("store down")
}

// A store that fails lets requests through, and the hooks hear of it.
func TestStoreFailsOpen(t *testing.T) {
	var got []heed.Event
	l, err := ratelimit.New(ratelimit.Config{
		Windows: []ratelimit.Window{{Limit: 1, Per: time.Hour, Burst: 1}},
		Store:   failingStore{},
		Hooks:   []heed.Hook{heed.HookFunc(func(_ context.Context, e heed.Event) { got = append(got, e) })},
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rec := httptest.NewRecorder()
		l.Handler(ok).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || rec.Header().Get("RateLimit") != "" {
			t.Fatalf("%d %v", rec.Code, rec.Header())
		}
	}
	if len(got) != 3 || got[0].Kind != heed.EventAdmitted || got[0].Err == nil {
		t.Fatalf("events %+v", got)
	}
}

// A handler that adds to the quota fields does not write into the block
// the limiter wrote them from.
func TestHandlerMayAddFields(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{Windows: []ratelimit.Window{{Limit: 10, Per: time.Second, Burst: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	var first http.Header
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("RateLimit", `"other";r=1`)
		if first == nil {
			first = w.Header()
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if got := first.Values("RateLimit"); len(got) != 2 || got[0] != `"default";r=9;t=1` || got[1] != `"other";r=1` {
		t.Fatalf("first response's RateLimit lines %q", got)
	}
}
