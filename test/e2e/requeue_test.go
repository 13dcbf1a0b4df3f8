package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestRequeueAndClone: requeue runs a finished job's failed (or all) tasks
// again under the same ID, keeping every earlier attempt with its requeue
// number, and its output; clone submits a copy with overrides.
func TestRequeueAndClone(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 2)
	fixed := filepath.Join(c.dir, "fixed")
	script := "if [ {index} = 1 ] && [ ! -e " + fixed + " ]; then echo first-{index}; exit 3; fi; echo ok-{index}"
	id := strings.TrimSpace(c.mustWard("submit", "--count", "4", "--", "sh", "-c", script))
	if d := c.waitJob(id, 30*time.Second); d.State != api.JobFailed {
		t.Fatalf("first run: %s", d.State)
	}
	c.mustWard("run", "--", "touch", fixed) // the agent runs locally: fix the input

	out := c.mustWard("job", "requeue", id, "--failed")
	if !strings.Contains(out, "1 task(s) back in the queue (requeue 1)") {
		t.Fatalf("requeue --failed: %s", out)
	}
	d := c.waitJob(id, 30*time.Second)
	if d.State != api.JobCompleted || d.Requeues != 1 {
		t.Fatalf("after requeue: %s, requeues %d", d.State, d.Requeues)
	}
	check := func(d api.JobDetail, want map[int][]int) {
		t.Helper()
		for _, task := range d.Tasks {
			var got []int
			for k, a := range task.Attempts {
				got = append(got, a.Requeue)
				if a.N != k+1 {
					t.Fatalf("task %d attempt numbers %+v", task.Index, task.Attempts)
				}
			}
			if !slices.Equal(got, want[task.Index]) {
				t.Fatalf("task %d attempts in requeue rounds %v, want %v", task.Index, got, want[task.Index])
			}
		}
	}
	check(d, map[int][]int{0: {0}, 1: {0, 1}, 2: {0}, 3: {0}})
	if a := d.Tasks[1].Attempts[0]; a.State != api.TaskFailed || a.ExitCode == nil || *a.ExitCode != 3 {
		t.Fatalf("the first attempt's history is lost: %+v", a)
	}
	// The first attempt's output is kept beside the new one's.
	if logs := c.mustWard("logs", id, "--task", "1"); !strings.Contains(logs, "first-1") || !strings.Contains(logs, "ok-1") {
		t.Fatalf("task 1's output over both rounds:\n%s", logs)
	}
	if out := c.mustWard("job", "status", id); !strings.Contains(out, "REQUEUE") || !strings.Contains(out, "requeued:  1 time(s)") {
		t.Fatalf("job status:\n%s", out)
	}

	// Every task of a completed job, and the history survives a restart.
	if out := c.mustWard("job", "requeue", id); !strings.Contains(out, "4 task(s)") {
		t.Fatalf("requeue: %s", out)
	}
	c.waitJob(id, 30*time.Second)
	c.coord.kill9()
	c.restartCoordinator()
	check(c.job(id), map[int][]int{0: {0, 2}, 1: {0, 1, 2}, 2: {0, 2}, 3: {0, 2}})

	// A job still running is refused, with the fix.
	long := strings.TrimSpace(c.mustWard("submit", "--", "sleep", "30"))
	if _, errOut, code := c.ward("job", "requeue", long); code == 0 || !strings.Contains(errOut, "FAILED_PRECONDITION") || !strings.Contains(errOut, "ward job cancel") {
		t.Fatalf("requeue of a running job: %d %s", code, errOut)
	}
	c.mustWard("job", "cancel", long)

	// Clone with overrides and a new command.
	clone := strings.TrimSpace(c.mustWard("job", "clone", id, "--count", "2", "--env", "X=y", "--", "sh", "-c", "echo $X-{index}"))
	dc := c.waitJob(clone, 30*time.Second)
	if dc.State != api.JobCompleted || dc.CloneOf != id || dc.Spec.Count != 2 || dc.Spec.Env["X"] != "y" || dc.Spec.Argv[0] != "sh" {
		t.Fatalf("clone: %+v", dc.Job)
	}
	if logs := c.mustWard("logs", clone); !strings.Contains(logs, "y-1") {
		t.Fatalf("clone output: %s", logs)
	}
	// A plain clone is the same job again.
	plain := strings.TrimSpace(c.mustWard("job", "clone", id))
	dp := c.waitJob(plain, 30*time.Second)
	if dp.Spec.Count != 4 || strings.Join(dp.Spec.Argv, " ") != strings.Join(d.Spec.Argv, " ") || dp.State != api.JobCompleted {
		t.Fatalf("plain clone: %+v", dp.Job)
	}
	if _, errOut, code := c.ward("job", "clone", "999"); code == 0 || !strings.Contains(errOut, "NOT_FOUND") {
		t.Fatalf("clone of a missing job: %d %s", code, errOut)
	}
	// What clone reads of its source: the job alone, none of its tasks.
	hc := c.httpClient(certAndKey(t, c))
	resp, err := hc.Get("https://" + c.cluster + "/v1/jobs/" + id + "?tasks=none")
	if err != nil {
		t.Fatal(err)
	}
	var alone api.JobDetail
	err = json.NewDecoder(resp.Body).Decode(&alone)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(alone.Tasks) != 0 || alone.Spec.Count != 4 || alone.Counts[api.TaskCompleted] != 4 {
		t.Fatalf("GET ?tasks=none: %s %v %d tasks, spec count %d, counts %v", resp.Status, err, len(alone.Tasks), alone.Spec.Count, alone.Counts)
	}
	resp, err = hc.Get("https://" + c.cluster + "/v1/jobs/" + id + "?tasks=some")
	if err != nil {
		t.Fatal(err)
	}
	if e := decodeAPIError(t, resp); resp.StatusCode != http.StatusBadRequest || e.Code != api.CodeInvalidArgument || !strings.Contains(e.Fix, "tasks=none") {
		t.Fatalf("GET ?tasks=some: %s %+v", resp.Status, e)
	}
	kinds := map[string]int{}
	for _, e := range c.auditEvents() {
		kinds[e.Type]++
		if e.Type == "job.clone" && e.Detail["source"] != id {
			t.Errorf("job.clone audit without its source: %+v", e)
		}
	}
	if kinds["job.requeue"] != 2 || kinds["job.clone"] != 2 {
		t.Fatalf("audit: %v", kinds)
	}
}
