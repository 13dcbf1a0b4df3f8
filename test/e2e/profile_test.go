package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestAgentProfiles: a profile assigned by label is pushed over the live
// sessions and applied without a restart (the scheduler uses its slots and
// labels, the agent its kill grace); a profile an agent refuses shows as
// failed with the reason; a new assignment moves nodes back to their own
// settings.
func TestAgentProfiles(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.startAgent("n1", 1, "--label", "rack=a")
	c.startAgent("n2", 1, "--label", "rack=b")
	c.startAgent("n3", 1, "--label", "rack=a", "--revocation-policy", "hard")
	pid := n1.cmd.Process.Pid

	// Before: no node has 3 slots, so a job needing them is refused.
	if _, stderr, code := c.ward("submit", "--slots", "3", "--", "true"); code == 0 || !strings.Contains(stderr, "JOB_UNSCHEDULABLE") {
		t.Fatalf("a 3-slot job before the profile: exit %d, want JOB_UNSCHEDULABLE\n%s", code, stderr)
	}
	c.mustWard("profile", "set", "big", "slots=3", "labels=tier=gpu", "kill-grace=6s")
	c.mustWard("profile", "assign", "big", "--label", "rack=a")
	waitProfiles(t, c, map[string]string{"n1": "big/2/applied", "n2": "-", "n3": "big/2/applied"}, map[string]int{"n1": 3, "n3": 3, "n2": 1})
	n, _ := c.node("n1")
	if n.Labels["tier"] != "gpu" || n.Labels["rack"] != "a" {
		t.Errorf("n1 labels %v, want its own rack=a and the profile's tier=gpu", n.Labels)
	}
	if n1.cmd.Process.Pid != pid || !n1.running() {
		t.Fatalf("the agent restarted")
	}
	// The scheduler uses the pushed slots and labels.
	out := c.mustWard("run", "--slots", "3", "--label", "tier=gpu", "--", "echo", "three-slots")
	if !strings.Contains(out, "three-slots") {
		t.Errorf("a 3-slot tier=gpu job: %q", out)
	}
	// And the agent its kill grace: a task that ignores SIGTERM dies only
	// at SIGKILL, 6 s after the cancel (the agent's own is 2 s).
	id := strings.TrimSpace(c.mustWard("submit", "--label", "tier=gpu", "--", "sh", "-c", "trap '' TERM; echo ready; sleep 60"))
	waitFor(t, 20*time.Second, "the task to run", func() bool { return c.job(id).Counts[api.TaskRunning] == 1 })
	time.Sleep(300 * time.Millisecond) // the trap is set once the shell runs
	t0 := time.Now()
	c.mustWard("job", "cancel", id)
	c.waitJob(id, 30*time.Second)
	if d := time.Since(t0); d < 5*time.Second {
		t.Errorf("the canceled task ignoring SIGTERM ended after %s; with the profile's kill-grace=6s it cannot end before 6 s", d)
	}

	// A profile n3 refuses: soft would weaken its hard revocation policy.
	c.mustWard("profile", "set", "big", "revocation-policy=soft")
	// n3 keeps what it ran (revision 2, 3 slots); n1 takes revision 3.
	waitProfiles(t, c, map[string]string{"n1": "big/3/applied", "n3": "big/3/failed"}, map[string]int{"n1": 3, "n3": 3})
	n3, _ := c.node("n3")
	if !strings.Contains(n3.ProfileError, "weaken") || !strings.Contains(n3.ProfileError, "hard") {
		t.Errorf("n3's refusal: %q, want why (it would weaken its hard policy)", n3.ProfileError)
	}
	table := c.mustWard("node", "ls")
	if !strings.Contains(table, "big (failed)") || !strings.Contains(table, "n3 refused profile big (revision 3)") || !strings.Contains(table, "big (applied)") {
		t.Errorf("node ls does not show the profile states:\n%s", table)
	}
	var profiles []api.Profile
	c.wardJSON(&profiles, "profile", "ls")
	if len(profiles) != 1 || profiles[0].Revision != 3 || profiles[0].Settings.RevocationPolicy != "soft" || strings.Join(profiles[0].Nodes, ",") != "n1,n3" {
		t.Errorf("profile ls: %+v", profiles)
	}

	// Assigned to n2 by name: n1 and n3 go back to their own settings.
	c.mustWard("profile", "assign", "big", "n2")
	waitProfiles(t, c, map[string]string{"n1": "-", "n2": "big/4/applied", "n3": "-"}, map[string]int{"n1": 1, "n2": 3, "n3": 1})
	if n, _ := c.node("n1"); n.Labels["tier"] != "" {
		t.Errorf("n1 kept the profile's label after it left: %v", n.Labels)
	}
	// A coordinator restart keeps the profile; the agents, which kept
	// running, report what they run and are pushed it again.
	c.coord.kill9()
	c.restartCoordinator()
	waitProfiles(t, c, map[string]string{"n1": "-", "n2": "big/4/applied", "n3": "-"}, map[string]int{"n1": 1, "n2": 3, "n3": 1})
	for _, typ := range []string{"profile.set", "profile.assign"} {
		if !c.hasAudit(typ, "ok") {
			t.Errorf("no %s audit event", typ)
		}
	}
}

// waitProfiles waits until each node shows profile/revision/state ("-" for
// none) and the slots given.
func waitProfiles(t *testing.T, c *cluster, want map[string]string, slots map[string]int) {
	t.Helper()
	var last []api.Node
	defer func() {
		if t.Failed() {
			t.Logf("nodes: %+v", last)
		}
	}()
	waitFor(t, 20*time.Second, fmt.Sprintf("the profiles %v and slots %v", want, slots), func() bool {
		last = c.nodes()
		ok := 0
		for _, n := range last {
			got := "-"
			if n.Profile != "" {
				got = n.Profile + "/" + strconv.FormatInt(n.ProfileRevision, 10) + "/" + n.ProfileState
			}
			if w, in := want[n.Name]; in && w != got {
				return false
			}
			if s, in := slots[n.Name]; in && s != n.Slots {
				return false
			}
			ok++
		}
		return ok == len(last) && len(last) > 0
	})
}
