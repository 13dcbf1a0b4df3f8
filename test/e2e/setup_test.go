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
