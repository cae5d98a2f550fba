package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1e9, 0)} }

func TestMeter(t *testing.T) {
	t.Run("quick runs print nothing", func(t *testing.T) {
		var b bytes.Buffer
		c := newFakeClock()
		m := newMeterAt(&b, "storm", false, false, c.now)
		c.add(500 * time.Millisecond)
		m.update(10, 10)
		m.finish()
		if b.Len() > 0 {
			t.Errorf("printed %q", b.String())
		}
	})
	t.Run("a log gets a line every two seconds and the last", func(t *testing.T) {
		var b bytes.Buffer
		c := newFakeClock()
		m := newMeterAt(&b, "storm", false, false, c.now)
		for done := 1; done <= 50; done++ {
			c.add(100 * time.Millisecond)
			m.update(done, 50)
		}
		m.finish()
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 3 || !strings.Contains(lines[2], "50/50 100.0%") || strings.Contains(b.String(), "\r") {
			t.Errorf("got:\n%s", b.String())
		}
	})
	t.Run("a terminal gets one redrawn line", func(t *testing.T) {
		var b bytes.Buffer
		c := newFakeClock()
		m := newMeterAt(&b, "chain", false, true, c.now)
		c.add(2 * time.Second)
		m.update(5, 10)
		c.add(time.Second)
		m.update(10, 10)
		m.finish()
		if strings.Count(b.String(), "\r") != 2 || strings.Count(b.String(), "\n") != 1 || !strings.Contains(b.String(), "[###############...............] 5/10") {
			t.Errorf("got %q", b.String())
		}
	})
	t.Run("quiet prints nothing", func(t *testing.T) {
		var b bytes.Buffer
		c := newFakeClock()
		m := newMeterAt(&b, "demo", true, true, c.now)
		c.add(5 * time.Second)
		m.update(10, 10)
		m.finish()
		if b.Len() > 0 {
			t.Errorf("printed %q", b.String())
		}
	})
}
