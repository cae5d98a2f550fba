// Package outboxtest tests outbox stores: [Memory] is an in-memory
// [outbox.Store] for tests of code that queues requests, and [Run] is the
// conformance suite every store must pass.
package outboxtest

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/heed-go/heed/outbox"
)

// Memory is an [outbox.Store] in memory. It is not durable: it is for
// tests, and for programs that accept losing their queue with the
// process. The zero value is ready to use.
type Memory struct {
	mu      sync.Mutex
	seq     uint64
	entries map[string]*outbox.Entry
	leased  map[string]bool
}

// Add implements [outbox.Store].
func (m *Memory) Add(ctx context.Context, e *outbox.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil {
		m.entries, m.leased = map[string]*outbox.Entry{}, map[string]bool{}
	}
	m.seq++
	e.ID = strconv.FormatUint(m.seq, 10)
	m.entries[e.ID] = e.Clone()
	return nil
}

// Claim implements [outbox.Store].
func (m *Memory) Claim(ctx context.Context, now time.Time, max int) ([]*outbox.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var due []*outbox.Entry
	for id, e := range m.entries {
		if !e.Dead && !e.NextAt.After(now) && !m.leased[id] {
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *outbox.Entry) int {
		return cmp.Or(a.NextAt.Compare(b.NextAt), compareIDs(a.ID, b.ID))
	})
	due = due[:min(len(due), max)]
	out := make([]*outbox.Entry, len(due))
	for i, e := range due {
		m.leased[e.ID] = true
		out[i] = e.Clone()
	}
	return out, nil
}

// Update implements [outbox.Store].
func (m *Memory) Update(ctx context.Context, e *outbox.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries[e.ID] == nil {
		return outbox.ErrNotFound
	}
	m.entries[e.ID] = e.Clone()
	delete(m.leased, e.ID)
	return nil
}

// Delete implements [outbox.Store].
func (m *Memory) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries[id] == nil {
		return outbox.ErrNotFound
	}
	delete(m.entries, id)
	delete(m.leased, id)
	return nil
}

// Get implements [outbox.Store].
func (m *Memory) Get(ctx context.Context, id string) (*outbox.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[id]
	if e == nil {
		return nil, outbox.ErrNotFound
	}
	return e.Clone(), nil
}

// List implements [outbox.Store].
func (m *Memory) List(ctx context.Context, after string, limit int) ([]*outbox.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*outbox.Entry
	for id, e := range m.entries {
		if after == "" || compareIDs(id, after) > 0 {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *outbox.Entry) int { return compareIDs(a.ID, b.ID) })
	out = out[:min(len(out), max(limit, 0))]
	for i, e := range out {
		out[i] = e.Clone()
	}
	return out, nil
}

// Stats implements [outbox.Store].
func (m *Memory) Stats(ctx context.Context) (outbox.Stats, error) {
	if err := ctx.Err(); err != nil {
		return outbox.Stats{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var s outbox.Stats
	for _, e := range m.entries {
		if e.Dead {
			s.Dead++
			continue
		}
		s.Pending++
		if s.Pending == 1 || e.NextAt.Before(s.NextAt) {
			s.NextAt = e.NextAt
		}
	}
	return s, nil
}

// compareIDs orders decimal IDs by their numbers.
func compareIDs(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
}
