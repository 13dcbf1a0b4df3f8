package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/store"
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
type journal struct {
	st    store.Store
	fatal func(error) // a failed commit leaves memory ahead of disk: stop
	// observe (optional) sees each commit's duration and write count.
	observe func(d time.Duration, writes int)

	mu      sync.Mutex
	ops     []store.Op
	ends    []int // where each Commit's ops end in ops: a batch splits only there
	cbs     []func(error)
	kick    chan struct{}
	stopped bool

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

func newJournal(st store.Store, fatal func(error)) *journal {
	return &journal{st: st, fatal: fatal, kick: make(chan struct{}, 1), done: make(chan committed, journalAhead)}
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
			j.flush()
		case <-ctx.Done():
			j.mu.Lock()
			j.stopped = true
			j.mu.Unlock()
			j.flush()
			return
		}
	}
}

func (j *journal) flush() {
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
			start := time.Now()
			_, err = j.st.Txn(context.Background(), nil, part)
			d := time.Since(start)
			j.busy += d
			if j.observe != nil {
				j.observe(d, len(part))
			}
			j.commits++
			j.opsTotal += uint64(len(part))
			if err != nil {
				break
			}
		}
	}
	if err != nil && j.failed == nil {
		j.failed = err
	}
	j.done <- committed{cbs: cbs, err: err}
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

// Wait commits ops and blocks until they are durable.
func (j *journal) Wait(ops []store.Op) error {
	done := make(chan error, 1)
	j.Commit(ops, func(err error) { done <- err })
	return <-done
}
