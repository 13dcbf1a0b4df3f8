package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/leader"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/storehealth"
)

// journal is the group commit in front of the store. Callers append writes
// with a callback; one goroutine commits everything appended so far in one
// transaction and hands the batch's callbacks to a second goroutine, which
// runs them in commit order. So the hot path costs one store commit per
// round, not one per decision; every message that depends on a write (an
// assignment, a result acknowledgement, a reply to a submit) is sent only
// after that write is durable; and the next commit does not wait for the
// previous batch's messages to be sent. Commits are sequential, so when a
// batch's callbacks run every earlier batch is durable too.
//
// A commit the store refuses for now (storehealth.Transient: a full disk,
// an etcd outage) is not fatal: the journal marks the store down in health,
// and tries the same batch again, with backoff, until it succeeds. Later
// batches queue behind it and every callback waits, so nothing accepted is
// lost and nothing depending on an unwritten batch is sent. Any other
// failure leaves memory ahead of the store for good: fatal.
type journal struct {
	st     store.Store
	health *storehealth.Monitor
	fatal  func(error) // a failed commit leaves memory ahead of disk: stop
	// onDown and onUp (optional) hear when writes start failing and when
	// they succeed again, after how long.
	onDown func(error)
	onUp   func(time.Duration)
	// observe (optional) sees each commit's duration and write count.
	observe func(d time.Duration, writes int)

	mu sync.Mutex
	// fence, once the coordinator leads, is the term every batch is
	// fenced on: after the term ends no batch lands. campaigning: see
	// setCampaigning.
	fence       *leader.Term
	campaigning bool
	ops         []store.Op
	ends        []int // where each Commit's ops end in ops: a batch splits only there
	cbs         []func(error)
	kick        chan struct{}
	stopped     bool

	// done carries committed batches to the goroutine that runs their
	// callbacks. Its buffer bounds how far commits run ahead of callbacks.
	done chan committed

	// failed is the first commit error. Every later batch fails with it
	// and writes nothing: a batch may depend on an earlier one, and the
	// coordinator is stopping (fatal) to reload what is durable.
	failed error

	commits  uint64 // for tests and metrics
	opsTotal uint64
	busy     time.Duration // time spent committing
}

// committed is one batch's callbacks and its commit's result.
type committed struct {
	cbs []func(error)
	err error
}

// journalAhead is how many committed batches may wait for their callbacks.
const journalAhead = 64

// Backoff between attempts at a batch the store refused for now.
const (
	journalRetryFirst = 100 * time.Millisecond
	journalRetryMax   = 2 * time.Second
)

func newJournal(st store.Store, health *storehealth.Monitor, fatal func(error)) *journal {
	return &journal{st: st, health: health, fatal: fatal, kick: make(chan struct{}, 1), done: make(chan committed, journalAhead)}
}

