package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemoSmall(t *testing.T) {
	var out, errOut bytes.Buffer
	// The burst covers every request, so nothing waits for a real second.
	err := run(context.Background(), []string{"demo", "-clients", "4", "-requests", "3", "-rate", "500", "-burst", "12"}, &out, &errOut)
	if err != nil {
		t.Fatal(err, errOut.String())
	}
	for _, want := range []string{"no retries", "naive retry loop", "heed defaults, shared client", "heed defaults, client per caller", "attempts/success"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "12/12 requests") {
		t.Fatalf("no progress on stderr:\n%s", errOut.String())
	}
}

func TestBadInput(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"demo", "-clients", "0"},
		{"demo", "-rate", "-3"},
		{"demo", "-rate", "NaN"},
		{"demo", "-burst", "0"},
		{"demo", "-requests", "x"},
		{"demo", "extra"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
