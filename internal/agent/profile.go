package agent

import (
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/profile"
)

// applyProfile applies a profile the coordinator pushed, without a
// restart: slots take effect for the next task (waiting ones start if the
// slots grew), the kill grace for the next kill, the revocation policy for
// the next check; labels are the coordinator's to match. A profile the
// agent refuses (profile.Apply says why) changes nothing, and the answer
// says why. An empty push goes back to the agent's own configuration.
func (a *Agent) applyProfile(p api.ProfilePush) {
	base := profile.Agent{Slots: a.cfg.Slots, Labels: a.cfg.Labels, KillGrace: a.cfg.KillGrace.D(), RevocationPolicy: a.cfg.RevocationPolicy}
	eff, err := profile.Apply(base, p.Settings)
	res := api.ProfileResult{Name: p.Name, Revision: p.Revision}
	a.mu.Lock()
	if err != nil {
		res.Error = err.Error()
		eff = a.settings
	} else {
		a.settings, a.profileName, a.profileRev = eff, p.Name, p.Revision
		a.killGrace.Store(int64(eff.KillGrace))
		a.revPolicy.Store(eff.RevocationPolicy)
	}
	res.Slots, res.Labels, res.KillGrace, res.RevocationPolicy = eff.Slots, eff.Labels, api.Duration(eff.KillGrace), eff.RevocationPolicy
	a.out.profile = &res
	next := a.startWaitingLocked()
	a.mu.Unlock()
	if err != nil {
		a.log.Warn("refused the profile the coordinator pushed", "profile", p.Name, "revision", p.Revision, "err", err)
	} else {
		a.log.Info("agent profile applied", "profile", p.Name, "revision", p.Revision, "slots", eff.Slots, "kill_grace", eff.KillGrace, "revocation_policy", eff.RevocationPolicy)
	}
	a.wake()
	for _, n := range next {
		a.launch(n.at, n.as)
	}
}

// revocationPolicy is the policy in effect: the configuration's, or the
// profile's.
func (a *Agent) revocationPolicy() string {
	if p, ok := a.revPolicy.Load().(string); ok && p != "" {
		return p
	}
	return a.cfg.RevocationPolicy
}

// killGraceNow is the kill grace in effect.
func (a *Agent) killGraceNow() time.Duration { return time.Duration(a.killGrace.Load()) }
