package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heed-go/heed/outbox"
)

// Run tests that a store keeps the [outbox.Store] contract: entries come
// back as they were written, Claim hands out only due, live, unleased
// entries soonest first and each to one caller, Update and Delete end
// leases, List pages in queue order, Stats counts, and concurrent Adds all
// land. open must return a new, empty store for each subtest; the suite
// does not close it (register a cleanup in open).
func Run(t *testing.T, open func(t *testing.T) outbox.Store) {
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, open(t)) })
	t.Run("ClaimDueSoonestFirst", func(t *testing.T) { claimDue(t, open(t)) })
	t.Run("LeaseEndsWithUpdate", func(t *testing.T) { leaseEnds(t, open(t)) })
	t.Run("DeadIsKeptNotClaimed", func(t *testing.T) { deadKept(t, open(t)) })
	t.Run("NotFound", func(t *testing.T) { notFound(t, open(t)) })
	t.Run("ListPages", func(t *testing.T) { listPages(t, open(t)) })
	t.Run("ConcurrentAddAndClaim", func(t *testing.T) { concurrent(t, open(t)) })
}

// T0 is the time the suite's entries are queued at.
var T0 = time.Unix(1_800_000_000, 0)

// NewEntry returns an entry like the ones heed queues, due at next.
func NewEntry(i int, next time.Time) *outbox.Entry {
	return &outbox.Entry{
		Key: "api.example", Method: http.MethodPost, URL: "https://api.example/v1/orders?n=" + strconv.Itoa(i),
		Header: http.Header{"Idempotency-Key": {fmt.Sprintf("key-%d", i)}, "Content-Type": {"application/json"}},
		Body:   []byte(fmt.Sprintf(`{"order":%d}`, i)),
		Queued: T0, Expires: T0.Add(24 * time.Hour), NextAt: next,
		LastStatus: http.StatusServiceUnavailable,
	}
}

func add(t *testing.T, s outbox.Store, e *outbox.Entry) *outbox.Entry {
	t.Helper()
	if err := s.Add(context.Background(), e); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if e.ID == "" {
		t.Fatal("Add left the ID empty")
	}
	return e
}

func claim(t *testing.T, s outbox.Store, now time.Time, max int) []*outbox.Entry {
	t.Helper()
	got, err := s.Claim(context.Background(), now, max)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got
}

