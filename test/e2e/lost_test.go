package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// sweep is a 500-task job whose tasks sleep 10–50 ms and print their index.
// Each task's shell carries sweepMarker as its $0, so a test can find the
// task processes it started (pgrep -f sweepMarker) and no one else's.
var sweep = []string{"submit", "--count", "500", "--", "sh", "-c", "sleep 0.0$(( {index} % 5 + 1 )); echo idx-{index}", sweepMarker}

// sweepMarker names this test process's sweep tasks: other test runs on
// the same machine run sweeps too.
var sweepMarker = fmt.Sprintf("ward-e2e-sweep-%d", os.Getpid())

func completedOnce(t *testing.T, d api.JobDetail) {
	t.Helper()
	if d.State != api.JobCompleted || d.Counts[api.TaskCompleted] != len(d.Tasks) {
		t.Fatalf("job %s: state %s counts %v", d.ID, d.State, d.Counts)
	}
	for _, task := range d.Tasks {
		n := 0
		for _, a := range task.Attempts {
			if a.State == api.TaskCompleted {
				n++
			}
		}
		if n != 1 || task.State != api.TaskCompleted {
			t.Fatalf("task %d: %d completed attempts, state %s: %+v", task.Index, n, task.State, task.Attempts)
		}
	}
}

// logsAtMostOnce checks that no index printed twice.
func logsAtMostOnce(t *testing.T, c *cluster, id string) int {
	t.Helper()
	out := c.mustWard("logs", id)
	seen := map[string]int{}
	for _, l := range lines(out) {
		seen[l]++
		if seen[l] > 1 {
			t.Fatalf("output line %q appears twice", l)
		}
	}
	return len(seen)
}

func waitCompleted(t *testing.T, c *cluster, id string, n int) {
	waitFor(t, 60*time.Second, fmt.Sprintf("%d completed tasks", n), func() bool {
		out, _, code := c.ward("job", "status", id, "-o", "json")
		var d api.JobDetail
		return code == 0 && json.Unmarshal([]byte(out), &d) == nil && d.Counts[api.TaskCompleted] >= n
	})
}

// Property 1: kill -9 the coordinator mid-run and restart it. Tasks keep
// running on their agents, their results and their output arrive after the
// reconnect, and the job completes with each index exactly once and every
// task's output kept.
func TestCoordinatorCrashLosesNothing(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "60s")
	c.startAgent("a", 4)
	c.startAgent("b", 4)
	id := strings.TrimSpace(c.mustWard(sweep...))
	waitCompleted(t, c, id, 100)
	// Stop the coordinator before killing it: tasks on the agents go on
	// finishing, and the output and results the agents write meanwhile
	// reach its socket buffers, unread, and die with it. The agents must
	// send them again.
	if err := c.coord.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // not a synchronisation: tasks finish meanwhile
	c.coord.kill9()
	c.restartCoordinator()
	d := c.waitJob(id, 90*time.Second)
	completedOnce(t, d)
	// Nothing ran twice. An assignment committed just before the kill but
	// never delivered comes back as lost ("reconnected without it") and is
	// requeued; that attempt never ran.
	for _, task := range d.Tasks {
		for _, a := range task.Attempts {
			if a.State != api.TaskCompleted && (a.State != api.TaskLost || !strings.Contains(a.Reason, "reconnected without it") || a.ExitCode != nil) {
				t.Errorf("task %d has an extra attempt that is not an undelivered assignment: %+v", task.Index, a)
			}
		}
	}
	// The results finished while the coordinator was stopped were sent
	// again after the restart: in the hello, or right after their output
	// (an agent holds a result back until its output went first).
	carried := 0
	for _, name := range []string{"a", "b"} {
		for _, m := range regexp.MustCompile(`results_(?:resent|after_output)=(\d+)`).FindAllStringSubmatch(c.agents[name].stderrText(), -1) {
			n, _ := strconv.Atoi(m[1])
			carried += n
		}
	}
	if carried == 0 {
		t.Error("no result was sent again after the restart")
	}
	if n := logsAtMostOnce(t, c, id); n != 500 {
		t.Errorf("%d of 500 task outputs kept; a completed task must keep the output its agent sent", n)
	}
}

// Property 2: kill -9 an agent mid-run. Its tasks become lost, are
// requeued and finish on the other agent; the attempts are visible.
func TestAgentCrashRequeues(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "1s")
	c.startAgent("a", 4)
	c.startAgent("b", 4)
	id := strings.TrimSpace(c.mustWard(sweep...))
	waitCompleted(t, c, id, 100)
	c.agents["a"].kill9()
	d := c.waitJob(id, 90*time.Second)
	completedOnce(t, d)
	moved := 0
	for _, task := range d.Tasks {
		if n := len(task.Attempts); n > 1 {
			first, last := task.Attempts[0], task.Attempts[n-1]
			if first.Node != "a" || first.State != api.TaskLost || last.Node != "b" || last.State != api.TaskCompleted {
				t.Errorf("task %d attempts: %+v", task.Index, task.Attempts)
			}
			if !strings.Contains(first.Reason, "agent lost") {
				t.Errorf("task %d: lost attempt reason %q", task.Index, first.Reason)
			}
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no task was requeued after the agent died")
	}
	human := c.mustWard("job", "status", id)
	if !strings.Contains(human, "lost") || !strings.Contains(human, "agent lost") {
		t.Errorf("ward job status does not show the lost attempts:\n%s", human)
	}
	// The dead agent's task processes died with it.
	if out, _ := exec.Command("pgrep", "-f", sweepMarker).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("task processes outlived their agent: %s", out)
	}
}

