// Package boltstore is heed's embedded outbox store: one file, no server,
// crash-safe. It keeps entries in a bbolt database (go.etcd.io/bbolt, the
// B+tree store etcd runs on), whose copy-on-write pages and fsync on
// commit mean a committed entry survives the process being killed and the
// machine losing power, and a torn write never corrupts what was there.
//
// Writes from concurrent callers are committed together (group commit):
// while one commit is being synced to disk, the next callers queue, and
// all of them go to disk in the following commit, with no added delay. A
// lone caller pays one commit; a thousand callers share a few.
//
// One process at a time opens a file: Open waits for the lock another
// process holds. Entries leased by a worker (see [outbox.Store]) return to
// the queue when the process ends, as the lease lives in memory.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/heed-go/heed/internal/groupcommit"
	"github.com/heed-go/heed/outbox"
)

var (
	bucketEntries = []byte("entries") // ID -> encoded entry
	bucketDue     = []byte("due")     // NextAt, ID -> nothing: the pending entries by when they are due
	bucketMeta    = []byte("meta")    // counters
	keyPending    = []byte("pending")
	keyDead       = []byte("dead")
)

// ErrLocked is the cause of Open's error when another process holds the
// file open past Options.LockTimeout.
var ErrLocked = errors.New("open in another process")

// Options tune Open. The zero value is the default.
type Options struct {
	// LockTimeout bounds how long Open waits for another process to close
	// the file; 0 waits one second, a negative value forever.
	LockTimeout time.Duration
}

// Store is an [outbox.Store] in a file. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string

	mu     sync.Mutex      // guards leased, and makes Claim's scan and lease one step
	leased map[uint64]bool // entries handed out by Claim, not yet updated or deleted

	group groupcommit.Group[func(tx *bolt.Tx) error]
}

// Open opens the store in the file at path, creating it (mode 0600: the
// entries hold request headers) if it does not exist.
func Open(path string, o Options) (*Store, error) {
	timeout := o.LockTimeout
	switch {
	case timeout == 0:
		timeout = time.Second
	case timeout < 0:
		timeout = 0 // bbolt waits forever
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      timeout,
		FreelistType: bolt.FreelistMapType, // stays fast as the file grows to millions of entries
		// The free list is rebuilt from the pages at open rather than
		// written at every commit: commits stay small and fast.
		NoFreelistSync: true,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("boltstore: %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketDue, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: %s: %w", path, err)
	}
	return &Store{db: db, path: path, leased: map[uint64]bool{}}, nil
}

// Close closes the file, after the commits under way.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Add implements [outbox.Store]: e is on disk when it returns nil.
func (s *Store) Add(ctx context.Context, e *outbox.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.commit(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bucketEntries)
		seq, err := entries.NextSequence()
		if err != nil {
			return err
		}
		e.ID = strconv.FormatUint(seq, 10)
		enc, err := e.MarshalBinary()
		if err != nil {
			return err
		}
		var id [8]byte
		if err := entries.Put(putID(id[:], seq), enc); err != nil {
			return err
		}
		return index(tx, seq, nil, e)
	})
}

// Claim implements [outbox.Store]. Leases live in memory: entries leased
// when the process ends are handed out again by the next one.
func (s *Store) Claim(ctx context.Context, now time.Time, max int) ([]*outbox.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*outbox.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bucketEntries)
		c := tx.Bucket(bucketDue).Cursor()
		limit := dueKey(now, ^uint64(0))
		for k, _ := c.First(); k != nil && bytes.Compare(k, limit[:]) <= 0 && len(out) < max; k, _ = c.Next() {
			seq := binary.BigEndian.Uint64(k[8:])
			if s.leased[seq] {
				continue
			}
			e, err := decode(entries, seq)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: claim: %w", err)
	}
	for _, e := range out {
		seq, _ := strconv.ParseUint(e.ID, 10, 64)
		s.leased[seq] = true
	}
	return out, nil
}

// Update implements [outbox.Store].
func (s *Store) Update(ctx context.Context, e *outbox.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	seq, ok := parseID(e.ID)
	if !ok {
		return outbox.ErrNotFound
	}
	enc, err := e.MarshalBinary()
	if err != nil {
		return err
	}
	err = s.commit(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bucketEntries)
		old, err := decode(entries, seq)
		if err != nil {
			return err
		}
		var id [8]byte
		if err := entries.Put(putID(id[:], seq), enc); err != nil {
			return err
		}
		return index(tx, seq, old, e)
	})
	s.unlease(seq)
	return err
}

