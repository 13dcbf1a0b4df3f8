package pki

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

// Role is what a certificate's holder may do; authorization reads it from
// the verified certificate, never from a header.
type Role string

// The roles Ward issues certificates for.
const (
	RoleCoordinator Role = "coordinator"
	RoleAgent       Role = "agent"
	RoleUser        Role = "user"
)

// ID is a SPIFFE-style identity: spiffe://<cluster>/<role>/<name>.
type ID struct {
	Cluster string
	Role    Role
	Name    string
}

// String returns the URI form.
func (id ID) String() string { return id.URI().String() }

// URI returns the identity as the URI SAN Ward puts in certificates.
func (id ID) URI() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.Cluster, Path: "/" + string(id.Role) + "/" + id.Name}
}

// ValidName checks a cluster, node or user name: 1–63 characters of
// lower-case letters, digits, '-', '_' and '.', starting with a letter or
// digit.
func ValidName(kind, s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%s name %q must be 1 to 63 characters", kind, s)
	}
	for i, r := range s {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || (i > 0 && (r == '-' || r == '_' || r == '.'))
		if !ok {
			return fmt.Errorf("%s name %q: character %q at position %d is not allowed (use lower-case letters, digits, '-', '_' and '.', starting with a letter or digit)", kind, s, r, i+1)
		}
	}
	return nil
}

// ParseID reads a spiffe://<cluster>/<role>/<name> URI.
func ParseID(u *url.URL) (ID, error) {
	if u == nil || u.Scheme != "spiffe" {
		return ID{}, fmt.Errorf("identity %q is not a spiffe:// URI", u)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return ID{}, fmt.Errorf("identity %q has parts a Ward identity never has", u)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 {
		return ID{}, fmt.Errorf("identity %q must have the form spiffe://<cluster>/<role>/<name>", u)
	}
	id := ID{Cluster: u.Host, Role: Role(parts[0]), Name: parts[1]}
	switch id.Role {
	case RoleCoordinator, RoleAgent, RoleUser:
	default:
		return ID{}, fmt.Errorf("identity %q has unknown role %q", u, parts[0])
	}
	if err := ValidName("cluster", id.Cluster); err != nil {
		return ID{}, err
	}
	if err := ValidName(string(id.Role), id.Name); err != nil {
		return ID{}, err
	}
	return id, nil
}

// IDFromCert returns the single Ward identity in cert's URI SANs.
func IDFromCert(cert *x509.Certificate) (ID, error) {
	var found []ID
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := ParseID(u)
		if err != nil {
			return ID{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return ID{}, fmt.Errorf("certificate %q (serial %s) has no spiffe:// identity", cert.Subject.CommonName, SerialHex(cert))
	case 1:
		return found[0], nil
	}
	return ID{}, fmt.Errorf("certificate %q (serial %s) has %d spiffe:// identities; exactly one is allowed", cert.Subject.CommonName, SerialHex(cert), len(found))
}

// SerialHex formats a certificate serial as lower-case hex, the form Ward
// shows and accepts everywhere.
func SerialHex(cert *x509.Certificate) string {
	return fmt.Sprintf("%x", cert.SerialNumber)
}

// roleURIPrefix starts the URI SAN that carries a user certificate's role:
// urn:ward:role:<role>. Authorization reads it from the verified
// certificate, so a role needs no lookup; changing it means a new
// certificate.
const roleURIPrefix = "ward:role:"

// UserRoleURI is the URI SAN naming a user certificate's role.
func UserRoleURI(role string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: roleURIPrefix + role}
}

// UserRoleOf returns the role a certificate's urn:ward:role: URI SAN
// names, or "" when it names none or more than one (a certificate with two
// roles has none).
func UserRoleOf(cert *x509.Certificate) string {
	role := ""
	for _, u := range cert.URIs {
		if u.Scheme != "urn" || !strings.HasPrefix(u.Opaque, roleURIPrefix) {
			continue
		}
		if role != "" {
			return ""
		}
		role = u.Opaque[len(roleURIPrefix):]
		if role == "" {
			return ""
		}
	}
	return role
}
