package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestMemoryResource: agents report their memory, tasks that reserve
// memory never run past it, and a job no node could ever fit is refused at
// once.
func TestMemoryResource(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 4, "--memory", "1GiB")
	c.startAgent("host", 1) // reports the host's memory

	a, _ := c.node("a")
	host, _ := c.node("host")
	if a.Memory != 1<<30 || host.Memory <= 0 {
		t.Fatalf("reported memory: a %d, host %d", a.Memory, host.Memory)
	}
	if out := c.mustWard("node", "ls"); !strings.Contains(out, "0 B/1 GiB") {
		t.Fatalf("node ls does not show a's memory:\n%s", out)
	}

	// 600 MiB each: only one at a time fits a's 1 GiB, though it has 4
	// slots; the host agent (1 slot) may run one more.
	id := strings.TrimSpace(c.mustWard("submit", "--memory", "600MiB", "--count", "6", "--", "sleep", "0.3"))
	waitFor(t, 30*time.Second, "a task to reserve memory on a", func() bool {
		n, _ := c.node("a")
		return n.UsedMemory == 600<<20 || c.job(id).State == api.JobCompleted
	})
	d := c.waitJob(id, 60*time.Second)
	if d.State != api.JobCompleted {
		t.Fatalf("job %s", d.State)
	}
	if o := maxOverlap(d, "a"); o != 1 {
		t.Fatalf("node a ran %d tasks of 600 MiB at once in 1 GiB", o)
	}
	if out := c.mustWard("job", "status", id); !strings.Contains(out, "600 MiB memory per task") {
		t.Fatalf("job status does not show the memory:\n%s", out)
	}
	if n, _ := c.node("a"); n.UsedMemory != 0 {
		t.Fatalf("a still reserves %d bytes after the job", n.UsedMemory)
	}

	// Larger than any node: refused at once, naming the memory.
	huge := host.Memory + 1<<30
	_, errOut, code := c.ward("submit", "--memory", strconv.FormatInt(huge, 10), "--", "true")
	if code == 0 || !strings.Contains(errOut, "JOB_UNSCHEDULABLE") || !strings.Contains(errOut, "--memory") {
		t.Fatalf("a job larger than every node: exit %d %s", code, errOut)
	}
	// Waiting for a node is still allowed, and the task stays queued.
	id = strings.TrimSpace(c.mustWard("submit", "--wait-for-nodes", "--memory", strconv.FormatInt(huge, 10), "--", "true"))
	time.Sleep(500 * time.Millisecond) // a placement would happen within a round
	if d := c.job(id); d.Counts[api.TaskQueued] != 1 {
		t.Fatalf("an unfittable job left the queue: %v", d.Counts)
	}
	if _, errOut, code := c.ward("submit", "--memory", "lots", "--", "true"); code == 0 || !strings.Contains(errOut, "512MiB") {
		t.Fatalf("--memory lots: %d %s", code, errOut)
	}
}
