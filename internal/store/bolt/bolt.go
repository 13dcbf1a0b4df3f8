// Package bolt is the single-node store.Store backend: one bbolt file in the
// coordinator's data directory, exclusively locked by one Ward process.
//
// Layout: bucket "records" maps each key to a 17-byte header (format byte,
// CreateRev and ModRev as big-endian uint64) followed by the value; bucket
// "meta" holds the current store revision under "rev". Watches and locks are
// in-process only, which is sound because no other process can open the file.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/wardcluster/ward/internal/store"
)

// DefaultOpenTimeout is how long Open waits for the file lock when
// Options.OpenTimeout is zero.
const DefaultOpenTimeout = time.Second

// DefaultWatchBuffer is the per-watcher event queue bound used when
// Options.WatchBuffer is zero. It is sized so one large task submission (tens
// of thousands of puts in one Txn) does not end every task watcher.
const DefaultWatchBuffer = 65536

var (
	recordsBucket = []byte("records")
	metaBucket    = []byte("meta")
	revKey        = []byte("rev")
)

const (
	formatV1  = 1  // first byte of every record value
	headerLen = 17 // format byte + CreateRev + ModRev
	scanChunk = 256
)

// errNoChange rolls back a write transaction whose ops changed nothing, so
// it neither bumps the revision nor pays for a commit and fsync.
var errNoChange = errors.New("bolt: no change")

// Options configures Open. The zero value is the production setting.
type Options struct {
	// NoSync skips the fsync after each commit. A machine crash can then
	// lose or corrupt recent commits, so only benchmarks and tests that say
	// so set it; the default (false) fsyncs every commit.
	NoSync bool
	// OpenTimeout bounds the wait for the exclusive file lock held by
	// another process; zero means DefaultOpenTimeout.
	OpenTimeout time.Duration
	// WatchBuffer is how many undelivered events one watcher may queue
	// before it is closed as fallen behind; zero means DefaultWatchBuffer. A
	// single Txn changing more keys than this under a watched prefix always
	// ends that watch.
	WatchBuffer int
	// ReadOnly opens an existing file for reading, beside other readers
	// (and never beside a writer); Txn then fails.
	ReadOnly bool
}

// Store is a store.Store backed by one bbolt file. It is safe for
// concurrent use; Lock's ttl is ignored because the file lock already
// guarantees a single owning process, and locks die with it.
type Store struct {
	db          *bbolt.DB
	path        string
	watchBuffer int

	// closeMu is held shared by every method while it uses db and
	// exclusively by Close, so Close waits for in-flight calls and later
	// calls see closed. It is never held while blocking on callers (Scan
	// callbacks, Lock waits, watch delivery).
	closeMu sync.RWMutex
	closed  atomic.Bool
	closeCh chan struct{}

	// txMu serializes writers from the start of their bbolt transaction
	// through the watcher fan-out, so watchers receive commits in order;
	// Watch takes it to register, so a watcher sees exactly the commits
	// after Watch returns. bbolt serializes writers anyway, so it costs no
	// write throughput.
	txMu sync.Mutex

	wmu      sync.Mutex // guards watchers
	watchers map[*watcher]struct{}

	lmu    sync.Mutex // guards locks, leases and lease.released
	locks  map[string]chan struct{}
	leases map[*lease]struct{}
}

var _ store.Store = (*Store)(nil)

