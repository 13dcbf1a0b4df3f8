package coordinator

import (
	"context"
	"crypto/x509"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// A CA rotation moved one phase on any coordinator sharing the store
// reaches every other one through a watch on the rotation record: each
// reloads the CA generations from the store and applies the phase to what
// it runs (trust bundles pushed to its agents, its own certificate, its
// CRLs, the renewal campaign for its agents), as the rotating coordinator
// did.

// sameRotation reports whether two rotation records describe one state.
func sameRotation(a, b rotationRecord) bool {
	return a.Phase == b.Phase && a.Current == b.Current && a.Next == b.Next
}

// followRotation runs until ctx ends, watching the rotation record and
// re-reading it whenever the watch starts again.
func (c *Coordinator) followRotation(ctx context.Context) {
	c.followPrefix(ctx, keyRotation, "the CA rotation record", c.syncRotation, func(store.Event) { c.syncRotation(ctx) })
}

// syncRotation adopts the stored rotation state if it is not the one this
// coordinator runs.
func (c *Coordinator) syncRotation(ctx context.Context) {
	rotMu.Lock()
	defer rotMu.Unlock()
	r, _, err := c.readRotation(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("read the CA rotation record", "err", err)
		}
		return
	}
	if sameRotation(r, c.ca.applied) {
		return
	}
	if err := c.adoptRotationLocked(ctx, r); err != nil {
		c.log.Error("follow the CA rotation moved on another coordinator; this coordinator keeps its CA state until the next change or restart", "phase", phaseNames[r.Phase], "err", err)
	}
}

// adoptRotationLocked loads the CA state r implies from the store, swaps
// it in and applies it like a phase moved here. The caller holds rotMu.
func (c *Coordinator) adoptRotationLocked(ctx context.Context, r rotationRecord) error {
	from := int(c.ca.phase.Load())
	st := &caState{}
	root, iss, err := c.keeper.load(r.Current, true)
	if err != nil {
		return err
	}
	st.root = root
	st.cur.Store(&pki.Issuer{CA: iss, Chain: []*x509.Certificate{iss.Cert, root.Cert}})
	if err := c.applyRotation(st, r); err != nil {
		return err
	}
	c.ca.mu.Lock()
	c.ca.root, c.ca.others = st.root, st.others
	c.ca.retiredRoots, c.ca.retiredIssuers = st.retiredRoots, st.retiredIssuers
	c.ca.nextRoot, c.ca.nextIssuing, c.ca.cross = st.nextRoot, st.nextIssuing, st.cross
	c.ca.cur.Store(st.cur.Load())
	c.ca.mu.Unlock()
	c.ca.applied = r
	c.log.Info("CA rotation followed from the store", "from", phaseNames[from], "to", phaseNames[r.Phase], "generation", r.Current)
	c.afterRotationCommit(ctx, from, r)
	return nil
}
