// Package authz names who performs an action, a Principal (the verified
// identity, its role, how it authenticated and from where), and decides
// whether it may, from one table (table.go) that every API route and every
// web admin action is checked against. The HTTP API and the web admin pass
// every operation through the same decision, so both follow one rule and
// the audit log records the same actor either way.
package authz

import (
	"crypto/x509"
	"fmt"
	"strings"

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

// Role is what a user may do. It lives in the user's certificate (a
// urn:ward:role: URI SAN, see pki.UserRoleURI), so deciding needs no
// lookup; a role change issues a new certificate and revokes the old.
type Role string

// The user roles, from most to least privileged.
const (
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
	// RoleOperator runs the cluster: nodes, drain, tokens, everyone's jobs;
	// no CA or user management.
	RoleOperator Role = "operator"
	// RoleSubmitter submits jobs and sees and cancels its own; it reads
	// nodes and the cluster's status.
	RoleSubmitter Role = "submitter"
	// RoleViewer reads the cluster's state and changes nothing.
	RoleViewer Role = "viewer"
)

// Roles lists every role, most privileged first.
var Roles = []Role{RoleAdmin, RoleOperator, RoleSubmitter, RoleViewer}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", api.Errorf(api.CodeInvalidArgument, "use one of: "+roleList(Roles, ", "), "%q is not a role", s)
}

// RoleFromCert is the role of the user certificate cert that names id: the
// role its SAN carries, or admin for the admin credential (AdminName)
// written before roles existed, so existing clusters keep working. Agents, coordinators and user certificates without a
// known role have none ("").
func RoleFromCert(id pki.ID, cert *x509.Certificate) Role {
	if id.Role != pki.RoleUser {
		return ""
	}
	s := pki.UserRoleOf(cert)
	if s == "" {
		if id.Name == AdminName {
			return RoleAdmin
		}
		return ""
	}
	for _, r := range Roles {
		if string(r) == s {
			return r
		}
	}
	return ""
}

// Principal is who performs an operation. It flows from the edge (the API's
// certificate check, the web admin's session) into every operation, which
// authorizes it and records it in the audit log.
type Principal struct {
	// ID is the verified identity; for web sessions, the user the session
	// was opened for.
	ID pki.ID
	// Role is the user's role, read from the certificate that proved ID
	// (or the one that asked for a web session's link); "" for agents,
	// coordinators and user certificates without a role.
	Role Role
	// Via says how the identity was proven.
	Via Via
	// Source is the peer's network address ("" in-process).
	Source string
	// CertSerial is the certificate that vouches for the principal: the one
	// presented (ViaCert) or the one that asked for the login link
	// (ViaUILink). When it is revoked, the principal loses its rights.
	CertSerial string
	// Route is the API route or console page the principal called, for the
	// audit record of a refusal ("" in-process).
	Route string
}

// String is the identity, the way the audit log names an actor.
func (p Principal) String() string { return p.ID.String() }

// WithSource is p acting from the network address addr.
func (p Principal) WithSource(addr string) Principal {
	p.Source = addr
	return p
}

// Owns reports whether p submitted what submittedBy names (a job's
// recorded submitter).
func (p Principal) Owns(submittedBy string) bool { return submittedBy == p.ID.String() }

// Allow reports whether p may perform a in cluster: nil, or a
// PERMISSION_DENIED error that names the role needed. It does not apply
// ownership; Decide returns the scope for that.
func Allow(p Principal, cluster string, a Action) error {
	_, err := Decide(p, cluster, a)
	return err
}

// Decide is the one authorization decision: how far p may perform a in
// cluster (ScopeAll, or ScopeOwn for a submitter's own jobs), or a
// PERMISSION_DENIED error that explains the refusal and the role needed.
func Decide(p Principal, cluster string, a Action) (Scope, error) {
	rule, ok := table[a]
	if !ok {
		// A programming error, refused rather than allowed: every action
		// must be in the table (a test walks every route).
		return ScopeNone, api.Errorf(api.CodePermissionDenied, "report this: the action has no authorization rule", "%s has no rule in the authorization table", a)
	}
	if rule.Public {
		return ScopeAll, nil
	}
	if p.ID.Cluster != cluster {
		return ScopeNone, api.Errorf(api.CodePermissionDenied, "use an identity of this cluster",
			"%s belongs to cluster %q, not %q", p.ID, p.ID.Cluster, cluster)
	}
	switch p.ID.Role {
	case pki.RoleAgent:
		if rule.Agents {
			return ScopeAll, nil
		}
		return ScopeNone, notAUser(p, rule)
	case pki.RoleCoordinator:
		if rule.Coordinators {
			return ScopeAll, nil
		}
		return ScopeNone, notAUser(p, rule)
	case pki.RoleUser:
	default:
		return ScopeNone, notAUser(p, rule)
	}
	if s := rule.scope(p.Role); s != ScopeNone {
		return s, nil
	}
	roles := rule.Roles()
	if len(roles) == 0 {
		// An agent's own protocol (its staging, its renewal): no user role
		// performs it.
		return ScopeNone, api.Errorf(api.CodePermissionDenied, "use the agent's own certificate: the agent does this itself",
			"%s is a user; %s is for agents only", p.ID, rule.Describe)
	}
	needed := roleList(roles, " or ")
	if p.Role == "" {
		return ScopeNone, api.Errorf(api.CodePermissionDenied,
			fmt.Sprintf("ask an admin for a credential with a role (`ward user add %s --role ROLE`, then `ward login --join-file FILE`)", p.ID.Name),
			"%s has no role (its certificate names none); %s needs role %s", p.ID, rule.Describe, needed)
	}
	return ScopeNone, api.Errorf(api.CodePermissionDenied,
		fmt.Sprintf("ask an admin to change your role (`ward user role %s %s`), or use a credential that has it", p.ID.Name, roles[len(roles)-1]),
		"%s has role %s; %s needs role %s", p.ID, p.Role, rule.Describe, needed)
}

// notAUser refuses an agent or coordinator identity an action only users
// (or only some roles) may perform.
func notAUser(p Principal, rule Rule) error {
	what := "identity"
	if p.Via == ViaCert {
		what = "certificate"
	}
	article := "a"
	if p.ID.Role == pki.RoleAgent {
		article = "an"
	}
	return api.Errorf(api.CodePermissionDenied, "use a user certificate, such as the admin context the coordinator wrote",
		"%s is %s %s %s; %s needs a user with role %s", p.ID, article, p.ID.Role, what, rule.Describe, roleList(rule.Roles(), " or "))
}

// NotOwner is the refusal of a submitter's access to another user's job.
func NotOwner(p Principal, jobID, owner string) error {
	return api.Errorf(api.CodeForbiddenNotOwner,
		"a submitter reaches only the jobs it submitted; an operator or admin reaches every job",
		"job %s belongs to %s, not %s (role %s)", jobID, owner, p.ID, p.Role)
}

func roleList(rs []Role, sep string) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	if len(s) > 1 && sep == " or " {
		return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
	}
	return strings.Join(s, sep)
}
