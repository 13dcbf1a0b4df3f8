package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// writeRandom writes n random bytes to path and returns their SHA-256 as
// sha256:<hex>.
func writeRandom(t *testing.T, path string, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// TestFileStaging: inputs reach each task's working directory intact
// (checked by the task itself), outputs come back to the coordinator and
// `ward job output` writes them, byte for byte, per task.
func TestFileStaging(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.startAgent("n1", 2)
	in := filepath.Join(c.dir, "data.bin")
	sum := writeRandom(t, in, 6<<20+123)
	script := filepath.Join(c.dir, "tool.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho tool-ran-$1\n"), 0o755)

	stdout, stderr, code := c.ward("run", "--count", "3", "--input", in, "--input", script+":bin/tool.sh",
		"--output-file", "out/*", "--output-file", "stamp.txt", "--",
		"sh", "-c", `sha256sum data.bin | cut -d' ' -f1; ./bin/tool.sh $0; mkdir out; cp data.bin out/copy.bin; echo task-$0 > out/n.txt; pwd > stamp.txt`, "{index}")
	if code != 0 {
		t.Fatalf("ward run with files: exit %d\n%s\n%s", code, stdout, stderr)
	}
	hexSum := strings.TrimPrefix(sum, "sha256:")
	for i := range 3 {
		for _, want := range []string{"[" + strconv.Itoa(i) + "] " + hexSum, "[" + strconv.Itoa(i) + "] tool-ran-" + strconv.Itoa(i)} {
			if !strings.Contains(stdout, want) {
				t.Errorf("task %d did not see its inputs intact: want %q in\n%s", i, want, stdout)
			}
		}
	}
	id := c.lastJobID()

	var files []api.OutputFile
	c.wardJSON(&files, "job", "output", id, "--to", filepath.Join(c.dir, "ignored"))
	if len(files) != 9 {
		t.Fatalf("job output listed %d files, want 3 per task: %+v", len(files), files)
	}
	to := filepath.Join(c.dir, "fetched")
	c.mustWard("job", "output", id, "--to", to)
	for i := range 3 {
		dir := filepath.Join(to, "task-"+strconv.Itoa(i))
		if got := fileSum(t, filepath.Join(dir, "out", "copy.bin")); got != sum {
			t.Errorf("task %d's out/copy.bin came back as %s, want %s", i, got, sum)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "out", "n.txt")); string(b) != "task-"+strconv.Itoa(i)+"\n" {
			t.Errorf("task %d's out/n.txt = %q", i, b)
		}
		// The task ran in a scratch directory of the agent's, removed
		// once its files were sent.
		b, _ := os.ReadFile(filepath.Join(dir, "stamp.txt"))
		wd := strings.TrimSpace(string(b))
		if !strings.HasPrefix(wd, c.agentDir("n1")) {
			t.Errorf("task %d ran in %q, want a directory under the agent's data directory", i, wd)
		}
		if _, err := os.Stat(wd); !os.IsNotExist(err) {
			t.Errorf("task %d's scratch directory %s is still there: %v", i, wd, err)
		}
	}
	one := filepath.Join(c.dir, "one")
	c.mustWard("job", "output", id, "--task", "2", "--to", one)
	if got := fileSum(t, filepath.Join(one, "out", "copy.bin")); got != sum {
		t.Errorf("--task 2: out/copy.bin is %s, want %s", got, sum)
	}
	// Kept across a coordinator restart.
	c.coord.kill9()
	c.restartCoordinator()
	again := filepath.Join(c.dir, "again")
	c.mustWard("job", "output", id, "--task", "1", "--to", again)
	if got := fileSum(t, filepath.Join(again, "out", "copy.bin")); got != sum {
		t.Errorf("after a restart: out/copy.bin is %s, want %s", got, sum)
	}
	if !c.hasAudit("file.upload", "ok") || !c.hasAudit("file.download", "ok") {
		t.Errorf("no file.upload or file.download audit events")
	}

	// A job of no files dispatches as before, with no working directory
	// made for it.
	if out := c.mustWard("run", "--", "pwd"); strings.Contains(out, c.agentDir("n1")) {
		t.Errorf("a job with no files ran in the agent's work directory: %s", out)
	}
}

