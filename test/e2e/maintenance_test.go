package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestMaintenanceMode: maintenance refuses new jobs from users who are not
// admins with MAINTENANCE and the admin's message, lets queued and running
// jobs finish, shows in status and doctor, survives a restart, and is
// audited.
func TestMaintenanceMode(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 1)
	alice := c.userContext("alice")

	// Work queued and running before maintenance starts.
	out, errOut, code := c.wardAs(alice, "submit", "--count", "3", "--", "sleep", "0.5")
	if code != 0 {
		t.Fatalf("alice's submit before maintenance: %d %s", code, errOut)
	}
	before := strings.TrimSpace(out)

	msg := "kernel upgrade until 10:00 UTC"
	if out := c.mustWard("cluster", "maintenance", "on", "--message", msg); !strings.Contains(out, "ON since") || !strings.Contains(out, msg) {
		t.Fatalf("maintenance on: %s", out)
	}
	_, errOut, code = c.wardAs(alice, "submit", "--", "true")
	if code == 0 || !strings.Contains(errOut, "MAINTENANCE") || !strings.Contains(errOut, msg) {
		t.Fatalf("alice's submit in maintenance: exit %d: %s", code, errOut)
	}
	// The same refusal over the API, as JSON with the stable code.
	_, errOut, code = c.wardAs(alice, "submit", "-o", "json", "--", "true")
	var refusal struct {
		Error api.Error `json:"error"`
	}
	if code == 0 || jsonUnmarshal(errOut, &refusal) != nil || refusal.Error.Code != api.CodeMaintenance {
		t.Fatalf("alice's submit -o json in maintenance: exit %d: %s", code, errOut)
	}
	// Only admins switch it.
	if _, errOut, code := c.wardAs(alice, "cluster", "maintenance", "off"); code == 0 || !strings.Contains(errOut, "PERMISSION_DENIED") {
		t.Fatalf("alice turned maintenance off: exit %d %s", code, errOut)
	}
	// Admins may still submit; queued and running work goes on.
	adminJob := strings.TrimSpace(c.mustWard("submit", "--", "true"))
	if d := c.waitJob(adminJob, 30*time.Second); d.State != api.JobCompleted {
		t.Fatalf("admin's job in maintenance: %s", d.State)
	}
	if d := c.waitJob(before, 30*time.Second); d.State != api.JobCompleted {
		t.Fatalf("the job queued before maintenance: %s", d.State)
	}

	var st api.Status
	c.wardJSON(&st, "status")
	if !st.Maintenance.On || st.Maintenance.Message != msg || !strings.HasSuffix(st.Maintenance.By, "/user/admin") {
		t.Fatalf("status: %+v", st.Maintenance)
	}
	if out := c.mustWard("status"); !strings.Contains(out, "maintenance:") || !strings.Contains(out, msg) {
		t.Fatalf("ward status:\n%s", out)
	}
	var doc api.DoctorReport
	out, _, _ = c.ward("doctor", "-o", "json")
	if err := jsonUnmarshal(out, &doc); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	found := false
	for _, f := range doc.Findings {
		found = found || (f.Code == "MAINTENANCE" && strings.Contains(f.Finding, msg) && strings.Contains(f.Fix, "maintenance off"))
	}
	if !found {
		t.Fatalf("doctor has no MAINTENANCE finding: %+v", doc.Findings)
	}

	// It is durable.
	c.coord.kill9()
	c.restartCoordinator()
	if _, errOut, code := c.wardAs(alice, "submit", "--", "true"); code == 0 || !strings.Contains(errOut, "MAINTENANCE") {
		t.Fatalf("after a restart: exit %d %s", code, errOut)
	}

	if out := c.mustWard("cluster", "maintenance", "off"); !strings.HasPrefix(out, "off") {
		t.Fatalf("maintenance off: %s", out)
	}
	out, errOut, code = c.wardAs(alice, "submit", "--", "true")
	if code != 0 {
		t.Fatalf("alice's submit after maintenance: %d %s", code, errOut)
	}
	if d := c.waitJob(strings.TrimSpace(out), 30*time.Second); d.State != api.JobCompleted {
		t.Fatalf("alice's job after maintenance: %s", d.State)
	}
	var states []string
	for _, e := range c.auditEvents() {
		if e.Type == "cluster.maintenance" {
			states = append(states, e.Detail["state"])
			if !strings.HasSuffix(e.Actor, "/user/admin") {
				t.Errorf("audit actor %q", e.Actor)
			}
		}
	}
	if strings.Join(states, ",") != "on,off" {
		t.Fatalf("audit cluster.maintenance states: %v", states)
	}
}