// Property 3: an agent restarted with its data directory reconnects with
// its identity, without a token, and the coordinator reconciles at once.
func TestAgentRestartReconciles(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "5m")
	c.startAgent("a", 2)
	c.startAgent("b", 2)
	before, _ := c.node("a")
	id := strings.TrimSpace(c.mustWard("submit", "--count", "4", "--", "sleep", "300"))
	waitFor(t, 20*time.Second, "4 running tasks", func() bool {
		d := c.job(id)
		return d.Counts[api.TaskRunning] == 4
	})
	tokens := c.mustWard("token", "ls", "-o", "json")
	c.agents["a"].kill9()
	c.startAgent("a", 2) // same data dir: no --join-file this time
	if args := strings.Join(c.agents["a"].cmd.Args, " "); strings.Contains(args, "--join") {
		t.Fatalf("the restart used a token: %s", args)
	}
	after, _ := c.node("a")
	if after.CertSerial != before.CertSerial {
		t.Fatalf("the agent came back with another certificate: %s → %s", before.CertSerial, after.CertSerial)
	}
	if c.mustWard("token", "ls", "-o", "json") != tokens {
		t.Fatal("the restart consumed a token")
	}
	// Well before the 5-minute lost timeout, a's two tasks are lost and
	// requeued: the hello said it runs nothing.
	waitFor(t, 10*time.Second, "a's tasks to be requeued", func() bool {
		d := c.job(id)
		requeued := 0
		for _, task := range d.Tasks {
			if len(task.Attempts) == 2 && task.Attempts[0].Node == "a" && task.Attempts[0].State == api.TaskLost &&
				strings.Contains(task.Attempts[0].Reason, "reconnected without it") {
				requeued++
			}
		}
		return requeued == 2
	})
	c.mustWard("job", "cancel", id)
	if d := c.waitJob(id, 20*time.Second); d.State != api.JobCanceled {
		t.Fatalf("job ended %s", d.State)
	}
}

// Property 4: a result delivered twice is recorded once; a late result
// from an attempt already declared lost is recorded on that attempt and
// does not complete the task twice.
func TestNoDuplicateResults(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "1s")
	f := newScriptedAgent(t, c, "f")
	f.connect(api.Hello{})
	id := strings.TrimSpace(c.mustWard("submit", "--", "true"))
	var as api.Assign
	f.expect(api.FrameAssign, &as)
	ref := as.Tasks[0]
	res := result(ref, 0)
	f.send(api.FrameResults, api.Results{Results: []api.TaskResult{res, res}})
	f.send(api.FrameResults, api.Results{Results: []api.TaskResult{res}})
	var ack api.Ack
	f.expect(api.FrameAck, &ack)
	d := c.waitJob(id, 10*time.Second)
	// Again after a reconnect, carried in the hello.
	f.close()
	f.connect(api.Hello{Finished: []api.TaskResult{res}})
	f.expect(api.FrameAck, &ack)
	d = c.job(id)
	if d.Counts[api.TaskCompleted] != 1 || len(d.Tasks[0].Attempts) != 1 || d.State != api.JobCompleted {
		t.Fatalf("after duplicate deliveries: %+v", d)
	}

	// A late result: the attempt is lost while f is away, the retry runs
	// on g, then f comes back with its result.
	id2 := strings.TrimSpace(c.mustWard("submit", "--", "true"))
	f.expect(api.FrameAssign, &as)
	lateRef := as.Tasks[0]
	f.close()
	waitFor(t, 10*time.Second, "the attempt to be declared lost", func() bool {
		d := c.job(id2)
		return len(d.Tasks[0].Attempts) == 1 && d.Tasks[0].Attempts[0].State == api.TaskLost
	})
	g := newScriptedAgent(t, c, "g")
	g.connect(api.Hello{})
	g.expect(api.FrameAssign, &as)
	if as.Tasks[0].Attempt != 2 {
		t.Fatalf("retry is attempt %d", as.Tasks[0].Attempt)
	}
	g.send(api.FrameResults, api.Results{Results: []api.TaskResult{result(as.Tasks[0], 0)}})
	g.expect(api.FrameAck, &ack)
	c.waitJob(id2, 10*time.Second)
	f.connect(api.Hello{Finished: []api.TaskResult{result(lateRef, 7)}})
	f.expect(api.FrameAck, &ack)
	d = c.job(id2)
	a1 := d.Tasks[0].Attempts[0]
	if d.Counts[api.TaskCompleted] != 1 || d.State != api.JobCompleted || len(d.Tasks[0].Attempts) != 2 {
		t.Fatalf("late result changed the task: %+v", d)
	}
	if a1.State != api.TaskLost || !a1.Late || a1.ExitCode == nil || *a1.ExitCode != 7 {
		t.Fatalf("late result not recorded on the lost attempt: %+v", a1)
	}
	// And it survives a restart.
	c.coord.kill9()
	c.restartCoordinator()
	d = c.job(id2)
	if a := d.Tasks[0].Attempts[0]; !a.Late || a.ExitCode == nil || *a.ExitCode != 7 || d.Counts[api.TaskCompleted] != 1 {
		t.Fatalf("after restart: %+v", d)
	}
}

