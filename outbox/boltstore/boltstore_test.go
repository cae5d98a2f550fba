package boltstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heed-go/heed/internal/outboxcrash"
	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/boltstore"
	"github.com/heed-go/heed/outbox/outboxtest"
)

func TestMain(m *testing.M) {
	if c, ok := outboxcrash.ChildConfig(); ok {
		os.Exit(writer(c))
	}
	goleak.VerifyTestMain(m)
}

func open(t *testing.T) outbox.Store {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { outboxtest.Run(t, open) }

func TestReopenKeepsEntriesAndDropsLeases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	ctx := context.Background()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Add(ctx, outboxtest.NewEntry(i, outboxtest.T0)); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.Claim(ctx, outboxtest.T0, 2); len(got) != 2 {
		t.Fatalf("claimed %d", len(got))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v), want 0600: entries hold credentials", fi.Mode().Perm(), err)
	}
	if _, err := boltstore.Open(path, boltstore.Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, boltstore.ErrLocked) {
		t.Errorf("a second Open of an open file: %v", err)
	}
	s.Close() // as a killed process would: the leases end with it
	s, err = boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, _ := s.Stats(ctx)
	if st.Pending != 3 {
		t.Errorf("after reopening: %+v", st)
	}
	if got, _ := s.Claim(ctx, outboxtest.T0, 10); len(got) != 3 {
		t.Errorf("after reopening %d entries are claimable, want 3: leases live in the process", len(got))
	}
	if _, err := s.List(ctx, "x", 1); err == nil {
		t.Error("List after a malformed ID returned no error")
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := boltstore.Open(filepath.Join(t.TempDir(), "no", "such", "dir", "outbox.db"), boltstore.Options{}); err == nil {
		t.Error("Open in a missing directory returned no error")
	}
	bad := filepath.Join(t.TempDir(), "not-a-db")
	os.WriteFile(bad, []byte("this is not a bbolt file, and it is long enough to be read as one......"), 0o600)
	if _, err := boltstore.Open(bad, boltstore.Options{}); err == nil {
		t.Error("Open of a file that is not a store returned no error")
	}
}