// Delete implements [outbox.Store].
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	seq, ok := parseID(id)
	if !ok {
		return outbox.ErrNotFound
	}
	err := s.commit(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bucketEntries)
		old, err := decode(entries, seq)
		if err != nil {
			return err
		}
		var k [8]byte
		if err := entries.Delete(putID(k[:], seq)); err != nil {
			return err
		}
		return index(tx, seq, old, nil)
	})
	s.unlease(seq)
	return err
}

func (s *Store) unlease(seq uint64) {
	s.mu.Lock()
	delete(s.leased, seq)
	s.mu.Unlock()
}

// Get implements [outbox.Store].
func (s *Store) Get(ctx context.Context, id string) (*outbox.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seq, ok := parseID(id)
	if !ok {
		return nil, outbox.ErrNotFound
	}
	var e *outbox.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		e, err = decode(tx.Bucket(bucketEntries), seq)
		return err
	})
	return e, err
}

// List implements [outbox.Store].
func (s *Store) List(ctx context.Context, after string, limit int) ([]*outbox.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var from uint64
	if after != "" {
		seq, ok := parseID(after)
		if !ok {
			return nil, fmt.Errorf("boltstore: list after %q: not an entry ID", after)
		}
		from = seq + 1
	}
	var out []*outbox.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		var k [8]byte
		c := tx.Bucket(bucketEntries).Cursor()
		for key, v := c.Seek(putID(k[:], from)); key != nil && len(out) < limit; key, v = c.Next() {
			e := new(outbox.Entry)
			if err := e.UnmarshalBinary(v); err != nil {
				return fmt.Errorf("entry %d: %w", binary.BigEndian.Uint64(key), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Stats implements [outbox.Store]; it reads two counters and one key.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	if err := ctx.Err(); err != nil {
		return outbox.Stats{}, err
	}
	var st outbox.Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st.Pending, st.Dead = counter(meta, keyPending), counter(meta, keyDead)
		if k, _ := tx.Bucket(bucketDue).Cursor().First(); k != nil {
			st.NextAt = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
		}
		return nil
	})
	return st, err
}

// index keeps the due index and the counters in step with an entry that
// goes from old to e (nil: none).
func index(tx *bolt.Tx, seq uint64, old, e *outbox.Entry) error {
	due, meta := tx.Bucket(bucketDue), tx.Bucket(bucketMeta)
	if old != nil {
		if old.Dead {
			addCounter(meta, keyDead, -1)
		} else {
			addCounter(meta, keyPending, -1)
			k := dueKey(old.NextAt, seq)
			if err := due.Delete(k[:]); err != nil {
				return err
			}
		}
	}
	if e != nil {
		if e.Dead {
			addCounter(meta, keyDead, 1)
		} else {
			addCounter(meta, keyPending, 1)
			k := dueKey(e.NextAt, seq)
			if err := due.Put(k[:], nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// dueKey orders entries by NextAt, then by ID (the order they came).
// Times before 1970 sort first.
func dueKey(t time.Time, seq uint64) [16]byte {
	var k [16]byte
	binary.BigEndian.PutUint64(k[:8], uint64(max(t.UnixNano(), 0)))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

func putID(b []byte, seq uint64) []byte {
	binary.BigEndian.PutUint64(b, seq)
	return b
}

func parseID(id string) (uint64, bool) {
	seq, err := strconv.ParseUint(id, 10, 64)
	return seq, err == nil && seq > 0
}

func decode(entries *bolt.Bucket, seq uint64) (*outbox.Entry, error) {
	var k [8]byte
	v := entries.Get(putID(k[:], seq))
	if v == nil {
		return nil, outbox.ErrNotFound
	}
	e := new(outbox.Entry)
	if err := e.UnmarshalBinary(v); err != nil {
		return nil, fmt.Errorf("entry %d: %w", seq, err)
	}
	return e, nil
}

func counter(b *bolt.Bucket, k []byte) int {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

func addCounter(b *bolt.Bucket, k []byte, d int) {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(max(counter(b, k)+d, 0)))
	b.Put(k, v[:]) // cannot fail: the key is short and the bucket writable
}
