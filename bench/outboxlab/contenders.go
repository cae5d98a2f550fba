package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/heed-go/heed/internal/groupcommit"
	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/boltstore"
)

// A sink is one way to make an entry durable: Add returns once the entry
// is synced to disk.
type sink interface {
	Add(ctx context.Context, e *outbox.Entry) error
	// Finish closes the sink, reads every entry back, decoded, into each,
	// and returns how many commits (synced transactions or appends) the
	// sink made.
	Finish(each func(*outbox.Entry)) (commits int64, err error)
}

// A contender opens a new, empty sink in dir.
type contender struct {
	name string
	open func(dir string) (sink, error)
}

var contenders = []contender{
	{"boltstore", openBolt},
	{"heed", openHeed},
	{"file", openFile},
	{"sqlite", func(dir string) (sink, error) { return openSQLite(dir) }},
	{"sqlite-group", openSQLiteGroup},
}

// boltSink is heed's store. bbolt writes a commit with two fdatasyncs
// (the pages, then the meta page); the commits are counted from the
// transaction ID in the file's meta page, less the one Open makes (it
// creates the buckets if they are missing).
type boltSink struct {
	*boltstore.Store
	tx0 uint64
}

func openBolt(dir string) (sink, error) {
	path := filepath.Join(dir, "outbox.bolt")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return nil, err
	}
	s.Close()
	tx0, err := lastTx(path)
	if err != nil {
		return nil, err
	}
	s, err = boltstore.Open(path, boltstore.Options{})
	return &boltSink{s, tx0 + 1}, err
}

func (b *boltSink) Finish(each func(*outbox.Entry)) (int64, error) {
	path := b.Path()
	if err := b.Close(); err != nil {
		return 0, err
	}
	tx1, err := lastTx(path)
	if err != nil {
		return 0, err
	}
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	for after := ""; ; {
		page, err := s.List(context.Background(), after, 10_000)
		if err != nil || len(page) == 0 {
			return int64(tx1 - b.tx0), err
		}
		for _, e := range page {
			each(e)
		}
		after = page[len(page)-1].ID
	}
}

// lastTx returns the ID of the last transaction committed to the bbolt
// file at path, which must be closed.
func lastTx(path string) (uint64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var id int
	err = db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return uint64(id), err
}

// fileSink is what a user writes without heed: one file, each entry
// appended with a 4-byte length prefix and synced before Add returns, all
// under one mutex.
type fileSink struct {
	mu  sync.Mutex
	f   *os.File
	seq int64
}

func openFile(dir string) (sink, error) {
	f, err := os.OpenFile(filepath.Join(dir, "outbox.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	return &fileSink{f: f}, err
}

func (s *fileSink) Add(_ context.Context, e *outbox.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	e.ID = strconv.FormatInt(s.seq, 10)
	enc, err := e.MarshalBinary()
	if err != nil {
		return err
	}
	rec := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(enc)), uint32(len(enc)))
	if _, err := s.f.Write(append(rec, enc...)); err != nil {
		return err
	}
	return s.f.Sync()
}

func (s *fileSink) Finish(each func(*outbox.Entry)) (int64, error) {
	if err := s.f.Close(); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(s.f.Name())
	if err != nil {
		return 0, err
	}
	for len(b) > 0 {
		if len(b) < 4 || len(b) < 4+int(binary.BigEndian.Uint32(b)) {
			return 0, errors.New("file: torn record at the end")
		}
		n := 4 + int(binary.BigEndian.Uint32(b))
		e := new(outbox.Entry)
		if err := e.UnmarshalBinary(b[4:n]); err != nil {
			return 0, err
		}
		each(e)
		b = b[n:]
	}
	return s.seq, nil
}

// sqliteSink is SQLite as a user sets it up for a queue: WAL, every commit
// synced (synchronous=FULL), one connection (writers queue for it in
// database/sql rather than spin on SQLITE_BUSY), the encoded entry beside
// the columns a worker queries by, and one transaction per entry.
type sqliteSink struct {
	db      *sql.DB
	path    string
	insert  *sql.Stmt
	commits atomic.Int64
}

const schema = `CREATE TABLE entries (
	id      INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, like bbolt's sequence
	next_at INTEGER NOT NULL,
	dead    INTEGER NOT NULL DEFAULT 0,
	entry   BLOB NOT NULL
);
CREATE INDEX entries_due ON entries (next_at, id) WHERE dead = 0;`

func openSQLite(dir string) (*sqliteSink, error) {
	path := filepath.Join(dir, "outbox.sqlite")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	s := &sqliteSink{db: db, path: path}
	if _, err = db.Exec(schema); err == nil {
		s.insert, err = db.Prepare(`INSERT INTO entries (next_at, entry) VALUES (?, ?) RETURNING id`)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *sqliteSink) Add(ctx context.Context, e *outbox.Entry) error {
	if err := s.add(ctx, s.insert, e); err != nil {
		return err
	}
	s.commits.Add(1)
	return nil
}

// add inserts e with stmt, and sets its ID. The stored encoding leaves the
// ID out: it is the row's.
func (s *sqliteSink) add(ctx context.Context, stmt *sql.Stmt, e *outbox.Entry) error {
	e.ID = ""
	enc, err := e.MarshalBinary()
	if err != nil {
		return err
	}
	var id int64
	if err := stmt.QueryRowContext(ctx, e.NextAt.UnixNano(), enc).Scan(&id); err != nil {
		return err
	}
	e.ID = strconv.FormatInt(id, 10)
	return nil
}

func (s *sqliteSink) Finish(each func(*outbox.Entry)) (int64, error) {
	s.insert.Close()
	if err := s.db.Close(); err != nil {
		return 0, err
	}
	db, err := sql.Open("sqlite", "file:"+s.path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, entry FROM entries ORDER BY id`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var enc []byte
		if err := rows.Scan(&id, &enc); err != nil {
			return 0, err
		}
		e := new(outbox.Entry)
		if err := e.UnmarshalBinary(enc); err != nil {
			return 0, fmt.Errorf("row %d: %w", id, err)
		}
		e.ID = strconv.FormatInt(id, 10)
		each(e)
	}
	return s.commits.Load(), rows.Err()
}

// groupSink is SQLite behind boltstore's group commit
// (internal/groupcommit): while one transaction is being committed, the
// next writers queue, and the first of them then inserts the whole queue
// in one transaction. No timer. A failed transaction fails every entry in
// it (boltstore retries each alone; an INSERT here has nothing that fails
// alone).
type groupSink struct {
	*sqliteSink
	group groupcommit.Group[*outbox.Entry]
}

func openSQLiteGroup(dir string) (sink, error) {
	s, err := openSQLite(dir)
	if err != nil {
		return nil, err
	}
	return &groupSink{sqliteSink: s}, nil
}

func (g *groupSink) Add(_ context.Context, e *outbox.Entry) error {
	return g.group.Do(e, g.commit)
}

// commit inserts batch in one transaction; no caller's context cancels
// the others' entries.
func (g *groupSink) commit(batch []*outbox.Entry) []error {
	ctx := context.Background()
	err := func() error {
		tx, err := g.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		stmt := tx.StmtContext(ctx, g.insert)
		for _, e := range batch {
			if err := g.add(ctx, stmt, e); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err == nil {
		g.commits.Add(1)
		return nil
	}
	errs := make([]error, len(batch))
	for i := range errs {
		errs[i] = err
	}
	return errs
}
