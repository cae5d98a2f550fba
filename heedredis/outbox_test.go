package heedredis_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heed-go/heed/heedredis"
	"github.com/heed-go/heed/heedredis/redistest"
	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/outboxtest"
)

func newOutbox(t *testing.T, rdb redis.UniversalClient, cfg heedredis.OutboxConfig) *heedredis.Outbox {
	t.Helper()
	o, err := heedredis.NewOutbox(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func claimOf(t *testing.T, o *heedredis.Outbox, now time.Time, max int) []*outbox.Entry {
	t.Helper()
	got, err := o.Claim(context.Background(), now, max)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got
}

func entryIDs(es []*outbox.Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// The conformance suite, each subtest on an outbox of its own name in one
// server.
func TestOutboxConformance(t *testing.T) {
	srv := redistest.Start(t)
	rdb := patientClient(t, srv)
	n := 0
	outboxtest.Run(t, func(t *testing.T) outbox.Store {
		n++
		return newOutbox(t, rdb, heedredis.OutboxConfig{Name: fmt.Sprintf("conformance-%d", n)})
	})
}

// Worker a claims entries and is never heard from again, as if killed
// mid-delivery: b cannot claim them within the lease, takes them over
// after it, and reports them; a's late reports lose to b's.
func TestOutboxLeaseTakeover(t *testing.T) {
	srv := redistest.Start(t)
	rdb := patientClient(t, srv)
	ctx := context.Background()
	const lease = 300 * time.Millisecond
	cfg := func(consumer string) heedredis.OutboxConfig {
		return heedredis.OutboxConfig{Name: "orders", Consumer: consumer, Lease: lease}
	}
	a, b := newOutbox(t, rdb, cfg("a")), newOutbox(t, rdb, cfg("b"))
	var want []string // soonest first: the last added is due first
	for i := range 3 {
		e := outboxtest.NewEntry(i, outboxtest.T0.Add(-time.Duration(i)*time.Second))
		if err := a.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		want = append([]string{e.ID}, want...)
	}
	now := outboxtest.T0.Add(time.Hour)

	start := time.Now()
	held := claimOf(t, a, now, 10)
	claimed := time.Now()
	if got := entryIDs(held); !reflect.DeepEqual(got, want) {
		t.Fatalf("a claimed %v, want %v", got, want)
	}
	if got := claimOf(t, b, now, 10); len(got) != 0 && time.Since(start) < lease {
		t.Fatalf("b claimed %v within a's lease", entryIDs(got))
	}
	if st, err := b.Stats(ctx); err != nil || st.Pending != 3 || !st.NextAt.Equal(outboxtest.T0.Add(-2*time.Second)) {
		t.Errorf("Stats while a holds everything = %+v, %v", st, err)
	}

	time.Sleep(time.Until(claimed.Add(lease + 20*time.Millisecond)))
	took := claimOf(t, b, now, 10)
	if got := entryIDs(took); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a's lease b claimed %v, want %v", got, want)
	}
	for i := range took {
		if !reflect.DeepEqual(took[i], held[i]) {
			t.Errorf("b got\n%+v\na had\n%+v", took[i], held[i])
		}
	}
	if got := claimOf(t, a, now, 10); len(got) != 0 {
		t.Fatalf("a claimed %v, which b holds", entryIDs(got))
	}

	// a's report on an entry b holds is dropped: writing it would put the
	// entry back in the queue while b is sending it.
	stale := held[0].Clone()
	stale.Replays, stale.NextAt = 7, now
	if err := a.Update(ctx, stale); !errors.Is(err, outbox.ErrLeaseLost) {
		t.Errorf("a's Update of an entry b holds = %v, want ErrLeaseLost", err)
	}
	rescheduled := took[0]
	rescheduled.Replays, rescheduled.NextAt = 1, now.Add(time.Minute)
	if err := b.Update(ctx, rescheduled); err != nil {
		t.Fatalf("b's Update: %v", err)
	}
	if got, err := b.Get(ctx, rescheduled.ID); err != nil || got.Replays != 1 || !got.NextAt.Equal(now.Add(time.Minute)) {
		t.Errorf("after b's Update, Get = %+v, %v", got, err)
	}
	if err := b.Delete(ctx, took[1].ID); err != nil {
		t.Fatalf("b's Delete: %v", err)
	}
	if err := a.Update(ctx, held[1]); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("a's Update of an entry b deleted = %v, want ErrNotFound", err)
	}
	// a delivered its last entry after all: its Delete ends b's lease.
	if err := a.Delete(ctx, held[2].ID); err != nil {
		t.Fatalf("a's late Delete: %v", err)
	}
	if err := b.Update(ctx, took[2]); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("b's Update of an entry a deleted = %v, want ErrNotFound", err)
	}
	if got := claimOf(t, b, now.Add(time.Minute), 10); !reflect.DeepEqual(entryIDs(got), []string{rescheduled.ID}) {
		t.Errorf("at its new time b claimed %v, want %v", entryIDs(got), rescheduled.ID)
	}

	// a holds nothing and has been idle for a lease: the next Claim drops
	// it from the group (a third worker's, whose first Claim prunes; c
	// itself joins the group only once it reads a message).
	newOutbox(t, rdb, cfg("c")).Claim(ctx, now, 1)
	consumers, err := rdb.XInfoConsumers(ctx, "heed:outbox:{orders}:stream", "workers").Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range consumers {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"b"}) {
		t.Errorf("consumers %v, want b alone: a holds nothing and was idle", names)
	}
}

