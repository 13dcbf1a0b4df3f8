package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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

// followUsers runs until ctx ends (on a shared store).
func (c *Coordinator) followUsers(ctx context.Context) {
	c.followPrefix(ctx, prefixUsers, "user records",
		func(ctx context.Context) {
			if err := c.loadUsers(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("re-read the users from the store", "err", err)
			}
		},
		func(ev store.Event) {
			name := strings.TrimPrefix(ev.Record.Key, prefixUsers)
			if err := c.refreshUser(ctx, name); err != nil && ctx.Err() == nil {
				c.log.Warn("read a user changed on another coordinator; it is read again when the watch restarts", "user", name, "err", err)
			}
		})
}

// loadUsers reads every user record into memory (at start, when a watch of
// the records starts, and when this coordinator takes over the leadership).
func (c *Coordinator) loadUsers(ctx context.Context) error {
	c.userMu.Lock()
	defer c.userMu.Unlock()
	return c.st.Scan(ctx, prefixUsers, func(r store.Record) error {
		u, err := decodeUser(r)
		if err != nil {
			return err
		}
		c.setUserLocked(u)
		return nil
	})
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
