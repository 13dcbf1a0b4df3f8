package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// The fault soaks' size, from the environment: WARD_SOAK_TIME (how long
// faults are injected; 90s by default, which CI runs), WARD_SOAK_TASKS
// (tasks in all; 2,000 by default) and WARD_SOAK_SEED (the schedule's
// seed; random by default, and logged); WARD_SOAK_REPORT=FILE writes the
// report there ({test} in it becomes the test's name) and the faults to
// FILE.faults.json. The note's 15-minute runs:
//
//	WARD_SOAK_TIME=15m WARD_SOAK_TASKS=20000 go test ./test/e2e -run 'TestFaultSoak$' -timeout 40m -v
//	WARD_SOAK_TIME=15m WARD_SOAK_TASKS=20000 go test ./test/e2e -run TestHAFaultSoak -timeout 40m -v
func soakParams(t *testing.T) (d time.Duration, tasks int, seed uint64) {
	d, tasks, seed = 90*time.Second, 2000, rand.Uint64()
	if v := os.Getenv("WARD_SOAK_TIME"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("WARD_SOAK_TIME=%q: %v", v, err)
		}
	}
	if v := os.Getenv("WARD_SOAK_TASKS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("WARD_SOAK_TASKS=%q: want a positive count", v)
		}
		tasks = n
	}
	if v := os.Getenv("WARD_SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("WARD_SOAK_SEED=%q: %v", v, err)
		}
		seed = n
	}
	return d, tasks, seed
}

// soakFault is one fault the schedule injected.
type soakFault struct {
	Kind   string    `json:"kind"` // kill-coordinator, kill-leader, kill-follower, kill-agent, stop-agent, fill-disk
	Target string    `json:"target"`
	At     time.Time `json:"at"`
	Until  time.Time `json:"until"`
}

// soakRun is one fault soak: jobs of logged tasks submitted all along
// through c while faults are injected every 2 to 4 seconds, then the
// checkers. The soaks differ in their cluster and in the faults they
// inject besides the agents' (inject).
type soakRun struct {
	t         *testing.T
	c         *cluster // the CLI's coordinator, and where agents join
	rng       *rand.Rand
	seed      uint64
	soakTime  time.Duration
	taskCount int
	logs      string
	agents    []string
	// agentArgs gives an agent's extra flags (an HA cluster's
	// coordinators), or is nil.
	agentArgs func(name string) []string

	faults    []soakFault
	killed    map[string][]time.Time // agent → when its process was killed
	submitted []string               // job IDs the coordinator gave (or named as kept)
	ambiguous int                    // submissions whose answer was lost with a coordinator
	start     time.Time
}

// newSoakRun reads the soak's size and seed and starts four logged agents
// (4 slots each) on c, with agentArgs' extra flags if it is not nil.
func newSoakRun(t *testing.T, c *cluster, agentArgs func(name string) []string) *soakRun {
	soakTime, taskCount, seed := soakParams(t)
	s := &soakRun{t: t, c: c, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed: seed, soakTime: soakTime, taskCount: taskCount,
		logs: filepath.Join(c.dir, "task-logs"), agents: []string{"s1", "s2", "s3", "s4"}, agentArgs: agentArgs, killed: map[string][]time.Time{}}
	t.Logf("soak: faults for %s, %d tasks, seed %d (WARD_SOAK_SEED=%d repeats the schedule)", soakTime, taskCount, seed, seed)
	os.MkdirAll(s.logs, 0o755)
	for _, a := range s.agents {
		s.startAgent(a, true)
	}
	return s
}

func (s *soakRun) startAgent(name string, wait bool) {
	var extra []string
	if s.agentArgs != nil {
		extra = s.agentArgs(name)
	}
	startLoggedAgent(s.t, s.c, s.logs, name, 4, wait, extra...)
}

// pause sleeps between lo and hi milliseconds, from the schedule.
func (s *soakRun) pause(lo, hi int) {
	time.Sleep(time.Duration(lo+s.rng.IntN(hi-lo)) * time.Millisecond)
}

