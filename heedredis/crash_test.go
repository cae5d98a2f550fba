package heedredis_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/internal/outboxcrash"
	"github.com/heed-go/heed/outbox"
)

var (
	crashWrites = flag.Int("outbox.writes", 2000, "writes in TestKilledWorker")
	crashKills  = flag.Int("outbox.kills", 8, "SIGKILLs in TestKilledWorker")
	crashSeed   = flag.Uint64("outbox.seed", 1, "seed of TestKilledWorker's kill moments")
	crashRate   = flag.Int("outbox.rate", 1000, "writes a writer starts per second")
)

const crashLease = 500 * time.Millisecond

// worker is the child process of TestKilledWorker.
func worker(c outboxcrash.Config) int {
	return outboxcrash.Main(c, func(c outboxcrash.Config) (outbox.Store, func() error, error) {
		rdb := redis.NewClient(&redis.Options{Addr: c.Store, ContextTimeoutEnabled: true})
		s, err := heedredis.NewOutbox(rdb, heedredis.OutboxConfig{Name: "crash", Consumer: c.Worker, Lease: c.Lease})
		if err != nil {
			rdb.Close()
			return nil, nil, err
		}
		return s, rdb.Close, nil
	})
}

// TestKilledWorker runs two workers on one Redis outbox: one that makes
// writes and replays, killed with SIGKILL at random moments (while it
// queues, and while it delivers: the entries it holds then are leased to
// it) and started again under a new name each time, and one beside it
// that replays and is never killed. The killed worker's leased entries are
// taken over once their lease ends; in the end every write took effect
// exactly once at an API that deduplicates by Idempotency-Key. Larger
// runs: go test ./heedredis -run KilledWorker -outbox.writes 10000
// -outbox.kills 20 -v.
func TestKilledWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	srv := outboxcrash.NewServer(t)
	srv.Latency = 2 * time.Millisecond
	rs := redistest.Start(t)
	rdb := patientClient(t, rs)
	inspect, err := heedredis.NewOutbox(rdb, heedredis.OutboxConfig{Name: "crash", Consumer: "inspector"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(worker, keys string, stay bool) outboxcrash.Config {
		return outboxcrash.Config{URL: srv.URL, KeysFile: keys, Store: rs.Addr, Worker: worker, Senders: 32,
			Rate: *crashRate, Lease: crashLease, Stay: stay}
	}
	empty := t.TempDir() + "/none"
	os.WriteFile(empty, nil, 0o600)
	leasedAtKill := 0
	round := 0
	run := outboxcrash.Run{
		Writes: *crashWrites, Kills: *crashKills, Seed: *crashSeed, Life: 800 * time.Millisecond, UpAfter: *crashKills / 2,
		Timeout: 90 * time.Second,
		Start: func(r int, keys string) *exec.Cmd {
			round = r
			return outboxcrash.Command(cfg("writer-"+strconv.Itoa(r), keys, false))
		},
		Beside: func() *exec.Cmd { return outboxcrash.Command(cfg("beside", empty, true)) },
		Inspect: func() (outbox.Stats, error) {
			// The entries the killed worker held: its leases, to be taken over.
			pend, err := rdb.XPending(context.Background(), "heed:outbox:{crash}:stream", "workers").Result()
			if err != nil {
				return outbox.Stats{}, err
			}
			held := pend.Consumers["writer-"+strconv.Itoa(round)]
			leasedAtKill += int(held)
			if held > 0 {
				t.Logf("the killed worker held %d entries mid-delivery", held)
			}
			return inspect.Stats(context.Background())
		},
	}
	rep := run.Do(t, srv)
	t.Logf("%d writes, %d kills (%d while writes were unacknowledged, %d with entries queued), %d entries leased to killed workers, at most %d queued, %v: %d effects, %d missing, %d doubled, %d repeats deduplicated",
		*crashWrites, rep.Kills, rep.KilledSending, rep.KilledReplaying, leasedAtKill, rep.MaxPending, rep.Elapsed.Round(time.Millisecond),
		rep.Effects, rep.Missing, rep.Doubled, rep.Repeats)
	if rep.Missing != 0 || rep.Doubled != 0 || rep.Mismatched != 0 {
		t.Errorf("%d writes lost, %d doubled, %d sent with another body", rep.Missing, rep.Doubled, rep.Mismatched)
	}
	if leasedAtKill == 0 {
		t.Error("no kill caught the worker holding entries: the test did not kill a delivery")
	}
	if st, _ := inspect.Stats(context.Background()); st.Pending != 0 || st.Dead != 0 {
		t.Errorf("left in the outbox: %+v", st)
	}
}
