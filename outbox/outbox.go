// Package outbox holds the types of heed's durable outbox: the [Entry] a
// failed write becomes, and the [Store] that keeps entries until they are
// delivered.
//
// A request that heed may repeat safely (it carries an Idempotency-Key)
// and that failed for a reason time can fix (the server down, throttling,
// an open circuit breaker) is written to the outbox before the call
// returns, when the policy has one (heed.WithOutbox). A worker
// (heed.Policy.Replay) sends it again later through the same policy, with
// the same Idempotency-Key and the same body bytes, until it is delivered
// or its time to live runs out. Delivery is at least once; the effect
// happens exactly once where the server honours Idempotency-Key.
//
// Two stores come with heed: [github.com/heed-go/heed/outbox/boltstore],
// an embedded crash-safe file that needs no server, and heedredis's
// Redis Streams store for a fleet of workers.
// [github.com/heed-go/heed/outbox/outboxtest] has an in-memory store for
// tests and the conformance tests every store must pass.
package outbox

import (
	"context"
	"errors"
	"net/http"
	"time"
)

var (
	// ErrNotFound is returned for an entry the store does not hold.
	ErrNotFound = errors.New("outbox: no such entry")
	// ErrLeaseLost is returned by a shared store's Update for an entry
	// whose lease ran out and went to another worker: that worker's report
	// counts, and this one is dropped.
	ErrLeaseLost = errors.New("outbox: the entry's lease went to another worker")
)

// Entry is one queued request and what became of its replays.
type Entry struct {
	// ID names the entry in its store; the store sets it in Add. IDs are
	// decimal numbers that grow in the order entries were added.
	ID string
	// Key is the policy key the request was filed under (its host by
	// default): the replay shares that key's breaker, budget and pacing.
	Key string
	// Method, URL, Header and Body are the request as it will be sent
	// again, the Idempotency-Key among the header's fields.
	Method string
	URL    string
	Header http.Header
	Body   []byte
	// Queued is when the entry was added; Expires when it becomes dead if
	// still undelivered.
	Queued, Expires time.Time
	// NextAt is when the entry is due to be sent again.
	NextAt time.Time
	// Replays counts the sends made from the outbox.
	Replays int
	// LastStatus and LastError say how the last send failed (the one
	// that queued the entry, then each replay): the response's status, or
	// 0 and the error's text.
	LastStatus int
	LastError  string
	// Dead says the entry will not be sent again: its time to live ran
	// out, or the server refused it for a reason time cannot fix. A dead
	// entry stays in the store until it is dropped or revived.
	Dead bool
}

// IdempotencyKey returns the entry's Idempotency-Key header field (or
// X-Idempotency-Key), the key the server deduplicates replays by.
func (e *Entry) IdempotencyKey() string {
	if k := e.Header.Get("Idempotency-Key"); k != "" {
		return k
	}
	return e.Header.Get("X-Idempotency-Key")
}

// State names the entry's state: "dead", "due" (at now) or "waiting".
func (e *Entry) State(now time.Time) string {
	switch {
	case e.Dead:
		return "dead"
	case !e.NextAt.After(now):
		return "due"
	}
	return "waiting"
}

// Store keeps entries durably. Every method is safe for concurrent use.
//
// A store hands each due entry to one worker at a time: Claim leases it
// until the worker reports with Update or Delete, or until the worker is
// gone (its process ended, or for a shared store its lease expired), when
// the entry is handed out again. A worker that dies between delivering an
// entry and deleting it makes the entry go out twice; the Idempotency-Key
// makes that harmless at a server that honours it.
type Store interface {
	// Add writes e, setting its ID. The entry is durable when Add returns
	// nil: it survives the process being killed and the machine losing
	// power, as far as the store's medium allows.
	Add(ctx context.Context, e *Entry) error
	// Claim returns up to max entries that are not dead, are due at now
	// (NextAt not after it) and are not leased, soonest due first, and
	// leases them to the caller.
	Claim(ctx context.Context, now time.Time, max int) ([]*Entry, error)
	// Update writes e back whole (what changed is its NextAt, Replays,
	// LastStatus, LastError and Dead) and ends its lease. It returns
	// ErrNotFound when e was deleted meanwhile, and ErrLeaseLost when
	// another worker holds e's lease now. An operator may Update an entry
	// nobody claimed (to revive a dead one).
	Update(ctx context.Context, e *Entry) error
	// Delete removes the entry (delivered, or dropped by an operator) and
	// ends its lease. Deleting an entry the store does not hold returns
	// ErrNotFound.
	Delete(ctx context.Context, id string) error
	// Get returns one entry, or ErrNotFound.
	Get(ctx context.Context, id string) (*Entry, error)
	// List returns up to limit entries whose IDs come after the ID after
	// ("" for the first), in the order they were added, dead ones
	// included.
	List(ctx context.Context, after string, limit int) ([]*Entry, error)
	// Stats counts the entries.
	Stats(ctx context.Context) (Stats, error)
}

// Stats counts a store's entries.
type Stats struct {
	// Pending entries wait to be delivered; Dead ones will not be sent again.
	Pending, Dead int
	// NextAt is when the soonest pending entry is due; zero with none.
	NextAt time.Time
}

// Clone returns a deep copy of e: a store hands out copies, so a worker's
// changes reach it only through Update.
func (e *Entry) Clone() *Entry {
	c := *e
	c.Header = e.Header.Clone()
	if e.Body != nil {
		c.Body = append([]byte(nil), e.Body...)
	}
	return &c
}
