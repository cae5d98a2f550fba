package budget_test

import (
	"sync"
	"testing"
	"time"

	"github.com/heed-go/heed/budget"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ratio(t testing.TB, c budget.RatioConfig) *budget.Ratio {
	t.Helper()
	r, err := budget.NewRatio(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// withdrawals counts how many of n retries the budget allows at now.
func withdrawals(b budget.Budget, now time.Time, n int) int {
	ok := 0
	for range n {
		if b.Withdraw(now) {
			ok++
		}
	}
	return ok
}

func TestRatioShare(t *testing.T) {
	r := ratio(t, budget.RatioConfig{Percent: 0.2, MinPerSecond: 0, Window: 10 * time.Second})
	for range 1000 {
		r.Request()
	}
	if got := withdrawals(r, t0, 1000); got != 200 {
		t.Fatalf("%d retries allowed for 1000 requests at 20%%, want 200", got)
	}
}

func TestRatioFloor(t *testing.T) {
	r := ratio(t, budget.RatioConfig{Percent: 0.2, MinPerSecond: 10, Window: 10 * time.Second})
	// No traffic at all: the floor still allows 10/s over the 10 s window.
	if got := withdrawals(r, t0, 1000); got != 100 {
		t.Fatalf("floor allowed %d retries, want 100", got)
	}
}

// The window rolls: retries and requests older than the window stop
// counting.
func TestRatioWindowRolls(t *testing.T) {
	r := ratio(t, budget.RatioConfig{Percent: 0.5, Window: 10 * time.Second, Buckets: 10})
	for range 100 {
		r.Request()
	}
	if got := withdrawals(r, t0, 100); got != 50 {
		t.Fatalf("%d allowed, want 50", got)
	}
	// Five seconds on, the requests and retries are still in the window.
	if got := withdrawals(r, t0.Add(5*time.Second), 10); got != 0 {
		t.Fatalf("%d allowed with the budget spent", got)
	}
	// Eleven seconds on, they have left it; new traffic counts afresh.
	for range 10 {
		r.Request()
	}
	if got := withdrawals(r, t0.Add(11*time.Second), 100); got != 5 {
		t.Fatalf("%d allowed after the window rolled, want 5", got)
	}
	req, ret := r.Counts(t0.Add(11 * time.Second))
	if req != 10 || ret != 5 {
		t.Fatalf("counts %v requests %v retries", req, ret)
	}
}

// Requests made during a quiet spell longer than the window are assumed
// spread over it: only the share inside the window counts.
func TestRatioLazyPlacement(t *testing.T) {
	r := ratio(t, budget.RatioConfig{Percent: 1, Window: 10 * time.Second})
	r.Withdraw(t0) // starts the clock: refused, nothing seen yet
	for range 400 {
		r.Request()
	}
	// 400 requests over 40 s: about 100 fall in the last 10 s.
	req, _ := r.Counts(t0.Add(40 * time.Second))
	if req != 100 {
		t.Fatalf("%v requests counted, want 100", req)
	}
}

func TestTokenBucket(t *testing.T) {
	b, err := budget.NewTokenBucket(budget.TokenBucketConfig{Max: 10, Ratio: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Withdraw(t0) {
		t.Fatal("a full bucket refused")
	}
	for range 4 {
		b.Outcome(true)
	}
	if !b.Withdraw(t0) || b.Tokens() != 6 {
		t.Fatalf("6 tokens left should allow retries (tokens %v)", b.Tokens())
	}
	b.Outcome(true)
	if b.Withdraw(t0) {
		t.Fatal("retry allowed at half full")
	}
	b.Outcome(false) // 5.1 tokens: above half again
	if !b.Withdraw(t0) {
		t.Fatalf("refused at %v tokens", b.Tokens())
	}
	for range 1000 {
		b.Outcome(false)
	}
	if b.Tokens() != 10 {
		t.Fatalf("bucket overfilled to %v", b.Tokens())
	}
	for range 1000 {
		b.Outcome(true)
	}
	if b.Tokens() != 0 {
		t.Fatalf("bucket went to %v", b.Tokens())
	}
}

func TestConcurrent(t *testing.T) {
	r := ratio(t, budget.RatioConfig{})
	tb, _ := budget.NewTokenBucket(budget.TokenBucketConfig{Max: 100, Ratio: 1})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 1000 {
				now := t0.Add(time.Duration(i*1000+j) * time.Millisecond)
				r.Request()
				r.Withdraw(now)
				tb.Outcome(j%2 == 0)
				tb.Withdraw(now)
			}
		})
	}
	wg.Wait()
	req, ret := r.Counts(t0.Add(time.Hour))
	if req != 0 || ret != 0 {
		t.Fatalf("an hour later the window still counts %v/%v", req, ret)
	}
}

func TestValidation(t *testing.T) {
	for _, c := range []budget.RatioConfig{
		{Percent: -0.1, Window: time.Second},
		{Percent: 1.1, Window: time.Second},
		{Percent: 0.2, MinPerSecond: -1, Window: time.Second},
		{Percent: 0.2, Window: -time.Second},
		{Percent: 0.2, Window: time.Second, Buckets: 5000},
	} {
		if _, err := budget.NewRatio(c); err == nil {
			t.Errorf("NewRatio(%+v) accepted", c)
		}
	}
	for _, c := range [][2]float64{{0, 0.1}, {1001, 1}, {10, 0}, {10, 11}} {
		if _, err := budget.NewTokenBucket(budget.TokenBucketConfig{Max: c[0], Ratio: c[1]}); err == nil {
			t.Errorf("NewTokenBucket(%v, %v) accepted", c[0], c[1])
		}
	}
}

func BenchmarkRatioRequest(b *testing.B) {
	r := ratio(b, budget.RatioConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Request()
			r.Outcome(false)
		}
	})
}

// The zero values are usable and are the documented defaults.
func TestZeroValuesAreTheDefaults(t *testing.T) {
	now := time.Unix(0, 0)
	var zr budget.Ratio
	dr, err := budget.NewRatio(budget.RatioConfig{Percent: 0.25, MinPerSecond: 10, Window: 10 * time.Second, Buckets: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		zr.Request()
		dr.Request()
	}
	var zn, dn int
	for i := 0; i < 1000; i++ {
		if zr.Withdraw(now) {
			zn++
		}
		if dr.Withdraw(now) {
			dn++
		}
	}
	if zn != dn || zn != 200 { // 25% of 400, plus 10/s over 10 s
		t.Errorf("zero Ratio allowed %d retries, the default config %d; want 200 each", zn, dn)
	}

	var zb budget.TokenBucket
	if got := zb.Tokens(); got != 10 {
		t.Errorf("zero TokenBucket holds %v tokens, want 10", got)
	}
	for i := 0; i < 5; i++ {
		zb.Outcome(true)
	}
	if zb.Withdraw(now) {
		t.Error("zero TokenBucket at half full allowed a retry")
	}
	if err := (budget.TokenBucketConfig{Ratio: 1}).Validate(); err == nil {
		t.Error("TokenBucketConfig{Ratio: 1} (Max 0) accepted")
	}
	if err := (budget.RatioConfig{Percent: 0.1}).Validate(); err != nil {
		t.Errorf("RatioConfig{Percent: 0.1} refused: %v (Window and Buckets default)", err)
	}
}
