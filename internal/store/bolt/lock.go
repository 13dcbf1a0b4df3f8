package bolt

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/store"
)

// lease is a held process-local named lock. While it is held, the record
// store.LockPrefix+name carries the revision it was taken at, which is what
// its fence compares.
type lease struct {
	s        *Store
	sem      chan struct{}
	done     chan struct{}
	fence    store.Cond
	released bool // guarded by s.lmu
}

// Done is closed when the lease is released or the store closes.
func (l *lease) Done() <-chan struct{} { return l.done }

// Fence holds while the lock record is the one this lease wrote: Release
// deletes it, and the next holder writes it again at a new revision.
func (l *lease) Fence() store.Cond { return l.fence }

// Release deletes the lock record (if it is still this lease's) and gives
// the lock to the next waiter. It ignores ctx, so a leader shutting down on
// a canceled context still releases. Releasing twice is a no-op; after the
// store closed it returns store.ErrClosed (the lease is already lost).
func (l *lease) Release(context.Context) error {
	s := l.s
	s.lmu.Lock()
	if s.closed.Load() {
		s.lmu.Unlock()
		return store.ErrClosed
	}
	if l.released {
		s.lmu.Unlock()
		return nil
	}
	l.released = true
	delete(s.leases, l)
	close(l.done)
	s.lmu.Unlock()
	// The lock is still ours (sem is held), so no one else can write the
	// record in between; a conflict can only mean the record is gone.
	_, err := s.Txn(context.Background(), []store.Cond{l.fence}, []store.Op{store.Delete(l.fence.Key)})
	<-l.sem
	if err != nil && !store.IsConflict(err) {
		return fmt.Errorf("bolt: release lock %s: %w", l.fence.Key, err)
	}
	return nil
}

// Lock blocks until it holds the named lock, ctx ends, or the store closes.
// The lock is a process-local mutex: the bbolt file lock already makes this
// process the only writer, and a crash frees every lock with the process, so
// ttl is ignored. Taking it writes the record store.LockPrefix+name, which
// its lease's Fence compares. Lock names are kept for the store's life, so
// use a small fixed set of them.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (store.Lease, error) {
	if name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("bolt: lock name %q must be non-empty and without '/'", name)
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	s.lmu.Lock()
	sem := s.locks[name]
	if sem == nil {
		sem = make(chan struct{}, 1)
		s.locks[name] = sem
	}
	s.lmu.Unlock()
	s.closeMu.RUnlock() // do not hold Close off while waiting

	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closeCh:
		return nil, store.ErrClosed
	}
	key := store.LockPrefix + name
	rev, err := s.Txn(context.Background(), nil, []store.Op{store.Put(key, []byte("held"))})
	if err != nil {
		<-sem
		return nil, err
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	// Close sets closed before it takes lmu to end leases, so either it
	// will see this lease or this check sees closed.
	if s.closed.Load() {
		<-sem
		return nil, store.ErrClosed
	}
	l := &lease{s: s, sem: sem, done: make(chan struct{}), fence: store.Unchanged(key, rev)}
	s.leases[l] = struct{}{}
	return l, nil
}

// dropStaleLocks deletes lock records left by a process that died holding
// a lock: this process has the file to itself, so none of them is held.
func (s *Store) dropStaleLocks() error {
	recs, err := s.List(context.Background(), store.LockPrefix)
	if err != nil || len(recs) == 0 {
		return err
	}
	_, err = s.Txn(context.Background(), nil, []store.Op{store.DeletePrefix(store.LockPrefix)})
	return err
}

// Limits reports no limit beyond bbolt's key and value sizes, which Txn
// checks op by op.
func (s *Store) Limits() store.Limits { return store.Limits{} }
