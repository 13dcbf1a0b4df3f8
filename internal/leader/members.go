package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/store"
)

// PrefixMembers holds one record per coordinator that has run, keyed by
// its ID. A record is current while its membership lease holds (Fence).
const PrefixMembers = "ha/members/"

// Membership is one running coordinator's presence in the store: a lease
// of its own (so a crashed coordinator drops out after the TTL) and its
// record, written fenced by that lease.
type Membership struct {
	st    store.Store
	lease store.Lease
	info  Info
}

// Join takes this coordinator's membership lease and writes its record.
// Two coordinators with one ID cannot both be members: the second waits
// for the first's lease, and gives up with an error after wait.
func Join(ctx context.Context, st store.Store, me Info, ttl, wait time.Duration) (*Membership, error) {
	if me.ID == "" || strings.ContainsAny(me.ID, "/") {
		return nil, fmt.Errorf("coordinator ID %q must be non-empty and without '/'", me.ID)
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	lease, err := st.Lock(wctx, "member."+me.ID, ttl)
	if err != nil {
		if wctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("another coordinator with ID %s is running (its membership lease was still held after %s): give each coordinator its own --advertise address or cluster port", me.ID, wait)
		}
		return nil, err
	}
	me.Fence = lease.Fence().Key
	if me.Since.IsZero() {
		me.Since = time.Now().UTC()
	}
	m := &Membership{st: st, lease: lease, info: me}
	if err := m.Update(ctx, nil); err != nil {
		lease.Release(context.Background())
		return nil, err
	}
	return m, nil
}

// Done is closed when the membership lease is lost.
func (m *Membership) Done() <-chan struct{} { return m.lease.Done() }

// Update applies change (optional) to the record and writes it, fenced by
// the membership lease.
func (m *Membership) Update(ctx context.Context, change func(*Info)) error {
	if change != nil {
		change(&m.info)
	}
	b, err := json.Marshal(m.info)
	if err != nil {
		return err
	}
	_, err = m.st.Txn(ctx, []store.Cond{m.lease.Fence()}, []store.Op{store.Put(PrefixMembers+m.info.ID, b)})
	return err
}

// Leave releases the membership lease (a clean stop) and deletes the record.
func (m *Membership) Leave(ctx context.Context) error {
	m.st.Txn(ctx, []store.Cond{m.lease.Fence()}, []store.Op{store.Delete(PrefixMembers + m.info.ID)})
	return m.lease.Release(ctx)
}

// Member is a coordinator's record as read back, with whether its lease
// still holds and whether it leads.
type Member struct {
	Info
	Alive  bool
	Leader bool
	// LeaderSince is when its term began (Leader only).
	LeaderSince time.Time
}

// Members lists every coordinator's record, live ones first, each marked
// alive (its membership lease holds) and leader (it holds the current
// term). Records of coordinators gone for good stay until their ID joins
// again or an operator deletes them; they show as not alive.
func Members(ctx context.Context, st store.Store) ([]Member, error) {
	recs, err := st.List(ctx, PrefixMembers)
	if err != nil {
		return nil, err
	}
	locks, err := st.List(ctx, store.LockPrefix)
	if err != nil {
		return nil, err
	}
	held := make(map[string]bool, len(locks))
	for _, l := range locks {
		held[l.Key] = true
	}
	lead, leading, err := Current(ctx, st)
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(recs))
	for _, r := range recs {
		var in Info
		if err := json.Unmarshal(r.Value, &in); err != nil {
			return nil, fmt.Errorf("%s does not decode: %w", r.Key, err)
		}
		m := Member{Info: in, Alive: held[in.Fence], Leader: leading && lead.ID == in.ID}
		if m.Leader {
			m.LeaderSince = lead.Since
		}
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Alive != out[j].Alive {
			return out[i].Alive
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// ErrNoLeader is returned by WaitLeader when no term held within the wait.
var ErrNoLeader = errors.New("no coordinator leads the cluster")
