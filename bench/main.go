// Command bench is Ward's load generator and benchmark harness.
//
//	go run ./bench [scenario...] [-o json] [flags]
//
// It prints a table, or with -o json one JSON object per scenario (one per
// line): the figures, the parameters, the Go version and the CPU count.
// Every scenario runs the real coordinator code, in-process or as a
// `ward coordinator` process. Agents are simulated in this process: each
// has its own key, its own certificate from a real join and its own mTLS
// session, and runs tasks as no-ops or as real processes.
//
// Flags may come before or after the scenario names.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// scenario is one named benchmark.
type scenario struct {
	name string
	what string
	run  func(ctx context.Context, r *Result) error
}

// scenarios in the order a full run executes them: crypto-limit first,
// because the others are reported as ratios to it.
var scenarios = []scenario{
	{"crypto-limit", "full mTLS 1.3 handshakes/s with Ward's TLS settings and CSR signatures/s: the ceiling", runCryptoLimit},
	{"enroll", "N agents join with tokens and connect; joins/s and ratio to the crypto ceiling", runEnroll},
	{"dispatch", "no-op tasks through a durable coordinator to simulated agents; tasks/s, submit→result latency, mTLS/plaintext", runDispatch},
	{"dispatch-exec", "tasks of /bin/true on real local agents that run real processes; tasks/s", runDispatchExec},
	{"staging", "one large file through file staging (upload, agent fetch, task, output back, fetch), SHA-256 verified; RSS growth", runStaging},
	{"scale", "idle simulated agents with heartbeats held by one `ward coordinator` process; RSS per agent", runScale},
	{"revoke", "`ward node revoke` (POST /v1/nodes/{name}/revoke) until the live session is cut; p99", runRevoke},
	{"rotate", "CA rotation (POST /v1/ca/rotate through every phase) under task load: tasks failed, agents renewed", runRotate},
	{"failover", "three `ward coordinator` processes on one etcd: kill -9 of the leader → first task placed by the new leader, p50 and max", runFailover},
	{"scale-ha", "idle simulated agents (in several processes) across five `ward coordinator` processes on one etcd; RSS per agent per coordinator, heartbeat lag", runScaleHA},
}

// opts are the command-line settings every scenario reads.
var opts struct {
	output     string
	cpuProfile string
	memProfile string
	traceFile  string
	verbose    bool
	keep       bool

	cryptoDur   time.Duration
	totalBudget time.Duration

	agentDir     string
	enrollAgents int
	enrollConc   int

	tasks          int
	dispatchAgents int
	slots          int
	jobTasks       int
	submitters     int
	latJobTasks    int
	latRate        float64
	latSkipMax     bool
	coordProcess   bool
	etcd           bool
	latDuration    time.Duration

	heapAgents       int
	stagingBytes     int64
	goroutineProfile bool
	revokeAgents     int
	rotateAgents     int
	revokes          int

	execTasks    int
	execAgents   int
	execCeilTime time.Duration
	execSlots    int
	execCmd      string

	scaleSteps   string
	scaleBudget  time.Duration
	scaleSettle  time.Duration
	scaleJoinC   int
	scaleConnC   int
	scaleSrcIPs  int
	scaleMinFree int64

	failoverRuns   int
	failoverAgents int

	scaleHASteps    string
	scaleHACoords   int
	scaleHAOnLeader bool
	scaleHAProfile  string
}

