package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
)

func (c *cluster) caStatus() api.CAStatus {
	c.t.Helper()
	var st api.CAStatus
	c.wardJSON(&st, "ca", "status")
	return st
}

// caStatusNow is `ward ca status`, or false when the call failed: polled
// across coordinators while a rotation phase spreads, a call can land on a
// follower that has not yet applied the phase its leader already has.
func (c *cluster) caStatusNow() (api.CAStatus, bool) {
	var st api.CAStatus
	out, _, code := c.ward("ca", "status", "-o", "json")
	return st, code == 0 && json.Unmarshal([]byte(out), &st) == nil
}

func agentRoots(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := pki.ParseCertsPEM(b)
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

// TestCARotationUnderLoad rotates the CA through every phase while a
// 200-task job runs: zero tasks fail and no agent needs a token; an agent
// that is offline the whole time catches up when it returns.
func TestCARotationUnderLoad(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "60s")
	for _, n := range []string{"a", "b", "c"} {
		c.startAgent(n, 2)
	}
	c.startAgent("away", 1)
	c.agents["away"].kill9()
	tokens := c.mustWard("token", "ls", "-o", "json")
	st := c.caStatus()
	if st.Phase != 0 || st.Generation != 1 || len(st.Roots) != 1 {
		t.Fatalf("initial CA status: %+v", st)
	}
	oldRoot := st.Roots[0]
	id := strings.TrimSpace(c.mustWard("submit", "--count", "200", "--", "sh", "-c", "sleep 0.1; echo {index}"))

	// Phase 1: the new root is pushed into every agent's trust bundle.
	st = c.caStatus()
	out := c.mustWard("ca", "rotate")
	if !strings.Contains(out, "phase 1 of 3: trust") {
		t.Fatalf("rotate 1: %s", out)
	}
	for _, n := range []string{"a", "b", "c"} {
		waitFor(t, 10*time.Second, "agent "+n+" to get the new root", func() bool { return len(agentRoots(t, c.agentDir(n))) == 2 })
	}
	// Phase 2: the new issuing CA issues; the coordinator re-certifies.
	st = func() api.CAStatus { c.mustWard("ca", "rotate"); return c.caStatus() }()
	if st.Phase != 2 || !strings.Contains(st.Issuing.Subject, " 2") {
		t.Fatalf("rotate 2: %+v", st)
	}
	// Phase 3: agents renew, spread over 2 seconds.
	out = c.mustWard("ca", "rotate", "--spread", "2s")
	if !strings.Contains(out, "phase 3 of 3: renew") {
		t.Fatalf("rotate 3: %s", out)
	}
	waitFor(t, 20*time.Second, "the connected agents to renew", func() bool {
		st = c.caStatus()
		return len(st.OnOldCA) == 1 && st.OnOldCA[0] == "away"
	})
	// Retiring while an agent is still on the old CA needs --force.
	if _, errOut, code := c.ward("ca", "rotate"); code == 0 || !strings.Contains(errOut, "away") || !strings.Contains(errOut, "--force") {
		t.Fatalf("retire without --force: %d %s", code, errOut)
	}
	out = c.mustWard("ca", "rotate", "--force")
	st = c.caStatus()
	if st.Phase != 0 || st.Generation != 2 || len(st.Roots) != 1 || st.Roots[0].Pin == oldRoot.Pin {
		t.Fatalf("after retire: %+v\n%s", st, out)
	}
	for _, n := range []string{"a", "b", "c"} {
		waitFor(t, 10*time.Second, "agent "+n+" to drop the old root", func() bool { r := agentRoots(t, c.agentDir(n)); return len(r) == 1 && strings.HasSuffix(r[0], " 2") })
	}

	d := c.waitJob(id, 120*time.Second)
	if d.State != api.JobCompleted || d.Counts[api.TaskCompleted] != 200 {
		t.Fatalf("job after rotation: %s %v", d.State, d.Counts)
	}
	for _, task := range d.Tasks {
		if len(task.Attempts) != 1 {
			t.Fatalf("task %d needed %d attempts during the rotation", task.Index, len(task.Attempts))
		}
	}
	if c.mustWard("token", "ls", "-o", "json") != tokens {
		t.Fatal("the rotation consumed a token")
	}
	for _, n := range []string{"a", "b", "c"} {
		if strings.Count(c.coord.stderrText(), `msg="agent session open" node=`+n+" ") != 1 {
			t.Errorf("agent %s's session was reopened during the rotation", n)
		}
	}

	// The agent that was away the whole time comes back: it renews
	// through the public port with its old-CA certificate.
	c.startAgent("away", 1)
	if r := agentRoots(t, c.agentDir("away")); len(r) != 1 || !strings.HasSuffix(r[0], " 2") {
		t.Fatalf("the returning agent's bundle: %v", r)
	}
	if n, _ := c.node("away"); !strings.HasSuffix(n.CertIssuer, " 2") {
		t.Fatalf("the returning agent's certificate issuer: %s", n.CertIssuer)
	}
	if len(c.caStatus().OnOldCA) != 0 {
		t.Fatal("an agent is still on the old CA")
	}
	// The CLI kept working and new tokens pin the new root.
	js, err := enroll.ParseJoinString(c.token())
	if err != nil || js.Pin.String() != st.Roots[0].Pin {
		t.Fatalf("new join strings pin %v, want %s", js.Pin, st.Roots[0].Pin)
	}
	c.startAgent("new", 1)
	// The old keys are gone.
	for _, f := range []string{"pki/root-ca.key", "pki/issuing-ca.key"} {
		if _, err := os.Stat(filepath.Join(c.data, f)); err == nil {
			t.Errorf("retired key %s still on disk", f)
		}
	}
	// A restart comes back on the new generation.
	c.coord.kill9()
	c.restartCoordinator()
	if st := c.caStatus(); st.Generation != 2 || st.Phase != 0 {
		t.Fatalf("after restart: %+v", st)
	}
	waitFor(t, 20*time.Second, "the agents to reconnect", func() bool { n, _ := c.node("a"); return n.State == "ready" })
}

