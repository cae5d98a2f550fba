package storm

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
)

var stormVariants = []struct {
	name string
	cfg  ServerConfig
}{
	{"retry-after seconds", DefaultServer},
	{"retry-after date, reset epoch", ServerConfig{Rate: 100, Burst: 10, RetryAfter: RetryAfterDate, Reset: ResetEpoch}},
	{"no retry-after", ServerConfig{Rate: 100, Burst: 10, RetryAfter: RetryAfterNone}},
}

// TestStormVirtual plays the public storm in virtual time with heed's
// defaults, shared and per caller, against the server's variants, a few
// times each. It asserts correctness (nothing lost); the numbers are
// logged.
func TestStormVirtual(t *testing.T) {
	runs := 3
	if testing.Short() {
		runs = 1
	}
	for _, v := range stormVariants {
		for _, shared := range []bool{true, false} {
			name := v.name + "/independent"
			if shared {
				name = v.name + "/shared"
			}
			t.Run(name, func(t *testing.T) {
				var line string
				for range runs {
					synctest.Test(t, func(t *testing.T) {
						sc := Scenario{Server: v.cfg, Clients: 50, PerClient: 10}
						r, err := RunInMemory(context.Background(), sc, Heed("heed", shared))
						if err != nil {
							t.Fatal(err)
						}
						if r.Failed != 0 {
							t.Errorf("%d requests failed", r.Failed)
						}
						line += fmt.Sprintf("  [%.3f/%.2fx]", r.AttemptsPerSuccess(), r.OverOptimal())
					})
				}
				t.Log("attempts/success / makespan:" + line)
			})
		}
	}
}