// Two workers, two goroutines each, claim 300 due entries at once: each
// goes out exactly once.
func TestOutboxConcurrentWorkers(t *testing.T) {
	srv := redistest.Start(t)
	rdb := patientClient(t, srv)
	ctx := context.Background()
	workers := []*heedredis.Outbox{
		newOutbox(t, rdb, heedredis.OutboxConfig{Consumer: "a"}),
		newOutbox(t, rdb, heedredis.OutboxConfig{Consumer: "b"}),
	}
	const n = 300
	for i := range n {
		if err := workers[i%2].Add(ctx, outboxtest.NewEntry(i, outboxtest.T0)); err != nil {
			t.Fatal(err)
		}
	}
	outboxtest.ClaimedOnce(t, n, workers[0], workers[0], workers[1], workers[1])
	pending, err := rdb.XPending(ctx, "heed:outbox:{outbox}:stream", "workers").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count != n {
		t.Errorf("%d entries leased in the stream, want %d", pending.Count, n)
	}
}

// Entries deleted while a worker holds them, by another instance or
// behind the store's back, and messages that are not entries, are
// skipped and cleared from the stream.
func TestOutboxSkipsDeleted(t *testing.T) {
	srv := redistest.Start(t)
	rdb := patientClient(t, srv)
	ctx := context.Background()
	const lease = 100 * time.Millisecond
	cfg := func(consumer string) heedredis.OutboxConfig {
		return heedredis.OutboxConfig{Prefix: "shop", Name: "orders", Consumer: consumer, Lease: lease}
	}
	a, b, operator := newOutbox(t, rdb, cfg("a")), newOutbox(t, rdb, cfg("b")), newOutbox(t, rdb, cfg("operator"))
	const stream = "shop:outbox:{orders}:stream"
	var added []*outbox.Entry
	for i := range 3 {
		e := outboxtest.NewEntry(i, outboxtest.T0)
		if err := a.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		added = append(added, e)
	}
	held := claimOf(t, a, outboxtest.T0, 2)
	claimed := time.Now()
	if len(held) != 2 {
		t.Fatalf("claimed %v", entryIDs(held))
	}
	if err := operator.Delete(ctx, held[0].ID); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, stream).Val(); n != 1 {
		t.Errorf("after deleting a leased entry the stream holds %d messages, want 1", n)
	}
	if err := rdb.HDel(ctx, "shop:outbox:{orders}:entries", held[1].ID).Err(); err != nil { // as with redis-cli
		t.Fatal(err)
	}
	// Not entries: an unknown ID and a message of another shape, unread.
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"id", "424242"}})
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"junk", "1"}})
	if got := claimOf(t, b, outboxtest.T0, 10); !reflect.DeepEqual(entryIDs(got), []string{added[2].ID}) {
		t.Errorf("b claimed %v, want only %s", entryIDs(got), added[2].ID)
	}
	if err := b.Delete(ctx, added[2].ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(claimed.Add(lease + 20*time.Millisecond)))
	if got := claimOf(t, b, outboxtest.T0, 10); len(got) != 0 {
		t.Errorf("after a's lease b claimed %v, all deleted", entryIDs(got))
	}
	if n := rdb.XLen(ctx, stream).Val(); n != 0 {
		t.Errorf("the stream holds %d messages, want none", n)
	}
	if p := rdb.XPending(ctx, stream, "workers").Val(); p == nil || p.Count != 0 {
		t.Errorf("pending %+v, want none", p)
	}
	if n := rdb.HLen(ctx, "shop:outbox:{orders}:msgs").Val(); n != 0 {
		t.Errorf("%d leases recorded, want none", n)
	}
	if n := rdb.ZCard(ctx, "shop:outbox:{orders}:out").Val(); n != 0 {
		t.Errorf("%d entries recorded as handed out, want none", n)
	}
}

