// Package store defines the coordinator's durable state contract: keyed
// records with revisions, atomic compare-and-set transactions, watches and a
// leader lock. Every backend (bolt today, etcd for HA) passes the same
// conformance suite in storetest, so callers never depend on a backend.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned by Get when the key does not exist.
var ErrNotFound = errors.New("store: key not found")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("store: closed")

// ErrUnavailable is wrapped by errors that mean the backend could not be
// reached in time (an etcd cluster without quorum, or down). The outcome of
// a Txn that fails this way is unknown: it may have been committed.
var ErrUnavailable = errors.New("store unavailable")

// ErrNoSpace is wrapped by errors that mean the backend is out of space (an
// etcd past its quota). Nothing was written; writes succeed again once an
// operator makes room.
var ErrNoSpace = errors.New("store: out of space")

// ErrTxnTooLarge is wrapped by the error of a Txn bigger than the backend's
// Limits; nothing was written.
var ErrTxnTooLarge = errors.New("store: transaction too large")

// ConflictError reports that a transaction condition did not hold, so nothing
// was written. Callers re-read and retry, or report the conflict.
type ConflictError struct {
	Key     string // the key whose condition failed
	WantRev int64  // the revision the condition asked for (0: must not exist)
	HaveRev int64  // the key's revision at commit time (0: absent)
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: conflict on %q: condition wanted revision %d, store has %d", e.Key, e.WantRev, e.HaveRev)
}

// IsConflict reports whether err is (or wraps) a *ConflictError.
func IsConflict(err error) bool {
	var c *ConflictError
	return errors.As(err, &c)
}

// Record is one stored key with its value and revisions.
type Record struct {
	Key       string
	Value     []byte
	CreateRev int64 // store revision of the transaction that created the key
	ModRev    int64 // store revision of the transaction that last wrote the key
}

// OpType names what an Op does.
type OpType uint8

// The operations a transaction can carry.
const (
	OpPut OpType = iota + 1
	OpDelete
	OpDeletePrefix
)

// Op is one write inside a transaction.
type Op struct {
	Type  OpType
	Key   string // for OpDeletePrefix, the prefix
	Value []byte
}

// Put writes value at key.
func Put(key string, value []byte) Op { return Op{Type: OpPut, Key: key, Value: value} }

// Delete removes key; deleting an absent key is not an error.
func Delete(key string) Op { return Op{Type: OpDelete, Key: key} }

// DeletePrefix removes every key that starts with prefix.
func DeletePrefix(prefix string) Op { return Op{Type: OpDeletePrefix, Key: prefix} }

// Cond is a transaction precondition on one key's modification revision.
type Cond struct {
	Key    string
	ModRev int64 // 0 means the key must not exist
}

// Absent requires that key does not exist.
func Absent(key string) Cond { return Cond{Key: key} }

// Unchanged requires that key exists and was last written at revision rev.
func Unchanged(key string, rev int64) Cond { return Cond{Key: key, ModRev: rev} }

// EventType says whether an Event is a write or a delete.
type EventType uint8

// The event kinds a watch delivers.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one committed change seen by a Watch.
type Event struct {
	Type   EventType
	Record Record // for deletes, Key and ModRev (the deleting revision) only
}

// Watcher delivers events for a prefix in commit order.
type Watcher interface {
	// Events is closed when the watch ends: the context was canceled, the
	// store closed, or the watcher fell too far behind (then Err says so and
	// the caller must re-list and watch again).
	Events() <-chan Event
	// Err explains why Events was closed; nil when the context ended it.
	Err() error
}

// Lease is a held named lock for leader-only work.
type Lease interface {
	// Done is closed when the lease is lost (expired, revoked or released).
	// It may close a little after the backend already let the lock go (a
	// lease expires on the etcd server before its holder hears of it), so
	// Done alone never makes a write safe: Fence does.
	Done() <-chan struct{}
	// Fence returns a condition that holds exactly while this lease holds
	// the lock. A leader adds it to every leader-only Txn: once the lease is
	// released, expired or revoked, or the lock has passed to another
	// holder, such a Txn fails with a *ConflictError naming Fence().Key and
	// writes nothing. It is a plain Cond, so it combines with others.
	Fence() Cond
	// Release gives the lock up.
	Release(ctx context.Context) error
}

// LockPrefix is where backends keep lock state, as ordinary records (a
// lease's Fence names one of them). Callers must not write under it; they
// may read or watch it, for example to see who holds a lock.
const LockPrefix = "locks/"

// Limits bound one Txn. Zero means no limit beyond the backend's own
// (bbolt's key and value sizes).
type Limits struct {
	MaxOps   int // ops in one Txn
	MaxBytes int // keys plus values of one Txn, in bytes
}

// CheckOp rejects an op that no backend can apply: a put or delete of the
// empty key, or an unknown type. An empty DeletePrefix prefix is fine: it
// deletes every key.
func CheckOp(op Op) error {
	switch op.Type {
	case OpPut, OpDelete:
		if op.Key == "" {
			return errors.New("empty key")
		}
	case OpDeletePrefix:
	default:
		return fmt.Errorf("unknown op type %d on %q", op.Type, op.Key)
	}
	return nil
}

// TxnBytes is what Limits.MaxBytes counts for ops.
func TxnBytes(ops []Op) int {
	n := 0
	for _, op := range ops {
		n += len(op.Key) + len(op.Value)
	}
	return n
}

// Store is the durable state contract. Implementations are safe for
// concurrent use.
type Store interface {
	// Get returns the record at key, or ErrNotFound.
	Get(ctx context.Context, key string) (Record, error)
	// List returns every record whose key starts with prefix, in key order.
	List(ctx context.Context, prefix string) ([]Record, error)
	// Scan calls fn for each record under prefix in key order, without
	// holding them all in memory; an error from fn stops the scan and is
	// returned.
	Scan(ctx context.Context, prefix string, fn func(Record) error) error
	// Txn applies ops atomically when every condition holds and returns the
	// new store revision. When a condition fails it writes nothing and
	// returns a *ConflictError. Ops apply in order; when several touch one
	// key the last wins, and whether a key deleted and written again in
	// the same Txn keeps its CreateRev is up to the backend.
	Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error)
	// Rev returns the current store revision. It rises with every committed
	// Txn that changes something (by exactly one when nothing else shares
	// the backend; an etcd cluster's revision also counts other clients'
	// writes).
	Rev(ctx context.Context) (int64, error)
	// Watch delivers changes under prefix committed after Watch returns.
	Watch(ctx context.Context, prefix string) (Watcher, error)
	// Lock blocks until it holds the named lock or ctx ends. ttl bounds how
	// long a crashed or cut-off holder keeps it (backends without
	// crashes-in-between, like a single-process bolt file, may ignore it).
	// name must not contain "/".
	Lock(ctx context.Context, name string, ttl time.Duration) (Lease, error)
	// Limits reports the largest Txn the backend accepts. A caller that
	// batches independent writes splits its batches to fit.
	Limits() Limits
	// Close releases the backend; later calls return ErrClosed.
	Close() error
}
