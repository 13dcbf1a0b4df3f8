package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/buildinfo"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/leader"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store/etcd"
)

// The control plane: every coordinator is a member (a lease and a record in
// the store); one of them leads (internal/leader). Only the leader holds
// the job system in memory and runs the leader-only work: placement, lost
// timers, heartbeats of agent sessions, CRL signing, rotation phases. Its
// journal carries the term's fence, so once the term is over nothing it
// writes lands. A follower serves agents, the CLI and the API by passing
// them to the leader (forward.go). With bolt there is one coordinator,
// which leads from its start.

// memberID names this coordinator among the cluster's: its certificate's
// name and its advertised cluster address, so coordinators that share a
// host name (or a certificate) stay apart.
func (c *Coordinator) memberID() string {
	return c.ca.id.Name + "@" + c.advertisedAddr(c.cfg.ClusterAddr)
}

// memberInfo is this coordinator as peers reach it.
func (c *Coordinator) memberInfo() leader.Info {
	return leader.Info{ID: c.memberID(), ClusterAddr: c.advertisedAddr(c.cfg.ClusterAddr), PublicAddr: c.advertisedAddr(c.cfg.PublicAddr),
		Version: buildinfo.Get().Version, Since: c.started.UTC()}
}

// leaseTTL is the lease of the leader term and of the membership.
func (c *Coordinator) leaseTTL() time.Duration {
	if d := c.cfg.LeaderLeaseTTL.D(); d > 0 {
		return d
	}
	return leader.DefaultTTL
}

// joinMembers records this coordinator as a member and keeps its record's
// health current until ctx ends.
func (c *Coordinator) joinMembers(ctx context.Context) error {
	if !c.cfg.EtcdStore() {
		return nil // bolt: one coordinator, nothing to list
	}
	m, err := leader.Join(ctx, c.st, c.memberInfo(), c.leaseTTL(), 2*c.leaseTTL()+5*time.Second)
	if err != nil {
		return fmt.Errorf("join the cluster's coordinators in the %s: %w", c.backend.desc, err)
	}
	c.member = m
	c.refreshPeers(ctx)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.memberLoop(ctx, m)
	}()
	return nil
}

// memberHealthEvery is how often a member writes its store health.
const memberHealthEvery = 2 * time.Second

