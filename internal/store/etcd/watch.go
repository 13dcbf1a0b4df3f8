package etcd

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/watchq"
)

// Watch delivers changes under prefix committed after it returns: it reads
// the current revision first and watches from the next one, so no commit
// between the call and etcd registering the watch is missed. The watch ends
// when ctx is canceled (Err nil), the store closes (store.ErrClosed), etcd
// compacted past it or loses its leader, or the caller falls more than
// Options.WatchBuffer events behind (Err says so: re-list and watch again).
func (s *Store) Watch(ctx context.Context, prefix string) (store.Watcher, error) {
	rev, err := s.Rev(ctx)
	if err != nil {
		return nil, err
	}
	wctx, done, err := s.call(ctx, false)
	if err != nil {
		return nil, err
	}
	// RequireLeader ends the watch when its etcd member loses the leader,
	// instead of leaving it silently stale behind a partition.
	ch := s.cli.Watch(clientv3.WithRequireLeader(wctx), s.full(prefix), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	q := watchq.New(s.opts.WatchBuffer)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer done()
		q.End(s.pump(ctx, wctx, prefix, ch, q))
	}()
	return q, nil
}

// pump moves etcd's watch responses into q until the watch ends, and
// returns why it ended.
func (s *Store) pump(ctx, wctx context.Context, prefix string, ch clientv3.WatchChan, q *watchq.Queue) error {
	overflow := func() error {
		return fmt.Errorf("etcd: watch on %q fell behind (more than %d undelivered events); re-list and watch again", prefix, s.opts.WatchBuffer)
	}
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-ch:
		case <-q.Ended():
			return nil // overflowed: End already has the reason
		}
		switch {
		case s.closed.Load():
			return store.ErrClosed
		case ctx.Err() != nil:
			return nil
		case !ok:
			return fmt.Errorf("etcd: watch on %q ended (%v); re-list and watch again", prefix, wctx.Err())
		case resp.CompactRevision != 0:
			return fmt.Errorf("etcd: watch on %q fell behind etcd's compaction at revision %d; re-list and watch again", prefix, resp.CompactRevision)
		case resp.Err() != nil:
			return fmt.Errorf("etcd: watch on %q ended: %v; re-list and watch again", prefix, resp.Err())
		}
		if len(resp.Events) == 0 {
			continue
		}
		evs := make([]store.Event, len(resp.Events))
		for i, ev := range resp.Events {
			rec := store.Record{Key: s.short(ev.Kv.Key), ModRev: ev.Kv.ModRevision}
			evs[i] = store.Event{Type: store.EventDelete, Record: rec}
			if ev.Type == mvccpb.PUT {
				evs[i].Type = store.EventPut
				evs[i].Record.Value = ev.Kv.Value
				evs[i].Record.CreateRev = ev.Kv.CreateRevision
			}
		}
		if !q.Push(evs, overflow) {
			return nil
		}
	}
}