func ids(es []*outbox.Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func sameEntry(t *testing.T, got, want *outbox.Entry) {
	t.Helper()
	g, w := *got, *want
	for _, p := range []struct{ g, w *time.Time }{{&g.Queued, &w.Queued}, {&g.Expires, &w.Expires}, {&g.NextAt, &w.NextAt}} {
		if !p.g.Equal(*p.w) {
			t.Errorf("entry %s: time %v, want %v", want.ID, *p.g, *p.w)
		}
		*p.g, *p.w = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("entry came back as\n%+v\nwant\n%+v", g, w)
	}
}

func roundTrip(t *testing.T, s outbox.Store) {
	e := NewEntry(1, T0)
	e.Header["Authorization"] = []string{"Bearer a", "Bearer b"}
	e.Body = []byte{0, 1, 2, 255}
	e.LastError, e.Replays = "dial tcp: connection refused", 3
	want := add(t, s, e.Clone())
	e2 := add(t, s, NewEntry(2, T0))
	if compareIDs(e2.ID, want.ID) <= 0 {
		t.Errorf("IDs %s then %s: later entries need larger IDs", want.ID, e2.ID)
	}
	got, err := s.Get(context.Background(), want.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameEntry(t, got, want)
	empty := add(t, s, &outbox.Entry{Method: http.MethodDelete, URL: "http://h/x", NextAt: T0})
	got, err = s.Get(context.Background(), empty.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameEntry(t, got, empty)
}

func claimDue(t *testing.T, s outbox.Store) {
	late := add(t, s, NewEntry(1, T0.Add(time.Minute)))
	second := add(t, s, NewEntry(2, T0.Add(time.Second)))
	first := add(t, s, NewEntry(3, T0))
	tie := add(t, s, NewEntry(4, T0))
	if got := ids(claim(t, s, T0.Add(-time.Nanosecond), 10)); len(got) != 0 {
		t.Fatalf("nothing is due yet, Claim gave %v", got)
	}
	got := ids(claim(t, s, T0.Add(time.Second), 2))
	if want := []string{first.ID, tie.ID}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Claim(max 2) = %v, want %v (soonest first, then queue order)", got, want)
	}
	got = ids(claim(t, s, T0.Add(time.Second), 10))
	if want := []string{second.ID}; !reflect.DeepEqual(got, want) {
		t.Fatalf("second Claim = %v, want %v: leased entries must not go out twice", got, want)
	}
	if got := ids(claim(t, s, T0.Add(time.Hour), 10)); !reflect.DeepEqual(got, []string{late.ID}) {
		t.Fatalf("an hour on, Claim = %v, want only %v", got, late.ID)
	}
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 4 || st.Dead != 0 || !st.NextAt.Equal(T0) {
		t.Errorf("Stats = %+v, want 4 pending, 0 dead, next at %v", st, T0)
	}
}

func leaseEnds(t *testing.T, s outbox.Store) {
	e := add(t, s, NewEntry(1, T0))
	got := claim(t, s, T0, 1)
	if len(got) != 1 {
		t.Fatalf("Claim = %v", ids(got))
	}
	c := got[0]
	c.Replays++
	c.NextAt = T0.Add(time.Minute)
	c.LastStatus, c.LastError = 0, "connection reset"
	if err := s.Update(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, T0.Add(time.Second), 1); len(got) != 0 {
		t.Fatalf("rescheduled a minute on, yet claimed at once: %v", ids(got))
	}
	got = claim(t, s, T0.Add(time.Minute), 1)
	if len(got) != 1 || got[0].ID != e.ID {
		t.Fatalf("after Update the entry is due again at its NextAt; Claim = %v", ids(got))
	}
	sameEntry(t, got[0], c)
	if err := s.Delete(context.Background(), e.ID); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, T0.Add(time.Hour), 1); len(got) != 0 {
		t.Fatalf("deleted, yet claimed: %v", ids(got))
	}
	if st, _ := s.Stats(context.Background()); st.Pending != 0 || !st.NextAt.IsZero() {
		t.Errorf("Stats after delete = %+v", st)
	}
}

func deadKept(t *testing.T, s outbox.Store) {
	e := add(t, s, NewEntry(1, T0))
	c := claim(t, s, T0, 1)[0]
	c.Dead, c.LastStatus = true, http.StatusUnprocessableEntity
	if err := s.Update(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, T0.Add(48*time.Hour), 10); len(got) != 0 {
		t.Fatalf("a dead entry was claimed: %v", ids(got))
	}
	if st, _ := s.Stats(context.Background()); st.Pending != 0 || st.Dead != 1 {
		t.Errorf("Stats = %+v, want 1 dead", st)
	}
	got, err := s.Get(context.Background(), e.ID)
	if err != nil || !got.Dead {
		t.Fatalf("Get(dead) = %+v, %v", got, err)
	}
	got.Dead, got.NextAt = false, T0.Add(time.Hour) // revived by an operator
	if err := s.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	if c := claim(t, s, T0.Add(time.Hour), 10); len(c) != 1 {
		t.Fatalf("revived, yet not claimed: %v", ids(c))
	}
}

func notFound(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	if _, err := s.Get(ctx, "424242"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "424242"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Delete(unknown) = %v, want ErrNotFound", err)
	}
	e := add(t, s, NewEntry(1, T0))
	c := claim(t, s, T0, 1)[0]
	if err := s.Delete(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, c); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Update(deleted) = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "not-an-id"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Get(malformed) = %v, want ErrNotFound", err)
	}
}

func listPages(t *testing.T, s outbox.Store) {
	var want []string
	for i := range 25 {
		e := add(t, s, NewEntry(i, T0.Add(time.Duration(25-i)*time.Second)))
		want = append(want, e.ID)
	}
	c := claim(t, s, T0.Add(time.Hour), 1)[0]
	c.Dead = true
	if err := s.Update(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for {
		page, err := s.List(context.Background(), after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 10 {
			t.Fatalf("List(limit 10) gave %d", len(page))
		}
		got = append(got, ids(page)...)
		after = page[len(page)-1].ID
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List pages = %v, want %v (queue order, dead included)", got, want)
	}
}

func concurrent(t *testing.T, s outbox.Store) {
	const writers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := s.Add(context.Background(), NewEntry(w*each+i, T0)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ClaimedOnce(t, writers*each, s, s, s, s)
}

// ClaimedOnce has every store given (the same store several times, or
// workers sharing one) claim due entries at T0 at once, seven at a time,
// until none is left, and checks that n entries were handed out, each
// exactly once.
func ClaimedOnce(t *testing.T, n int, stores ...outbox.Store) {
	t.Helper()
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for _, s := range stores {
		wg.Go(func() {
			for {
				got, err := s.Claim(context.Background(), T0, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, e := range got {
					seen[e.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d distinct entries claimed, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("entry %s claimed %d times", id, c)
		}
	}
}
