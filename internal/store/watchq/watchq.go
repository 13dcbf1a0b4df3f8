// Package watchq is the delivery half of a store.Watcher, shared by every
// backend: committed events are pushed without blocking into a bounded
// queue, and one goroutine hands them to the consumer at its own pace. A
// consumer that falls more than the bound behind ends the watch with an
// error that tells it to re-list, so a slow reader never stalls commits nor
// grows memory without limit.
package watchq

import (
	"sync"

	"github.com/wardcluster/ward/internal/store"
)

// Queue is a store.Watcher fed by Push. Its Events channel is unbuffered;
// events wait in the queue until the consumer takes them.
type Queue struct {
	limit  int
	ch     chan store.Event
	notify chan struct{} // capacity 1: "the queue may be non-empty"
	stop   chan struct{} // closed by End

	mu    sync.Mutex
	queue []store.Event
	ended bool
	err   error
}

var _ store.Watcher = (*Queue)(nil)

// New starts a queue that holds at most limit undelivered events. Its
// delivery goroutine runs until End.
func New(limit int) *Queue {
	q := &Queue{
		limit:  limit,
		ch:     make(chan store.Event),
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	go q.run()
	return q
}

// Events returns the channel of committed changes; it is closed when the
// watch ends.
func (q *Queue) Events() <-chan store.Event { return q.ch }

// Err explains why Events was closed: nil when the caller's context ended
// the watch, else the error End was given.
func (q *Queue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Push queues evs, or ends the watch with overflow() when they would exceed
// the limit. It never blocks. It reports whether the watch is still live.
func (q *Queue) Push(evs []store.Event, overflow func() error) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ended {
		return false
	}
	if len(q.queue)+len(evs) > q.limit {
		q.endLocked(overflow())
		return false
	}
	q.queue = append(q.queue, evs...)
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return true
}

// End ends the watch with err (nil for a canceled context). Events still
// queued are dropped: a caller that sees the end re-lists anyway. Only the
// first End counts.
func (q *Queue) End(err error) {
	q.mu.Lock()
	q.endLocked(err)
	q.mu.Unlock()
}

// Ended is closed once the watch has ended.
func (q *Queue) Ended() <-chan struct{} { return q.stop }

func (q *Queue) endLocked(err error) {
	if q.ended {
		return
	}
	q.ended = true
	q.err = err
	q.queue = nil
	close(q.stop)
}

// run delivers queued events until the watch ends, then closes Events.
func (q *Queue) run() {
	defer close(q.ch)
	for {
		q.mu.Lock()
		if q.ended {
			q.mu.Unlock()
			return
		}
		if len(q.queue) == 0 {
			q.mu.Unlock()
			select {
			case <-q.notify:
				continue
			case <-q.stop:
				return
			}
		}
		ev := q.queue[0]
		q.queue[0] = store.Event{}
		q.queue = q.queue[1:]
		if len(q.queue) == 0 {
			q.queue = nil // let the drained backing array go
		}
		q.mu.Unlock()
		select {
		case q.ch <- ev:
		case <-q.stop:
			return
		}
	}
}
