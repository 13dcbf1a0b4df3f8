package e2e

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestFairShareBetweenUsers: a user's small job submitted while another
// user's large job holds every slot is not held back by it: it gets every
// other freed slot, so few of the large job's tasks are placed before the
// small job's last one.
func TestFairShareBetweenUsers(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 2)
	alice, bob := c.userContext("alice"), c.userContext("bob")
	out, errOut, code := c.wardAs(alice, "submit", "--count", "300", "--", "sleep", "0.1")
	if code != 0 {
		t.Fatalf("alice's submit: %s", errOut)
	}
	big := strings.TrimSpace(out)
	waitFor(t, 20*time.Second, "alice's job to hold both slots", func() bool { return c.job(big).Counts[api.TaskCompleted] >= 4 })
	out, errOut, code = c.wardAs(bob, "submit", "--count", "6", "--", "true")
	if code != 0 {
		t.Fatalf("bob's submit: %s", errOut)
	}
	small := c.waitJob(strings.TrimSpace(out), 60*time.Second)
	if small.State != api.JobCompleted || !strings.HasSuffix(small.SubmittedBy, "/user/bob") {
		t.Fatalf("bob's job: %s by %s", small.State, small.SubmittedBy)
	}
	var lastSmall time.Time
	for _, task := range small.Tasks {
		if a := task.Attempts[0].Assigned; a.After(lastSmall) {
			lastSmall = a
		}
	}
	d := c.job(big)
	c.mustWard("job", "cancel", big)
	var between []time.Time
	for _, task := range d.Tasks {
		for _, a := range task.Attempts {
			if a.Assigned.After(small.Submitted) && a.Assigned.Before(lastSmall) {
				between = append(between, a.Assigned)
			}
		}
	}
	sort.Slice(between, func(i, j int) bool { return between[i].Before(between[j]) })
	// Alternating placements give alice one task between each two of
	// bob's six (5), plus one slot's worth of slack for a round that freed
	// two slots at once. First come, first served would have placed nearly
	// all of her remaining tasks first.
	if len(between) > 5+1 {
		t.Fatalf("%d of alice's tasks were placed between bob's submission and his last task's placement (%v); want at most 6", len(between), between)
	}
	if !d.Submitted.Before(small.Submitted) || d.Counts[api.TaskQueued] == 0 && d.Counts[api.TaskCompleted] == 300 {
		t.Fatalf("alice's job ended before bob's did not wait: the test proves nothing (%v)", d.Counts)
	}
}

// TestExclusiveAndMaxRunningJobs: an --exclusive job's tasks run alone on
// their nodes, and --max-running caps a job's tasks running at once.
func TestExclusiveAndMaxRunningJobs(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 2)
	c.startAgent("b", 2)
	excl := strings.TrimSpace(c.mustWard("submit", "--exclusive", "--count", "4", "--", "sleep", "0.3"))
	other := strings.TrimSpace(c.mustWard("submit", "--count", "8", "--", "sleep", "0.3"))
	de, do := c.waitJob(excl, 60*time.Second), c.waitJob(other, 60*time.Second)
	if de.State != api.JobCompleted || do.State != api.JobCompleted {
		t.Fatalf("states %s %s", de.State, do.State)
	}
	for _, x := range de.Tasks {
		xa := x.Attempts[0]
		for _, d := range []api.JobDetail{de, do} {
			for _, task := range d.Tasks {
				a := task.Attempts[0]
				if (d.ID == de.ID && task.Index == x.Index) || a.Node != xa.Node {
					continue
				}
				if a.Started.Before(xa.Ended) && xa.Started.Before(a.Ended) {
					t.Fatalf("job %s task %d ran on %s beside exclusive task %d", d.ID, task.Index, a.Node, x.Index)
				}
			}
		}
	}
	if out := c.mustWard("job", "status", excl); !strings.Contains(out, "exclusive") {
		t.Fatalf("job status does not show --exclusive:\n%s", out)
	}

	capped := strings.TrimSpace(c.mustWard("submit", "--max-running", "1", "--count", "5", "--", "sleep", "0.2"))
	d := c.waitJob(capped, 60*time.Second)
	both := api.JobDetail{Tasks: d.Tasks}
	for i := range both.Tasks {
		both.Tasks[i].Attempts[0].Node = "any" // count overlap across nodes
	}
	if o := maxOverlap(both, "any"); o != 1 {
		t.Fatalf("%d tasks ran at once with --max-running 1", o)
	}
	if _, errOut, code := c.ward("submit", "--max-running", "-1", "--", "true"); code == 0 || !strings.Contains(errOut, "--max-running") {
		t.Fatalf("--max-running -1: %d %s", code, errOut)
	}
}
