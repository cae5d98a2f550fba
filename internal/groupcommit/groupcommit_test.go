package groupcommit_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/internal/groupcommit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every item is committed once, each caller gets its own item's error, and
// under contention commits carry more than one item.
func TestEveryItemOnceWithItsError(t *testing.T) {
	var g groupcommit.Group[int]
	var mu sync.Mutex
	seen := map[int]int{}
	var commits, running atomic.Int64
	commit := func(batch []int) []error {
		if running.Add(1) != 1 {
			t.Error("two commits at once")
		}
		defer running.Add(-1)
		commits.Add(1)
		errs := make([]error, len(batch))
		mu.Lock()
		for i, v := range batch {
			seen[v]++
			if v%7 == 0 {
				errs[i] = fmt.Errorf("item %d refused", v)
			}
		}
		mu.Unlock()
		for range 1000 { // a commit takes a while: callers pile up behind it
			_ = fmt.Sprint(len(batch))
		}
		return errs
	}
	const callers, each = 32, 50
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				v := c*each + i
				err := g.Do(v, commit)
				if (v%7 == 0) != (err != nil) {
					t.Errorf("item %d: error %v", v, err)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != callers*each {
		t.Fatalf("%d items committed, want %d", len(seen), callers*each)
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("item %d committed %d times", v, n)
		}
	}
	if commits.Load() >= callers*each {
		t.Errorf("%d commits for %d items: nothing was shared", commits.Load(), callers*each)
	}
}

func TestNilErrorsMeanAllCommitted(t *testing.T) {
	var g groupcommit.Group[string]
	if err := g.Do("a", func([]string) []error { return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := g.Do("b", func(b []string) []error { return []error{boom} }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}
