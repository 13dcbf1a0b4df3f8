package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestResumedAgentStartsNothingPlacedElsewhere: an agent stopped (SIGSTOP)
// past its liveness and lost timeouts, holding a task assigned ahead and
// an assignment that arrived in its socket while it was stopped, is
// declared lost, and both tasks go to another agent. Resumed while they
// run there, it must start neither: its waiting task gets a slot (its
// running ones ended while it was stopped) and the buffered assignment is
// read first thing, but the coordinator has given up on the session, so
// the agent reconnects, the coordinator's reconciliation cancels both, and
// no task runs on two agents at once.
func TestResumedAgentStartsNothingPlacedElsewhere(t *testing.T) {
	// Liveness timeout 5 s (3 heartbeats + 2 s), lost 2 s after it; every
	// job is "short" enough to be assigned ahead once one task finished.
	c := newCluster(t, "--heartbeat-interval", "1s", "--node-lost-timeout", "2s", "--prefetch-below", "30s")
	logs := filepath.Join(c.dir, "task-logs")
	os.MkdirAll(logs, 0o755)
	a := startLoggedAgent(t, c, logs, "a", 2, true)

	// Job 1: tasks 0 and 1 end at once (the job is then known short),
	// tasks 2 and 3 run 4 s on a's two slots and task 4 waits on a,
	// assigned ahead.
	j1 := strings.TrimSpace(c.mustWard("submit", "--count", "5", "--retries", "5", "--", "bash", "-c", loggedTaskScript("$(( WARD_TASK_INDEX >= 2 ? 4 : 0 ))")))
	waitFor(t, 30*time.Second, "tasks 2 and 3 running on a and task 4 assigned ahead there", func() bool {
		d := c.job(j1)
		return d.Tasks[2].State == api.TaskRunning && d.Tasks[3].State == api.TaskRunning && d.Tasks[4].State == api.TaskAssigned
	})
	if n, _ := c.node("a"); n.AheadSlots != 1 {
		t.Fatalf("node a: %d slots assigned ahead, want 1 (task 4)", n.AheadSlots)
	}

	// Stop a. The coordinator still holds its session for up to 5 s, so a
	// new job's task is assigned ahead on a and waits in a's socket.
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	t.Cleanup(func() { a.cmd.Process.Signal(syscall.SIGCONT) })
	j2 := strings.TrimSpace(c.mustWard("submit", "--count", "1", "--retries", "5", "--", "bash", "-c", loggedTaskScript("4")))
	waitFor(t, 3*time.Second, "job 2's task placed", func() bool { return len(c.job(j2).Tasks[0].Attempts) > 0 })
	if d := c.job(j2); len(d.Tasks[0].Attempts) != 1 || d.Tasks[0].Attempts[0].Node != "a" {
		t.Fatalf("job %s's task was not assigned to the stopped agent a while its session looked alive: %+v (the test needs it in a's socket)", j2, d.Tasks[0].Attempts)
	}
	if time.Since(stopped) > 4*time.Second {
		t.Fatalf("placing on the stopped agent took %s: its session may have ended before the assignment was sent", time.Since(stopped))
	}

	// Another agent takes both tasks once a is declared lost.
	startLoggedAgent(t, c, logs, "b", 4, true)
	onB := func(id string, task int) bool {
		at := c.job(id).Tasks[task].Attempts
		return len(at) > 1 && at[len(at)-1].Node == "b" && at[len(at)-1].State == api.TaskRunning
	}
	waitFor(t, 40*time.Second, "job 1 task 4 and job 2 task 0 running on b", func() bool { return onB(j1, 4) && onB(j2, 0) })

	// Resume a while they run on b (4 s each).
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("agent a resumed after %s", time.Since(stopped).Round(time.Millisecond))
	var details []api.JobDetail
	for _, id := range []string{j1, j2} {
		d := c.waitJob(id, 60*time.Second)
		if d.State != api.JobCompleted {
			t.Fatalf("job %s ended %s: %v", id, d.State, d.Counts)
		}
		details = append(details, d)
	}
	waitFor(t, 30*time.Second, "agent a back and ready", func() bool { n, ok := c.node("a"); return ok && n.Connected && n.State == "ready" })

	checkJobsOnce(t, c, details)
	runs := readTaskRuns(t, logs, []string{"a", "b"}, nil)
	if overlaps, _ := checkNoOverlap(t, runs); overlaps > 0 {
		t.Errorf("%d tasks ran on two agents at once", overlaps)
	}
	// Precisely: a never started either task it was holding.
	for _, key := range []string{j1 + "/4", j2 + "/0"} {
		for _, r := range runs[key] {
			if r.node == "a" {
				t.Errorf("task %s: the resumed agent a started attempt %d at %.6f, after the coordinator had placed the task on b", key, r.attempt, r.start)
			}
		}
	}
	// The agent still runs work.
	if _, errOut, code := c.ward("run", "--count", "4", "--", "true"); code != 0 {
		t.Fatalf("ward run after the resume: exit %d: %s", code, errOut)
	}
}
