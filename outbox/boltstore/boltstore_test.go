package boltstore_test

import (
	"os"
	"path/filepath"
	"testing"

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
