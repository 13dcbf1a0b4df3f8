package leader

import (
	"context"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/store"
)

// PollEvery is how often a Tracker reads the leader record. Two small
// reads; it bounds how long a follower keeps pointing at a dead leader
// after the new one recorded itself.
const PollEvery = 250 * time.Millisecond

// Tracker follows who leads, for followers that forward to the leader.
type Tracker struct {
	st store.Store

	mu      sync.Mutex
	cur     Info
	ok      bool
	err     error
	since   time.Time     // when the last change was seen
	changed chan struct{} // closed and replaced on every change
}

// Track starts following the leader record until ctx ends.
func Track(ctx context.Context, st store.Store) *Tracker {
	t := &Tracker{st: st, changed: make(chan struct{}), since: time.Now()}
	go t.run(ctx)
	return t
}

func (t *Tracker) run(ctx context.Context) {
	tick := time.NewTicker(PollEvery)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		in, ok, err := Current(rctx, t.st)
		cancel()
		t.mu.Lock()
		if ok != t.ok || in.ID != t.cur.ID || in.Fence != t.cur.Fence || (err == nil) != (t.err == nil) {
			close(t.changed)
			t.changed = make(chan struct{})
			t.since = time.Now()
		}
		t.cur, t.ok, t.err = in, ok, err
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Leader is the last leader seen; ok is false when no term held then, and
// err is the store's error if the last read failed.
func (t *Tracker) Leader() (in Info, ok bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur, t.ok, t.err
}

// Since is when the tracker last saw the leadership change (a term begin
// or end, or the store's reads start or stop failing), or started.
func (t *Tracker) Since() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.since
}

// Wait returns a leader other than the term fenced by skip (the one a
// caller just found dead, or "" for none), waiting for one until ctx ends.
func (t *Tracker) Wait(ctx context.Context, skip string) (Info, error) {
	for {
		t.mu.Lock()
		in, ok, ch := t.cur, t.ok, t.changed
		t.mu.Unlock()
		if ok && (skip == "" || in.Fence != skip) {
			return in, nil
		}
		select {
		case <-ctx.Done():
			return Info{}, ErrNoLeader
		case <-ch:
		}
	}
}