// Property 5: bad input gets a clear error and leaves nothing half written.
func TestBadJobInput(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 1)
	first := strings.TrimSpace(c.mustWard("submit", "--", "true"))
	hc := c.httpClient(certAndKey(t, c))
	post := func(body string) *api.Error {
		resp, err := hc.Post("https://"+c.cluster+"/v1/jobs", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode/100 == 2 {
			t.Fatalf("accepted %.80s", body)
		}
		return decodeAPIError(t, resp)
	}
	bigArg := strings.Repeat("x", api.MaxArgBytes+1)
	manyArgs, _ := json.Marshal(append([]string{"echo"}, make([]string, api.MaxArgs+1)...))
	tests := []struct {
		name string
		body string
		code api.Code
		msg  string
	}{
		{"not JSON", `{"argv": [`, api.CodeInvalidArgument, "ends in the middle of its JSON value"},
		{"argv not a list", `{"argv": "echo hi"}`, api.CodeInvalidArgument, `key "argv" must be []string`},
		{"trailing data", `{"argv": ["true"]} {"argv": ["rm"]}`, api.CodeInvalidArgument, "goes on after its value"},
		{"invalid UTF-8", "{\"argv\": [\"echo\", \"caf\xe9\"]}", api.CodeInvalidArgument, "not valid UTF-8"},
		{"unknown field", `{"argv": ["true"], "cuont": 3}`, api.CodeInvalidArgument, "cuont"},
		{"no command", `{"argv": []}`, api.CodeInvalidArgument, "no command"},
		{"negative count", `{"argv": ["true"], "count": -5}`, api.CodeInvalidArgument, "-5"},
		{"bad priority", `{"argv": ["true"], "priority": "urgent"}`, api.CodeInvalidArgument, "urgent"},
		{"oversized argument", `{"argv": ["echo", "` + bigArg + `"]}`, api.CodeJobTooLarge, "limit"},
		{"too many arguments", `{"argv": ` + string(manyArgs) + `}`, api.CodeJobTooLarge, "arguments"},
		{"oversized body", `{"argv": ["echo", "` + strings.Repeat("y", 3<<20) + `"]}`, api.CodeJobTooLarge, "over max_job_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := post(tt.body)
			if e.Code != tt.code || !strings.Contains(e.Message, tt.msg) || e.Fix == "" {
				t.Fatalf("got %s %q (fix %q)", e.Code, e.Message, e.Fix)
			}
		})
	}
	for _, args := range [][]string{{"job", "status", "9999"}, {"job", "cancel", "9999"}, {"logs", "9999"}} {
		_, errOut, code := c.ward(args...)
		if code == 0 || !strings.Contains(errOut, "NOT_FOUND") || !strings.Contains(errOut, "no job with ID 9999") {
			t.Errorf("ward %v: exit %d, %s", args, code, errOut)
		}
	}
	if _, errOut, code := c.ward("run", "--count", "-1", "--", "true"); code == 0 || !strings.Contains(errOut, "task count -1") {
		t.Errorf("negative count from the CLI: %d %s", code, errOut)
	}
	// Nothing was half written: one job, and the next ID follows it.
	var jobs []api.Job
	c.wardJSON(&jobs, "job", "ls")
	if len(jobs) != 1 {
		t.Fatalf("%d jobs after bad input", len(jobs))
	}
	next := strings.TrimSpace(c.mustWard("submit", "--", "true"))
	if n, _ := strconv.Atoi(first); next != strconv.Itoa(n+1) {
		t.Fatalf("next job ID %s after %s", next, first)
	}
	c.coord.kill9()
	c.restartCoordinator()
	jobs = nil
	c.wardJSON(&jobs, "job", "ls")
	if len(jobs) != 2 {
		t.Fatalf("%d jobs after restart", len(jobs))
	}
}

func certAndKey(t *testing.T, c *cluster) (string, string) {
	t.Helper()
	return contextCertAndKey(t, c.ctxPath)
}

// contextCertAndKey writes the certificate and key of a CLI context file to
// files of their own.
func contextCertAndKey(t *testing.T, ctxPath string) (string, string) {
	t.Helper()
	ctx := map[string]any{}
	b, err := os.ReadFile(ctxPath)
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &ctx)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "ctx.crt"), filepath.Join(dir, "ctx.key")
	os.WriteFile(cert, []byte(ctx["cert_pem"].(string)), 0o600)
	os.WriteFile(key, []byte(ctx["key_pem"].(string)), 0o600)
	return cert, key
}

var _ = http.StatusOK