// submit submits job k (soak-k) until it is accepted. A submission whose
// answer was lost (the coordinator died mid-request) may have created the
// job: it is counted as ambiguous, and the checkers find every soak job by
// name anyway.
func (s *soakRun) submit(k, jobTasks int, script string) {
	n := min(jobTasks, s.taskCount-k*jobTasks)
	for try := 0; try < 20; try++ {
		out, errOut, code := s.c.ward("submit", "--count", strconv.Itoa(n), "--name", fmt.Sprintf("soak-%d", k), "--retries", "100", "--", "bash", "-c", script)
		switch {
		case code == 0:
			s.submitted = append(s.submitted, strings.TrimSpace(out))
			return
		case strings.Contains(errOut, "was accepted before the store stopped writing"):
			m := regexp.MustCompile(`job (\d+) was accepted`).FindStringSubmatch(errOut)
			if m == nil {
				s.t.Fatalf("a kept submission does not name its job: %s", errOut)
			}
			s.submitted = append(s.submitted, m[1])
			return
		case strings.Contains(errOut, string(api.CodeStoreUnavailable)):
		default:
			s.ambiguous++
		}
		time.Sleep(time.Second)
	}
	s.t.Fatalf("job soak-%d: not accepted in 20 tries", k)
}

// run submits the jobs evenly over the soak time and injects a fault every
// 2 to 4 seconds meanwhile. Each round has every kind of kinds once, in
// random order, so even a short soak sees all of them. inject injects the
// kinds that are not an agent's, filling in the fault's target.
func (s *soakRun) run(kinds []string, inject func(kind string, f *soakFault)) {
	// Tasks last 0 to 0.4 s, so faults catch some of them running.
	script := loggedTaskScript("0.$((RANDOM % 5))")
	jobTasks := max(s.taskCount/20, 1)
	jobs := (s.taskCount + jobTasks - 1) / jobTasks
	every := s.soakTime / time.Duration(jobs)
	s.start = time.Now()
	nextFault := s.start.Add(2 * time.Second)
	k := 0
	var bag []string
	for time.Since(s.start) < s.soakTime || k < jobs {
		if k < jobs && !time.Now().Before(s.start.Add(time.Duration(k)*every)) {
			s.submit(k, jobTasks, script)
			k++
			continue
		}
		if time.Since(s.start) >= s.soakTime || time.Now().Before(nextFault) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if len(bag) == 0 {
			bag = slices.Clone(kinds)
			s.rng.Shuffle(len(bag), func(i, j int) { bag[i], bag[j] = bag[j], bag[i] })
		}
		kind := bag[0]
		bag = bag[1:]
		f := soakFault{Kind: kind, At: time.Now()}
		if !s.agentFault(kind, &f) {
			inject(kind, &f)
		}
		f.Until = time.Now()
		s.faults = append(s.faults, f)
		nextFault = time.Now().Add(time.Duration(2000+s.rng.IntN(2000)) * time.Millisecond)
	}
	s.t.Logf("soak: %d faults injected in %s; waiting for the jobs", len(s.faults), time.Since(s.start).Round(time.Second))
}

// agentFault injects kill-agent (kill -9, restarted after 0.2 to 2 s) and
// stop-agent (SIGSTOP past the liveness timeout of 3 heartbeats plus a
// grace and the lost timeout, then SIGCONT), and reports whether kind was
// one of them.
func (s *soakRun) agentFault(kind string, f *soakFault) bool {
	switch kind {
	case "kill-agent":
		a := s.agents[s.rng.IntN(len(s.agents))]
		f.Target = a
		s.c.agents[a].kill9()
		s.killed[a] = append(s.killed[a], time.Now())
		s.pause(200, 2000)
		s.startAgent(a, false)
	case "stop-agent":
		a := s.agents[s.rng.IntN(len(s.agents))]
		f.Target = a
		p := s.c.agents[a]
		p.cmd.Process.Signal(syscall.SIGSTOP)
		s.pause(6000, 8000)
		p.cmd.Process.Signal(syscall.SIGCONT)
	default:
		return false
	}
	return true
}