// Open opens (creating with mode 0600 if needed) the store file at path.
// It refuses a file readable or writable by group or others, and reports a
// file locked by another Ward process instead of waiting forever.
func Open(path string, opts Options) (*Store, error) {
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.WatchBuffer <= 0 {
		opts.WatchBuffer = DefaultWatchBuffer
	}
	if err := checkPerm(path); err != nil {
		return nil, err
	}
	var inUse *InUseError
	if err := Verify(path); errors.As(err, &inUse) {
		return nil, fmt.Errorf("bolt: data directory %s is in use by another Ward process: store file %s is locked", filepath.Dir(path), path)
	} else if err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("bolt: store file %s: %w", path, err)
		}
	}
	db, err := openGuarded(path, &bbolt.Options{
		Timeout:  opts.OpenTimeout,
		NoSync:   opts.NoSync,
		ReadOnly: opts.ReadOnly,
		// The map freelist allocates and frees pages in O(1); the default
		// array freelist scans and sorts, which gets slow once big batched
		// commits have fragmented a large file.
		FreelistType: bbolt.FreelistMapType,
		// Not writing the freelist on every commit saves pages and write
		// time on large commits (which free many pages); the cost is a
		// freelist rebuild by scanning the file at Open.
		NoFreelistSync: true,
	})
	var corrupt *CorruptError
	if errors.As(err, &corrupt) {
		return nil, err
	}
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: data directory %s is in use by another Ward process: store file %s stayed locked for %v",
			filepath.Dir(path), path, opts.OpenTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open store file %s: %w", path, err)
	}
	if opts.ReadOnly {
		err = db.View(func(tx *bbolt.Tx) error {
			if tx.Bucket(recordsBucket) == nil || tx.Bucket(metaBucket) == nil {
				return fmt.Errorf("it has no Ward records: it is a bbolt file, but not a Ward store")
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, &CorruptError{Path: path, Problem: err.Error()}
		}
		return newStore(db, path, opts), nil
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{recordsBucket, metaBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: initialize store file %s: %w", path, err)
	}
	s := newStore(db, path, opts)
	if err := s.dropStaleLocks(); err != nil {
		s.Close()
		return nil, fmt.Errorf("bolt: clear stale locks in %s: %w", path, err)
	}
	return s, nil
}

func newStore(db *bbolt.DB, path string, opts Options) *Store {
	return &Store{
		db:          db,
		path:        path,
		watchBuffer: opts.WatchBuffer,
		closeCh:     make(chan struct{}),
		watchers:    make(map[*watcher]struct{}),
		locks:       make(map[string]chan struct{}),
		leases:      make(map[*lease]struct{}),
	}
}

// Backup writes a consistent copy of the whole store file to w, from one
// read transaction, while writes go on. The copy is a store file itself
// (restore it by putting it in place of ward.db). size, when not nil, hears
// the copy's size before it is written. Backup returns the bytes written.
func (s *Store) Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.closeMu.RUnlock()
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// openGuarded opens the file with bbolt, turning a panic, or a fault
// reading its memory map, into a *CorruptError. Verify has checked the
// structure already; this catches what it cannot see (bbolt's own checks
// of key order and of its free pages, which it runs at open).
func openGuarded(path string, o *bbolt.Options) (db *bbolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, &CorruptError{Path: path, Problem: fmt.Sprintf("bbolt could not read it: %v", r)}
		}
	}()
	return bbolt.Open(path, 0o600, o)
}

// checkPerm refuses an existing store file that group or others can access:
// it holds every job's definition and state.
func checkPerm(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bolt: check store file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("bolt: store file %s is not a regular file (mode %v)", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("store file %s has permissions %04o; it must be 0600: run chmod 600 %s", path, perm, path)
	}
	return nil
}

// Path returns the store file's path, for log and error messages.
func (s *Store) Path() string { return s.path }

// enter checks that the store is open and ctx is live, and on success holds
// closeMu shared; the caller must RUnlock it.
func (s *Store) enter(ctx context.Context) error {
	s.closeMu.RLock()
	if s.closed.Load() {
		s.closeMu.RUnlock()
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.closeMu.RUnlock()
		return err
	}
	return nil
}

// Get returns the record at key, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.Record, error) {
	if err := s.enter(ctx); err != nil {
		return store.Record{}, err
	}
	defer s.closeMu.RUnlock()
	var rec store.Record
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(recordsBucket).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		rec, err = decode([]byte(key), v)
		return err
	})
	return rec, err
}

// List returns every record under prefix in key order, read from one
// consistent snapshot.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Record, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	var recs []store.Record
	err := s.db.View(func(tx *bbolt.Tx) error {
		p := []byte(prefix)
		c := tx.Bucket(recordsBucket).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			rec, err := decode(k, v)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		return nil
	})
	return recs, err
}

