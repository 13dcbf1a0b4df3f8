// Package leader elects the one coordinator of a cluster that does the
// leader-only work (placement, CRL signing, rotation phases) and fences that
// work on its lease. The election is the store's named lock: on etcd a lease
// kept alive by the holder, on bolt a process-local lock (one coordinator,
// always the leader). A term's Fence goes into the conditions of every
// leader-only transaction, so a coordinator that lost its lease, even one
// that has not noticed yet, never commits a leader-only write.
package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/store"
)

// lockName is the store lock whose holder leads.
const lockName = "leader"

// KeyLeader holds the current leader's Info, written in a transaction
// fenced by its own term, so it names the leader only while that term
// holds (Current checks the fence key still exists).
const KeyLeader = "ha/leader"

// DefaultTTL is the lease of a term: how long a leader that died without
// releasing keeps the lock. Failover takes about this long plus the new
// leader's restore.
const DefaultTTL = 3 * time.Second

// ErrLost is wrapped by the error that ends a term.
var ErrLost = errors.New("leadership lost")

// Info describes a coordinator: where peers reach it and, in member
// records, how its store looked at its last update.
type Info struct {
	ID          string    `json:"id"`
	ClusterAddr string    `json:"cluster_addr"`
	PublicAddr  string    `json:"public_addr"`
	Version     string    `json:"version,omitempty"`
	Since       time.Time `json:"since"`
	// Fence is the lock record that exists exactly while this record is
	// current (the term's or the membership's lease).
	Fence string `json:"fence"`
	// Health, written by each member every few seconds.
	Updated      time.Time     `json:"updated,omitempty"`
	StoreRev     int64         `json:"store_rev,omitempty"`
	StoreLatency time.Duration `json:"store_latency,omitempty"`
	StoreError   string        `json:"store_error,omitempty"`
}

// Term is one coordinator's time as leader. It ends when the lease is lost
// (expired, revoked, released) or when a fenced write found it gone.
type Term struct {
	st    store.Store
	lease store.Lease
	info  Info

	// prev is the leader record this term replaced (prevOK: there was one).
	prev   Info
	prevOK bool

	once sync.Once
	lost chan struct{}
	mu   sync.Mutex
	why  error
}

// Campaign blocks until this coordinator holds the leader lock or ctx ends,
// then records me as the leader (fenced by the new term) and returns the
// term.
func Campaign(ctx context.Context, st store.Store, me Info, ttl time.Duration) (*Term, error) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	lease, err := st.Lock(ctx, lockName, ttl)
	if err != nil {
		return nil, err
	}
	t := &Term{st: st, lease: lease, lost: make(chan struct{})}
	if prev, err := st.Get(ctx, KeyLeader); err == nil {
		t.prevOK = json.Unmarshal(prev.Value, &t.prev) == nil
	} else if !errors.Is(err, store.ErrNotFound) {
		lease.Release(context.Background())
		return nil, fmt.Errorf("read the last leader: %w", err)
	}
	me.Fence = lease.Fence().Key
	if me.Since.IsZero() {
		me.Since = time.Now().UTC()
	}
	t.info = me
	b, err := json.Marshal(me)
	if err != nil {
		lease.Release(context.Background())
		return nil, err
	}
	if _, err := st.Txn(ctx, t.Conds(nil), []store.Op{store.Put(KeyLeader, b)}); err != nil {
		lease.Release(context.Background())
		return nil, fmt.Errorf("record the new leader: %w", err)
	}
	go func() {
		select {
		case <-lease.Done():
			t.end(fmt.Errorf("%w: the lease %s ended (expired, revoked or released)", ErrLost, me.Fence))
		case <-t.lost:
		}
	}()
	return t, nil
}

// Follows reports whether this term follows old directly: no other term
// began in between (every term records itself first thing), so what old's
// holder kept in memory is still the truth.
func (t *Term) Follows(old *Term) bool {
	return old != nil && t.prevOK && t.prev.Fence == old.lease.Fence().Key
}

// Info is the leader record this term wrote.
func (t *Term) Info() Info { return t.info }

// Lease is the store lock lease behind the term.
func (t *Term) Lease() store.Lease { return t.lease }

// Fence is the condition every leader-only transaction carries.
func (t *Term) Fence() store.Cond { return t.lease.Fence() }

// Conds returns conds with the term's fence added.
func (t *Term) Conds(conds []store.Cond) []store.Cond {
	return append(append(make([]store.Cond, 0, len(conds)+1), conds...), t.lease.Fence())
}

// Fenced reports whether err is the fence failing: the term is over, and
// nothing of that transaction was written.
func (t *Term) Fenced(err error) bool {
	var c *store.ConflictError
	return errors.As(err, &c) && c.Key == t.lease.Fence().Key
}

// Done is closed when the term ends; Err then says why.
func (t *Term) Done() <-chan struct{} { return t.lost }

// Err is why the term ended (nil while it holds).
func (t *Term) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.why
}

// Lose ends the term from the holder's side (a fenced write failed).
func (t *Term) Lose(why error) { t.end(fmt.Errorf("%w: %v", ErrLost, why)) }

func (t *Term) end(why error) {
	t.once.Do(func() {
		t.mu.Lock()
		t.why = why
		t.mu.Unlock()
		close(t.lost)
	})
}

// Resign gives the leadership up at once (a clean stop): the next
// candidate takes it without waiting for the TTL.
func (t *Term) Resign(ctx context.Context) error {
	err := t.lease.Release(ctx)
	t.end(fmt.Errorf("%w: resigned", ErrLost))
	return err
}

// Current returns the leader's record, and false when no term holds: no
// record yet, or the term that wrote it has ended (its fence key is gone).
func Current(ctx context.Context, st store.Store) (Info, bool, error) {
	rec, err := st.Get(ctx, KeyLeader)
	if errors.Is(err, store.ErrNotFound) {
		return Info{}, false, nil
	}
	if err != nil {
		return Info{}, false, err
	}
	var in Info
	if err := json.Unmarshal(rec.Value, &in); err != nil {
		return Info{}, false, fmt.Errorf("%s does not decode: %w", KeyLeader, err)
	}
	alive, err := holds(ctx, st, in.Fence)
	return in, alive, err
}

// holds reports whether the lock record fence still exists.
func holds(ctx context.Context, st store.Store, fence string) (bool, error) {
	if fence == "" {
		return false, nil
	}
	_, err := st.Get(ctx, fence)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
