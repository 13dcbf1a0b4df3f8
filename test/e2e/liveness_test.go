package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// An idle cluster keeps its sessions. Nothing but heartbeats flows, for
// three times the liveness timeout either end applies, and no agent
// reconnects: the coordinator answers every heartbeat, so an idle agent
// hears from it once per interval. (Before, the coordinator sent an idle
// agent nothing and every agent reconnected each time its read deadline
// passed.) A short heartbeat interval keeps the test quick; the rule is the
// same at the default 5 s.
func TestIdleSessionsStayOpen(t *testing.T) {
	t.Parallel()
	const hb = time.Second
	c := newCluster(t, "--heartbeat-interval", hb.String())
	c.startAgent("idle-1", 1)
	c.startAgent("idle-2", 1)
	opens := func() int {
		n := 0
		for _, e := range c.auditEvents() {
			if e.Type == "session.open" {
				n++
			}
		}
		return n
	}
	before := opens()
	hold := 3 * api.LivenessTimeout(hb)
	t.Logf("holding the idle cluster for %s (3 × the liveness timeout of a %s heartbeat)", hold, hb)
	time.Sleep(hold)

	if after := opens(); after != before {
		t.Errorf("session.open events: %d before, %d after %s idle; want no reconnects", before, after, hold)
	}
	for _, name := range []string{"idle-1", "idle-2"} {
		n, ok := c.node(name)
		if !ok || !n.Connected || n.State != "ready" {
			t.Errorf("node %s: %+v, want connected and ready", name, n)
		}
		if n.Reconnects != 0 {
			t.Errorf("node %s: %d reconnects, want 0", name, n.Reconnects)
		}
		if log := c.agents[name].stderrText(); strings.Contains(log, "went silent") || strings.Contains(log, "cannot reach coordinator") {
			t.Errorf("agent %s lost its session while idle:\n%s", name, log)
		}
	}
	if log := c.coord.stderrText(); strings.Contains(log, "agent session ended") {
		t.Errorf("the coordinator ended an idle session:\n%s", log)
	}
	// ward doctor has nothing to say about sessions.
	out, _, _ := c.ward("doctor")
	if strings.Contains(out, "SESSION_FLAPPING") {
		t.Errorf("doctor reports flapping sessions on an idle cluster:\n%s", out)
	}
}

// An agent that keeps reconnecting is named by `ward doctor`, with how its
// last session ended.
func TestDoctorNamesAReconnectingAgent(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.startAgent("flaky", 1)
	for i := 1; i <= 3; i++ {
		c.agents["flaky"].kill9()
		c.startAgent("flaky", 1)
		waitFor(t, 20*time.Second, "the restarted agent's session", func() bool {
			n, _ := c.node("flaky")
			return n.Reconnects == i && n.Connected
		})
	}
	out, _, code := c.ward("doctor")
	if code != 1 || !strings.Contains(out, "SESSION_FLAPPING") || !strings.Contains(out, "agent flaky reconnected 3 times") {
		t.Fatalf("ward doctor (exit %d) does not report the reconnecting agent:\n%s", code, out)
	}
	n, _ := c.node("flaky")
	if n.Reconnects != 3 {
		t.Errorf("node ls: reconnects %d, want 3", n.Reconnects)
	}
}
