package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestContenders runs every contender briefly and checks that it added
// entries and that what it added reads back, each entry once. It asserts
// nothing about speed.
func TestContenders(t *testing.T) {
	dir := t.TempDir()
	var cells []cell
	for _, con := range contenders {
		for _, writers := range []int{1, 8} {
			c := runCell(con, dir, writers, 200*time.Millisecond, 40)
			if c.Err != nil {
				t.Errorf("%s, %d writers: %v", con.name, writers, c.Err)
				continue
			}
			if c.Entries == 0 || c.PerSec() <= 0 || c.Commits <= 0 || c.Commits > c.Entries {
				t.Errorf("%s, %d writers: %d entries in %v, %d commits", con.name, writers, c.Entries, c.Elapsed, c.Commits)
			}
			if c.P50 <= 0 || c.P50 > c.P99 || c.P99 > c.Max {
				t.Errorf("%s, %d writers: p50 %v, p99 %v, max %v", con.name, writers, c.P50, c.P99, c.Max)
			}
			cells = append(cells, c)
		}
	}
	var b strings.Builder
	writeTable(&b, cells)
	t.Log("\n" + b.String())
	if got := conclude(cells); !strings.Contains(got, "1 writers:") || !strings.Contains(got, "8 writers:") {
		t.Errorf("conclusion compares no concurrency: %s", got)
	}
}

// TestMillionShrunk runs the -million mode at a few thousand entries.
func TestMillionShrunk(t *testing.T) {
	r, err := runMillion(t.TempDir(), 3000, 1000, 8, 40, 1500, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Points) != 3 {
		t.Fatalf("%d points, want 3", len(r.Points))
	}
	for i, p := range r.Points {
		if p.Entries != 1000*(i+1) || p.HeapInuse == 0 || p.FileSize == 0 || p.PerSec <= 0 {
			t.Errorf("point %d: %+v", i, p)
		}
	}
	if r.Pending != 3000 || r.Claimed != 1500 || r.Deleted != 1500 || r.PendingAfter != 1500 {
		t.Errorf("pending %d, claimed %d, deleted %d, pending after %d; want 3000, 1500, 1500, 1500",
			r.Pending, r.Claimed, r.Deleted, r.PendingAfter)
	}
	var b strings.Builder
	writeMillion(&b, r)
	if !strings.Contains(b.String(), "verdict: heap in use") {
		t.Errorf("no verdict:\n%s", b.String())
	}
	t.Log("\n" + b.String())
}

func TestEntries(t *testing.T) {
	for _, size := range []int{0, 40, 1024} {
		e := newEntry(123, size)
		if i, ok := entryIndex(e); !ok || i != 123 {
			t.Errorf("entryIndex = %d, %v", i, ok)
		}
		if want := max(size, len(`{"order":123,"note":""}`)); len(e.Body) != want {
			t.Errorf("body %q: %d bytes, want %d", e.Body, len(e.Body), want)
		}
	}
	if _, err := parseInts("1,x"); err == nil {
		t.Error("parseInts took x")
	}
	if fs, err := filesystem(t.TempDir()); err == nil && fs == "" {
		t.Error("filesystem named nothing")
	}
}

func TestMedian(t *testing.T) {
	run := func(n int64) cell { return cell{Contender: "x", Entries: n, Elapsed: time.Second} }
	m := median([]cell{run(30), run(10), run(20)})
	if m.Entries != 20 || len(m.Rounds) != 3 || m.Rounds[0] != 30 {
		t.Errorf("median = %d entries, rounds %v", m.Entries, m.Rounds)
	}
	if m := median([]cell{run(1), {Contender: "x", Err: context.Canceled}}); m.Err == nil {
		t.Error("median hid a failed run")
	}
}