// Commit queues ops for the next batch; cb (optional) runs after the batch
// is durable, in the order Commit was called, with the commit's error.
func (j *journal) Commit(ops []store.Op, cb func(error)) {
	j.mu.Lock()
	if j.stopped {
		j.mu.Unlock()
		if cb != nil {
			cb(store.ErrClosed)
		}
		return
	}
	j.ops = append(j.ops, ops...)
	j.ends = append(j.ends, len(j.ops))
	if cb != nil {
		j.cbs = append(j.cbs, cb)
	}
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// run commits batches until ctx ends, then drains what is queued and
// returns once every callback has run.
func (j *journal) run(ctx context.Context) {
	cbsDone := make(chan struct{})
	go func() {
		defer close(cbsDone)
		for b := range j.done {
			for _, cb := range b.cbs {
				cb(b.err)
			}
			if b.err != nil && j.fatal != nil {
				j.fatal(b.err)
			}
		}
	}()
	defer func() { close(j.done); <-cbsDone }()
	for {
		select {
		case <-j.kick:
			j.flush(ctx)
		case <-ctx.Done():
			j.mu.Lock()
			j.stopped = true
			j.mu.Unlock()
			j.flush(ctx)
			return
		}
	}
}

func (j *journal) flush(ctx context.Context) {
	j.mu.Lock()
	ops, ends, cbs := j.ops, j.ends, j.cbs
	j.ops, j.ends, j.cbs = nil, nil, nil
	j.mu.Unlock()
	if len(ops) == 0 && len(cbs) == 0 {
		return
	}
	var err error
	if j.failed != nil {
		err = fmt.Errorf("not written, because an earlier store commit failed: %w", j.failed)
	} else if len(ops) > 0 {
		for _, part := range splitBatch(ops, ends, j.st.Limits()) {
			if err = j.write(ctx, part); err != nil {
				break
			}
		}
	}
	if err != nil && j.failed == nil {
		j.failed = err
		if _, fence := j.conds(); fence != nil && fence.Fenced(err) {
			fence.Lose(err)
		}
	}
	j.done <- committed{cbs: cbs, err: err}
}

// write commits one transaction. One the store refuses for now is tried
// again until it succeeds or ctx ends (the coordinator stops): batches are
// ordered and memory is already ahead of this one, so waiting for it is
// the only safe move. Its ops are plain puts and deletes under, at most,
// the leader's fence, so writing them again after an attempt whose outcome
// is unknown (an etcd timeout) is harmless.
func (j *journal) write(ctx context.Context, part []store.Op) error {
	wait := journalRetryFirst
	for {
		conds, fence := j.conds()
		start := time.Now()
		_, err := j.st.Txn(context.Background(), conds, part)
		d := time.Since(start)
		j.busy += d
		if j.observe != nil {
			j.observe(d, len(part))
		}
		j.commits++
		j.opsTotal += uint64(len(part))
		if err == nil {
			if ended, down := j.health.Succeeded(); ended && j.onUp != nil {
				j.onUp(down)
			}
			return nil
		}
		if j.refusedByEndedTerm(err, fence) {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(wait):
			}
			wait = min(2*wait, journalRetryMax)
			continue
		}
		if !storehealth.Transient(err) {
			return err
		}
		if j.health.Failed(err) && j.onDown != nil {
			j.onDown(err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, journalRetryMax)
	}
}

// splitBatch cuts a batch into transactions within the store's limits, only
// between the ops of two Commit calls, so each caller's writes stay atomic.
// A single Commit larger than the limits goes alone (and the store refuses
// it). Without limits, or within them, the batch is one transaction.
func splitBatch(ops []store.Op, ends []int, lim store.Limits) [][]store.Op {
	fits := func(n, b int) bool {
		return (lim.MaxOps == 0 || n <= lim.MaxOps) && (lim.MaxBytes == 0 || b <= lim.MaxBytes)
	}
	if lim == (store.Limits{}) || fits(len(ops), store.TxnBytes(ops)) {
		return [][]store.Op{ops}
	}
	var parts [][]store.Op
	start, bytes := 0, 0
	prev := 0
	for _, end := range ends {
		unit := store.TxnBytes(ops[prev:end])
		if prev > start && !fits(end-start, bytes+unit) {
			parts = append(parts, ops[start:prev])
			start, bytes = prev, 0
		}
		bytes += unit
		prev = end
	}
	return append(parts, ops[start:])
}

// setFence fences every later batch on term (and a batch being retried,
// from its next attempt).
func (j *journal) setFence(term *leader.Term) {
	j.mu.Lock()
	j.fence = term
	j.mu.Unlock()
}

// setCampaigning says whether the coordinator lost its term and is
// campaigning to lead again with the state it holds: meanwhile a batch the
// ended term's fence refuses waits for the outcome (a new term of its own,
// or the coordinator stops) instead of failing.
func (j *journal) setCampaigning(on bool) {
	j.mu.Lock()
	j.campaigning = on
	j.mu.Unlock()
}

// conds are the conditions of the next attempt, with the fence they carry.
func (j *journal) conds() ([]store.Cond, *leader.Term) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fence == nil {
		return nil, nil
	}
	return j.fence.Conds(nil), j.fence
}

// refusedByEndedTerm reports whether err is fence's refusal while the
// coordinator campaigns to lead again.
func (j *journal) refusedByEndedTerm(err error, fence *leader.Term) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return fence != nil && j.campaigning && fence.Fenced(err)
}

// errPending is the cause of Wait's STORE_UNAVAILABLE answer when the store
// stopped writing while it waited: the ops are queued and will be written
// once the store writes again, so the request is reported as kept, not as
// refused.
var errPending = errors.New("the store stopped writing; the write is queued and happens once it writes again")

// Wait commits ops and blocks until they are durable, or until the store
// stops writing (a STORE_UNAVAILABLE error whose cause is errPending): a
// caller never hangs on an outage.
func (j *journal) Wait(ops []store.Op) error {
	done := make(chan error, 1)
	down := j.health.Down()
	j.Commit(ops, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-down:
		return j.health.Pending("this request").WithCause(errPending)
	}
}
