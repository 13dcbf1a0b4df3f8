package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What a new user meets in the first hour, command by command.
func TestFirstHourCLI(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--max-output-bytes", "4096")
	c.startAgent("n1", 2)

	t.Run("cancel of an ended job is not an error", func(t *testing.T) {
		c.mustWard("run", "--count", "2", "--", "true")
		out, errOut, code := c.ward("job", "cancel", "1")
		if code != 0 || !strings.Contains(out, "Job 1 already ended (completed") || !strings.Contains(out, "nothing to cancel") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		var res struct {
			State        string `json:"state"`
			AlreadyEnded bool   `json:"already_ended"`
		}
		c.wardJSON(&res, "job", "cancel", "1")
		if res.State != "completed" || !res.AlreadyEnded {
			t.Errorf("cancel -o json: %+v", res)
		}
	})
	t.Run("audit refuses an unknown type", func(t *testing.T) {
		out, errOut, code := c.ward("audit", "--type", "bogus")
		if code != 1 || out != "" || !strings.Contains(errOut, `--type "bogus" is not an audit event type`) || !strings.Contains(errOut, "session.open") || !strings.Contains(errOut, "code: INVALID_ARGUMENT") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for _, typ := range []string{"session", "session.open", "job.submit"} {
			out := c.mustWard("audit", "--type", typ)
			if !strings.Contains(out, "session.open") && !strings.Contains(out, "job.submit") {
				t.Errorf("audit --type %s:\n%s", typ, out)
			}
		}
	})
	t.Run("run says why tasks failed", func(t *testing.T) {
		out, errOut, code := c.ward("run", "--count", "7", "--", "./no-such-simulate", "--seed", "{index}")
		if code != 1 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for _, want := range []string{"7 of 7 task(s) did not succeed", "task 0 (attempt 1 on n1): could not start:", "no such file or directory",
			"task 4 (attempt 1 on n1)", "(2 more not shown)", "ward job status"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
		if strings.Contains(errOut, "task 5 ") {
			t.Errorf("more than 5 failures shown:\n%s", errOut)
		}
	})
	t.Run("run -o json ends with a summary", func(t *testing.T) {
		out, errOut, code := c.ward("run", "-o", "json", "--count", "2", "--", "sh", "-c", "echo out {index}; exit {index}")
		ls := lines(out)
		if code != 1 || len(ls) < 3 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		var sum struct {
			Summary   bool             `json:"summary"`
			Job       string           `json:"job"`
			State     string           `json:"state"`
			Tasks     int              `json:"tasks"`
			Succeeded int              `json:"succeeded"`
			Failed    int              `json:"failed"`
			Failures  []map[string]any `json:"failures"`
		}
		if err := jsonUnmarshal(ls[len(ls)-1], &sum); err != nil {
			t.Fatalf("last line is not JSON: %v\n%s", err, out)
		}
		if !sum.Summary || sum.State != "failed" || sum.Tasks != 2 || sum.Succeeded != 1 || sum.Failed != 1 || len(sum.Failures) != 1 ||
			sum.Failures[0]["reason"] != "exited with code 1" || sum.Failures[0]["task"] != 1.0 {
			t.Errorf("summary %+v\n%s", sum, out)
		}
		for _, l := range ls[:len(ls)-1] {
			if strings.Contains(l, `"summary"`) {
				t.Errorf("a summary before the last line:\n%s", out)
			}
		}
	})
	t.Run("output beyond the cap: marked, and kept with --output-dir", func(t *testing.T) {
		dir := t.TempDir()
		// 10,000 bytes of stdout against a 4,096-byte cap, and a line of stderr.
		script := "head -c 10000 /dev/zero | tr '\\0' x; echo err {index} >&2"
		out, errOut, code := c.ward("run", "--output-dir", dir, "--count", "2", "--", "sh", "-c", script)
		if code != 0 || strings.Contains(out, "xxxx") || !strings.Contains(errOut, "output of job") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for i := 0; i < 2; i++ {
			stdout, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("task-%d.stdout", i)))
			if err != nil || len(stdout) != 10000 || strings.Trim(string(stdout), "x") != "" {
				t.Errorf("task %d stdout: %d bytes, %v", i, len(stdout), err)
			}
			stderr, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("task-%d.stderr", i)))
			if string(stderr) != fmt.Sprintf("err %d\n", i) {
				t.Errorf("task %d stderr: %q", i, stderr)
			}
		}
		id := c.lastJobID()
		status := c.mustWard("job", "status", id)
		if !strings.Contains(status, "Output truncated: task(s) 0, 1") || !strings.Contains(status, "--max-output-bytes") {
			t.Errorf("job status:\n%s", status)
		}
		d := c.job(id)
		if d.MaxOutputBytes != 4096 || !d.Tasks[0].OutputTruncated || !d.Tasks[1].OutputTruncated {
			t.Errorf("job status -o json: max %d, truncated %v %v", d.MaxOutputBytes, d.Tasks[0].OutputTruncated, d.Tasks[1].OutputTruncated)
		}
		_, logErr, _ := c.ward("logs", id, "--task", "0")
		if !strings.Contains(logErr, "[0] [ward: output truncated: the coordinator keeps 4096 bytes per task (--max-output-bytes)") {
			t.Errorf("ward logs does not say where the output stops:\n%s", logErr)
		}
	})
	t.Run("completion offers nodes, jobs and flag values", func(t *testing.T) {
		out := c.mustWard("__complete", "node", "drain", "")
		if !strings.Contains(out, "n1\tready, 2 slots") {
			t.Errorf("node names:\n%s", out)
		}
		running := strings.TrimSpace(c.mustWard("submit", "--name", "long", "--", "sleep", "60"))
		out = c.mustWard("__complete", "job", "cancel", "")
		if !strings.Contains(out, running+"\tlong, ") || strings.Contains(out, "1\tcompleted") {
			t.Errorf("job IDs to cancel (only unfinished ones):\n%s", out)
		}
		if out = c.mustWard("__complete", "job", "status", ""); !strings.Contains(out, "1\tcompleted") {
			t.Errorf("job IDs:\n%s", out)
		}
		c.mustWard("job", "cancel", running)
		if out = c.mustWard("__complete", "run", "--priority", ""); !strings.Contains(out, "above-normal") {
			t.Errorf("--priority values:\n%s", out)
		}
	})
	t.Run("status", func(t *testing.T) {
		out := c.mustWard("status")
		for _, want := range []string{"cluster port:  " + c.cluster, "public port:   " + c.public, "nodes:         1, 1 connected", "insecure:      none"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
	})
}
