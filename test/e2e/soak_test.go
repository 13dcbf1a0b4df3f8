package e2e

import (
	"encoding/json"
	"fmt"
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

// The fault soak's size, from the environment: WARD_SOAK_TIME (how long
// faults are injected; 90s by default, which CI runs), WARD_SOAK_TASKS
// (tasks in all; 2,000 by default) and WARD_SOAK_SEED (the schedule's
// seed; random by default, and logged). The note's 15-minute run:
//
//	WARD_SOAK_TIME=15m WARD_SOAK_TASKS=20000 go test ./test/e2e -run TestFaultSoak -timeout 40m -v
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
	Kind   string    `json:"kind"` // kill-coordinator, kill-agent, stop-agent, fill-disk
	Target string    `json:"target"`
	At     time.Time `json:"at"`
	Until  time.Time `json:"until"`
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
	soakTime, taskCount, seed := soakParams(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t.Logf("soak: faults for %s, %d tasks, seed %d (WARD_SOAK_SEED=%d repeats the schedule)", soakTime, taskCount, seed, seed)

	root := t.TempDir()
	data := filepath.Join(root, "coord")
	mountSmallDisk(t, data, 96<<20)
	c := newClusterOn(t, data, "--heartbeat-interval", "1s", "--node-lost-timeout", "2s")
	logs := filepath.Join(root, "task-logs")
	os.MkdirAll(logs, 0o755)
	agents := []string{"s1", "s2", "s3", "s4"}
	startAgent := func(name string, wait bool) { startLoggedAgent(t, c, logs, name, 4, wait) }
	for _, a := range agents {
		startAgent(a, true)
	}

	// Tasks last 0 to 0.4 s, so faults catch some of them running.
	script := loggedTaskScript("0.$((RANDOM % 5))")
	jobTasks := max(taskCount/20, 1)
	jobs := (taskCount + jobTasks - 1) / jobTasks
	every := soakTime / time.Duration(jobs)
	var submitted []string // job IDs the coordinator gave (or named as kept)
	ambiguous := 0         // submissions whose answer was lost with the coordinator
	submit := func(k int) {
		n := min(jobTasks, taskCount-k*jobTasks)
		for try := 0; try < 20; try++ {
			out, errOut, code := c.ward("submit", "--count", strconv.Itoa(n), "--name", fmt.Sprintf("soak-%d", k), "--retries", "100", "--", "bash", "-c", script)
			switch {
			case code == 0:
				submitted = append(submitted, strings.TrimSpace(out))
				return
			case strings.Contains(errOut, "was accepted before the store stopped writing"):
				m := regexp.MustCompile(`job (\d+) was accepted`).FindStringSubmatch(errOut)
				if m == nil {
					t.Fatalf("a kept submission does not name its job: %s", errOut)
				}
				submitted = append(submitted, m[1])
				return
			case strings.Contains(errOut, string(api.CodeStoreUnavailable)):
			default:
				ambiguous++ // e.g. the coordinator died mid-request: it may have the job
			}
			time.Sleep(time.Second)
		}
		t.Fatalf("job soak-%d: not accepted in 20 tries", k)
	}

	var faults []soakFault
	killed := map[string][]time.Time{} // agent → when its process was killed
	filler := filepath.Join(data, "filler")
	start := time.Now()
	nextFault := start.Add(2 * time.Second)
	k := 0
	var bag []string
	for time.Since(start) < soakTime || k < jobs {
		if k < jobs && !time.Now().Before(start.Add(time.Duration(k)*every)) {
			submit(k)
			k++
			continue
		}
		if time.Since(start) >= soakTime || time.Now().Before(nextFault) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		// Each round injects every kind once (agent kills twice), in a
		// random order, so even a short soak sees all of them.
		if len(bag) == 0 {
			bag = []string{"kill-coordinator", "kill-agent", "kill-agent", "stop-agent", "fill-disk"}
			rng.Shuffle(len(bag), func(i, j int) { bag[i], bag[j] = bag[j], bag[i] })
		}
		kind := bag[0]
		bag = bag[1:]
		f := soakFault{At: time.Now()}
		switch kind {
		case "kill-coordinator":
			f.Kind, f.Target = "kill-coordinator", "coordinator"
			c.coord.kill9()
			time.Sleep(time.Duration(200+rng.IntN(1800)) * time.Millisecond)
			c.restartCoordinator()
		case "kill-agent":
			a := agents[rng.IntN(len(agents))]
			f.Kind, f.Target = "kill-agent", a
			c.agents[a].kill9()
			killed[a] = append(killed[a], time.Now())
			time.Sleep(time.Duration(200+rng.IntN(1800)) * time.Millisecond)
			startAgent(a, false)
		case "stop-agent":
			// Past the liveness timeout (3 heartbeats) and the lost timeout.
			a := agents[rng.IntN(len(agents))]
			f.Kind, f.Target = "stop-agent", a
			p := c.agents[a]
			p.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(time.Duration(6000+rng.IntN(2000)) * time.Millisecond)
			p.cmd.Process.Signal(syscall.SIGCONT)
		case "fill-disk":
			f.Kind, f.Target = "fill-disk", data
			fillDisk(t, filler)
			time.Sleep(time.Duration(2000+rng.IntN(3000)) * time.Millisecond)
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}
		f.Until = time.Now()
		faults = append(faults, f)
		nextFault = time.Now().Add(time.Duration(2000+rng.IntN(2000)) * time.Millisecond)
	}
	t.Logf("soak: %d faults injected in %s; waiting for the jobs", len(faults), time.Since(start).Round(time.Second))
	// The last fault may have been the full disk: the coordinator notices
	// the room at its next retry.
	waitStoreWritable(t, c, 30*time.Second)

	// The final state: every soak job, including any a lost answer hid.
	var list []api.Job
	c.wardJSON(&list, "job", "ls")
	var ids []string
	for _, j := range list {
		if strings.HasPrefix(j.Spec.Name, "soak-") {
			ids = append(ids, j.ID)
		}
	}
	for _, id := range submitted {
		if !slices.Contains(ids, id) {
			t.Errorf("job %s was accepted but is not listed", id)
		}
	}
	deadline := 10*time.Minute + time.Duration(taskCount)*20*time.Millisecond
	var details []api.JobDetail
	for _, id := range ids {
		details = append(details, c.waitJob(id, deadline))
	}

	// Checker 1: each task completed exactly once, with its result and
	// its output.
	once := checkJobsOnce(t, c, details)
	if once.tasks < taskCount {
		t.Errorf("%d tasks in the soak jobs, want at least %d", once.tasks, taskCount)
	}

	// Checker 2: the audit log has every job's submission.
	audited := map[string]bool{}
	for _, e := range c.auditEvents() {
		if e.Type == "job.submit" {
			audited[e.Target] = true
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
	overlaps, taskRuns := checkNoOverlap(t, readTaskRuns(t, logs, agents, killed))

	counts := map[string]int{}
	for _, f := range faults {
		counts[f.Kind]++
	}
	report := map[string]any{"faults": len(faults), "faults_by_kind": counts, "tasks": once.tasks, "jobs": len(ids), "duplicates": once.duplicates, "lost": once.lost,
		"overlaps": overlaps, "unaudited_jobs": unaudited, "ambiguous_submissions": ambiguous, "task_runs_logged": taskRuns, "attempts_lost_to_faults": once.lostAttempts,
		"seed": seed, "fault_time": soakTime.String(), "total_time": time.Since(start).Round(time.Second).String()}
	b, _ := json.Marshal(report)
	t.Logf("soak report: %s", b)
	if p := os.Getenv("WARD_SOAK_REPORT"); p != "" {
		os.WriteFile(p, append(b, '\n'), 0o644)
		fb, _ := json.MarshalIndent(faults, "", " ")
		os.WriteFile(p+".faults.json", fb, 0o644)
	}
	if len(faults) == 0 {
		t.Error("no fault was injected")
	}
}