// Scan calls fn for each record under prefix in key order. It reads in
// chunks of a few hundred records, each from its own read transaction, and
// calls fn outside any transaction: fn may write to the store, and a long
// scan never pins old pages or blocks the file from growing. The price is
// that the scan is not one snapshot: a key changed after its chunk was read
// is seen in its old state, one changed before its chunk in its new state.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(store.Record) error) error {
	p := []byte(prefix)
	start := p
	for {
		if err := s.enter(ctx); err != nil {
			return err
		}
		chunk := make([]store.Record, 0, scanChunk)
		err := s.db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(recordsBucket).Cursor()
			for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, p) && len(chunk) < scanChunk; k, v = c.Next() {
				rec, err := decode(k, v)
				if err != nil {
					return err
				}
				chunk = append(chunk, rec)
			}
			return nil
		})
		s.closeMu.RUnlock()
		if err != nil {
			return err
		}
		for _, rec := range chunk {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(chunk) < scanChunk {
			return nil
		}
		// The smallest key after the last one seen.
		start = append([]byte(chunk[len(chunk)-1].Key), 0)
	}
}

// Rev returns the current store revision (0 for a new file).
func (s *Store) Rev(ctx context.Context) (int64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.closeMu.RUnlock()
	var rev int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		rev, err = readRev(tx)
		return err
	})
	return rev, err
}

// Txn applies ops atomically when every condition holds, in one bbolt
// transaction (one fsync), and returns the new revision. A Txn with no ops,
// or whose ops change nothing, checks its conditions and returns the current
// revision without committing.
func (s *Store) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.closeMu.RUnlock()
	if err := validateOps(ops); err != nil {
		return 0, err
	}
	var rev int64
	if len(ops) == 0 {
		err := s.db.View(func(tx *bbolt.Tx) error {
			if err := checkConds(tx.Bucket(recordsBucket), conds); err != nil {
				return err
			}
			var err error
			rev, err = readRev(tx)
			return err
		})
		return rev, err
	}

	s.txMu.Lock()
	defer s.txMu.Unlock()
	s.wmu.Lock()
	watching := len(s.watchers) > 0
	s.wmu.Unlock()
	var events []store.Event
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(recordsBucket)
		if err := checkConds(b, conds); err != nil {
			return err
		}
		cur, err := readRev(tx)
		if err != nil {
			return err
		}
		rev = cur + 1
		changed := false
		for _, op := range ops {
			switch op.Type {
			case store.OpPut:
				k := []byte(op.Key)
				createRev := rev
				if old := b.Get(k); old != nil {
					if createRev, _, err = decodeRevs(k, old); err != nil {
						return err
					}
				}
				v := encode(createRev, rev, op.Value)
				if err := b.Put(k, v); err != nil {
					return fmt.Errorf("bolt: put %q: %w", op.Key, err)
				}
				changed = true
				if watching {
					events = append(events, store.Event{Type: store.EventPut, Record: store.Record{
						Key: op.Key, Value: v[headerLen:], CreateRev: createRev, ModRev: rev}})
				}
			case store.OpDelete:
				k := []byte(op.Key)
				if b.Get(k) == nil {
					continue
				}
				if err := b.Delete(k); err != nil {
					return fmt.Errorf("bolt: delete %q: %w", op.Key, err)
				}
				changed = true
				if watching {
					events = append(events, store.Event{Type: store.EventDelete, Record: store.Record{Key: op.Key, ModRev: rev}})
				}
			case store.OpDeletePrefix:
				// Collect first: deleting under a live cursor can skip keys.
				var keys [][]byte
				p := []byte(op.Key)
				c := b.Cursor()
				for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
					keys = append(keys, bytes.Clone(k))
				}
				for _, k := range keys {
					if err := b.Delete(k); err != nil {
						return fmt.Errorf("bolt: delete %q: %w", k, err)
					}
					changed = true
					if watching {
						events = append(events, store.Event{Type: store.EventDelete, Record: store.Record{Key: string(k), ModRev: rev}})
					}
				}
			}
		}
		if !changed {
			rev = cur
			return errNoChange
		}
		return writeRev(tx, rev)
	})
	if errors.Is(err, errNoChange) {
		return rev, nil
	}
	if err != nil {
		return 0, err
	}
	if len(events) > 0 {
		s.fanout(events)
	}
	return rev, nil
}

