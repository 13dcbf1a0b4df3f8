package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// maxOverlap returns the most attempts running at once on node.
func maxOverlap(d api.JobDetail, node string) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, task := range d.Tasks {
		for _, a := range task.Attempts {
			if a.Node == node && !a.Started.IsZero() && !a.Ended.IsZero() {
				edges = append(edges, edge{a.Started, +1}, edge{a.Ended, -1})
			}
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta
		}
		return edges[i].at.Before(edges[j].at)
	})
	cur, best := 0, 0
	for _, e := range edges {
		cur += e.delta
		best = max(best, cur)
	}
	return best
}

func TestJobOptions(t *testing.T) {
	c := newCluster(t, "--max-output-bytes", "2048", "--aging-step", "0")
	c.startAgent("a", 2)
	c.startAgent("b", 2, "--label", "zone=b")

	t.Run("environment and index", func(t *testing.T) {
		out, errOut, code := c.ward("run", "--count", "2", "--env", "FOO=bar", "--", "sh", "-c", "echo $WARD_TASK_INDEX $WARD_JOB_ID $FOO {index}")
		if code != 0 {
			t.Fatal(errOut)
		}
		got := lines(out)
		sort.Strings(got)
		id := strings.Fields(strings.TrimPrefix(lines(errOut)[0], "job "))[0]
		id = strings.TrimSuffix(id, ":")
		want := []string{"[0] 0 " + id + " bar 0", "[1] 1 " + id + " bar 1"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q want %q", got, want)
		}
	})
	t.Run("capacity is never oversubscribed", func(t *testing.T) {
		id := strings.TrimSpace(c.mustWard("submit", "--count", "12", "--", "sleep", "0.2"))
		d := c.waitJob(id, 30*time.Second)
		for _, n := range []string{"a", "b"} {
			if o := maxOverlap(d, n); o > 2 || o == 0 {
				t.Errorf("node %s ran %d tasks at once with 2 slots", n, o)
			}
		}
		id = strings.TrimSpace(c.mustWard("submit", "--count", "6", "--slots", "2", "--", "sleep", "0.2"))
		d = c.waitJob(id, 30*time.Second)
		for _, n := range []string{"a", "b"} {
			if o := maxOverlap(d, n); o > 1 {
				t.Errorf("node %s ran %d two-slot tasks at once with 2 slots", n, o)
			}
		}
	})
	t.Run("labels", func(t *testing.T) {
		id := strings.TrimSpace(c.mustWard("submit", "--count", "6", "--label", "zone=b", "--", "true"))
		for _, task := range c.waitJob(id, 20*time.Second).Tasks {
			if task.Attempts[0].Node != "b" {
				t.Fatalf("task %d ran on %s", task.Index, task.Attempts[0].Node)
			}
		}
		_, errOut, code := c.ward("submit", "--label", "gpu=a100", "--", "true")
		if code == 0 || !strings.Contains(errOut, "JOB_UNSCHEDULABLE") || !strings.Contains(errOut, "gpu=a100") || !strings.Contains(errOut, "--wait-for-nodes") {
			t.Fatalf("unsatisfiable labels: %s", errOut)
		}
		_, errOut, code = c.ward("submit", "--slots", "3", "--", "true")
		if code == 0 || !strings.Contains(errOut, "largest matching node has 2") {
			t.Fatalf("too many slots: %s", errOut)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		out, errOut, code := c.ward("run", "--timeout", "1s", "--", "sh", "-c", "echo started; sleep 60")
		if code != 1 || !strings.Contains(out, "[0] started") || !strings.Contains(errOut, "timed_out") {
			t.Fatalf("exit %d out %q err %q", code, out, errOut)
		}
	})
	t.Run("a non-zero exit is a failure, not a retry", func(t *testing.T) {
		id := strings.TrimSpace(c.mustWard("submit", "--retries", "5", "--", "sh", "-c", "exit 3"))
		d := c.waitJob(id, 20*time.Second)
		if d.State != api.JobFailed || len(d.Tasks[0].Attempts) != 1 || *d.Tasks[0].Attempts[0].ExitCode != 3 {
			t.Fatalf("%+v", d.Tasks[0])
		}
	})
	t.Run("priority", func(t *testing.T) {
		// Fill every slot, queue low then high work, free the slots, and
		// see high start first. The blocker runs until canceled, so a slow
		// machine cannot free a slot before both jobs are queued.
		block := strings.TrimSpace(c.mustWard("submit", "--count", "4", "--", "sleep", "120"))
		waitFor(t, 20*time.Second, "slots to fill", func() bool { return c.job(block).Counts[api.TaskRunning] == 4 })
		low := strings.TrimSpace(c.mustWard("submit", "--count", "4", "--priority", "low", "--queue", "bulk", "--", "true"))
		high := strings.TrimSpace(c.mustWard("submit", "--count", "4", "--priority", "high", "--", "true"))
		c.mustWard("job", "cancel", block)
		dl, dh := c.waitJob(low, 20*time.Second), c.waitJob(high, 20*time.Second)
		lastHigh := time.Time{}
		for _, task := range dh.Tasks {
			if a := task.Attempts[0].Assigned; a.After(lastHigh) {
				lastHigh = a
			}
		}
		for _, task := range dl.Tasks {
			if task.Attempts[0].Assigned.Before(lastHigh) {
				t.Fatalf("low task %d assigned at %s before the last high task at %s", task.Index, task.Attempts[0].Assigned, lastHigh)
			}
		}
		var bulk []api.Job
		c.wardJSON(&bulk, "job", "ls", "--queue", "bulk")
		if len(bulk) != 1 || bulk[0].ID != low {
			t.Fatalf("job ls --queue bulk: %+v", bulk)
		}
	})
	t.Run("wait for nodes", func(t *testing.T) {
		id := strings.TrimSpace(c.mustWard("submit", "--label", "gpu=1", "--wait-for-nodes", "--", "echo", "gpu"))
		time.Sleep(300 * time.Millisecond)
		if d := c.job(id); d.State != api.JobQueued {
			t.Fatalf("state %s", d.State)
		}
		c.startAgent("g", 1, "--label", "gpu=1")
		if d := c.waitJob(id, 20*time.Second); d.State != api.JobCompleted || d.Tasks[0].Attempts[0].Node != "g" {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("output streams and is truncated at the limit", func(t *testing.T) {
		out, errOut, code := c.ward("run", "--", "sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i-0123456789; i=$((i+1)); done")
		// The task's output on stdout, cut at the limit; Ward's note on
		// stderr, naming the flag, never mixed into the task's output.
		if code != 0 || !strings.Contains(out, "[0] line-0-") || strings.Contains(out, "line-399-") || strings.Contains(out, "[ward:") ||
			!strings.Contains(errOut, "[0] [ward: output truncated: the coordinator keeps 2048 bytes per task (--max-output-bytes)") {
			t.Fatalf("exit %d, output:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
	t.Run("logs follow", func(t *testing.T) {
		id := strings.TrimSpace(c.mustWard("submit", "--", "sh", "-c", "echo one; sleep 1; echo two"))
		out := c.mustWard("logs", id, "-f")
		if strings.Join(lines(out), "|") != "[0] one|[0] two" {
			t.Fatalf("logs -f: %q", out)
		}
	})
}

func pgrepCount(pattern string) int {
	out, _ := exec.Command("pgrep", "-fx", pattern).Output()
	return len(bytes.Fields(out))
}

// uniqueSleep is a sleep command line (about n seconds) that only this
// test process starts: other test runs on the same machine (other
// worktrees, other packages) must not count toward pgrepCount. The
// fraction is this process's ID, unique among live processes.
func uniqueSleep(n int) string { return fmt.Sprintf("sleep %d.%d", n, os.Getpid()) }

// TestCancelKillsProcessGroupAndDrain: cancel reaches every process a task
// started, and drain (with and without --force) moves work away.
func TestCancelKillsProcessGroupAndDrain(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "5s")
	c.startAgent("a", 2)
	c.startAgent("b", 2)

	marker := uniqueSleep(313)
	id := strings.TrimSpace(c.mustWard("submit", "--count", "2", "--", "sh", "-c", marker+" & "+marker+" & wait"))
	waitFor(t, 10*time.Second, "4 sleep processes", func() bool { return pgrepCount(marker) == 4 })
	c.mustWard("job", "cancel", id, "--reason", "wrong input")
	d := c.waitJob(id, 20*time.Second)
	if d.State != api.JobCanceled || !strings.Contains(d.CancelReason, "wrong input") || d.Counts[api.TaskCanceled] != 2 {
		t.Fatalf("%+v", d.Job)
	}
	waitFor(t, 10*time.Second, "the whole process groups to die", func() bool { return pgrepCount(marker) == 0 })

	// Drain: new work goes elsewhere; running work finishes.
	if out := c.mustWard("node", "drain", "a"); !strings.Contains(out, "Node a: drained: it takes no new tasks.") {
		t.Fatalf("drain of an idle node: %s", out)
	}
	if n, _ := c.node("a"); n.State != "drained" || !n.Drain {
		t.Fatalf("node a: %+v", n)
	}
	id = strings.TrimSpace(c.mustWard("submit", "--count", "4", "--", "true"))
	for _, task := range c.waitJob(id, 20*time.Second).Tasks {
		if task.Attempts[0].Node != "b" {
			t.Fatalf("task %d ran on drained node %s", task.Index, task.Attempts[0].Node)
		}
	}
	c.mustWard("node", "undrain", "a")

	// A drain while tasks run: draining until they finish, then drained.
	id = strings.TrimSpace(c.mustWard("submit", "--count", "2", "--slots", "2", "--", "sleep", "2"))
	waitFor(t, 10*time.Second, "both running", func() bool { return c.job(id).Counts[api.TaskRunning] == 2 })
	out := c.mustWard("node", "drain", "a")
	if !strings.Contains(out, "Node a: draining:") || !strings.Contains(out, "running task(s) finish first") {
		t.Fatalf("drain with running tasks: %s", out)
	}
	if n, _ := c.node("a"); n.State != "draining" {
		t.Fatalf("node a while its tasks run: %+v", n)
	}
	c.waitJob(id, 30*time.Second)
	if n, _ := c.node("a"); n.State != "drained" {
		t.Fatalf("node a after its tasks ended: %+v", n)
	}
	c.mustWard("node", "undrain", "a")

	// A forced drain kills and requeues running tasks.
	id = strings.TrimSpace(c.mustWard("submit", "--count", "2", "--slots", "2", "--", "sleep", "3"))
	waitFor(t, 10*time.Second, "both running", func() bool { return c.job(id).Counts[api.TaskRunning] == 2 })
	out = c.mustWard("node", "drain", "a", "--force")
	if !strings.Contains(out, "requeued") {
		t.Fatalf("drain --force: %s", out)
	}
	d = c.waitJob(id, 30*time.Second)
	if d.State != api.JobCompleted {
		t.Fatalf("job ended %s", d.State)
	}
	moved := 0
	for _, task := range d.Tasks {
		if len(task.Attempts) == 2 {
			a1, a2 := task.Attempts[0], task.Attempts[1]
			if a1.Node != "a" || a1.State != api.TaskLost || !strings.Contains(a1.Reason, "drained") || a2.Node != "b" {
				t.Fatalf("attempts %+v", task.Attempts)
			}
			moved++
		}
	}
	if moved != 1 {
		t.Fatalf("%d tasks moved by the forced drain, want 1", moved)
	}
}

// TestAgentCrashLeavesNoOrphans: processes a task started in the
// background die with their agent, so a requeued attempt never runs beside
// a ghost of the first one.
func TestAgentCrashLeavesNoOrphans(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "30s")
	c.startAgent("a", 2)
	marker := uniqueSleep(317)
	c.mustWard("submit", "--count", "2", "--", "sh", "-c", marker+" & "+marker+" & wait")
	waitFor(t, 10*time.Second, "4 background sleeps", func() bool { return pgrepCount(marker) == 4 })
	c.agents["a"].kill9()
	waitFor(t, 10*time.Second, "the orphans to be reaped", func() bool { return pgrepCount(marker) == 0 })
}

// TestPrefetchOnRealAgent: a busy agent running only short work is given
// the next task ahead; it waits on the agent, a drain withdraws it, and a
// cancel ends it there without starting it. Tasks 0-2 are quick, so the job is known short;
// task 3 then runs 30 s with task 4 assigned ahead behind it.
func TestPrefetchOnRealAgent(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 1)

	sleep := uniqueSleep(3131)
	id := strings.TrimSpace(c.mustWard("submit", "--count", "10", "--", "sh", "-c", "if [ {index} -ge 3 ]; then exec "+sleep+"; fi"))
	waitFor(t, 20*time.Second, "task 4 assigned ahead behind task 3", func() bool {
		n, _ := c.node("a")
		if n.UsedSlots > n.Slots || n.AheadSlots > n.Slots {
			t.Fatalf("node a over its slots: %+v", n)
		}
		return n.AheadSlots == 1 && n.UsedSlots == 1 && pgrepCount(sleep) == 1
	})
	d := c.job(id)
	if got := d.Tasks[4].State; got != api.TaskAssigned {
		t.Fatalf("task 4 is %s, want assigned (waiting on the agent)", got)
	}

	// A drain withdraws task 4 (it has not started) and leaves task 3
	// running; the task goes back to the queue without using a retry.
	if out := c.mustWard("node", "drain", "a"); !strings.Contains(out, "go back to the queue") {
		t.Fatalf("drain: %s", out)
	}
	waitFor(t, 10*time.Second, "task 4 back in the queue", func() bool { return c.job(id).Tasks[4].State == api.TaskQueued })
	d = c.job(id)
	if a := d.Tasks[4].Attempts[0]; !a.Started.IsZero() || !strings.Contains(a.Reason, "withdrawn before it started") {
		t.Fatalf("task 4's withdrawn attempt: %+v", a)
	}
	if d.Tasks[3].State != api.TaskRunning || pgrepCount(sleep) != 1 {
		t.Fatalf("task 3 is %s after a drain without --force", d.Tasks[3].State)
	}
	c.mustWard("node", "undrain", "a")
	waitFor(t, 10*time.Second, "task 4 assigned ahead again", func() bool {
		n, _ := c.node("a")
		return n.AheadSlots == 1 && c.job(id).Tasks[4].State == api.TaskAssigned
	})

	c.mustWard("job", "cancel", id)
	d = c.waitJob(id, 20*time.Second)
	if d.State != api.JobCanceled || d.Counts[api.TaskCompleted] != 3 || d.Counts[api.TaskCanceled] != 7 {
		t.Fatalf("job ended %s with %v", d.State, d.Counts)
	}
	a := d.Tasks[4].Attempts[1]
	if a.State != api.TaskCanceled || !a.Started.IsZero() || !strings.Contains(a.Reason, "before it started") {
		t.Errorf("task 4's attempt: %+v, want canceled before it started", a)
	}
	if a := d.Tasks[3].Attempts[0]; a.Started.IsZero() || a.State != api.TaskCanceled {
		t.Errorf("task 3's attempt: %+v, want started, then canceled", a)
	}
	waitFor(t, 10*time.Second, "node a idle", func() bool {
		n, _ := c.node("a")
		return n.UsedSlots == 0 && n.AheadSlots == 0 && n.Running == 0 && pgrepCount(sleep) == 0
	})

	// The agent goes on running work normally.
	if _, errOut, code := c.ward("run", "--count", "3", "--", "true"); code != 0 {
		t.Fatalf("ward run after the cancel: exit %d: %s", code, errOut)
	}
}
