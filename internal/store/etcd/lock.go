package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/wardcluster/ward/internal/store"
)

// lease is a held lock: an etcd lease kept alive by a concurrency session,
// and the mutex key store.LockPrefix+name+"/"+leaseID bound to it. etcd
// deletes the key when the lease ends (released, revoked or expired), which
// is what makes the fence fail.
type lease struct {
	s     *Store
	sess  *concurrency.Session
	fence store.Cond

	once sync.Once
	err  error
}

// Done is closed when the session stops being kept alive: released, the
// store closed, or no keepalive answer within the lease's TTL (the client
// then assumes the server expired it).
func (l *lease) Done() <-chan struct{} { return l.sess.Done() }

// Fence holds while the lock key exists at the revision it was created at.
func (l *lease) Fence() store.Cond { return l.fence }

// Release revokes the lease, which deletes the lock key and hands the lock
// to the next waiter at once. Releasing twice is a no-op; after the store
// closed it returns store.ErrClosed.
func (l *lease) Release(ctx context.Context) error {
	s := l.s
	if s.closed.Load() {
		return store.ErrClosed
	}
	s.mu.Lock()
	delete(s.leases, l)
	s.mu.Unlock()
	l.once.Do(func() {
		l.sess.Orphan()
		cctx, done, err := s.call(ctx, true)
		if err != nil {
			l.err = err
			return
		}
		defer done()
		if _, err := s.cli.Revoke(cctx, l.sess.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			l.err = fmt.Errorf("%w (the lock passes on anyway when the lease's TTL runs out)", s.fail(ctx, "release lock "+l.fence.Key, err))
		}
	})
	return l.err
}

// revoke is Release for Close: bounded, errors dropped.
func (l *lease) revoke(within time.Duration) {
	l.once.Do(func() {
		l.sess.Orphan()
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		l.s.cli.Revoke(ctx, l.sess.Lease())
	})
}

// Lock blocks until it holds the named lock, ctx ends, or the store
// closes. The lock is an etcd lease of ttl (rounded up to whole seconds,
// and raised by etcd to its minimum) kept alive in the background, plus a
// key under it; the oldest key holds the lock, later ones wait in line.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (store.Lease, error) {
	if name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("etcd: lock name %q must be non-empty and without '/'", name)
	}
	lctx, done, err := s.call(ctx, false)
	if err != nil {
		return nil, err
	}
	defer done()
	secs := max(1, int(math.Ceil(ttl.Seconds())))
	// The session lives until Release or Close, not as long as ctx.
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(secs), concurrency.WithContext(s.ctx))
	if err != nil {
		return nil, s.fail(ctx, "grant a lease for lock "+name, err)
	}
	l := &lease{s: s, sess: sess}
	m := concurrency.NewMutex(sess, s.full(store.LockPrefix+name+"/"))
	if err := m.Lock(lctx); err != nil {
		l.revoke(time.Second)
		return nil, s.fail(ctx, "take lock "+name, err)
	}
	// The mutex key is written once and never changed, so its ModRev is
	// the revision it was created at, which is what Fence compares.
	resp, err := s.cli.Get(lctx, m.Key())
	if err != nil || len(resp.Kvs) == 0 {
		l.revoke(time.Second)
		if err == nil {
			err = concurrency.ErrSessionExpired
		}
		return nil, s.fail(ctx, "read lock "+name, err)
	}
	l.fence = store.Unchanged(s.short(resp.Kvs[0].Key), resp.Kvs[0].ModRevision)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leases == nil { // closed meanwhile
		l.revoke(time.Second)
		return nil, store.ErrClosed
	}
	s.leases[l] = struct{}{}
	return l, nil
}

// LeaseID returns the etcd lease behind l, for tests that revoke it from
// outside; ok is false when l is not from this package.
func LeaseID(l store.Lease) (id clientv3.LeaseID, ok bool) {
	el, ok := l.(*lease)
	if !ok {
		return 0, false
	}
	return el.sess.Lease(), true
}
