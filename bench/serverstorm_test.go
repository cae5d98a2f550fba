package bench

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heed-go/heed/internal/storm"
	"github.com/heed-go/heed/ratelimit"
)

var stormLoopback = flag.Bool("storm.loopback", false, "TestServerSideStorm: play on loopback in real time (about a minute) instead of in virtual time")

// oneLimit is the storm's API limit, 100/s burst 10, for every client at
// once, as heed's ratelimit middleware: spreading Retry-After (the
// default), holding refusals to land on their slot, or not spreading.
func oneLimit(tb testing.TB, hold, noSpread bool) func(http.Handler) http.Handler {
	l, err := ratelimit.New(ratelimit.Config{
		Windows:      []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 10}},
		Key:          func(*http.Request) string { return "api" },
		HoldRefusals: hold, NoSpread: noSpread,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return l.Handler
}

// TestServerSideStorm is the public storm (50 clients x 10 GETs, 100/s
// burst 10) seen from the server: clients that obey Retry-After exactly,
// with no jitter (the from-scratch recipe, 5 retries), and heed's clients,
// against the storm's own bucket with whole-second Retry-After, heed's
// middleware without spreading, spreading, and holding refusals:
//
//	cd bench && go test -run ServerSideStorm -v .                     # virtual time
//	cd bench && go test -run ServerSideStorm -v . -storm.loopback     # loopback, real time
func TestServerSideStorm(t *testing.T) {
	type server struct {
		name  string
		limit func(http.Handler) http.Handler
	}
	servers := []server{
		{"storm bucket, whole-second Retry-After", nil},
		{"heed ratelimit, NoSpread", oneLimit(t, false, true)},
		{"heed ratelimit, spread (default)", oneLimit(t, false, false)},
		{"heed ratelimit, spread + HoldRefusals", oneLimit(t, true, false)},
	}
	var rows []string
	for _, srv := range servers {
		for _, st := range []storm.Strategy{storm.Exact(nil), storm.Heed("heed client, shared", true)} {
			sc := storm.Default
			sc.Server.Limit = srv.limit
			// A fresh limiter per run: the same middleware would carry
			// the last run's promises.
			if srv.limit != nil {
				sc.Server.Limit = oneLimit(t, strings.Contains(srv.name, "Hold"), strings.Contains(srv.name, "NoSpread"))
			}
			var r storm.Result
			var err error
			if *stormLoopback {
				r, err = storm.Run(context.Background(), sc, st, nil)
			} else {
				synctest.Test(t, func(t *testing.T) { r, err = storm.RunInMemory(context.Background(), sc, st) })
			}
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %d | %.2f | %.2fx |", srv.name, st.Name, r.Failed, r.AttemptsPerSuccess(), r.OverOptimal()))
			if srv.limit != nil && !strings.Contains(srv.name, "NoSpread") && r.Failed != 0 {
				t.Errorf("%s, %s: %d GETs lost", srv.name, st.Name, r.Failed)
			}
		}
	}
	t.Logf("\n| server | clients | lost of 500 | attempts per success | makespan / optimal |\n|---|---|---:|---:|---:|\n%s", strings.Join(rows, "\n"))
}
