package storm

import (
	"context"
	"testing"
	"testing/synctest"
)

// Clients that obey a whole-second Retry-After exactly, without jitter,
// come back together and are refused together: they lose requests and
// waste attempts (the herd the header makes).
func TestExactClientsHerd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := RunInMemory(context.Background(), Default, Exact(nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d ok, %d lost, %.2f attempts per success, %.2fx optimal", r.Succeeded, r.Failed, r.AttemptsPerSuccess(), r.OverOptimal())
		if r.Failed == 0 || r.AttemptsPerSuccess() < 2 {
			t.Errorf("the herd did not show: %+v", r)
		}
	})
}
