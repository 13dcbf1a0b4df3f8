package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// Ctrl-C on ward run leaves the job running and says how to follow or
// cancel it; a second Ctrl-C within 2 s cancels it.
func TestRunCtrlC(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.startAgent("n1", 2)
	startRun := func(name string) (*proc, string) {
		t.Helper()
		before := c.lastJobID()
		p := startProc(t, c.dir, name, nil, "run", "--context", c.ctxPath, "--", "sleep", "300")
		var id string
		waitFor(t, 20*time.Second, "the job to run", func() bool {
			if id = c.lastJobID(); id == before {
				return false
			}
			return c.job(id).Counts[api.TaskRunning] == 1
		})
		return p, id
	}

	p, id := startRun("run-once")
	p.interrupt()
	if code := p.wait(10 * time.Second); code != 130 {
		t.Fatalf("exit %d after Ctrl-C, want 130\n%s", code, p.stderrText())
	}
	for _, want := range []string{"stopped following job " + id + "; it keeps running", "ward logs " + id + " -f", "ward job cancel " + id, "Press Ctrl-C again within 2s"} {
		if !strings.Contains(p.stderrText(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, p.stderrText())
		}
	}
	if d := c.job(id); d.State != api.JobRunning {
		t.Fatalf("job %s is %s after one Ctrl-C; it must keep running", id, d.State)
	}
	c.mustWard("job", "cancel", id)

	p, id = startRun("run-twice")
	p.interrupt()
	waitFor(t, 10*time.Second, "the first Ctrl-C's message", func() bool { return strings.Contains(p.stderrText(), "Press Ctrl-C again") })
	p.interrupt()
	if code := p.wait(10 * time.Second); code != 130 {
		t.Fatalf("exit %d after two Ctrl-C, want 130\n%s", code, p.stderrText())
	}
	if !strings.Contains(p.stderrText(), "job "+id+" canceled") {
		t.Errorf("stderr:\n%s", p.stderrText())
	}
	if d := c.waitJob(id, 20*time.Second); d.State != api.JobCanceled {
		t.Fatalf("job %s ended %s after two Ctrl-C, want canceled", id, d.State)
	}
}
