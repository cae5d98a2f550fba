package stormsim

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/cmd/heed/internal/sim/vclock"
	"github.com/heed-go/heed/internal/storm"
)

type recRT struct {
	next http.RoundTripper
	clk  *vclock.Clock
	log  *[]string
	id   int
}

func (r recRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		*r.log = append(*r.log, fmt.Sprintf("%7.3f c%02d %d a%s", r.clk.Elapsed().Seconds(), r.id, resp.StatusCode, req.Header.Get("Heed-Attempt")))
	}
	return resp, err
}

func TestAnalyse(t *testing.T) {
	seed, _ := strconv.Atoi(os.Getenv("SEED"))
	clients := 50
	srvcfg := storm.DefaultServer
	if os.Getenv("DATE") != "" {
		srvcfg.RetryAfter = storm.RetryAfterDate
		srvcfg.Reset = storm.ResetEpoch
	}
	if os.Getenv("EPOCH") != "" {
		srvcfg.RetryAfter = storm.RetryAfterNone
		srvcfg.Reset = storm.ResetEpoch
	}
	if os.Getenv("BARE") != "" {
		srvcfg.RetryAfter = storm.RetryAfterNone
		srvcfg.NoRateLimitHeaders = true
	}
	clk := vclock.New()
	srvcfg.Clock = clk
	api, _ := storm.NewAPI(srvcfg)
	base := &vclock.Network{Clock: clk, RTT: time.Millisecond, Handler: api}
	var log []string
	finish := make([]time.Duration, clients)
	var shared *http.Client
	errs := map[string]int{}
	if os.Getenv("SHARED") != "" {
		rng := vclock.Rand(uint64(seed), 0)
		shared, _ = heed.NewClient(heed.WithBase(recRT{base, clk, &log, 0}), heed.WithLogger(nil), heed.WithClock(clk), heed.WithRand(rng))
	}
	for i := range clients {
		rng := vclock.Rand(uint64(seed), uint64(i))
		id := i
		hook := heed.HookFunc(func(_ context.Context, e heed.Event) {
			if os.Getenv("HOOK") != "" && (e.Kind == heed.EventRetry || e.Kind == heed.EventThrottle) && e.Attempt <= 2 {
				fmt.Printf("hook c%02d %s attempt %d wait %v src %v at %.3f\n", id, e.Kind, e.Attempt, e.Wait, e.Source, clk.Elapsed().Seconds())
			}
		})
		c, _ := heed.NewClient(heed.WithBase(recRT{base, clk, &log, i}), heed.WithLogger(nil), heed.WithClock(clk), heed.WithRand(rng), heed.WithHook(hook))
		if shared != nil {
			c = shared
		}
		clk.Go(func() {
			for range 10 {
				resp, err := c.Get("http://storm.test/")
				if err != nil {
					msg := err.Error()
					if i := strings.Index(msg, "heed: GET http://storm.test/: "); i >= 0 {
						msg = msg[i+30:]
					}
					if len(msg) > 60 {
						msg = msg[:60]
					}
					errs[msg]++
					continue
				}
				resp.Body.Close()
			}
			finish[i] = clk.Elapsed()
		})
	}
	clk.Run(t.Context(), 0, nil)
	sort.Slice(finish, func(a, b int) bool { return finish[a] < finish[b] })
	fmt.Println("finish times:", finish[0], finish[len(finish)/2], finish[len(finish)*9/10], finish[len(finish)-1])
	// served per 250ms
	var series []string
	counts := map[int][2]int{}
	for _, l := range log {
		var ts float64
		var c, st int
		var a string
		fmt.Sscanf(l, "%f c%d %d %s", &ts, &c, &st, &a)
		b := int(ts / 0.25)
		x := counts[b]
		if st == 200 { x[0]++ } else { x[1]++ }
		counts[b] = x
	}
	for b := 0; b <= int(finish[len(finish)-1].Seconds()/0.25); b++ {
		series = append(series, fmt.Sprintf("%d/%d", counts[b][0], counts[b][1]))
	}
	fmt.Println("ok/429 per 250ms:", strings.Join(series, " "))
	retries := map[int]int{}
	mx := 0
	for _, l := range log {
		var ts float64
		var c, st int
		var a string
		fmt.Sscanf(l, "%f c%d %d a%s", &ts, &c, &st, &a)
		if a != "" {
			b := int(ts / 0.1)
			retries[b]++
			mx = max(mx, retries[b])
		}
	}
	fmt.Println("max retries per 100ms:", mx, "errors:", errs)
	if os.Getenv("LOG") != "" {
		fmt.Println(strings.Join(log, "\n"))
	}
}
