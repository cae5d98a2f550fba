package heed_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
	"github.com/heed-go/heed/tier"
)

// tier is a service behind tier.Middleware that calls next through its own
// heed client and answers 502 when that call fails.
func startTier(t *testing.T, next string, opts ...heed.Option) *httptest.Server {
	t.Helper()
	c, _ := client(t, opts...)
	srv := httptest.NewServer(tier.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", next, nil)
		resp, err := c.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})))
	t.Cleanup(srv.Close)
	return srv
}

func TestTierHeadersSent(t *testing.T) {
	srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.Status(503), heedtest.OK("")})
	c, _ := client(t)

	// No deadline: the first attempt carries nothing, retries their number.
	resp, _, err := get(t, c, srv.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(resp, err)
	}
	reqs := srv.Requests()
	for i, want := range []string{"", "2", "3"} {
		if got := reqs[i].Header.Get(tier.HeaderAttempt); got != want {
			t.Errorf("attempt %d: %s %q, want %q", i+1, tier.HeaderAttempt, got, want)
		}
		if got := reqs[i].Header.Get(tier.HeaderTimeout); got != "" {
			t.Errorf("attempt %d carries %s %q without a deadline", i+1, tier.HeaderTimeout, got)
		}
	}

	// A deadline travels as the time left, in milliseconds.
	// (The context's deadline is on the wall clock, so this client's fake
	// clock starts at the wall clock's now.)
	srv2 := heedtest.NewServer(t, []heedtest.Step{heedtest.OK("")})
	clk := heedtest.NewClock(time.Now())
	c, err = heed.NewClient(heed.WithClock(clk), heed.WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(1500*time.Millisecond))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv2.URL, nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := srv2.Requests()[0].Header.Get(tier.HeaderTimeout); got != "1500" {
		t.Fatalf("%s = %q, want 1500", tier.HeaderTimeout, got)
	}
	if req.Header.Get(tier.HeaderTimeout) != "" {
		t.Fatal("the caller's request was changed")
	}

	// And the protocol can be switched off.
	srv3 := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503), heedtest.OK("")})
	c3, _ := client(t, heed.WithoutTierHeaders())
	if _, _, err := get(t, c3, srv3.URL); err != nil {
		t.Fatal(err)
	}
	if srv3.Requests()[1].Header.Get(tier.HeaderAttempt) != "" {
		t.Fatal("attempt header sent with the protocol off")
	}
}

func TestMiddlewareDeadline(t *testing.T) {
	var (
		left time.Duration
		has  bool
	)
	srv := httptest.NewServer(tier.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var dl time.Time
		if dl, has = r.Context().Deadline(); has {
			left = time.Until(dl)
		}
	})))
	defer srv.Close()
	for _, v := range []string{"2000", "0", "-5", "abc", "1.5", "99999999999999"} {
		left, has = 0, false
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set(tier.HeaderTimeout, v)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch v {
		case "2000":
			if !has || left <= time.Second || left > 2*time.Second {
				t.Errorf("deadline %v left, want about 2s", left)
			}
		case "0", "-5": // no time left: the deadline has passed
			if !has || left > 0 {
				t.Errorf("%q: deadline set %v, %v left, want one already passed", v, has, left)
			}
		case "abc", "1.5":
			if has {
				t.Errorf("%q set a deadline", v)
			}
		default:
			if left > 24*time.Hour {
				t.Errorf("%q set a deadline %v away, past the day's cap", v, left)
			}
		}
	}
}

// A retry from upstream: the tier's own heed calls make one attempt each.
func TestMiddlewareRetryMakesSingleAttempts(t *testing.T) {
	bottom := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
	mid := startTier(t, bottom.URL)
	req, _ := http.NewRequest("GET", mid.URL, nil)
	req.Header.Set(tier.HeaderAttempt, "2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if bottom.Count() != 1 || resp.StatusCode != 503 {
		t.Fatalf("bottom saw %d requests, tier answered %d", bottom.Count(), resp.StatusCode)
	}
	if resp.Header.Get(tier.HeaderRetried) != "" {
		t.Fatal("a deferred failure was marked as retried: the caller would not retry it")
	}
}

// The tier closest to the failure retries; the one above sees the mark and
// does not.
func TestOnlyClosestTierRetries(t *testing.T) {
	bottom := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
	mid := startTier(t, bottom.URL, heed.WithoutBreaker())
	c, _ := client(t, heed.WithoutBreaker())
	resp, err := c.Get(mid.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(tier.HeaderRetried); got != "exhausted" {
		t.Fatalf("%s = %q, want exhausted", tier.HeaderRetried, got)
	}
	if n := len(heed.Attempts(resp)); n != 1 {
		t.Fatalf("the top retried a marked failure: %d attempts", n)
	}
	if bottom.Count() != heed.DefaultMaxAttempts {
		t.Fatalf("bottom saw %d requests, want the middle tier's %d", bottom.Count(), heed.DefaultMaxAttempts)
	}

	// A heed client told the failure was retried below gives up with that
	// reason when it must return an error.
	c2, _ := client(t, heed.WithoutBreaker(), heed.WithErrorOnExhausted())
	_, err = c2.Get(mid.URL)
	if !errors.Is(err, heed.ErrRetriedBelow) {
		t.Fatalf("err = %v", err)
	}
}

// A client that is not heed sees an ordinary error response with one more
// header, and a tier without heed calls behaves as without the middleware.
func TestMiddlewareTransparent(t *testing.T) {
	srv := httptest.NewServer(tier.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Attempt-Seen", r.Header.Get(tier.HeaderAttempt))
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout")
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 418 || string(b) != "short and stout" || resp.Header.Get(tier.HeaderRetried) != "" {
		t.Fatalf("%d %q %v", resp.StatusCode, b, resp.Header)
	}
}

func TestTierReasons(t *testing.T) {
	bottom := heedtest.NewServer(t, []heedtest.Step{heedtest.RetryAfter(503, 3600)})
	mid := startTier(t, bottom.URL)
	resp, err := http.Get(mid.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(tier.HeaderRetried); got != "wait" {
		t.Fatalf("%s = %q, want wait", tier.HeaderRetried, got)
	}
}

// The first attempt's copy carries Heed-Timeout without touching the
// caller's header: a layer below that adds to a field it shares reaches
// only the copy.
func TestTimeoutHeaderLeavesTheCallersHeader(t *testing.T) {
	var got http.Header
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		got = req.Header.Clone()
		req.Header["Accept"] = append(req.Header["Accept"], "text/plain") // a careless layer
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	tr, err := heed.New(heed.WithBase(base))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.test/", nil)
	accept := make([]string, 1, 4) // room to append in place
	accept[0] = "application/json"
	req.Header["Accept"] = accept
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ms, err := strconv.Atoi(got.Get("Heed-Timeout"))
	if err != nil || ms <= 89_000 || ms > 90_000 {
		t.Errorf("Heed-Timeout %q, want the 90 s left", got.Get("Heed-Timeout"))
	}
	if got.Get("Accept") != "application/json" {
		t.Errorf("the copy lost the caller's Accept: %v", got)
	}
	if len(req.Header) != 1 || len(req.Header["Accept"]) != 1 || accept[:2][1] != "" {
		t.Errorf("the caller's header changed: %v (array %q)", req.Header, accept[:2])
	}
}
