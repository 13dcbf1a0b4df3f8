package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// failsTwoOfSix is a job of six tasks that each print a line; tasks 2 and 4
// exit 1.
var failsTwoOfSix = []string{"--count", "6", "--", "sh", "-c", `echo line-$0; test $0 -ne 2 -a $0 -ne 4`, "{index}"}

// progressRe reads the numbers of a progress line.
var progressRe = regexp.MustCompile(`job (\d+): (\d+)/(\d+) done, (\d+) failed, (\d+) running, (\d+) queued \| ([0-9.]+) tasks/s \| ETA (\S+)`)

// TestRunProgressOnTerminal: ward run under a real terminal (a pty from
// script(1)) draws a live progress line on stderr and prints only the
// failed tasks' output; -o all prints every task's. On a pipe it prints
// every task's output and no line, as before.
func TestRunProgressOnTerminal(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script(1) (Debian bsdutils) is needed to give ward a terminal: %v", err)
	}
	c := newCluster(t)
	c.startAgent("n1", 3)

	onPty := func(args ...string) (string, int) {
		t.Helper()
		quoted := []string{shellQuote(wardBin)}
		for _, a := range args {
			quoted = append(quoted, shellQuote(a))
		}
		cmd := exec.Command("script", "-qefc", strings.Join(quoted, " "), "/dev/null")
		cmd.Env = append(os.Environ(), "WARD_CONTEXT="+c.ctxPath, "TERM=xterm")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Run()
		return strings.ReplaceAll(out.String(), "\r\n", "\n"), cmd.ProcessState.ExitCode()
	}

	out, code := onPty(append([]string{"run"}, failsTwoOfSix...)...)
	if code != 1 {
		t.Fatalf("exit %d on a terminal, want 1 (two tasks failed)\n%q", code, out)
	}
	for _, want := range []string{"[2] line-2\n", "[4] line-4\n", "\r\x1b[K"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out)
		}
	}
	for _, i := range []string{"0", "1", "3", "5"} {
		if strings.Contains(out, "line-"+i) {
			t.Errorf("terminal output has task %s's output, which succeeded (only failed tasks' output is printed):\n%q", i, out)
		}
	}
	last := lastProgress(t, out)
	if got := last[2:7]; strings.Join(got, " ") != "4 6 2 0 0" {
		t.Errorf("last progress line %q: done/total/failed/running/queued = %v, want 4 6 2 0 0", last[0], got)
	}
	if last[8] != "0s" {
		t.Errorf("last progress line %q: ETA %s, want 0s", last[0], last[8])
	}

	out, code = onPty(append([]string{"run", "-o", "all"}, failsTwoOfSix...)...)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%q", code, out)
	}
	for i := range 6 {
		if want := "[" + strconv.Itoa(i) + "] line-" + strconv.Itoa(i) + "\n"; !strings.Contains(out, want) {
			t.Errorf("-o all on a terminal lacks %q:\n%q", want, out)
		}
	}
	if last := lastProgress(t, out); last[2] != "4" || last[4] != "2" {
		t.Errorf("-o all: last progress line %q, want 4 done and 2 failed", last[0])
	}

	// A pipe: as before, every task's output and no progress line.
	stdout, stderr, code := c.ward(append([]string{"run"}, failsTwoOfSix...)...)
	if code != 1 {
		t.Fatalf("exit %d on a pipe, want 1\n%s", code, stderr)
	}
	if n := strings.Count(stdout, "line-"); n != 6 {
		t.Errorf("a pipe got %d tasks' output, want all 6:\n%s", n, stdout)
	}
	if progressRe.MatchString(stderr) || strings.Contains(stderr, "\x1b[K") {
		t.Errorf("a pipe got a progress line:\n%q", stderr)
	}
}

