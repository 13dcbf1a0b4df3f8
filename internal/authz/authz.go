// Package authz names who performs an action, a Principal (the verified
// identity, how it authenticated and from where), and decides whether it may.
// The HTTP API and the web admin pass every operation through the same
// decision, so both follow one rule and the audit log records the same actor
// either way.
package authz

import (
	"fmt"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
)

// Via says how a principal authenticated.
type Via string

// The ways a principal authenticates.
const (
	// ViaCert is a client certificate verified at the TLS handshake.
	ViaCert Via = "cert"
	// ViaUILink is a web admin session opened with a one-time link from
	// `ward ui`, itself asked for with a client certificate.
	ViaUILink Via = "ui-link"
	// ViaUIPassword is a web admin session opened with the admin password.
	ViaUIPassword Via = "ui-password"
	// ViaLocal is an operator inside the coordinator's own process
	// (`ward dev`).
	ViaLocal Via = "local"
)

// Principal is who performs an operation. It flows from the edge (the API's
// certificate check, the web admin's session) into every operation, which
// authorizes it and records it in the audit log.
type Principal struct {
	// ID is the verified identity; for web sessions, the user the session
	// was opened for.
	ID pki.ID
	// Via says how the identity was proven.
	Via Via
	// Source is the peer's network address ("" in-process).
	Source string
	// CertSerial is the certificate that vouches for the principal: the one
	// presented (ViaCert) or the one that asked for the login link
	// (ViaUILink). When it is revoked, the principal loses its rights.
	CertSerial string
}

// String is the identity, the way the audit log names an actor.
func (p Principal) String() string { return p.ID.String() }

// WithSource is p acting from the network address addr.
func (p Principal) WithSource(addr string) Principal {
	p.Source = addr
	return p
}

// Action names an operation for authorization. Mutating actions carry the
// audit event type they record.
type Action string

// The operations of the API and the web admin.
const (
	Read           Action = "read" // every read: status, lists, logs, audit
	NodeDrain      Action = "node.drain"
	NodeUndrain    Action = "node.undrain"
	NodeRevoke     Action = "node.revoke"
	JobSubmit      Action = "job.submit"
	JobCancel      Action = "job.cancel"
	TokenCreate    Action = "token.create"
	TokenRevoke    Action = "token.revoke"
	CertRevoke     Action = "cert.revoke"
	CARotate       Action = "ca.rotate"
	MigrateUpgrade Action = "migrate.upgrade"
	MigrateFinish  Action = "migrate.finish"
	CheckRun       Action = "check.run"
	UILink         Action = "ui.link"
	DebugInfo      Action = "debug.info"     // a support bundle's view: effective config, recent logs, data directory listing
	StoreBackup    Action = "store.backup"   // a copy of the whole store: every record, token hashes included
	ProfileSet     Action = "profile.set"    // create, change or delete an agent profile
	ProfileAssign  Action = "profile.assign" // choose the nodes a profile applies to
	// ClusterMaintenance turns maintenance mode on or off: admins only.
	ClusterMaintenance Action = "cluster.maintenance"
)

// Allow reports whether p may perform a in cluster. Every action needs a
// user identity of this cluster: agent and coordinator certificates act
// only through their own protocols. Roles refine this per action later.
func Allow(p Principal, cluster string, a Action) error {
	if p.ID.Cluster != cluster {
		return api.Errorf(api.CodePermissionDenied, "use an identity of this cluster",
			"%s belongs to cluster %q, not %q", p.ID, p.ID.Cluster, cluster)
	}
	if p.ID.Role != pki.RoleUser {
		what := "identity"
		if p.Via == ViaCert {
			what = "certificate"
		}
		article := "a"
		if p.ID.Role == pki.RoleAgent {
			article = "an"
		}
		return api.Errorf(api.CodePermissionDenied, "use a user certificate, such as the admin context the coordinator wrote",
			"%s is %s %s %s; %s needs a user", p.ID, article, p.ID.Role, what, describe(a))
	}
	return nil
}

func describe(a Action) string {
	if a == Read {
		return "reading cluster state"
	}
	return fmt.Sprintf("the %s action", a)
}