// Every key is under the prefix with the name as hash tag; IDs in other
// spellings name no entry; every call carries the timeout.
func TestOutboxKeysAndIDs(t *testing.T) {
	srv := redistest.Start(t)
	rdb := patientClient(t, srv)
	calls := watch(rdb, 2*time.Second)
	ctx := context.Background()
	o := newOutbox(t, rdb, heedredis.OutboxConfig{Prefix: "shop", Name: "orders"})
	rdb = patientClient(t, srv) // the test's own calls, unwatched
	e := outboxtest.NewEntry(1, outboxtest.T0)
	if err := o.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	dead := outboxtest.NewEntry(2, outboxtest.T0)
	dead.Dead = true
	if err := o.Add(ctx, dead); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"0" + e.ID, "+" + e.ID, "", "x", "-1", "0", "99999999999999999999999"} {
		if _, err := o.Get(ctx, id); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
		if err := o.Delete(ctx, id); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want ErrNotFound", id, err)
		}
		bad := e.Clone()
		bad.ID = id
		if err := o.Update(ctx, bad); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("Update(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := o.List(ctx, "x", 10); err == nil {
		t.Error("List after a malformed ID: no error")
	}
	got := claimOf(t, o, outboxtest.T0, 10)
	if !reflect.DeepEqual(entryIDs(got), []string{e.ID}) {
		t.Fatalf("Claim = %v, want %s (the dead one added dead is not claimed)", entryIDs(got), e.ID)
	}
	if st, err := o.Stats(ctx); err != nil || st.Pending != 1 || st.Dead != 1 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "shop:outbox:{orders}:") {
			t.Errorf("key %q outside shop:outbox:{orders}:", k)
		}
	}
	if len(keys) != 7 { // all but due, empty now
		t.Errorf("keys %v", keys)
	}
	calls.check(t)
}

func TestOutboxBadConfig(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	for _, cfg := range []heedredis.OutboxConfig{
		{Prefix: "a{b}"}, {Name: "{orders}"}, {Lease: -time.Second}, {Lease: time.Microsecond}, {Timeout: -1},
	} {
		if _, err := heedredis.NewOutbox(rdb, cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := heedredis.NewOutbox(nil, heedredis.OutboxConfig{}); err == nil {
		t.Error("nil client accepted")
	}
	deaf := redis.NewClient(&redis.Options{Addr: srv.Addr}) // ContextTimeoutEnabled left off
	defer deaf.Close()
	if _, err := heedredis.NewOutbox(deaf, heedredis.OutboxConfig{}); err == nil || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Errorf("a client ignoring context deadlines: %v", err)
	}
}

// The stream and its group lost (deleted by hand, or the server restarted
// without its data): reports still land, and the next Claim makes the
// group again.
func TestOutboxGroupLost(t *testing.T) {
	srv := redistest.Start(t)
	rdb := patientClient(t, srv)
	ctx := context.Background()
	o := newOutbox(t, rdb, heedredis.OutboxConfig{})
	e := outboxtest.NewEntry(1, outboxtest.T0)
	if err := o.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	c := claimOf(t, o, outboxtest.T0, 1)[0]
	if err := rdb.Del(ctx, "heed:outbox:{outbox}:stream").Err(); err != nil {
		t.Fatal(err)
	}
	if err := o.Update(ctx, c); err != nil {
		t.Fatalf("Update after the group was lost: %v", err)
	}
	if got := claimOf(t, o, outboxtest.T0, 1); !reflect.DeepEqual(entryIDs(got), []string{e.ID}) {
		t.Fatalf("Claim after the group was lost = %v, want %s", entryIDs(got), e.ID)
	}
	srv.Restart()
	e2 := outboxtest.NewEntry(2, outboxtest.T0)
	if err := o.Add(ctx, e2); err != nil {
		t.Fatal(err)
	}
	if got := claimOf(t, o, outboxtest.T0, 1); len(got) != 1 {
		t.Fatalf("Claim after a restart = %v", entryIDs(got))
	}
}
