package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/store"
)

// Users added, re-roled or removed on one coordinator reach every other
// one sharing the store through a watch on the user records, so that the
// coordinator that leads next knows them: a pending one-time login works
// there, and one that a removal or a role change voided stays void.
//
// A change is applied by reading the record again under userMu rather than
// from the event: this coordinator's own writes commit under userMu before
// memory changes, so the store's current record is never older than
// memory, while a late event (an echo of an earlier write) could be. A
// used login can therefore never look unused again, not even for a moment.

// userReadTimeout bounds the store read of one changed user record, made
// while userMu is held.
const userReadTimeout = 2 * time.Second

// followUsers runs until ctx ends (on a shared store). A read that fails
// (the catch-up of every record, or one changed record) is retried with
// backoff until it succeeds: the watch may not restart for days.
func (c *Coordinator) followUsers(ctx context.Context) {
	stale := newStaleUsers()
	done := make(chan struct{})
	go func() { defer close(done); c.retryStaleUsers(ctx, stale) }()
	c.followPrefix(ctx, prefixUsers, "user records",
		func(ctx context.Context) {
			if err := c.loadUsers(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("re-read the users from the store; retrying", "err", err)
				stale.markAll()
			}
		},
		func(ev store.Event) {
			name := strings.TrimPrefix(ev.Record.Key, prefixUsers)
			if err := c.refreshUser(ctx, name); err != nil && ctx.Err() == nil {
				c.log.Warn("read a user changed on another coordinator; retrying", "user", name, "err", err)
				stale.mark(name)
			}
		})
	<-done
}

// staleUsers is what the users watch could not read: single records by
// name, or all of them.
type staleUsers struct {
	mu    sync.Mutex
	all   bool
	names map[string]bool
	kick  chan struct{}
}

func newStaleUsers() *staleUsers {
	return &staleUsers{names: map[string]bool{}, kick: make(chan struct{}, 1)}
}

func (s *staleUsers) mark(name string) {
	s.mu.Lock()
	s.names[name] = true
	s.mu.Unlock()
	s.wake()
}

func (s *staleUsers) markAll() {
	s.mu.Lock()
	s.all = true
	s.mu.Unlock()
	s.wake()
}

func (s *staleUsers) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// take empties the set and returns what it held.
func (s *staleUsers) take() (all bool, names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, s.all = s.all, false
	for n := range s.names {
		names = append(names, n)
	}
	clear(s.names)
	return all, names
}

// retryStaleUsers reads again what the watch could not, with backoff from
// 100 ms to followRetryMax while the store keeps failing, until ctx ends.
// Reading again is always safe: each read takes the store's current
// record under userMu (see above).
func (c *Coordinator) retryStaleUsers(ctx context.Context, stale *staleUsers) {
	wait := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-stale.kick:
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			all, names := stale.take()
			if !all && len(names) == 0 {
				break
			}
			var err error
			if all {
				if err = c.loadUsers(ctx); err != nil {
					stale.markAll()
				}
			} else {
				for _, name := range names {
					if rerr := c.refreshUser(ctx, name); rerr != nil {
						stale.mark(name)
						err = rerr
					}
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("the users could still not be read from the store; retrying", "err", err, "retry_in", min(2*wait, followRetryMax).String())
				}
				wait = min(2*wait, followRetryMax)
				continue
			}
			c.log.Info("users read from the store again after a failed read", "all", all, "users", len(names))
			wait = 100 * time.Millisecond
		}
	}
}

// loadUsers reads every user record into memory (at start, when a watch of
// the records starts, and when this coordinator takes over the leadership)
// and drops the users whose record is gone from the store. Under userMu,
// every user in memory has its record written (this coordinator writes
// before memory changes), so one the scan does not return was deleted.
func (c *Coordinator) loadUsers(ctx context.Context) error {
	c.userMu.Lock()
	defer c.userMu.Unlock()
	seen := map[string]bool{}
	err := c.st.Scan(ctx, prefixUsers, func(r store.Record) error {
		u, err := decodeUser(r)
		if err != nil {
			return err
		}
		seen[u.Name] = true
		c.setUserLocked(u)
		return nil
	})
	if err != nil {
		return err
	}
	for name := range c.users {
		if !seen[name] {
			delete(c.users, name)
			c.log.Info("user record gone from the store; user dropped", "user", name)
		}
	}
	return nil
}

// refreshUser reads one user record again and makes memory match it.
func (c *Coordinator) refreshUser(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, userReadTimeout)
	defer cancel()
	c.userMu.Lock()
	defer c.userMu.Unlock()
	r, err := c.st.Get(ctx, userKey(name))
	if errors.Is(err, store.ErrNotFound) {
		delete(c.users, name) // records are never deleted today; an operator's etcdctl del is followed
		return nil
	}
	if err != nil {
		return err
	}
	u, err := decodeUser(r)
	if err != nil {
		return err
	}
	if old := c.users[name]; old == nil || *old != *u {
		c.log.Info("user changed on another coordinator", "user", name, "role", u.Role, "state", u.state(c.now()))
	}
	c.setUserLocked(u)
	return nil
}

// setUserLocked puts u in memory, in place when the user is known (callers
// hold userMu).
func (c *Coordinator) setUserLocked(u *userRecord) {
	if old := c.users[u.Name]; old != nil {
		*old = *u
		return
	}
	c.users[u.Name] = u
}

func decodeUser(r store.Record) (*userRecord, error) {
	var u userRecord
	if err := json.Unmarshal(r.Value, &u); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Key, err)
	}
	return &u, nil
}
