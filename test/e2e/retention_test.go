package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
)

// TestStagingRetention: staging_retention after a job ended, its staged
// inputs and outputs are deleted from the coordinator and the purge is
// audited; an input another job still uses stays until that job's own
// retention ran out; fetching the deleted outputs or requeueing the job
// is refused, saying why.
func TestStagingRetention(t *testing.T) {
	c := newCluster(t, "--staging-retention", "3s")
	c.startAgent("n1", 2)
	in := filepath.Join(c.dir, "shared.bin")
	content := []byte(strings.Repeat("shared input\n", 1000))
	if err := os.WriteFile(in, content, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	blobDir := filepath.Join(c.data, "staging", "sha256")
	blob := func(hexSum string) bool { _, err := os.Stat(filepath.Join(blobDir, hexSum)); return err == nil }
	outSum := sha256.Sum256([]byte("from a\n"))

	gate := filepath.Join(c.dir, "gate")
	b := strings.TrimSpace(c.mustWard("submit", "--input", in, "--output-file", "out.txt", "--",
		"sh", "-c", "while [ ! -e "+gate+" ]; do sleep 0.1; done; wc -c < shared.bin > out.txt"))
	a := strings.TrimSpace(c.mustWard("submit", "--input", in, "--output-file", "out.txt", "--", "sh", "-c", "echo 'from a' > out.txt"))
	if d := c.waitJob(a, 60*time.Second); d.State != api.JobCompleted {
		t.Fatalf("job a: %s", d.State)
	}
	// Within the retention, the outputs are there.
	c.mustWard("job", "output", a, "--to", filepath.Join(c.dir, "early"))
	if got, _ := os.ReadFile(filepath.Join(c.dir, "early", "task-0", "out.txt")); string(got) != "from a\n" {
		t.Fatalf("early fetch: %q", got)
	}

	purge := func(job string) (audit.Event, bool) {
		for _, e := range c.auditEvents() {
			if e.Type == "staging.purge" && e.Target == job {
				return e, true
			}
		}
		return audit.Event{}, false
	}
	waitFor(t, 60*time.Second, "job a's staged files to be purged", func() bool { _, ok := purge(a); return ok })
	ev, _ := purge(a)
	if ev.Detail["inputs"] != "1" || ev.Detail["outputs"] != "1" || ev.Detail["files_removed"] != "1" || ev.Detail["files_kept_in_use"] != "1" || ev.Detail["retention"] != "3s" {
		t.Fatalf("purge event of a: %+v", ev)
	}
	if blob(hex.EncodeToString(outSum[:])) {
		t.Fatal("a's output is still on the coordinator")
	}
	if !blob(hex.EncodeToString(sum[:])) {
		t.Fatal("the input job b still uses was deleted")
	}
	_, errOut, code := c.ward("job", "output", a, "--to", filepath.Join(c.dir, "late"))
	if code == 0 || !strings.Contains(errOut, "NOT_FOUND") || !strings.Contains(errOut, "staging_retention (3s)") {
		t.Fatalf("fetching purged outputs: exit %d\n%s", code, errOut)
	}
	_, errOut, code = c.ward("job", "requeue", a)
	if code == 0 || !strings.Contains(errOut, "FAILED_PRECONDITION") || !strings.Contains(errOut, "input files are gone") {
		t.Fatalf("requeueing a purged job: exit %d\n%s", code, errOut)
	}

	// b ends; after its own retention everything is gone.
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if d := c.waitJob(b, 60*time.Second); d.State != api.JobCompleted {
		t.Fatalf("job b: %s", d.State)
	}
	c.mustWard("job", "output", b, "--to", filepath.Join(c.dir, "b"))
	if got, _ := os.ReadFile(filepath.Join(c.dir, "b", "task-0", "out.txt")); strings.TrimSpace(string(got)) != "13000" {
		t.Fatalf("b's output: %q", got)
	}
	waitFor(t, 60*time.Second, "job b's staged files to be purged", func() bool { _, ok := purge(b); return ok })
	left, _ := os.ReadDir(blobDir)
	if len(left) != 0 {
		t.Fatalf("staged files left after every job's retention: %d", len(left))
	}
	// A purge is recorded once per job end, also across a restart: a new
	// job purged after the restart shows that passes ran meanwhile.
	c.coord.kill9()
	c.restartCoordinator()
	d := strings.TrimSpace(c.mustWard("submit", "--output-file", "out.txt", "--", "sh", "-c", "echo d > out.txt"))
	c.waitJob(d, 60*time.Second)
	waitFor(t, 60*time.Second, "job d's staged files to be purged", func() bool { _, ok := purge(d); return ok })
	for _, job := range []string{a, b} {
		n := 0
		for _, e := range c.auditEvents() {
			if e.Type == "staging.purge" && e.Target == job {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("job %s's purge was audited %d times", job, n)
		}
	}
}
