package coordinator

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
)

// maxAdminSources bounds the addresses remembered for the admin
// credential: enough to tell one operator from a shared credential.
const maxAdminSources = 16

// adminUse remembers the network addresses the built-in admin credential
// was used from, so doctor can say when one credential is shared among
// people (several hosts) while no user of their own exists.
type adminUse struct {
	mu      sync.Mutex
	sources map[string]time.Time // host → last use
}

// note records a use of the admin credential from addr (host:port).
func (u *adminUse) note(addr string, now time.Time) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sources == nil {
		u.sources = map[string]time.Time{}
	}
	if _, ok := u.sources[host]; !ok && len(u.sources) >= maxAdminSources {
		return
	}
	u.sources[host] = now
}

func (u *adminUse) hosts() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]string, 0, len(u.sources))
	for h := range u.sources {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// noteAdmin records p's address when p is the built-in admin credential.
func (c *Coordinator) noteAdmin(p authz.Principal) {
	if p.ID.Name == authz.AdminName && p.Role == authz.RoleAdmin && p.Source != "" {
		c.adminUses.note(p.Source, c.now())
	}
}

// sharedAdminFinding warns when the admin credential is the only user and
// has been used from several addresses since the coordinator started: one
// credential passed around among people, with every right.
func (c *Coordinator) sharedAdminFinding() (api.Finding, bool) {
	c.userMu.Lock()
	others := 0
	for _, u := range c.users {
		if u.Removed.IsZero() {
			others++
		}
	}
	c.userMu.Unlock()
	hosts := c.adminUses.hosts()
	if others > 0 || len(hosts) < 2 {
		return api.Finding{}, false
	}
	return api.Finding{Severity: api.SeverityWarning, Code: "ADMIN_CREDENTIAL_SHARED",
		Finding: fmt.Sprintf("the admin credential is the only user and was used from %d addresses since the coordinator started (%s): one credential with every right, shared", len(hosts), strings.Join(hosts, ", ")),
		Fix:     "give each person their own credential with the least role they need (`ward user add NAME --role ROLE`, then `ward login --join-file FILE` on their machine), then retire the shared one (`ward user remove admin`)"}, true
}
