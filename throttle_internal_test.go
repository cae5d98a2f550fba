package heed

import (
	"testing"
	"time"
)

// A waiter looks at its turn again soon when it is near, within a second
// when it is a few seconds off, and at a quarter of the distance when it is
// far: a long line must not wake every second, and a pace that at most
// quadruples within one nap must not make anyone late.
func TestNapLooksAgainInTime(t *testing.T) {
	for _, c := range []struct{ d, want time.Duration }{
		{0, 0},
		{5 * time.Millisecond, 5 * time.Millisecond},
		{20 * time.Millisecond, 20 * time.Millisecond},
		{30 * time.Millisecond, 20 * time.Millisecond},
		{100 * time.Millisecond, 50 * time.Millisecond},
		{1500 * time.Millisecond, 750 * time.Millisecond},
		{2 * time.Second, time.Second},
		{4 * time.Second, time.Second},
		{6 * time.Second, 1500 * time.Millisecond},
		{40 * time.Second, 10 * time.Second},
	} {
		if got := nap(c.d); got != c.want {
			t.Errorf("nap(%v) = %v, want %v", c.d, got, c.want)
		}
	}
	for d := time.Duration(0); d <= time.Minute; d += 7 * time.Millisecond {
		n := nap(d)
		if n > d || d > 0 && n <= 0 {
			t.Fatalf("nap(%v) = %v: not within (0, d]", d, n)
		}
		// Woken after n, a turn moved up by a pace four times as fast is
		// d/4 away at the start, so still ahead (or just due).
		if d > 4*time.Second && n > d/4 {
			t.Fatalf("nap(%v) = %v: later than a quadrupled pace's turn", d, n)
		}
	}
}
