package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestCancelOnFailure: with --cancel-on-failure, the first failed task
// stops the rest of the job: running tasks are killed, waiting ones never
// start, and each says "consequential".
func TestCancelOnFailure(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 2)
	start := time.Now()
	_, errOut, code := c.ward("run", "--cancel-on-failure", "--count", "10", "--", "sh", "-c", "if [ {index} = 0 ]; then sleep 0.5; exit 4; fi; sleep 60")
	if code != 1 || !strings.Contains(errOut, "consequential") || time.Since(start) > 40*time.Second {
		t.Fatalf("ward run: exit %d after %s\n%s", code, time.Since(start), errOut)
	}
	id := c.lastJobID()
	d := c.job(id)
	if d.State != api.JobFailed || d.Counts[api.TaskFailed] != 1 || d.Counts[api.TaskCanceled] != 9 || !strings.HasPrefix(d.CancelReason, "consequential: task 0 failed") {
		t.Fatalf("job %s %v %q", d.State, d.Counts, d.CancelReason)
	}
	killed := 0
	for _, task := range d.Tasks[1:] {
		reason := task.Reason
		if len(task.Attempts) > 0 {
			killed++
			reason = task.Attempts[0].Reason
		}
		if !strings.HasPrefix(reason, "consequential") {
			t.Fatalf("task %d gives %q", task.Index, reason)
		}
	}
	if killed != 1 {
		t.Fatalf("%d running tasks were killed; the second slot ran one", killed)
	}
	if out := c.mustWard("job", "status", id); !strings.Contains(out, "cancel on failure") {
		t.Fatalf("job status:\n%s", out)
	}
}
