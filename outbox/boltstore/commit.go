package boltstore

import (
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/heed-go/heed/outbox"
)

// commit runs fn in a read-write transaction and returns once that
// transaction is on disk. Concurrent callers share transactions (group
// commit): see internal/groupcommit.
func (s *Store) commit(fn func(tx *bolt.Tx) error) error {
	return s.group.Do(fn, s.run)
}

// run commits batch in one transaction and returns each change's error.
// A change that finds nothing to change (ErrNotFound) fails alone; any
// other failure rolls the transaction back, and then each change is
// committed alone so one bad change fails only its caller.
func (s *Store) run(batch []func(tx *bolt.Tx) error) []error {
	errs := make([]error, len(batch))
	err := s.db.Update(func(tx *bolt.Tx) error {
		fill(tx)
		for i, fn := range batch {
			errs[i] = fn(tx)
			if errs[i] != nil && !errors.Is(errs[i], outbox.ErrNotFound) {
				return errs[i]
			}
		}
		return nil
	})
	switch {
	case err == nil:
		return errs
	case len(batch) == 1:
		return []error{err}
	}
	for i, fn := range batch {
		errs[i] = s.db.Update(func(tx *bolt.Tx) error {
			fill(tx)
			return fn(tx)
		})
	}
	return errs
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
