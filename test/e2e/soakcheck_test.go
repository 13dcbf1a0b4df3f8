package e2e

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// The fault soaks' tasks and checkers, shared by TestFaultSoak, the HA soak
// and the stop/resume test.

// loggedTaskScript is a bash task that writes its start and end to its
// agent's own log ($SOAK_LOG, set by startLoggedAgent; bash's clock, no
// extra process) around a sleep of sleepExpr seconds (a shell word), and
// prints done-JOB-INDEX, which the checker looks for in the stored output.
func loggedTaskScript(sleepExpr string) string {
	return `echo "S $WARD_JOB_ID $WARD_TASK_INDEX $WARD_ATTEMPT $EPOCHREALTIME" >> "$SOAK_LOG"; sleep ` + sleepExpr +
		`; echo "done-$WARD_JOB_ID-$WARD_TASK_INDEX"; echo "E $WARD_JOB_ID $WARD_TASK_INDEX $WARD_ATTEMPT $EPOCHREALTIME" >> "$SOAK_LOG"`
}

// loggedAgentArgs is the command line (for /usr/bin/env) of an agent whose
// tasks log to logs/NAME.log, joining with a new token from c the first
// time. extra goes after the agent's own flags.
func loggedAgentArgs(c *cluster, logs, name string, slots int, extra ...string) []string {
	args := []string{"SOAK_LOG=" + filepath.Join(logs, name+".log"), wardBin, "agent", "--data", c.agentDir(name), "--name", name,
		"--slots", fmt.Sprint(slots), "--kill-grace", "1s"}
	if _, err := os.Stat(filepath.Join(c.agentDir(name), "agent.json")); err != nil {
		args = append(args, "--join-file", c.writeJoinFile(c.token()))
	}
	return append(args, extra...)
}

// startLoggedAgent starts (or restarts) agent name with its task log, and
// with wait, waits until the coordinator lists it as ready.
func startLoggedAgent(t *testing.T, c *cluster, logs, name string, slots int, wait bool, extra ...string) *proc {
	t.Helper()
	p := startProcBin(t, "/usr/bin/env", c.dir, "agent-"+name, nil, loggedAgentArgs(c, logs, name, slots, extra...)...)
	c.agents[name] = p
	if wait {
		waitFor(t, 30*time.Second, "agent "+name, func() bool { n, ok := c.node(name); return ok && n.State == "ready" })
	}
	return p
}

// onceReport is what checkJobsOnce counted.
type onceReport struct {
	tasks, duplicates, lost, lostAttempts int
}

// checkJobsOnce checks that each task of the finished jobs completed
// exactly once, with its exit code, its node and its done- line in the
// stored output. lostAttempts counts attempts requeued after a fault (not
// a loss).
func checkJobsOnce(t *testing.T, c *cluster, details []api.JobDetail) onceReport {
	t.Helper()
	var r onceReport
	for _, d := range details {
		out := c.mustWard("logs", d.ID)
		for _, task := range d.Tasks {
			r.tasks++
			done := 0
			for _, a := range task.Attempts {
				if a.State == api.TaskLost {
					r.lostAttempts++
				}
				if a.State == api.TaskCompleted {
					done++
					if a.ExitCode == nil || *a.ExitCode != 0 || a.Node == "" {
						t.Errorf("job %s task %d: completed attempt without its result: %+v", d.ID, task.Index, a)
						r.lost++
					}
				}
			}
			switch {
			case done == 0:
				r.lost++
				t.Errorf("job %s task %d did not complete: %s %+v", d.ID, task.Index, task.State, task.Attempts)
			case done > 1:
				r.duplicates++
				t.Errorf("job %s task %d completed %d times", d.ID, task.Index, done)
			}
			if n := strings.Count(out, fmt.Sprintf("done-%s-%d\n", d.ID, task.Index)); n == 0 {
				r.lost++
				t.Errorf("job %s task %d: its output is missing", d.ID, task.Index)
			}
		}
	}
	return r
}

// soakTask is one attempt as the agents' own start and end lines tell it.
type soakTask struct {
	node       string
	attempt    int
	start, end float64 // seconds since the epoch; end is +Inf when unknown
}

// readTaskRuns reads the agents' task logs into runs by "JOB/INDEX". A run
// without its end line ends when its agent was killed (killed: agent →
// when), or else never, so a run that went on unseen counts as overlapping
// whatever ran after it.
func readTaskRuns(t *testing.T, logs string, agents []string, killed map[string][]time.Time) map[string][]*soakTask {
	t.Helper()
	runs := map[string][]*soakTask{}
	for _, a := range agents {
		f, err := os.Open(filepath.Join(logs, a+".log"))
		if os.IsNotExist(err) {
			continue // it ran nothing
		}
		if err != nil {
			t.Fatalf("agent %s's task log: %v", a, err)
		}
		open := map[string]*soakTask{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kind, job string
			var idx, attempt int
			var at float64
			if _, err := fmt.Sscanf(sc.Text(), "%s %s %d %d %f", &kind, &job, &idx, &attempt, &at); err != nil {
				t.Errorf("agent %s's task log: line %q: %v", a, sc.Text(), err)
				continue
			}
			key := fmt.Sprintf("%s/%d/%d", job, idx, attempt)
			switch kind {
			case "S":
				r := &soakTask{node: a, attempt: attempt, start: at, end: math.Inf(1)}
				// A task that never wrote its end died with its agent.
				for _, k := range killed[a] {
					if ks := float64(k.UnixNano()) / 1e9; ks >= at {
						r.end = ks
						break
					}
				}
				open[key] = r
				runs[fmt.Sprintf("%s/%d", job, idx)] = append(runs[fmt.Sprintf("%s/%d", job, idx)], r)
			case "E":
				if r := open[key]; r != nil {
					r.end = at
				}
			}
		}
		f.Close()
	}
	return runs
}

// checkNoOverlap fails the test for every task that ran twice at once (on
// two agents, or twice on one) and returns how many did, and how many runs
// were logged in all.
func checkNoOverlap(t *testing.T, runs map[string][]*soakTask) (overlaps, taskRuns int) {
	t.Helper()
	for key, rs := range runs {
		taskRuns += len(rs)
		sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
		for i := 1; i < len(rs); i++ {
			if rs[i].start < rs[i-1].end {
				overlaps++
				t.Errorf("task %s ran twice at once: attempt %d on %s [%.6f, %.6f] and attempt %d on %s from %.6f",
					key, rs[i-1].attempt, rs[i-1].node, rs[i-1].start, rs[i-1].end, rs[i].attempt, rs[i].node, rs[i].start)
			}
		}
	}
	return overlaps, taskRuns
}
