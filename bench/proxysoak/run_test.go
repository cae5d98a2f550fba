package main

import (
	"strings"
	"testing"
)

func TestReportOK(t *testing.T) {
	base := Sample{FDs: 12, RSSKiB: 20000, Goroutines: 30}
	r := Report{Baseline: base, After: Sample{FDs: 13, RSSKiB: 25000, Goroutines: 31}, Statuses: map[string]int{"200": 10}}
	if !r.OK() {
		t.Error("a proxy back near its baseline reported leaking")
	}
	for name, after := range map[string]Sample{
		"fds":        {FDs: 40, RSSKiB: 20000, Goroutines: 30},
		"goroutines": {FDs: 12, RSSKiB: 20000, Goroutines: 90},
		"memory":     {FDs: 12, RSSKiB: 40000, Goroutines: 30},
	} {
		if (Report{Baseline: base, After: after}).OK() {
			t.Errorf("%s growth not caught", name)
		}
	}
	if (Report{Baseline: base, After: base, Unclear: 1}).OK() {
		t.Error("an unclear answer not caught")
	}
	var b strings.Builder
	r.Write(&b)
	if !strings.Contains(b.String(), "| after the load | 13 | 31 | 24.4 MiB |") {
		t.Errorf("report:\n%s", b.String())
	}
}
