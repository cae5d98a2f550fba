package main

import (
	"strings"
	"testing"
	"time"
)

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	WriteTable(&b, []Row{
		{Path: "direct", OK: 72, Failed: 428, Attempts: 500, Makespan: 640 * time.Millisecond, Optimal: 4900 * time.Millisecond, Statuses: map[string]int{"429": 428, "200": 72}},
		{Path: "heed proxy", OK: 500, Attempts: 540, Makespan: 5200 * time.Millisecond, Optimal: 4900 * time.Millisecond, Statuses: map[string]int{"200": 500}},
	})
	out := b.String()
	for _, want := range []string{
		"| direct | 72 | 428 | 500 | 6.94 | 0.64 s | n/a | 200: 72, 429: 428 |",
		"| heed proxy | 500 | 0 | 540 | 1.08 | 5.20 s | 1.06x | 200: 500 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if (Row{}).AttemptsPerSuccess() != 0 {
		t.Error("attempts per success of nothing")
	}
}