func defineFlags(fs *flag.FlagSet) {
	fs.StringVar(&opts.output, "o", "table", "output: table or json (one object per scenario, one per line)")
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (in-process coordinator and agents) to `file`")
	fs.StringVar(&opts.traceFile, "trace", "", "write a runtime execution trace of each scenario to `file` (FILE.SCENARIO when several run); `go tool trace -pprof=syscall` shows time blocked in fsync")
	fs.StringVar(&opts.memProfile, "memprofile", "", "write a heap profile of this process at the end to `file`")
	fs.BoolVar(&opts.verbose, "v", false, "progress and coordinator log paths on stderr")
	fs.BoolVar(&opts.coordProcess, "coord-process", false, "dispatch, dispatch-exec: run the coordinator as a separate `ward coordinator` process")
	fs.BoolVar(&opts.keep, "keep", false, "keep temp dirs (logs, data) for inspection")

	fs.DurationVar(&opts.totalBudget, "total-time", 10*time.Minute, "the whole run's time budget: scale stops adding agents in time to finish within it")
	fs.DurationVar(&opts.cryptoDur, "crypto-time", 2*time.Second, "crypto-limit: time per measurement")

	fs.StringVar(&opts.agentDir, "agent-dir", defaultAgentDir(), "where simulated agents keep their data dirs (the coordinator's store is always in a temp dir on disk, fsync on)")
	fs.IntVar(&opts.enrollAgents, "agents", 1000, "enroll: agents that join and connect")
	fs.IntVar(&opts.enrollConc, "enroll-concurrency", 64, "enroll: agents joining at once")

	fs.IntVar(&opts.tasks, "tasks", 100000, "dispatch: no-op tasks in the max-rate pass")
	fs.IntVar(&opts.dispatchAgents, "dispatch-agents", 50, "dispatch: simulated agents")
	fs.IntVar(&opts.slots, "slots", 32, "dispatch: slots per simulated agent (tasks each runs at once)")
	fs.IntVar(&opts.jobTasks, "job-tasks", 1000, "dispatch: tasks per job in the max-rate pass")
	fs.IntVar(&opts.submitters, "submitters", 4, "dispatch: concurrent submitters in the max-rate pass")
	fs.IntVar(&opts.latJobTasks, "lat-job-tasks", 0, "dispatch: tasks per job in the half-load latency pass (0: the same as -job-tasks, so the load is the max-rate pass's at half the rate)")
	fs.DurationVar(&opts.latDuration, "lat-time", 15*time.Second, "dispatch: length of the half-load latency pass (a job of 1,000 tasks is one burst, so 5 s holds only about 125 of them and its p99 is about the second-worst burst)")
	fs.Float64Var(&opts.latRate, "lat-rate", 0, "dispatch: tasks/s offered in the first latency pass (0: 25,000, half the 50,000/s target)")
	fs.BoolVar(&opts.latSkipMax, "lat-skip-max", false, "dispatch: skip the second latency pass, at half the measured max rate")
	fs.BoolVar(&opts.etcd, "etcd", false, "dispatch: also run every pass on a coordinator whose store is one local etcd (fsync on, mutual TLS), alternating with bbolt's, plus a latency pass at half the etcd target")

	fs.Int64Var(&opts.stagingBytes, "staging-bytes", 1<<30, "staging: size of the file sent through")
	fs.IntVar(&opts.heapAgents, "heap-agents", 5000, "heap (diagnostic): idle simulated agents on an in-process coordinator")
	fs.BoolVar(&opts.goroutineProfile, "heap-goroutines", false, "heap (diagnostic): print the goroutine profile to stderr")
	fs.IntVar(&opts.rotateAgents, "rotate-agents", 1000, "rotate: real agents running tasks while the CA rotates")
	fs.IntVar(&opts.revokeAgents, "revoke-agents", 1000, "revoke: simulated agents with live sessions")
	fs.IntVar(&opts.revokes, "revokes", 100, "revoke: nodes revoked, one at a time")
	fs.IntVar(&opts.execTasks, "exec-tasks", 10000, "dispatch-exec: tasks")
	fs.IntVar(&opts.execAgents, "exec-agents", 2, "dispatch-exec: real local agents")
	fs.DurationVar(&opts.execCeilTime, "exec-ceil-time", 2*time.Second, "dispatch-exec: length of each spawn-ceiling measurement (one before, one after Ward's pass)")
	fs.IntVar(&opts.execSlots, "exec-slots", 0, "dispatch-exec: slots per agent (0: the agent default, the CPU count)")
	fs.StringVar(&opts.execCmd, "exec-cmd", "/bin/true", "dispatch-exec: the command each task runs")

	fs.StringVar(&opts.scaleSteps, "scale-steps", "10000,50000,100000", "scale: agent counts to measure at, in order")
	fs.DurationVar(&opts.scaleBudget, "scale-time", 6*time.Minute, "scale: stop adding agents once this much time has passed")
	fs.DurationVar(&opts.scaleSettle, "scale-settle", 5*time.Second, "scale: heartbeat time at each step before memory is read")
	fs.IntVar(&opts.scaleJoinC, "scale-join-concurrency", 48, "scale: joins at once")
	fs.IntVar(&opts.scaleConnC, "scale-connect-concurrency", 48, "scale: session opens at once")
	fs.IntVar(&opts.scaleSrcIPs, "scale-src-ips", 64, "scale: loopback source addresses 127.1.0.X used for joins and sessions")
	fs.IntVar(&opts.failoverRuns, "failover-runs", 5, "failover: leader kills measured")
	fs.IntVar(&opts.failoverAgents, "failover-agents", 4, "failover: in-process agents, each told all three coordinators")
	fs.Int64Var(&opts.scaleMinFree, "scale-min-free-mb", 2048, "scale: stop adding agents when MemAvailable falls below this")
	fs.StringVar(&opts.scaleHASteps, "scale-ha-steps", "5000", "scale-ha: agent counts (across every coordinator) to measure at, in order; 10000,25000,50000,100000 for the issue's run")
	fs.IntVar(&opts.scaleHACoords, "scale-ha-coordinators", 5, "scale-ha: `ward coordinator` processes on the one etcd")
	fs.StringVar(&opts.scaleHAProfile, "scale-ha-profile", "", "scale-ha: write the coordinators' CPU profiles (10 s each, `dir`/coord.PID.NNN) and put the leader's and a follower's top functions in the notes")
	fs.BoolVar(&opts.scaleHAOnLeader, "scale-ha-on-leader", true, "scale-ha: agents connect to the leader too (false: to the followers only, every session relayed)")
}

