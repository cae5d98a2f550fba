package storm

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerThrottles(t *testing.T) {
	for _, form := range []RetryAfterForm{RetryAfterSeconds, RetryAfterDate, RetryAfterNone} {
		srv, err := NewServer(ServerConfig{Rate: 1, Burst: 2, RetryAfter: form, Reset: ResetEpoch})
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{}
		var codes []int
		var last *http.Response
		for range 3 {
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
			last = resp
		}
		c.CloseIdleConnections()
		srv.Close()
		if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
			t.Fatalf("form %d: statuses %v", form, codes)
		}
		ra := last.Header.Get("Retry-After")
		switch form {
		case RetryAfterSeconds:
			if ra != "1" {
				t.Fatalf("Retry-After %q", ra)
			}
		case RetryAfterDate:
			if _, err := http.ParseTime(ra); err != nil {
				t.Fatalf("Retry-After %q: %v", ra, err)
			}
		case RetryAfterNone:
			if ra != "" {
				t.Fatalf("Retry-After %q", ra)
			}
		}
		reset, _ := strconv.ParseInt(last.Header.Get("X-RateLimit-Reset"), 10, 64)
		if last.Header.Get("X-RateLimit-Remaining") != "0" || reset < time.Now().Unix() {
			t.Fatalf("rate-limit headers %v", last.Header)
		}
		if srv.Served() != 2 || srv.Throttled() != 1 {
			t.Fatalf("served %d throttled %d", srv.Served(), srv.Throttled())
		}
	}
	if _, err := NewServer(ServerConfig{Rate: 0, Burst: 1}); err == nil {
		t.Fatal("zero rate accepted")
	}
}

// heed's defaults lose nothing in a storm run in virtual time: the server's
// bucket and heed's waits share one fake clock.
func TestRunHeedLosesNothing(t *testing.T) {
	clk := heedtest.NewClock(time.Now()).AutoAdvance()
	sc := Scenario{Server: ServerConfig{Rate: 20, Burst: 5, Clock: clk}, Clients: 10, PerClient: 5}
	for _, st := range []Strategy{Heed("shared", true, heed.WithClock(clk)), Heed("independent", false, heed.WithClock(clk))} {
		r, err := Run(context.Background(), sc, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Failed != 0 || r.Succeeded != 50 || r.Makespan < sc.Optimal() {
			t.Fatalf("%s: %+v", st.Name, r)
		}
		t.Logf("%s: %d attempts, %d throttled, makespan %v (optimal %v)", st.Name, r.Attempts, r.Throttled, r.Makespan, sc.Optimal())
	}
	r, err := Run(context.Background(), sc, NoRetry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Succeeded+r.Failed != 50 || r.Attempts != 50 || r.Failed == 0 {
		t.Fatalf("no retries: %+v", r)
	}
}

func TestOptimal(t *testing.T) {
	if got := Default.Optimal(); got != 4900*time.Millisecond {
		t.Fatalf("optimal %v, want 4.9s", got)
	}
}

// The storm on loopback, scaled to run in a few seconds: heed's defaults
// lose nothing, shared or one client per caller (correctness; the numbers
// are for the benchmark).
func TestStormLoopbackLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("loopback storm")
	}
	sc := Scenario{Server: ServerConfig{Rate: 200, Burst: 10}, Clients: 20, PerClient: 10}
	for _, st := range []Strategy{Heed("shared", true), Heed("independent", false)} {
		r, err := Run(context.Background(), sc, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Failed != 0 || r.Succeeded != 200 {
			t.Fatalf("%s: %+v", st.Name, r)
		}
		t.Logf("%s: %.2f attempts/success, %.2fx optimal", st.Name, r.AttemptsPerSuccess(), r.OverOptimal())
	}
}
