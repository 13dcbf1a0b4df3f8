package coordinator

import (
	"context"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/store"
)

// journal is the group commit in front of the store. Callers append writes
// with a callback; one goroutine commits everything appended so far in one
// transaction and then runs the callbacks in order. So the hot path costs
// one store commit per round, not one per decision, and every message that
// depends on a write (an assignment, a result acknowledgement, a reply to a
// submit) is sent only after that write is durable.
type journal struct {
	st    store.Store
	fatal func(error) // a failed commit leaves memory ahead of disk: stop
	// observe (optional) sees each commit's duration and write count.
	observe func(d time.Duration, writes int)

	mu      sync.Mutex
	ops     []store.Op
	cbs     []func(error)
	kick    chan struct{}
	stopped bool

	commits  uint64 // for tests and metrics
	opsTotal uint64
	busy     time.Duration // time spent committing
}

func newJournal(st store.Store, fatal func(error)) *journal {
	return &journal{st: st, fatal: fatal, kick: make(chan struct{}, 1)}
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
	if cb != nil {
		j.cbs = append(j.cbs, cb)
	}
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// run commits batches until ctx ends, then drains what is queued.
func (j *journal) run(ctx context.Context) {
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
	ops, cbs := j.ops, j.cbs
	j.ops, j.cbs = nil, nil
	j.mu.Unlock()
	if len(ops) == 0 && len(cbs) == 0 {
		return
	}
	var err error
	if len(ops) > 0 {
		start := time.Now()
		_, err = j.st.Txn(context.Background(), nil, ops)
		d := time.Since(start)
		j.busy += d
		if j.observe != nil {
			j.observe(d, len(ops))
		}
		j.commits++
		j.opsTotal += uint64(len(ops))
	}
	for _, cb := range cbs {
		cb(err)
	}
	if err != nil && j.fatal != nil {
		j.fatal(err)
	}
}

// Wait commits ops and blocks until they are durable.
func (j *journal) Wait(ops []store.Op) error {
	done := make(chan error, 1)
	j.Commit(ops, func(err error) { done <- err })
	return <-done
}
