package boltstore_test

import (
	"context"
	"flag"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/heed-go/heed/internal/outboxcrash"
	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/boltstore"
)

var (
	crashWrites = flag.Int("outbox.writes", 2000, "writes in TestKilledWriter")
	crashKills  = flag.Int("outbox.kills", 8, "SIGKILLs in TestKilledWriter")
	crashSeed   = flag.Uint64("outbox.seed", 1, "seed of TestKilledWriter's kill moments")
	crashLife   = flag.Duration("outbox.life", 600*time.Millisecond, "longest life of a writer before its kill")
	crashRate   = flag.Int("outbox.rate", 1000, "writes a writer starts per second")
)

// writer is the child process of TestKilledWriter.
func writer(c outboxcrash.Config) int {
	return outboxcrash.Main(c, func(c outboxcrash.Config) (outbox.Store, func() error, error) {
		// The killed writer's lock goes with its process; wait for it a while.
		s, err := boltstore.Open(c.Store, boltstore.Options{LockTimeout: 10 * time.Second})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	})
}

// TestKilledWriter kills the process that writes to the outbox with SIGKILL
// at random moments, while writes are being queued (the API is down) and
// while queued writes are being replayed (it is up), and starts it again
// each time; in the end every write took effect exactly once at an API that
// deduplicates by Idempotency-Key, with the same body every time it was
// sent. Larger runs: go test ./outbox/boltstore -run KilledWriter
// -outbox.writes 10000 -outbox.kills 20 -v.
func TestKilledWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	srv := outboxcrash.NewServer(t)
	srv.Latency = 2 * time.Millisecond
	db := filepath.Join(t.TempDir(), "outbox.db")
	run := outboxcrash.Run{
		Writes: *crashWrites, Kills: *crashKills, Seed: *crashSeed, Life: *crashLife, UpAfter: *crashKills / 2,
		Start: func(round int, keys string) *exec.Cmd {
			return outboxcrash.Command(outboxcrash.Config{URL: srv.URL, KeysFile: keys, Store: db, Senders: 32, Rate: *crashRate})
		},
		Inspect: func() (outbox.Stats, error) {
			s, err := boltstore.Open(db, boltstore.Options{LockTimeout: 10 * time.Second})
			if err != nil {
				return outbox.Stats{}, err
			}
			defer s.Close()
			return s.Stats(context.Background())
		},
	}
	rep := run.Do(t, srv)
	t.Logf("%d writes, %d kills (%d while writes were unacknowledged, %d with entries queued), at most %d queued, %v: %d effects, %d missing, %d doubled, %d repeats deduplicated",
		*crashWrites, rep.Kills, rep.KilledSending, rep.KilledReplaying, rep.MaxPending, rep.Elapsed.Round(time.Millisecond),
		rep.Effects, rep.Missing, rep.Doubled, rep.Repeats)
	if rep.Missing != 0 || rep.Doubled != 0 || rep.Mismatched != 0 {
		t.Errorf("%d writes lost, %d doubled, %d sent with another body", rep.Missing, rep.Doubled, rep.Mismatched)
	}
	if rep.KilledReplaying == 0 || rep.KilledSending == 0 {
		t.Errorf("%d kills came while writes were being made, %d while entries were queued: the test must kill both", rep.KilledSending, rep.KilledReplaying)
	}
}
