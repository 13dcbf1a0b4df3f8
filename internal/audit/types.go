package audit

import (
	"slices"
	"strings"
)

// Types lists every event type the coordinator records, so a reader can
// refuse a misspelled filter instead of showing nothing. A test keeps it in
// step with the code that records events.
var Types = []string{
	"auth.failure",
	"authz.denied",
	"ca.create", "ca.rotate",
	"debug.info",
	"file.checksum_mismatch", "file.download", "file.upload", "staging.purge",
	"cert.heal", "cert.issue", "cert.renew", "cert.revoke",
	"cluster.maintenance",
	"job.cancel", "job.clone", "job.requeue", "job.submit",
	"join",
	"migrate.finish", "migrate.upgrade", "migrate.upgrade_failed",
	"node.drain", "node.undrain",
	"profile.assign", "profile.delete", "profile.set",
	"reload",
	"session.open",
	"store.backup", "store.restore",
	"token.create", "token.revoke",
	"user.add", "user.login", "user.remove", "user.role",
}

// Families are the parts before the dot (cert, job, ...), which a filter
// may also name to match every type in the family.
func Families() []string {
	var out []string
	for _, t := range Types {
		if f, _, ok := strings.Cut(t, "."); ok && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// ValidFilter reports whether f names a type or a family.
func ValidFilter(f string) bool {
	return slices.Contains(Types, f) || slices.Contains(Families(), f)
}

// Matches reports whether an event of type typ passes filter f: the same
// type, or a type in family f.
func Matches(typ, f string) bool {
	return typ == f || strings.HasPrefix(typ, f+".")
}