// TestProgressRateAndWatch: the figures of the progress line (with
// --progress on where stderr is a pipe: one plain line per change) are the
// job's; the rate is within what the slots allow and the ETA agrees with
// it; ward job status --watch follows a job to its end, as lines or as
// JSON, with the failed tasks' indexes.
func TestProgressRateAndWatch(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.startAgent("n1", 4)
	// 40 tasks of 0.5 s on 4 slots: at most 8 tasks/s, about 5 s.
	stdout, stderr, code := c.ward("run", "--progress", "on", "-o", "failed", "--count", "40", "--", "sleep", "0.5")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("-o failed printed output of tasks that succeeded: %q", stdout)
	}
	ms := progressRe.FindAllStringSubmatch(stderr, -1)
	if len(ms) < 2 {
		t.Fatalf("want a progress line at least every 2 s and one at the end, got %d:\n%s", len(ms), stderr)
	}
	sawRate := false
	for _, m := range ms {
		done, _ := strconv.Atoi(m[2])
		failed, _ := strconv.Atoi(m[4])
		running, _ := strconv.Atoi(m[5])
		queued, _ := strconv.Atoi(m[6])
		if m[3] != "40" || failed != 0 || running > 4 || done+running+queued != 40 {
			t.Errorf("progress line %q: counts do not add up to 40 tasks on 4 slots", m[0])
		}
		rate, _ := strconv.ParseFloat(m[7], 64)
		if rate > 8.5 {
			t.Errorf("progress line %q: rate %.2f tasks/s, more than 4 slots of 0.5 s tasks allow (8/s)", m[0], rate)
		}
		if rate > 0 && done < 40 {
			sawRate = true
			eta, err := parseETA(m[8])
			if err != nil {
				t.Fatalf("progress line %q: ETA: %v", m[0], err)
			}
			want := float64(40-done) / rate
			if eta < want-1 || eta > want+1 {
				t.Errorf("progress line %q: ETA %.0fs, want %d tasks left at %.2f/s = %.1fs", m[0], eta, 40-done, rate, want)
			}
		}
	}
	if !sawRate {
		t.Errorf("no progress line while the job ran showed a rate:\n%s", stderr)
	}
	if last := ms[len(ms)-1]; last[2] != "40" || last[8] != "0s" {
		t.Errorf("last progress line %q, want 40 done, ETA 0s", last[0])
	}

	// --watch on a job running in the background.
	id := strings.TrimSpace(c.mustWard(append([]string{"submit"}, failsTwoOfSix...)...))
	stdout, stderr, code = c.ward("job", "status", id, "--watch", "--progress", "on", "-o", "failed")
	if code != 1 {
		t.Fatalf("job status --watch: exit %d, want 1 (two tasks failed)\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "[2] line-2") || !strings.Contains(stdout, "[4] line-4") || strings.Contains(stdout, "line-0") {
		t.Errorf("--watch -o failed stdout, want tasks 2 and 4's output only:\n%s", stdout)
	}
	if !strings.Contains(stdout, "Job "+id+"  FAILED") {
		t.Errorf("--watch did not end with the job's status:\n%s", stdout)
	}
	if m := progressRe.FindAllStringSubmatch(stderr, -1); len(m) == 0 || m[len(m)-1][2] != "4" || m[len(m)-1][4] != "2" {
		t.Errorf("--watch progress, want a last line with 4 done and 2 failed:\n%s", stderr)
	}
	stdout, _, code = c.ward("job", "status", id, "--watch", "-o", "json")
	if code != 1 {
		t.Fatalf("--watch -o json: exit %d, want 1", code)
	}
	ls := lines(stdout)
	var pr api.JobProgress
	if err := jsonUnmarshal(ls[len(ls)-1], &pr); err != nil {
		t.Fatalf("--watch -o json: %v\n%s", err, stdout)
	}
	if pr.State != api.JobFailed || pr.Tasks != 6 || pr.Failed != 2 || pr.Counts[api.TaskCompleted] != 4 ||
		len(pr.FailedTasks) != 2 || pr.FailedTasks[0] != 2 || pr.FailedTasks[1] != 4 || len(pr.Failures) != 2 {
		t.Errorf("--watch -o json last line %+v, want failed, 4 completed, failed tasks [2 4] with their failures", pr)
	}
	if _, stderr, code := c.ward("job", "status", id, "-o", "all"); code == 0 || !strings.Contains(stderr, "--watch") {
		t.Errorf("-o all without --watch: exit %d, want a refusal naming --watch:\n%s", code, stderr)
	}
}

// lastProgress is the last progress line in out, split into its numbers.
func lastProgress(t *testing.T, out string) []string {
	t.Helper()
	ms := progressRe.FindAllStringSubmatch(out, -1)
	if len(ms) == 0 {
		t.Fatalf("no progress line in:\n%q", out)
	}
	return ms[len(ms)-1]
}

// parseETA reads an ETA the progress line prints, in seconds.
func parseETA(s string) (float64, error) {
	if s == "-" {
		return -1, nil
	}
	d, err := time.ParseDuration(s)
	return d.Seconds(), err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
