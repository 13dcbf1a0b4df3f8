package authz

import (
	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
)

// AdminName is the user the coordinator issues its first context to, and
// the one the web admin password signs in as.
const AdminName = "admin"

// IsAdmin reports whether p acts as a cluster admin: a user whose
// certificate (or web session) carries the admin role. Maintenance mode
// lets admins submit while it refuses everyone else.
func IsAdmin(p Principal) bool {
	return p.ID.Role == pki.RoleUser && p.Role == RoleAdmin
}

// RequireAdmin refuses p unless it is an admin, naming what needed it.
func RequireAdmin(p Principal, what string) error {
	if IsAdmin(p) {
		return nil
	}
	return api.Errorf(api.CodePermissionDenied, "ask a cluster admin", "%s is not an admin; %s is for admins", p.ID, what)
}
