package coordinator

import (
	"net/http"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// allow is the one authorization decision of every operation, whether the
// API or the web admin asked for it (see authz's table). A principal whose
// vouching certificate was revoked has no rights, even in a web session
// opened before.
func (c *Coordinator) allow(p authz.Principal, a authz.Action) error {
	_, err := c.decide(p, a)
	return err
}

// decide is allow with the scope granted: ScopeOwn limits a submitter to
// its own jobs. A refusal is logged and audited with the user, its role,
// the route and the role needed.
func (c *Coordinator) decide(p authz.Principal, a authz.Action) (authz.Scope, error) {
	scope, err := authz.Decide(p, c.cfg.Cluster, a)
	if err == nil && p.CertSerial != "" {
		if serial, ok := parseSerial(p.CertSerial); ok && c.revoked.Contains(serial) {
			err = api.Errorf(api.CodePermissionDenied, "sign in again with a current credential (`ward ui` from a valid context)",
				"the certificate %s that vouches for %s is revoked", p.CertSerial, p.ID)
		}
	}
	if err != nil {
		c.refused(p, a, err)
		return authz.ScopeNone, err
	}
	// An action that writes waits for a store that cannot write now.
	if err := c.storeGate(a); err != nil {
		return authz.ScopeNone, err
	}
	return scope, nil
}

// refused logs and audits a refusal: who, with which role, on which route,
// and why.
func (c *Coordinator) refused(p authz.Principal, a authz.Action, err error) {
	e := api.AsError(err)
	c.log.Warn("permission denied", "identity", p.ID.String(), "role", string(p.Role), "via", string(p.Via), "source", p.Source,
		"route", p.Route, "action", string(a), "code", string(e.Code))
	c.Record(p, audit.Event{Type: "authz.denied", Target: p.Route, Result: string(e.Code), Detail: map[string]string{
		"action": string(a), "role": string(p.Role), "message": e.Message}})
}

// Record writes an audit event on behalf of p: the actor, how it
// authenticated and from where.
func (c *Coordinator) Record(p authz.Principal, ev audit.Event) {
	if ev.Actor == "" {
		ev.Actor = p.String()
	}
	ev.Via, ev.Source = string(p.Via), p.Source
	c.audit.Record(ev)
}

// certPrincipal is the principal of an API request: the identity of the
// client certificate verified at the handshake, with the role it carries.
func (c *Coordinator) certPrincipal(r *http.Request) (authz.Principal, error) {
	peer, err := transport.PeerFromState(r.TLS, c.cfg.Cluster)
	if err != nil {
		return authz.Principal{}, api.Errorf(api.CodeUnauthenticated, "present a Ward client certificate (the CLI context has one)", "%v", err)
	}
	return authz.Principal{ID: peer.ID, Role: authz.RoleFromCert(peer.ID, peer.Cert), Via: authz.ViaCert, Source: r.RemoteAddr,
		CertSerial: pki.SerialHex(peer.Cert), Route: r.Pattern}, nil
}
