package boltstore

import (
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/heed-go/heed/outbox"
)

// op is one caller's change, waiting for a commit.
type op struct {
	fn   func(tx *bolt.Tx) error
	err  error
	wake chan struct{} // the commit is done, or the caller now leads the next
	lead bool          // set before wake: the caller commits the queue
}

// commit runs fn in a read-write transaction and returns once that
// transaction is on disk. Callers that arrive while a commit is being
// written queue; when it ends, the first of them commits everything that
// queued meanwhile in one transaction (group commit). No caller waits for
// a timer, and none commits for others more than once.
func (s *Store) commit(fn func(tx *bolt.Tx) error) error {
	o := &op{fn: fn, wake: make(chan struct{}, 1)}
	s.cmu.Lock()
	s.queue = append(s.queue, o)
	if s.committing {
		s.cmu.Unlock()
		<-o.wake
		if !o.lead {
			return o.err
		}
		s.cmu.Lock()
	}
	s.committing = true
	batch := s.queue
	s.queue = nil
	s.cmu.Unlock()

	s.run(batch)
	for _, b := range batch {
		if b != o {
			b.wake <- struct{}{}
		}
	}

	s.cmu.Lock()
	if len(s.queue) > 0 {
		next := s.queue[0] // it leads the next commit
		next.lead = true
		next.wake <- struct{}{}
	} else {
		s.committing = false
	}
	s.cmu.Unlock()
	return o.err
}

// run commits batch in one transaction. An op that finds nothing to change
// (ErrNotFound) fails alone; any other failure rolls the transaction back,
// and then each op is committed alone so one bad change fails only its
// caller.
func (s *Store) run(batch []*op) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		fill(tx)
		for _, o := range batch {
			o.err = o.fn(tx)
			if o.err != nil && !errors.Is(o.err, outbox.ErrNotFound) {
				return o.err
			}
		}
		return nil
	})
	if err == nil {
		return
	}
	if len(batch) == 1 {
		batch[0].err = err
		return
	}
	for _, o := range batch {
		o.err = s.db.Update(func(tx *bolt.Tx) error {
			fill(tx)
			return o.fn(tx)
		})
	}
}

// fill packs pages full. bbolt splits a full page in half by default,
// which suits keys that arrive in any order; the entries' IDs only grow
// and the due index mostly grows at its end, so half-split pages would
// stay half empty: at a million entries the file was twice the size, and
// twice as slow to open.
func fill(tx *bolt.Tx) {
	tx.Bucket(bucketEntries).FillPercent = 1.0
	tx.Bucket(bucketDue).FillPercent = 0.9
}
