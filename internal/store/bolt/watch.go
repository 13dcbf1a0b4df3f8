package bolt

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/wardcluster/ward/internal/store"
)

// watcher is one Watch. Commits append to its queue without blocking (see
// fanout); its own goroutine (run) moves events from the queue to the
// unbuffered Events channel at the consumer's pace.
type watcher struct {
	prefix string
	limit  int
	ch     chan store.Event
	notify chan struct{} // capacity 1: "the queue may be non-empty"
	stop   chan struct{} // closed by end

	// stopCtx detaches the context.AfterFunc that ends the watch on cancel.
	stopCtx func() bool

	mu    sync.Mutex
	queue []store.Event
	ended bool
	err   error
}

// Events returns the channel of committed changes; it is closed when the
// watch ends.
func (w *watcher) Events() <-chan store.Event { return w.ch }

// Err explains why Events was closed: nil for a canceled context,
// store.ErrClosed for a closed store, or a fell-behind error.
func (w *watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// push queues evs, or ends the watch when that would exceed its limit. It
// never blocks, so a slow consumer cannot stall commits. It reports whether
// the watcher is still live.
func (w *watcher) push(evs []store.Event) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return false
	}
	if len(w.queue)+len(evs) > w.limit {
		w.endLocked(fmt.Errorf("bolt: watch on %q fell behind (more than %d undelivered events); re-list and watch again", w.prefix, w.limit))
		return false
	}
	w.queue = append(w.queue, evs...)
	select {
	case w.notify <- struct{}{}:
	default:
	}
	return true
}

func (w *watcher) end(err error) {
	w.mu.Lock()
	w.endLocked(err)
	w.mu.Unlock()
}

func (w *watcher) endLocked(err error) {
	if w.ended {
		return
	}
	w.ended = true
	w.err = err
	w.queue = nil
	close(w.stop)
}

// run delivers queued events until the watch ends, then closes Events.
// Events still queued at the end are dropped: the caller re-lists anyway.
func (w *watcher) run() {
	defer close(w.ch)
	for {
		w.mu.Lock()
		if w.ended {
			w.mu.Unlock()
			return
		}
		if len(w.queue) == 0 {
			w.mu.Unlock()
			select {
			case <-w.notify:
				continue
			case <-w.stop:
				return
			}
		}
		ev := w.queue[0]
		w.queue[0] = store.Event{}
		w.queue = w.queue[1:]
		if len(w.queue) == 0 {
			w.queue = nil // let the drained backing array go
		}
		w.mu.Unlock()
		select {
		case w.ch <- ev:
		case <-w.stop:
			return
		}
	}
}

// Watch delivers changes under prefix committed after it returns. The watch
// ends when ctx is canceled (Err nil), when the store closes (Err
// store.ErrClosed), or when more than Options.WatchBuffer events wait
// undelivered (Err says it fell behind; re-list and watch again).
func (s *Store) Watch(ctx context.Context, prefix string) (store.Watcher, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	w := &watcher{
		prefix: prefix,
		limit:  s.watchBuffer,
		ch:     make(chan store.Event),
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	w.stopCtx = context.AfterFunc(ctx, func() {
		s.wmu.Lock()
		delete(s.watchers, w)
		s.wmu.Unlock()
		w.end(nil)
	})
	// Registering under txMu means no commit is between its bbolt commit
	// and its fan-out, so the watcher sees exactly the later commits.
	s.txMu.Lock()
	s.wmu.Lock()
	s.watchers[w] = struct{}{}
	s.wmu.Unlock()
	s.txMu.Unlock()
	go w.run()
	return w, nil
}

// fanout hands one commit's events to every watcher whose prefix matches,
// each with its own copy of the values. It runs under txMu, after the bbolt
// commit released the file's write lock, and never blocks.
func (s *Store) fanout(events []store.Event) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for w := range s.watchers {
		var mine []store.Event
		for _, ev := range events {
			if strings.HasPrefix(ev.Record.Key, w.prefix) {
				ev.Record.Value = bytes.Clone(ev.Record.Value)
				mine = append(mine, ev)
			}
		}
		if len(mine) > 0 && !w.push(mine) {
			delete(s.watchers, w)
			w.stopCtx()
		}
	}
}