func (c *Coordinator) memberLoop(ctx context.Context, m *leader.Membership) {
	t := time.NewTicker(memberHealthEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m.Leave(lctx)
			cancel()
			return
		case <-m.Done():
			// The store was unreachable for longer than the TTL. Being
			// listed is not leader-only work: join again once it answers.
			c.log.Warn("this coordinator's membership lease ended (the store was unreachable for longer than its TTL); joining again", "store", c.backend.desc, "ttl", c.leaseTTL().String())
			for {
				nm, err := leader.Join(ctx, c.st, c.memberInfo(), c.leaseTTL(), 2*c.leaseTTL()+5*time.Second)
				if err == nil {
					m = nm
					c.log.Info("member of the cluster's coordinators again", "id", c.memberID())
					break
				}
				if ctx.Err() != nil {
					return
				}
				c.log.Warn("cannot join the cluster's coordinators yet; retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			continue
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		rev, err := c.st.Rev(rctx)
		lat := time.Since(start)
		if err == nil {
			err = m.Update(rctx, func(in *leader.Info) {
				in.Updated, in.StoreRev, in.StoreLatency, in.StoreError = time.Now().UTC(), rev, lat, ""
			})
		}
		c.refreshPeers(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.log.Warn("cannot update this coordinator's member record", "store", c.backend.desc, "err", err)
		}
	}
}

// campaign waits for the leadership, then takes over the leader-only work.
// On bolt it returns at once.
func (c *Coordinator) campaign(ctx context.Context) error {
	if c.cfg.EtcdStore() {
		c.log.Info("campaigning for the leadership", "id", c.memberID(), "lease_ttl", c.leaseTTL().String())
	}
	me := c.memberInfo()
	me.Since = time.Time{} // the term's start, set when it is won
	term, err := leader.Campaign(ctx, c.st, me, c.leaseTTL())
	if err != nil {
		return fmt.Errorf("campaign for the leadership in the %s: %w", c.backend.desc, err)
	}
	c.journal.setFence(term)
	c.term.Store(term)
	if err := c.takeOver(ctx); err != nil {
		term.Resign(context.Background())
		return err
	}
	c.markHeld()
	c.leading.Store(true)
	c.log.Info("leading the cluster", "id", c.memberID(), "fence", term.Fence().Key)
	c.poke()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.holdTerm(ctx, term)
	}()
	return nil
}

// holdTerm watches the term until ctx ends. When the term ends while the
// coordinator runs (the store was unreachable for longer than the lease),
// placement stops at once and the coordinator campaigns again with the
// jobs it holds: if no other coordinator led meanwhile (none could while
// the store was down), it leads on with them; otherwise they are stale and
// it steps down (ErrSteppedDown: Run starts it again as a follower, from
// the store). It also steps down as soon as it sees another coordinator
// lead, instead of serving its stale jobs until it wins again. Its
// sessions, and the tasks on its agents, go on meanwhile.
func (c *Coordinator) holdTerm(ctx context.Context, term *leader.Term) {
	for {
		select {
		case <-ctx.Done(): // Serve resigns once the journal has drained
			return
		case <-term.Done():
		}
		c.leading.Store(false)
		if ctx.Err() != nil {
			return
		}
		c.journal.setCampaigning(true)
		c.log.Error("the leadership lease ended: placement stopped; campaigning again with the jobs in memory",
			"fence", term.Fence().Key, "store", c.backend.desc, "err", term.Err())
		cctx, cancel := context.WithCancel(ctx)
		other := c.watchOtherLeader(cctx, cancel)
		next, err := c.campaignAgain(cctx)
		cancel()
		if in, ok := <-other; ok {
			if next != nil {
				next.Resign(context.Background())
			}
			c.fail(fmt.Errorf("%w: coordinator %s leads since %s, so the jobs this one holds in memory are stale", ErrSteppedDown, in.ID, in.Since.UTC().Format(time.RFC3339)))
			return
		}
		if err != nil {
			return
		}
		if !next.Follows(term) {
			next.Resign(context.Background())
			c.fail(fmt.Errorf("%w: another coordinator led while this one could not reach the %s, so the jobs this one holds in memory are stale", ErrSteppedDown, c.backend.desc))
			return
		}
		c.journal.setFence(next)
		c.journal.setCampaigning(false)
		c.term.Store(next)
		c.leading.Store(true)
		c.poke()
		c.log.Info("leading again: no other coordinator led meanwhile, so the jobs in memory are still the truth", "fence", next.Fence().Key)
		term = next
	}
}

// campaignAgain campaigns until it wins or ctx ends, retrying while the
// store cannot be reached.
func (c *Coordinator) campaignAgain(ctx context.Context) (*leader.Term, error) {
	me := c.memberInfo()
	for {
		me.Since = time.Time{}
		t, err := leader.Campaign(ctx, c.st, me, c.leaseTTL())
		if err == nil {
			return t, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		c.log.Warn("cannot campaign for the leadership yet; retrying", "store", c.backend.desc, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// takeOver rebuilds the job system from the store (unless New did, on
// bolt) and starts the leader-only work.
func (c *Coordinator) takeOver(ctx context.Context) error {
	if !c.restored {
		start := time.Now()
		if err := c.restore(ctx); err != nil {
			return c.stateError("restore jobs, tasks and nodes", err)
		}
		if err := c.loadTokens(ctx); err != nil {
			return c.stateError("load join tokens", err)
		}
		if err := c.loadRevoked(ctx); err != nil {
			return c.stateError("load revocations", err)
		}
		if err := c.loadMaintenance(ctx); err != nil {
			return c.stateError("load maintenance mode", err)
		}
		// The watch keeps them current; read them once more so that no
		// change still on its way from the last leader is missed.
		if err := c.loadUsers(ctx); err != nil {
			return c.stateError("load users", err)
		}
		c.restored = true
		c.log.Info("took over the job system from the store", "took", time.Since(start).Round(time.Millisecond).String())
	}
	if err := c.flushIssued(); err != nil {
		return err
	}
	if err := c.rebuildCRLs(ctx); err != nil {
		return fmt.Errorf("sign the CRL: %w", err)
	}
	c.wg.Add(4)
	go func() { defer c.wg.Done(); c.stagingRetentionLoop(ctx) }()
	go func() { defer c.wg.Done(); c.heartbeatLoop(ctx) }()
	go func() { defer c.wg.Done(); c.crlLoop(ctx) }()
	go func() { defer c.wg.Done(); c.dispatchLoop(ctx) }()
	c.startLostTimersAfterRestore()
	return nil
}

// leaderLost explains a failed commit that the term's fence refused.
func (c *Coordinator) leaderLost(err error) (error, bool) {
	t := c.term.Load()
	if t == nil || (!t.Fenced(err) && !errors.Is(err, leader.ErrLost)) {
		return nil, false
	}
	return fmt.Errorf("%w: this coordinator is no longer the leader, so it stopped placing at once; its last write was refused by the fence (%s) and nothing of it was written; it starts again as a follower with the state in the store: %v", ErrSteppedDown, t.Fence().Key, err), true
}

// resign hands the leadership over at once at a clean stop, after the
// journal's last fenced batch.
func (c *Coordinator) resign() {
	if t := c.term.Load(); t != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		t.Resign(ctx)
		cancel()
	}
}

// controlPlaneStatus lists every coordinator in st (on etcd): which one
// leads, each one's last report of its store, and each etcd endpoint.
func (c *Coordinator) controlPlaneStatus(ctx context.Context, st *api.Status) {
	if !c.cfg.EtcdStore() {
		st.Coordinators[0].Member, st.Coordinators[0].Leader, st.Coordinators[0].Alive = c.memberID(), true, true
		st.Coordinators[0].ClusterAddr, st.Coordinators[0].PublicAddr = st.ClusterAddrs[0], st.PublicAddrs[0]
		return
	}
	if es, ok := c.st.(*etcd.Store); ok {
		for _, e := range es.EndpointHealth(ctx, 2*time.Second) {
			st.StoreEndpoints = append(st.StoreEndpoints, api.StoreEndpoint{Endpoint: e.Endpoint, OK: e.OK, Error: e.Error,
				Latency: api.Duration(e.Latency), Version: e.Version, Leader: e.Leader, Lag: e.Lag})
		}
	}
	ms, err := leader.Members(ctx, c.st)
	if err != nil {
		st.StoreHealth.OK, st.StoreHealth.Error = false, "list the coordinators: "+err.Error()
		return
	}
	self := st.Coordinators[0]
	st.Coordinators, st.ClusterAddrs, st.PublicAddrs = nil, nil, nil
	now := c.now()
	for _, m := range ms {
		ci := api.CoordinatorInfo{ID: m.ID, Member: m.ID, Version: m.Version, ClusterAddr: m.ClusterAddr, PublicAddr: m.PublicAddr,
			Leader: m.Leader, Alive: m.Alive, LeaderSince: m.LeaderSince, StoreLatency: api.Duration(m.StoreLatency), StoreError: m.StoreError, Reported: m.Updated}
		if m.ID == c.memberID() {
			ci.ID, ci.Commit, ci.GoVersion = self.ID, self.Commit, self.GoVersion
		}
		if !m.Updated.IsZero() {
			ci.Lag = api.Duration(now.Sub(m.Updated))
		}
		st.Coordinators = append(st.Coordinators, ci)
		if m.Alive {
			st.ClusterAddrs, st.PublicAddrs = append(st.ClusterAddrs, m.ClusterAddr), append(st.PublicAddrs, m.PublicAddr)
		}
	}
}

// peerList is every live coordinator's addresses (etcd).
type peerList struct{ cluster, public []string }

// clusterAddrs is every live coordinator's cluster address, for agents
// (join answers and Welcomes): they fail over among them.
func (c *Coordinator) clusterAddrs() []string {
	if p := c.peers.Load(); p != nil {
		return p.cluster
	}
	return []string{c.advertisedAddr(c.cfg.ClusterAddr)}
}

// publicAddrs is every live coordinator's public address, for agents
// (join answers): they fetch CRLs and heal through any of them.
func (c *Coordinator) publicAddrs() []string {
	if p := c.peers.Load(); p != nil {
		return p.public
	}
	return []string{c.advertisedAddr(c.cfg.PublicAddr)}
}

// joinString is a join string (a user's login when user is set) naming
// this coordinator's public address first, then every other live
// coordinator's, so the join works while any of them is up.
func (c *Coordinator) joinString(tokenID, secret, user string) enroll.JoinString {
	js := enroll.JoinString{Addr: c.advertisedAddr(c.cfg.PublicAddr), Cluster: c.cfg.Cluster, Pin: pki.SPKIPin(c.pinRoot()),
		TokenID: tokenID, Secret: secret, User: user}
	for _, a := range c.publicAddrs() {
		if a != js.Addr && !slices.Contains(js.Also, a) && len(js.Also) < enroll.MaxAddrs-1 {
			js.Also = append(js.Also, a)
		}
	}
	return js
}

// refreshPeers reads the live coordinators' addresses.
func (c *Coordinator) refreshPeers(ctx context.Context) {
	ms, err := leader.Members(ctx, c.st)
	if err != nil {
		return
	}
	var p peerList
	for _, m := range ms {
		if m.Alive {
			p.cluster, p.public = append(p.cluster, m.ClusterAddr), append(p.public, m.PublicAddr)
		}
	}
	if len(p.cluster) > 0 {
		c.peers.Store(&p)
	}
}