// parseArgs accepts flags before, between and after scenario names.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return names, nil
		}
		names = append(names, args[0])
		args = args[1:]
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == simChildArg {
		os.Exit(runSimChild())
	}
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	defineFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [scenario...] [-o json] [flags]\n\nScenarios (default: all, in this order):\n")
		for _, s := range scenarios {
			fmt.Fprintf(fs.Output(), "  %-14s %s\n", s.name, s.what)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	names, err := parseArgs(fs, os.Args[1:])
	if err != nil {
		os.Exit(2)
	}
	if opts.output != "table" && opts.output != "json" {
		fmt.Fprintf(os.Stderr, "bench: -o %q: use table or json\n", opts.output)
		os.Exit(2)
	}
	var run []scenario
	if len(names) == 0 {
		run = scenarios
	}
	for _, n := range names {
		s, ok := findScenario(n)
		if n == "heap" {
			s, ok = scenario{"heap", "diagnostic: heap profile of an in-process coordinator holding idle simulated agents", runHeap}, true
		}
		if !ok {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q\n", n)
			fs.Usage()
			os.Exit(2)
		}
		run = append(run, s)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	out := newPrinter(opts.output)
	failed := false
	start := time.Now()
	for _, s := range run {
		if ctx.Err() != nil {
			break
		}
		r := newResult(s.name)
		progress("== %s: %s", s.name, s.what)
		stopProfile := startProfile(s.name, len(run) > 1)
		t0, cpu0 := time.Now(), takeCPUSnapshot()
		err := s.run(ctx, r)
		stopProfile()
		foreign := foreignCores(cpu0, takeCPUSnapshot())
		r.MachineOther = round(foreign, 2)
		r.LoadAvg = loadAvg()
		if foreign > 0.2 {
			r.note("other processes used %.2f of %d cores on average during this scenario: its figures are lower than on an idle machine", foreign, runtime.NumCPU())
		}
		r.ElapsedS = round(time.Since(t0).Seconds(), 2)
		var na notAvailable
		switch {
		case errors.As(err, &na):
			r.Status = "not_available"
			r.Error = na.Error()
		case err != nil:
			r.Status = "failed"
			r.Error = err.Error()
			failed = true
		case r.Status == "":
			r.Status = "ok"
		}
		progress("== %s: %s in %.1fs", s.name, r.Status, r.ElapsedS)
		out.add(r)
		runtime.GC()
	}
	out.flush()
	runAtExit()
	progress("total %.1fs", time.Since(start).Seconds())
	if opts.memProfile != "" {
		f, err := os.Create(opts.memProfile)
		if err == nil {
			runtime.GC()
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	if failed {
		os.Exit(1)
	}
}

// startProfile starts a CPU profile (and an execution trace) of one
// scenario when -cpuprofile (-trace) is set: FILE for a single scenario,
// FILE.SCENARIO when several run.
func startProfile(name string, several bool) func() {
	stopTrace := startTrace(name, several)
	if opts.cpuProfile == "" {
		return stopTrace
	}
	path := opts.cpuProfile
	if several {
		path += "." + name
	}
	f, err := os.Create(path)
	if err != nil {
		fatalf("cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fatalf("cpuprofile: %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		progress("CPU profile of %s in %s", name, path)
		stopTrace()
	}
}

func startTrace(name string, several bool) func() {
	if opts.traceFile == "" {
		return func() {}
	}
	path := opts.traceFile
	if several {
		path += "." + name
	}
	f, err := os.Create(path)
	if err != nil {
		fatalf("trace: %v", err)
	}
	if err := trace.Start(f); err != nil {
		fatalf("trace: %v", err)
	}
	return func() {
		trace.Stop()
		f.Close()
		progress("execution trace of %s in %s", name, path)
	}
}

func findScenario(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// notAvailable marks a scenario or pass that needs a feature Ward lacks.
type notAvailable struct{ msg string }

func (n notAvailable) Error() string { return "not available yet: " + n.msg }

// progress writes a status line to stderr (always: a run takes minutes and
// should show what it is doing; stdout stays clean for -o json).
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// debugf writes only with -v.
func debugf(format string, args ...any) {
	if opts.verbose {
		progress(format, args...)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

// defaultAgentDir is tmpfs when there is one: the simulated agents stand
// for separate machines with their own disks, and a thousand of them
// creating and fsyncing files on this machine's one disk would charge the
// coordinator's CPU and disk with work no real coordinator shares.
func defaultAgentDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}
