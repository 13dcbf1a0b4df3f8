package coordinator

import (
	"context"
	"net/http"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/transport"
)

func (c *Coordinator) apiNodes(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[[]api.Node](w)(c.Nodes(r.Context(), p))
}

// Nodes lists every registered node in registration order, with its state,
// capacity, certificate and, when connected, its link.
func (c *Coordinator) Nodes(ctx context.Context, p authz.Principal) ([]api.Node, error) {
	if err := c.allow(p, authz.NodeRead); err != nil {
		return nil, err
	}
	c.mu.Lock()
	out := make([]api.Node, 0, len(c.nodes))
	for _, n := range c.cl.Nodes() {
		rec := c.nodes[n.Name]
		if rec == nil {
			continue
		}
		an := api.Node{
			Name: n.Name, Slots: n.Slots, UsedSlots: n.Used, AheadSlots: n.Ahead, Running: n.Running(), Labels: n.Labels,
			Memory: n.Memory, UsedMemory: n.MemUsed,
			CertSerial: rec.CertSerial, CertExpiry: rec.CertExpiry, CertIssuer: rec.CertIssuer,
			Drain: rec.Drain, Joined: rec.Joined, Link: "-", TLSVersion: "-", Version: rec.Version,
			ProfileState: rec.prof.state, ProfileError: rec.prof.err, Profile: rec.prof.name, ProfileRevision: rec.prof.rev,
		}
		if an.Profile == "" && an.ProfileState == api.ProfilePending {
			an.ProfileState = "" // its profile is being removed
		}
		if rec.prof.name == "" && rec.prof.state == "" {
			// Not pushed yet (the node has been away since this
			// coordinator started): it gets it when it connects.
			if w := c.wantedProfileLocked(rec); w != nil {
				an.Profile, an.ProfileRevision, an.ProfileState = w.Name, w.Revision, api.ProfilePending
			}
		}
		an.Reconnects = c.histories[n.Name].recent(c.now())
		s := c.sessions[n.Name]
		switch {
		case rec.Revoked:
			an.State = "revoked"
		case s != nil && rec.Drain && n.Running() > 0:
			an.State = "draining" // takes no new tasks; the running ones finish
		case s != nil && rec.Drain:
			an.State = "drained"
		case s != nil:
			an.State = "ready"
		case c.lostTimers[n.Name] != nil:
			an.State = "disconnected"
		default:
			an.State = "down"
		}
		if s != nil {
			an.Connected = true
			an.Link = string(s.link)
			an.Revocation = s.revocation
			an.UpgradeErr = s.upgradeErr.Load().(string)
			an.TLSVersion = transport.VersionName(s.peer.TLSVersion)
			an.Addr = s.conn.RemoteAddr().String()
			an.Coordinator = s.peer.Via
			if an.Coordinator == "" {
				an.Coordinator = c.memberID()
			}
			an.LastSeen = time.Unix(0, s.lastSeen.Load()).UTC()
			an.ClockSkew = api.Duration(s.skew.Load())
		}
		out = append(out, an)
	}
	c.mu.Unlock()
	return out, nil
}

func (c *Coordinator) apiDrain(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.DrainRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.DrainResult](w)(c.Drain(r.Context(), p, r.PathValue("name"), req.Force))
}

func (c *Coordinator) apiUndrain(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[api.DrainResult](w)(c.Undrain(r.Context(), p, r.PathValue("name")))
}

// Drain makes a node take no new tasks. Its running tasks finish, unless
// force stops them (they are requeued within their retry limits); tasks
// assigned ahead that have not started go back to the queue.
func (c *Coordinator) Drain(ctx context.Context, p authz.Principal, name string, force bool) (api.DrainResult, error) {
	if err := c.allow(p, authz.NodeDrain); err != nil {
		return api.DrainResult{}, err
	}
	return c.setDrain(name, true, force, p)
}

// Undrain lets a drained node take tasks again.
func (c *Coordinator) Undrain(ctx context.Context, p authz.Principal, name string) (api.DrainResult, error) {
	if err := c.allow(p, authz.NodeUndrain); err != nil {
		return api.DrainResult{}, err
	}
	return c.setDrain(name, false, false, p)
}

// setDrain drains or undrains a node. A forced drain kills the node's
// running attempts, which are requeued within their retry limits.
func (c *Coordinator) setDrain(name string, drain, force bool, p authz.Principal) (api.DrainResult, error) {
	who := p.ID
	c.mu.Lock()
	rec := c.nodes[name]
	if rec == nil {
		c.mu.Unlock()
		return api.DrainResult{}, api.Errorf(api.CodeNotFound, "list nodes with `ward node ls`", "no node named %q", name)
	}
	kill, err := c.cl.SetDrain(name, drain, force)
	if err != nil {
		c.mu.Unlock()
		return api.DrainResult{}, err
	}
	rec.Drain = drain
	running := 0 // what still runs there after this call, besides what it stops
	if n, ok := c.cl.Node(name); ok && drain && !force {
		running = max(n.Running()-len(kill), 0)
	}
	ch := c.changesLocked()
	ch.add(putJSON(nodeKey(name), rec))
	reason := "node drained with --force by " + who.String()
	if !force {
		reason = "node drained by " + who.String() + ": tasks not yet started go back to the queue"
	}
	sends := c.cancelFramesLocked(kill, reason, api.EndDrained)
	for _, m := range sends {
		m.WaitingOnly = !force
	}
	s := c.sessions[name]
	c.mu.Unlock()
	done := make(chan struct{})
	c.commit(ch, func() {
		if s != nil {
			s.send(api.FrameDrain, api.Drain{Drain: drain})
		}
		for s, m := range sends {
			s.send(api.FrameCancel, m)
		}
		close(done)
	})
	<-done
	typ := "node.undrain"
	if drain {
		typ = "node.drain"
	}
	c.Record(p, audit.Event{Type: typ, Target: name, Detail: map[string]string{"force": boolStr(force)}})
	if !drain {
		c.poke()
	}
	res, n := api.DrainResult{Node: name, Drain: drain}, len(kill)
	if force {
		res.Requeued = &n // running attempts stopped
	} else {
		res.Withdrawn = &n // attempts assigned ahead, unless they started
	}
	if drain && !force {
		res.Running = &running
	}
	return res, nil
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
