package coordinator

import (
	"errors"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/storehealth"
)

// newStoreHealth tracks the store's writes; for bolt, its fixes name the
// data directory's filesystem.
func (c *Coordinator) newStoreHealth() *storehealth.Monitor {
	dir := ""
	if !c.cfg.EtcdStore() {
		dir = c.cfg.DataDir
	}
	return storehealth.New(c.backend.desc, dir)
}

// storeDown logs the start of an outage: from here new work is refused.
func (c *Coordinator) storeDown(err error) {
	st := c.health.State()
	c.log.Error("store cannot write: refusing new work (STORE_UNAVAILABLE) until a write succeeds; sessions and running tasks go on, results wait in memory",
		"store", c.backend.desc, "err", err, "fix", st.Fix)
}

// storeUp logs the end of an outage.
func (c *Coordinator) storeUp(down time.Duration) {
	c.log.Info("store writes again: resuming", "store", c.backend.desc, "unavailable_for", down.Round(time.Millisecond).String())
	c.poke()
}

// readOnlyActions write nothing to the store, so they go on while it
// cannot write. Every other action (new ones included) is refused then.
var readOnlyActions = map[authz.Action]bool{
	authz.StatusRead: true, authz.NodeRead: true, authz.JobRead: true, authz.TokenRead: true, authz.CertRead: true,
	authz.CARead: true, authz.CRLRead: true, authz.DoctorRead: true, authz.AuditRead: true, authz.MetricsRead: true,
	authz.MigrateRead: true, authz.UserRead: true,
	authz.CheckRun: true, authz.UILink: true, authz.DebugInfo: true, authz.StoreBackup: true,
	authz.ProfileRead: true,
	// An agent's staging of its attempt's files is checked by its handlers,
	// as before the router checked every route.
	authz.StagingAttempt: true,
}

// storeGate refuses an action that writes while the store cannot write,
// with STORE_UNAVAILABLE naming the store, the error and the fix.
func (c *Coordinator) storeGate(a authz.Action) error {
	if readOnlyActions[a] {
		return nil
	}
	return c.health.Err()
}

// storeError turns a write outside the journal that the store refused for
// now into the client's STORE_UNAVAILABLE. Anything else (an *api.Error
// above all) is returned as it is.
func (c *Coordinator) storeError(err error) error {
	var ae *api.Error
	if err == nil || errors.As(err, &ae) || !storehealth.Transient(err) {
		return err
	}
	return c.health.Refuse(err)
}

// storeHealthWrites adds the write health to a status's store health.
func (c *Coordinator) storeHealthWrites(h *api.StoreHealth) {
	st := c.health.State()
	h.Writable = st.Writable
	h.Outages = st.Outages
	if !st.Writable {
		h.OK = false
		since := st.Since
		h.UnwritableSince = &since
		h.WriteError, h.Fix = st.Error, st.Fix
	}
}