// TestStagingChecksumMismatch: an input whose bytes changed on the
// coordinator's disk is refused by the agent (CHECKSUM_MISMATCH), the
// attempt fails and is retried within --retries; an upload whose bytes do
// not match its checksum is refused and audited.
func TestStagingChecksumMismatch(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.startAgent("n1", 1)
	in := filepath.Join(c.dir, "in.bin")
	sum := writeRandom(t, in, 1<<20)
	c.mustWard("run", "--input", in, "--", "true")

	// Flip one byte of the stored copy, keeping its size.
	blob := filepath.Join(c.data, "staging", "sha256", strings.TrimPrefix(sum, "sha256:"))
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatalf("the coordinator's copy of the input: %v", err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(blob, b, 0o600)

	_, stderr, code := c.ward("run", "--retries", "1", "--input", in, "--", "true")
	if code == 0 {
		t.Fatalf("a job whose input was corrupted succeeded:\n%s", stderr)
	}
	d := c.job(c.lastJobID())
	if d.State != api.JobFailed || len(d.Tasks) != 1 {
		t.Fatalf("job %s, want failed", d.State)
	}
	task := d.Tasks[0]
	if len(task.Attempts) != 2 {
		t.Fatalf("%d attempts, want 2 (the first and one retry): %+v", len(task.Attempts), task.Attempts)
	}
	for _, a := range task.Attempts {
		if !strings.Contains(a.Reason, "CHECKSUM_MISMATCH") || !strings.Contains(a.Reason, sum) {
			t.Errorf("attempt %d ended %q, want CHECKSUM_MISMATCH naming %s", a.N, a.Reason, sum)
		}
	}
	if !strings.Contains(stderr, "CHECKSUM_MISMATCH") {
		t.Errorf("ward run did not say why:\n%s", stderr)
	}
	// The agent's refusals are in the coordinator's audit log.
	refusals := 0
	waitFor(t, 10*time.Second, "an audit event for each attempt's refusal", func() bool {
		refusals = 0
		for _, ev := range c.auditEvents() {
			if ev.Type == "file.checksum_mismatch" && strings.HasSuffix(ev.Actor, "/agent/n1") && strings.HasPrefix(ev.Target, d.ID+"/0/") {
				refusals++
			}
		}
		return refusals >= 2
	})
	if refusals != 2 {
		t.Errorf("%d file.checksum_mismatch audit events from agent n1 for job %s, want one per attempt (2)", refusals, d.ID)
	}

	// An upload whose bytes are not those of the checksum it names.
	hc := c.httpClient(certAndKey(t, c))
	req, _ := http.NewRequest("PUT", "https://"+c.cluster+"/v1/staging/files/"+sum+"?name=forged.bin", bytes.NewReader([]byte("not the file")))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if e := decodeAPIError(t, resp); resp.StatusCode != http.StatusUnprocessableEntity || e.Code != api.CodeChecksumMismatch {
		t.Errorf("forged upload: %d %s %q, want 422 CHECKSUM_MISMATCH", resp.StatusCode, e.Code, e.Message)
	}
	if !c.hasAudit("file.checksum_mismatch", string(api.CodeChecksumMismatch)) {
		t.Errorf("the forged upload is not in the audit log")
	}
	// An agent may fetch only its own attempts' inputs.
	dir := c.agentDir("n1")
	ahc := c.httpClient(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"))
	resp, err = ahc.Get("https://" + c.cluster + "/v1/staging/attempts/" + d.ID + "/0/1/inputs/0")
	if err != nil {
		t.Fatal(err)
	}
	if e := decodeAPIError(t, resp); e.Code != api.CodeFailedPrecondition {
		t.Errorf("fetching an ended attempt's input: %d %s, want FAILED_PRECONDITION", resp.StatusCode, e.Code)
	}
}

// TestStagingLimits: a file over staging_max_file_bytes is refused before
// the job exists, and outputs over staging_max_job_bytes fail the task
// with the setting named.
func TestStagingLimits(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--staging-max-file-bytes", "2097152", "--staging-max-job-bytes", "3145728")
	c.startAgent("n1", 1)
	big := filepath.Join(c.dir, "big.bin")
	writeRandom(t, big, 2<<20+1)
	before := c.lastJobID()
	_, stderr, code := c.ward("run", "--input", big, "--", "true")
	if code == 0 || !strings.Contains(stderr, "FILE_TOO_LARGE") || !strings.Contains(stderr, "staging_max_file_bytes") {
		t.Errorf("an input over the limit: exit %d, want FILE_TOO_LARGE naming staging_max_file_bytes:\n%s", code, stderr)
	}
	if c.lastJobID() != before {
		t.Errorf("a job was submitted despite the refused input")
	}

	// Two outputs of 2 MiB: the second passes staging_max_job_bytes.
	_, stderr, code = c.ward("run", "--output-file", "*.bin", "--",
		"sh", "-c", "head -c 2000000 /dev/zero > a.bin; head -c 2000000 /dev/zero > b.bin")
	if code == 0 {
		t.Fatalf("outputs over the job's limit: exit 0\n%s", stderr)
	}
	d := c.job(c.lastJobID())
	a := d.Tasks[0].Attempts
	if d.Tasks[0].State != api.TaskFailed || len(a) != 1 || !strings.Contains(a[0].Reason, "FILE_TOO_LARGE") || !strings.Contains(a[0].Reason, "staging_max_job_bytes") {
		t.Errorf("task %s, attempts %+v: want one failed attempt with FILE_TOO_LARGE naming staging_max_job_bytes", d.Tasks[0].State, a)
	}
	var files []api.OutputFile
	c.wardJSON(&files, "job", "output", d.ID, "--to", filepath.Join(c.dir, "out"))
	if len(files) != 1 || files[0].Path != "a.bin" || files[0].Size != 2000000 {
		t.Errorf("kept outputs %+v, want a.bin only (2000000 bytes)", files)
	}
}
