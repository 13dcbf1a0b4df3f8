package coordinator

import (
	"net/http"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

func (c *Coordinator) apiNodes(w http.ResponseWriter, r *http.Request, _ pki.ID) error {
	c.mu.Lock()
	out := make([]api.Node, 0, len(c.nodes))
	for _, n := range c.cl.Nodes() {
		rec := c.nodes[n.Name]
		if rec == nil {
			continue
		}
		an := api.Node{
			Name: n.Name, Slots: n.Slots, UsedSlots: n.Used, AheadSlots: n.Ahead, Running: n.Running(), Labels: n.Labels,
			CertSerial: rec.CertSerial, CertExpiry: rec.CertExpiry, CertIssuer: rec.CertIssuer,
			Drain: rec.Drain, Joined: rec.Joined, Link: "-", TLSVersion: "-",
		}
		s := c.sessions[n.Name]
		switch {
		case rec.Revoked:
			an.State = "revoked"
		case s != nil && rec.Drain:
			an.State = "draining"
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
			an.LastSeen = time.Unix(0, s.lastSeen.Load()).UTC()
			an.ClockSkew = api.Duration(s.skew.Load())
		}
		out = append(out, an)
	}
	c.mu.Unlock()
	return writeJSON(w, http.StatusOK, out)
}

func (c *Coordinator) apiDrain(w http.ResponseWriter, r *http.Request, who pki.ID) error {
	var req api.DrainRequest
	if r.ContentLength != 0 {
		if err := readJSON(w, r, &req); err != nil {
			return err
		}
	}
	return c.setDrain(w, r.PathValue("name"), true, req.Force, who)
}

func (c *Coordinator) apiUndrain(w http.ResponseWriter, r *http.Request, who pki.ID) error {
	return c.setDrain(w, r.PathValue("name"), false, false, who)
}

// setDrain drains or undrains a node. A forced drain kills the node's
// running attempts, which are requeued within their retry limits.
func (c *Coordinator) setDrain(w http.ResponseWriter, name string, drain, force bool, who pki.ID) error {
	c.mu.Lock()
	rec := c.nodes[name]
	if rec == nil {
		c.mu.Unlock()
		return api.Errorf(api.CodeNotFound, "list nodes with `ward node ls`", "no node named %q", name)
	}
	kill, err := c.cl.SetDrain(name, drain, force)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	rec.Drain = drain
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
	c.audit.Record(audit.Event{Type: typ, Actor: who.String(), Target: name, Detail: map[string]string{"force": boolStr(force)}})
	if !drain {
		c.poke()
	}
	count := "requeued" // running attempts stopped
	if !force {
		count = "withdrawn" // attempts assigned ahead, unless they started
	}
	return writeJSON(w, http.StatusOK, map[string]any{"node": name, "drain": drain, count: len(kill)})
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
