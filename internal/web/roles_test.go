package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
)

// The console checks each page against the same authorization table as
// the API: a role sees only what it may use, and a page it may not use is
// refused with the role needed, and audited.
func TestRolesInTheConsole(t *testing.T) {
	c := newConsole(t, newFakeCluster(3, 3), "")
	as := func(name string, role authz.Role) *http.Client {
		cl := c.newClient()
		c.signInAs(cl, authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleUser, Name: name}, Role: role, Via: authz.ViaCert, CertSerial: "0b"})
		return cl
	}
	viewer := as("vera", authz.RoleViewer)
	resp, body := c.get(viewer, Prefix)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "(viewer)") || strings.Contains(body, `href="/ui/tokens"`) || strings.Contains(body, `href="/ui/audit"`) {
		t.Fatalf("viewer's overview: %s, role shown %v, tokens link %v", resp.Status, strings.Contains(body, "(viewer)"), strings.Contains(body, `href="/ui/tokens"`))
	}
	if !strings.Contains(body, "Doctor findings") || !strings.Contains(body, `href="/ui/jobs"`) {
		t.Fatal("the viewer does not see the doctor or the jobs")
	}
	for path, want := range map[string]string{
		Prefix + "tokens":           "listing join tokens needs role admin or operator",
		Prefix + "jobs/new":         "submitting jobs needs role admin, operator or submitter",
		Prefix + "nodes/n-1/drain":  "draining a node needs role admin or operator",
		Prefix + "check":            "needs role admin",
		Prefix + "jobs/1/cancel":    "canceling jobs needs role admin, operator or submitter",
		Prefix + "ca/rotate":        "rotating the CA needs role admin",
		Prefix + "migration/finish": "needs role admin",
		Prefix + "jobs/3/requeue":   "requeueing jobs needs role admin, operator or submitter",
		Prefix + "jobs/3/clone":     "cloning jobs needs role admin, operator or submitter",
		Prefix + "maintenance/on":   "turning maintenance mode on or off needs role admin",
		Prefix + "maintenance/off":  "turning maintenance mode on or off needs role admin",
		Prefix + "users":            "listing users needs role admin",
		Prefix + "users/alice/role": "managing users needs role admin",
	} {
		resp, body := c.get(viewer, path)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "has role viewer") || !strings.Contains(body, want) {
			t.Fatalf("viewer GET %s: %s\n%.600s", path, resp.Status, body)
		}
	}
	// Viewers see the job and node pages without the actions they may not
	// take.
	if _, body := c.get(viewer, Prefix+"jobs/3"); !strings.Contains(body, `id="progress"`) || strings.Contains(body, "/requeue") || strings.Contains(body, "/clone") || strings.Contains(body, "/cancel") {
		t.Fatal("the viewer's job page offers requeue, clone or cancel (or lacks the progress)")
	}
	if _, body := c.get(viewer, Prefix+"nodes"); !strings.Contains(body, `data-node="node-0001"`) || strings.Contains(body, "/drain") || strings.Contains(body, "/revoke") {
		t.Fatal("the viewer's node page offers drain or revoke")
	}
	if !c.audited("authz.denied", "PERMISSION_DENIED") {
		t.Fatal("the console's refusals are not audited")
	}

	sub := as("sam", authz.RoleSubmitter)
	resp, body = c.get(sub, Prefix)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "Doctor findings") || strings.Contains(body, "Certificates and CAs") {
		t.Fatalf("submitter's overview: %s; shows the doctor or the CA, which its role may not read", resp.Status)
	}
	if resp, _ := c.get(sub, Prefix+"jobs/new"); resp.StatusCode != http.StatusOK {
		t.Fatalf("submitter's submit form: %s", resp.Status)
	}
	if resp, _ := c.get(sub, Prefix+"certs"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("submitter's certificate list: %s", resp.Status)
	}
}