// check waits for every soak job and runs the checkers: each task
// completed exactly once with its result and output, every job's
// submission audited (in any of audits), no task ran twice at once. It
// logs the report (and writes it to $WARD_SOAK_REPORT, the faults beside
// it), with extra figures added.
func (s *soakRun) check(audits []string, extra map[string]any) {
	t, c := s.t, s.c
	// The final state: every soak job, including any a lost answer hid.
	var list []api.Job
	c.wardJSON(&list, "job", "ls")
	var ids []string
	for _, j := range list {
		if strings.HasPrefix(j.Spec.Name, "soak-") {
			ids = append(ids, j.ID)
		}
	}
	for _, id := range s.submitted {
		if !slices.Contains(ids, id) {
			t.Errorf("job %s was accepted but is not listed", id)
		}
	}
	deadline := 10*time.Minute + time.Duration(s.taskCount)*20*time.Millisecond
	var details []api.JobDetail
	for _, id := range ids {
		details = append(details, c.waitJob(id, deadline))
	}

	// Checker 1: each task completed exactly once, with its result and
	// its output.
	once := checkJobsOnce(t, c, details)
	if once.tasks < s.taskCount {
		t.Errorf("%d tasks in the soak jobs, want at least %d", once.tasks, s.taskCount)
	}

	// Checker 2: the audit log has every job's submission.
	audited := map[string]bool{}
	for _, data := range audits {
		for _, e := range auditEventsIn(t, data) {
			if e.Type == "job.submit" {
				audited[e.Target] = true
			}
		}
	}
	unaudited := 0
	for _, id := range ids {
		if !audited[id] {
			unaudited++
			t.Errorf("job %s has no job.submit audit event", id)
		}
	}

	// Checker 3: no task ran on two agents (or twice on one) at once.
	overlaps, taskRuns := checkNoOverlap(t, readTaskRuns(t, s.logs, s.agents, s.killed))

	counts := map[string]int{}
	for _, f := range s.faults {
		counts[f.Kind]++
	}
	report := map[string]any{"faults": len(s.faults), "faults_by_kind": counts, "tasks": once.tasks, "jobs": len(ids), "duplicates": once.duplicates, "lost": once.lost,
		"overlaps": overlaps, "unaudited_jobs": unaudited, "ambiguous_submissions": s.ambiguous, "task_runs_logged": taskRuns, "attempts_lost_to_faults": once.lostAttempts,
		"seed": s.seed, "fault_time": s.soakTime.String(), "total_time": time.Since(s.start).Round(time.Second).String()}
	maps.Copy(report, extra)
	b, _ := json.Marshal(report)
	t.Logf("soak report: %s", b)
	if p := os.Getenv("WARD_SOAK_REPORT"); p != "" {
		p = strings.ReplaceAll(p, "{test}", t.Name()) // one report per soak in a run of both
		os.WriteFile(p, append(b, '\n'), 0o644)
		fb, _ := json.MarshalIndent(s.faults, "", " ")
		os.WriteFile(p+".faults.json", fb, 0o644)
	}
	if len(s.faults) == 0 {
		t.Error("no fault was injected")
	}
}

// TestFaultSoak runs a real coordinator (its data directory on a small
// tmpfs) and four real agents through short tasks while a seeded schedule,
// every 2 to 4 seconds, kills -9 and restarts the coordinator or an agent,
// stops an agent (SIGSTOP) past the heartbeat and lost timeouts and resumes
// it, or fills the coordinator's disk for a few seconds and frees it. Jobs
// are submitted all along. Then a checker reads the final job status, the
// stored output, the audit log and the agents' own start and end lines:
// every task completed exactly once (duplicates: 0), none is missing its
// result or output (lost: 0), and no task ran on two agents, or twice on
// one, at the same time.
func TestFaultSoak(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "coord")
	mountSmallDisk(t, data, 96<<20)
	c := newClusterOn(t, data, "--heartbeat-interval", "1s", "--node-lost-timeout", "2s")
	s := newSoakRun(t, c, nil)
	filler := filepath.Join(data, "filler")
	s.run([]string{"kill-coordinator", "kill-agent", "kill-agent", "stop-agent", "fill-disk"}, func(kind string, f *soakFault) {
		switch kind {
		case "kill-coordinator":
			f.Target = "coordinator"
			c.coord.kill9()
			s.pause(200, 2000)
			c.restartCoordinator()
		case "fill-disk":
			f.Target = data
			fillDisk(t, filler)
			s.pause(2000, 5000)
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}
	})
	// The last fault may have been the full disk: the coordinator notices
	// the room at its next retry.
	waitStoreWritable(t, c, 30*time.Second)
	s.check([]string{c.data}, nil)
}
