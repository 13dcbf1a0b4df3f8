package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestSetupAndTeardown: a job's --setup runs once per node before its
// first task there and its --teardown once after the job ended; a node
// whose setup fails gets none of the job's tasks, which go elsewhere as
// environment_error within --retries.
func TestSetupAndTeardown(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 2)
	c.startAgent("b", 2)
	dir := c.dir
	setup := `test "$WARD_NODE" != a || { echo no scratch space on a; exit 1; }; echo up >> ` + dir + `/setup-$WARD_NODE; sleep 0.3`
	teardown := `echo down >> ` + dir + `/teardown-$WARD_NODE`
	id := strings.TrimSpace(c.mustWard("submit", "--count", "8", "--retries", "3", "--setup", setup, "--teardown", teardown,
		"--", "sh", "-c", "test -e "+dir+"/setup-b && echo ran {index}"))
	d := c.waitJob(id, 60*time.Second)
	if d.State != api.JobCompleted {
		t.Fatalf("job %s: %+v", d.State, d.Tasks)
	}
	envErrors := 0
	for _, task := range d.Tasks {
		for _, a := range task.Attempts {
			switch {
			case a.Node == "a" && a.State == api.TaskLost && strings.HasPrefix(a.Reason, "environment_error: setup failed on node a") && strings.Contains(a.Reason, "no scratch space on a"):
				envErrors++
			case a.Node == "b" && a.State == api.TaskCompleted:
			default:
				t.Fatalf("task %d attempt %d on %s: %s %q", task.Index, a.N, a.Node, a.State, a.Reason)
			}
		}
	}
	if envErrors == 0 {
		t.Fatal("no task was sent to a, whose setup fails: the test proves nothing")
	}
	read := func(name string) string { b, _ := os.ReadFile(filepath.Join(dir, name)); return string(b) }
	if got := read("setup-b"); got != "up\n" {
		t.Fatalf("setup on b ran %q; want once", got)
	}
	waitFor(t, 20*time.Second, "the teardown on b", func() bool { return read("teardown-b") != "" })
	if got := read("teardown-b"); got != "down\n" || read("teardown-a") != "" {
		t.Fatalf("teardown on b %q, on a %q; want once on b only", got, read("teardown-a"))
	}

	// When the setup fails everywhere, the job fails at once instead of
	// waiting for a node that will never come.
	id = strings.TrimSpace(c.mustWard("submit", "--count", "3", "--setup", "exit 7", "--", "true"))
	d = c.waitJob(id, 60*time.Second)
	if d.State != api.JobFailed || d.Counts[api.TaskCompleted] != 0 || !strings.Contains(d.CancelReason, "every node") {
		t.Fatalf("setup failing everywhere: %s %v %q", d.State, d.Counts, d.CancelReason)
	}
	if _, errOut, code := c.ward("submit", "--teardown", "true", "--", "true"); code == 0 || !strings.Contains(errOut, "--setup") {
		t.Fatalf("--teardown alone: %d %s", code, errOut)
	}
}

// TestFailedSetupRememberedAcrossRestart: a node whose --setup failed for
// a job gets none of that job's tasks, also after the coordinator was
// killed and started again (the memory is rebuilt from the stored
// attempts, not kept only in the old process).
func TestFailedSetupRememberedAcrossRestart(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 2)
	c.startAgent("b", 1)
	gate := filepath.Join(c.dir, "gate")
	setup := `test "$WARD_NODE" != a || { echo no scratch space on a; exit 1; }`
	id := strings.TrimSpace(c.mustWard("submit", "--count", "4", "--retries", "5", "--setup", setup,
		"--", "sh", "-c", "while [ ! -e "+gate+" ]; do sleep 0.1; done; echo done {index}"))
	envErrorsOnA := func(d api.JobDetail) (n int) {
		for _, task := range d.Tasks {
			for _, a := range task.Attempts {
				if a.Node == "a" {
					if a.State != api.TaskLost || !strings.HasPrefix(a.Reason, "environment_error") {
						t.Fatalf("task %d ran on a: %s %q", task.Index, a.State, a.Reason)
					}
					n++
				}
			}
		}
		return n
	}
	waitFor(t, 30*time.Second, "a setup failure on a and a task running on b", func() bool {
		d := c.job(id)
		return envErrorsOnA(d) > 0 && d.Counts[api.TaskRunning] == 1
	})
	before := envErrorsOnA(c.job(id))

	c.coord.kill9()
	c.restartCoordinator()
	waitFor(t, 30*time.Second, "both agents back", func() bool {
		a, okA := c.node("a")
		b, okB := c.node("b")
		return okA && okB && a.Connected && b.Connected && a.State == "ready" && b.State == "ready"
	})
	// A job without a setup runs on a (b's slot is taken): a scheduling
	// round ran while a was free and the first job's tasks were waiting,
	// older and of the same user and queue.
	c.mustWard("run", "--", "echo", "probe")
	if p := c.job(c.lastJobID()); p.Spec.Argv[0] != "echo" || p.Tasks[0].Attempts[0].Node != "a" {
		t.Fatalf("probe job %s ran on %+v", p.ID, p.Tasks[0].Attempts)
	}
	if n := envErrorsOnA(c.job(id)); n != before {
		t.Fatalf("after the restart the job was sent to a again: %d setup failures there, %d before", n, before)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := c.waitJob(id, 60*time.Second)
	if d.State != api.JobCompleted || envErrorsOnA(d) != before {
		t.Fatalf("job %s, %d setup failures on a (%d before the restart)", d.State, envErrorsOnA(d), before)
	}
}