// validateOps rejects malformed ops before any lock is taken.
func validateOps(ops []store.Op) error {
	for i, op := range ops {
		if err := store.CheckOp(op); err != nil {
			return fmt.Errorf("bolt: op %d: %w", i, err)
		}
		if len(op.Key) > bbolt.MaxKeySize {
			return fmt.Errorf("bolt: op %d: key of %d bytes exceeds the %d-byte limit", i, len(op.Key), bbolt.MaxKeySize)
		}
		if len(op.Value) > bbolt.MaxValueSize-headerLen {
			return fmt.Errorf("bolt: op %d on %q: value of %d bytes is too large", i, op.Key, len(op.Value))
		}
	}
	return nil
}

// checkConds returns a *store.ConflictError for the first condition that
// does not hold.
func checkConds(b *bbolt.Bucket, conds []store.Cond) error {
	for _, c := range conds {
		k := []byte(c.Key)
		var have int64
		if v := b.Get(k); v != nil {
			var err error
			if _, have, err = decodeRevs(k, v); err != nil {
				return err
			}
		}
		if have != c.ModRev {
			return &store.ConflictError{Key: c.Key, WantRev: c.ModRev, HaveRev: have}
		}
	}
	return nil
}

func readRev(tx *bbolt.Tx) (int64, error) {
	v := tx.Bucket(metaBucket).Get(revKey)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("bolt: corrupt store revision: %d bytes, want 8", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

func writeRev(tx *bbolt.Tx, rev int64) error {
	return tx.Bucket(metaBucket).Put(revKey, binary.BigEndian.AppendUint64(nil, uint64(rev)))
}

// encode builds a fresh record value, so the caller's slice is never
// retained.
func encode(createRev, modRev int64, data []byte) []byte {
	v := make([]byte, headerLen+len(data))
	v[0] = formatV1
	binary.BigEndian.PutUint64(v[1:9], uint64(createRev))
	binary.BigEndian.PutUint64(v[9:17], uint64(modRev))
	copy(v[headerLen:], data)
	return v
}

func decodeRevs(key, v []byte) (createRev, modRev int64, err error) {
	if len(v) < headerLen || v[0] != formatV1 {
		return 0, 0, fmt.Errorf("bolt: corrupt record %q: bad header", key)
	}
	return int64(binary.BigEndian.Uint64(v[1:9])), int64(binary.BigEndian.Uint64(v[9:17])), nil
}

// decode copies key and value out of bbolt's memory map, which is only
// valid inside the transaction.
func decode(key, v []byte) (store.Record, error) {
	createRev, modRev, err := decodeRevs(key, v)
	if err != nil {
		return store.Record{}, err
	}
	return store.Record{
		Key:       string(key),
		Value:     bytes.Clone(v[headerLen:]),
		CreateRev: createRev,
		ModRev:    modRev,
	}, nil
}

// Close ends every watch (Err reports store.ErrClosed), marks every held
// lease lost, and closes the file after in-flight calls finish. Later calls,
// including a second Close, return store.ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed.Load() {
		s.closeMu.Unlock()
		return store.ErrClosed
	}
	s.closed.Store(true)
	close(s.closeCh)
	s.closeMu.Unlock()

	s.wmu.Lock()
	for w := range s.watchers {
		w.stopCtx()
		w.End(store.ErrClosed)
	}
	s.watchers = nil
	s.wmu.Unlock()

	s.lmu.Lock()
	for l := range s.leases {
		l.released = true
		close(l.done)
	}
	s.leases = nil
	s.lmu.Unlock()

	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close store file %s: %w", s.path, err)
	}
	return nil
}