// TestCARotationRollback: each phase before retirement can be undone.
func TestCARotationRollback(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 1)
	c.mustWard("ca", "rotate")
	waitFor(t, 10*time.Second, "the new root to reach the agent", func() bool { return len(agentRoots(t, c.agentDir("a"))) == 2 })
	c.mustWard("ca", "rotate", "--rollback")
	if st := c.caStatus(); st.Phase != 0 || len(st.Roots) != 1 || st.Generation != 1 {
		t.Fatalf("rollback from trust: %+v", st)
	}
	waitFor(t, 10*time.Second, "the agent to drop the new root", func() bool { return len(agentRoots(t, c.agentDir("a"))) == 1 })
	c.mustWard("ca", "rotate")
	c.mustWard("ca", "rotate")
	if st := c.caStatus(); st.Phase != 2 {
		t.Fatalf("phase %d", st.Phase)
	}
	c.mustWard("ca", "rotate", "--rollback")
	st := c.caStatus()
	if st.Phase != 1 || strings.HasSuffix(st.Issuing.Subject, " 2") {
		t.Fatalf("rollback from issue: %+v", st)
	}
	if out, _, code := c.ward("run", "--", "echo", "ok"); code != 0 || !strings.Contains(out, "ok") {
		t.Fatal("the cluster does not run tasks after a rollback")
	}
	if _, errOut, code := c.ward("ca", "rotate", "--rollback"); code != 0 {
		t.Fatalf("rollback to idle: %s", errOut)
	}
	if _, errOut, code := c.ward("ca", "rotate", "--rollback"); code == 0 || !strings.Contains(errOut, "no CA rotation is in progress") {
		t.Fatalf("rollback when idle: %s", errOut)
	}
	if !c.hasAudit("ca.rotate", "ok") {
		t.Error("rotation steps are not audit-logged")
	}
}
