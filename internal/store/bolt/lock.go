package bolt

import (
	"context"
	"time"

	"github.com/wardcluster/ward/internal/store"
)

// lease is a held process-local named lock.
type lease struct {
	s        *Store
	sem      chan struct{}
	done     chan struct{}
	released bool // guarded by s.lmu
}

// Done is closed when the lease is released or the store closes.
func (l *lease) Done() <-chan struct{} { return l.done }

// Release gives the lock to the next waiter. It never blocks, so it ignores
// ctx (a leader shutting down on a canceled context must still release).
// Releasing twice is a no-op; after the store closed it returns
// store.ErrClosed (the lease is already lost).
func (l *lease) Release(context.Context) error {
	s := l.s
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	if l.released {
		return nil
	}
	l.released = true
	delete(s.leases, l)
	close(l.done)
	<-l.sem
	return nil
}

// Lock blocks until it holds the named lock, ctx ends, or the store closes.
// The lock is a process-local mutex: the bbolt file lock already makes this
// process the only writer, and a crash frees every lock with the process, so
// ttl is ignored. Lock names are kept for the store's life, so use a small
// fixed set of them.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (store.Lease, error) {
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
	s.lmu.Lock()
	defer s.lmu.Unlock()
	// Close sets closed before it takes lmu to end leases, so either it
	// will see this lease or this check sees closed.
	if s.closed.Load() {
		<-sem
		return nil, store.ErrClosed
	}
	l := &lease{s: s, sem: sem, done: make(chan struct{})}
	s.leases[l] = struct{}{}
	return l, nil
}
