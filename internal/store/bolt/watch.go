package bolt

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/watchq"
)

// watcher is one Watch: a prefix and the queue that delivers its events.
// Commits push to the queue without blocking (see fanout).
type watcher struct {
	*watchq.Queue
	prefix string
	limit  int
	// stopCtx detaches the context.AfterFunc that ends the watch on cancel.
	stopCtx func() bool
}

// push queues evs, or ends the watch when it fell too far behind.
func (w *watcher) push(evs []store.Event) bool {
	return w.Push(evs, func() error {
		return fmt.Errorf("bolt: watch on %q fell behind (more than %d undelivered events); re-list and watch again", w.prefix, w.limit)
	})
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
	w := &watcher{Queue: watchq.New(s.watchBuffer), prefix: prefix, limit: s.watchBuffer}
	w.stopCtx = context.AfterFunc(ctx, func() {
		s.wmu.Lock()
		delete(s.watchers, w)
		s.wmu.Unlock()
		w.End(nil)
	})
	// Registering under txMu means no commit is between its bbolt commit
	// and its fan-out, so the watcher sees exactly the later commits.
	s.txMu.Lock()
	s.wmu.Lock()
	s.watchers[w] = struct{}{}
	s.wmu.Unlock()
	s.txMu.Unlock()
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
