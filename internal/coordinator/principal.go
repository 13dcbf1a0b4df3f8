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
// API or the web admin asked for it. A principal whose vouching certificate
// was revoked has no rights, even in a web session opened before.
func (c *Coordinator) allow(p authz.Principal, a authz.Action) error {
	err := authz.Allow(p, c.cfg.Cluster, a)
	if err == nil && p.CertSerial != "" {
		if serial, ok := parseSerial(p.CertSerial); ok && c.revoked.Contains(serial) {
			err = api.Errorf(api.CodePermissionDenied, "sign in again with a current credential (`ward ui` from a valid context)",
				"the certificate %s that vouches for %s is revoked", p.CertSerial, p.ID)
		}
	}
	if err != nil {
		c.log.Warn("permission denied", "identity", p.ID.String(), "via", string(p.Via), "source", p.Source, "action", string(a))
		return err
	}
	return c.storeGate(a)
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
// client certificate verified at the handshake.
func (c *Coordinator) certPrincipal(r *http.Request) (authz.Principal, error) {
	peer, err := transport.PeerFromState(r.TLS, c.cfg.Cluster)
	if err != nil {
		return authz.Principal{}, api.Errorf(api.CodeUnauthenticated, "present a Ward client certificate (the CLI context has one)", "%v", err)
	}
	return authz.Principal{ID: peer.ID, Via: authz.ViaCert, Source: r.RemoteAddr, CertSerial: pki.SerialHex(peer.Cert)}, nil
}
