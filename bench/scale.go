package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/enroll"
)

// benchStart is when this invocation began; the scale scenario keeps the
// whole run within its budget.
var benchStart = time.Now()

// runScale holds ever more idle simulated agents (real joins, own keys,
// own mTLS sessions, heartbeats) on one `ward coordinator` process and
// reads the process's memory from /proc at each step.
func runScale(ctx context.Context, r *Result) error {
	steps, err := parseSteps(opts.scaleSteps)
	if err != nil {
		return err
	}
	steps0 := steps
	deadline := time.Now().Add(opts.scaleBudget)
	// Leave the rest of the run and this scenario's cleanup inside -total-time.
	if d := benchStart.Add(opts.totalBudget - 45*time.Second); d.Before(deadline) {
		deadline = d
	}
	r.param("steps", opts.scaleSteps)
	r.param("time_budget", opts.scaleBudget.String())
	r.param("settle", opts.scaleSettle.String())
	r.param("join_concurrency", opts.scaleJoinC)
	r.param("connect_concurrency", opts.scaleConnC)
	r.param("source_addresses", fmt.Sprintf("%d (127.1.0.1 ...), IP_BIND_ADDRESS_NO_PORT", opts.scaleSrcIPs))
	r.param("coordinator", "separate `ward coordinator` process built with go build -o")

	maxAgents := steps[len(steps)-1]
	limit, why := raiseNofile(uint64(maxAgents) + fdReserve)
	r.param("rlimit_nofile", limit)
	r.note("RLIMIT_NOFILE: %s", why)
	// Every session is one descriptor in this process and one in the
	// coordinator (which inherits the limit): stop below the limit.
	fdCap := int(limit) - fdReserve
	if fdCap < maxAgents {
		r.note("the open-files limit caps this run at %d agents (limit %d minus %d for listeners, files, joins in flight and API connections)", fdCap, limit, fdReserve)
		var capped []int
		for _, s := range steps {
			if s < fdCap {
				capped = append(capped, s)
			}
		}
		steps = append(capped, fdCap)
		maxAgents = fdCap
	}
	r.param("steps_run", fmt.Sprint(steps))
	joinLimitNote(r)

	dir, done, err := scenarioDir("scale")
	if err != nil {
		return err
	}
	defer done()
	progress("scale: building ward")
	bin, err := buildWard(ctx, dir)
	if err != nil {
		return err
	}
	co, err := startCoordinatorProcess(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer co.stop()
	if l, err := procLimit(co.cmd.Process.Pid, "Max open files"); err == nil {
		r.param("coordinator_nofile", l)
	}
	admin, err := newAdminAPI(co.contextPath)
	if err != nil {
		return err
	}
	defer admin.close()
	if err := admin.waitReady(ctx, 20*time.Second); err != nil {
		return err
	}
	// Tokens: at most 10,000 uses each.
	var tokens []enroll.JoinString
	for left := maxAgents; left > 0; left -= 10000 {
		var tc api.TokenCreated
		if err := admin.do(ctx, http.MethodPost, "/v1/tokens", api.TokenCreate{TTL: api.Duration(2 * time.Hour), Uses: min(left, 10000)}, &tc); err != nil {
			return err
		}
		js, err := enroll.ParseJoinString(tc.Join)
		if err != nil {
			return err
		}
		tokens = append(tokens, js)
	}
	time.Sleep(time.Second)
	base, err := readProcStatus(co.cmd.Process.Pid)
	if err != nil {
		return err
	}
	r.fig("rss_baseline_mb", round(float64(base["VmRSS"])/1024, 1), "MB").withNote("coordinator with no agent")

	f := newSimFleet(tokens[0].Cluster, co.clusterAddr, tokens[0].Addr, tokens[0].Pin, newSrcPool(1, 0, opts.scaleSrcIPs))
	defer func() {
		progress("scale: closing %d sessions", f.live.Load())
		f.stop()
	}()
	reached := 0
	stopWhy := ""
	type point struct{ agents, rssKB int64 }
	var points []point
	// connectCost estimates the wall time to open one session (updated from
	// each step), so joining stops early enough for the joined agents to be
	// connected and measured within the deadline.
	connectCost := 3 * time.Millisecond
	const stepOverhead = 20 * time.Second // wait, list, settle, probe
	for _, target := range steps {
		if stopWhy != "" {
			break
		}
		stepStart := time.Now()
		from := reached
		// Join the new agents.
		var joined atomic.Int64
		newAgents := make([]*simAgent, target-from)
		stopCheck := func() error {
			need := time.Duration(joined.Load())*connectCost + stepOverhead + opts.scaleSettle
			if time.Now().Add(need).After(deadline) {
				return errBudget{fmt.Sprintf("the %s time budget ran out", opts.scaleBudget)}
			}
			if avail := memAvailableMB(); avail >= 0 && avail < opts.scaleMinFree {
				return errBudget{fmt.Sprintf("MemAvailable fell to %d MB (limit %d MB)", avail, opts.scaleMinFree)}
			}
			return nil
		}
		tj := time.Now()
		err := parallel(ctx, len(newAgents), opts.scaleJoinC, func(i int) error {
			if i%256 == 0 {
				if err := stopCheck(); err != nil {
					return err
				}
			}
			k := from + i
			a, err := f.join(ctx, fmt.Sprintf("s%06d", k), tokens[k/10000])
			if err != nil {
				return err
			}
			newAgents[i] = a
			joined.Add(1)
			return nil
		})
		joinDur := time.Since(tj)
		var eb errBudget
		if err != nil && !errors.As(err, &eb) {
			return fmt.Errorf("join at %d agents: %w", from+int(joined.Load()), err)
		}
		if err != nil {
			stopWhy = eb.why
		}
		var ok []*simAgent
		for _, a := range newAgents {
			if a != nil {
				ok = append(ok, a)
				f.add(a)
			}
		}
		retries := f.joinRetries.Swap(0)
		progress("scale: %d joins in %s (%.0f/s), %d retried after UNAVAILABLE (token contended)", len(ok), joinDur.Round(time.Millisecond), float64(len(ok))/joinDur.Seconds(), retries)
		// Open their sessions. The agents joined so far are all connected;
		// the budget is not checked here so every joined agent is measured.
		tc := time.Now()
		var connErr atomic.Int64
		var firstConnErr atomic.Value
		err = parallel(ctx, len(ok), opts.scaleConnC, func(i int) error {
			if err := f.connect(ctx, ok[i]); err != nil {
				connErr.Add(1)
				firstConnErr.CompareAndSwap(nil, errBox{err})
			}
			return nil
		})
		if err != nil {
			return err
		}
		connDur := time.Since(tc)
		if len(ok) > 100 {
			connectCost = connDur / time.Duration(len(ok))
		}
		if n := connErr.Load(); n > 0 {
			return fmt.Errorf("%d sessions failed to open at step %d; first: %v", n, target, firstConnErr.Load())
		}
		reached = from + len(ok)
		hello := f.takeHelloLat()
		progress("scale: %d sessions opened in %s (%.0f/s); %d live", len(ok), connDur.Round(time.Millisecond), float64(len(ok))/connDur.Seconds(), f.live.Load())

		waitD, err := admin.waitConnected(ctx, reached, 2*time.Minute)
		if err != nil {
			return err
		}
		// /v1/nodes lists every node with its state.
		tn := time.Now()
		var nodes []api.Node
		if err := admin.do(ctx, http.MethodGet, "/v1/nodes", nil, &nodes); err != nil {
			return err
		}
		listD := time.Since(tn)
		ready := 0
		for _, n := range nodes {
			if n.State == "ready" {
				ready++
			}
		}
		nodes = nil
		// Let heartbeats flow, then read memory. The heartbeat lag
		// histogram is read before and after, so its difference is the
		// steady state only.
		lag0, _ := scrapeLag(ctx, admin)
		hb0, t0 := f.heartbeats.Load(), time.Now()
		time.Sleep(opts.scaleSettle)
		hbRate := float64(f.heartbeats.Load()-hb0) / time.Since(t0).Seconds()
		lag, mem, lagErr := scrapeMetrics(ctx, admin)
		st, err := readProcStatus(co.cmd.Process.Pid)
		if err != nil {
			return err
		}
		// Session opens with the fleet heartbeating: reconnect a sample.
		probe := probeReconnect(ctx, f, 100, 10)
		points = append(points, point{int64(reached), st["VmRSS"]})
		rss := float64(st["VmRSS"]) * 1024
		perAgent := rss / float64(reached)
		growth := (float64(st["VmRSS"]-base["VmRSS"]) * 1024) / float64(reached)
		tag := fmt.Sprintf("@%d", reached)
		fp := r.fig("rss_per_agent_kb"+tag, round(perAgent/1024, 2), "KB").withNote("coordinator VmRSS / agents")
		if reached >= 100000 {
			fp.atMost(48)
		}
		r.fig("rss_growth_per_agent_kb"+tag, round(growth/1024, 2), "KB").withNote("(VmRSS - baseline) / agents")
		r.fig("rss_mb"+tag, round(float64(st["VmRSS"])/1024, 0), "MB").
			withNote(fmt.Sprintf("anon %d MB, file %d MB, peak %d MB, threads %d", st["RssAnon"]/1024, st["RssFile"]/1024, st["VmHWM"]/1024, st["Threads"]))
		if mem["go_memstats_heap_inuse_bytes"] > 0 {
			per := func(k string) float64 { return round(mem[k]/float64(reached)/1024, 2) }
			r.fig("go_heap_inuse_per_agent_kb"+tag, per("go_memstats_heap_inuse_bytes"), "KB").
				withNote(fmt.Sprintf("coordinator /metrics: heap alloc %.1f KB, stack %.1f KB, next GC %.0f MB, goroutines %.0f",
					per("go_memstats_heap_alloc_bytes"), per("go_memstats_stack_inuse_bytes"), mem["go_memstats_next_gc_bytes"]/(1<<20), mem["go_goroutines"]))
			r.fig("go_stack_inuse_per_agent_kb"+tag, per("go_memstats_stack_inuse_bytes"), "KB")
		}
		r.fig("joins_per_s"+tag, round(float64(len(ok))/joinDur.Seconds(), 0), "/s")
		r.fig("join_retries"+tag, float64(retries), "").withNote("joins refused UNAVAILABLE (token contended) and retried")
		r.fig("session_opens_per_s"+tag, round(float64(len(ok))/connDur.Seconds(), 0), "/s")
		r.fig("hello_welcome_p99_ms"+tag, ms(percentile(hello, 99)), "ms").withNote("handshake + Hello → Welcome while the step's agents connect")
		r.fig("reconnect_p99_ms"+tag, ms(percentile(probe, 99)), "ms").withNote("100 agents reconnect while the fleet heartbeats")
		r.fig("connected_visible_ms"+tag, ms(waitD), "ms").withNote("last Welcome → /v1/status counts all")
		r.fig("nodes_list_ms"+tag, ms(listD), "ms").withNote(fmt.Sprintf("GET /v1/nodes: %d of %d ready", ready, reached))
		r.fig("heartbeats_per_s"+tag, round(hbRate, 0), "/s").withNote("sent by the fleet during the settle time")
		if d := lag.sub(lag0); lagErr == nil && d.count > 0 {
			r.fig("heartbeat_lag_p50_ms"+tag, round(d.quantile(0.5)*1000, 2), "ms").withNote("ward_heartbeat_lag_seconds during the settle time (bucket upper bound)")
			r.fig("heartbeat_lag_p99_ms"+tag, round(d.quantile(0.99)*1000, 2), "ms")
		} else if lagErr != nil {
			r.note("heartbeat lag at %d agents: %v", reached, lagErr)
		}
		progress("scale: %d agents: RSS %d MB (%.1f KB/agent), %d ready, /v1/nodes %s, %.0f heartbeats/s, step %s",
			reached, st["VmRSS"]/1024, perAgent/1024, ready, listD.Round(time.Millisecond), hbRate, time.Since(stepStart).Round(time.Second))
		if f.ended.Load() > int64(probeEnded.Load()) {
			r.note("%d sessions ended unexpectedly by %d agents", f.ended.Load()-probeEnded.Load(), reached)
		}
	}
	target := steps0[len(steps0)-1]
	r.fig("agents_reached", float64(reached), "").atLeast(float64(target))
	// The marginal memory of one more agent, between the last two steps,
	// and what it predicts for the largest step asked for when the run
	// could not get there.
	if n := len(points); n >= 2 {
		a, b := points[n-2], points[n-1]
		slope := float64(b.rssKB-a.rssKB) / float64(b.agents-a.agents)
		r.fig(fmt.Sprintf("rss_marginal_per_agent_kb@%d-%d", a.agents, b.agents), round(slope, 2), "KB").withNote("RSS growth between the last two steps / agents added")
		if reached < target {
			pred := float64(b.rssKB) + slope*float64(target-reached)
			// A prediction, not a measurement: the target is shown but not
			// judged, so it cannot pass for a met target.
			f := r.fig(fmt.Sprintf("rss_per_agent_kb_extrapolated@%d", target), round(pred/float64(target), 2), "KB").
				withNote(fmt.Sprintf("linear from the last two steps (%.0f MB at %d agents): NOT measured", pred/1024, target))
			f.Target = "<= 48 (not judged: extrapolated)"
		}
	}
	if stopWhy != "" {
		r.Status = "partial"
		r.note("stopped adding agents at %d: %s", reached, stopWhy)
	}
	return nil
}

// errBudget stops a scale step early.
type errBudget struct{ why string }

func (e errBudget) Error() string { return e.why }

var probeEnded atomic.Int64

// probeReconnect closes and reopens n random agents' sessions, conc at a
// time, and returns the sorted Hello→Welcome latencies (handshake included).
func probeReconnect(ctx context.Context, f *simFleet, n, conc int) []time.Duration {
	f.mu.Lock()
	agents := make([]*simAgent, 0, n)
	for range n {
		agents = append(agents, f.agents[rand.N(len(f.agents))])
	}
	f.mu.Unlock()
	f.takeHelloLat()
	parallel(ctx, len(agents), conc, func(i int) error {
		a := agents[i]
		if a.endedAt.Load() != 0 {
			return nil
		}
		a.close()
		probeEnded.Add(1)
		if err := f.connect(ctx, a); err != nil {
			progress("scale: reconnect %s: %v", a.name, err)
		}
		return nil
	})
	return f.takeHelloLat()
}

func parseSteps(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("-scale-steps %q: want increasing positive counts such as 10000,50000,100000", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// fdReserve is the descriptors kept free for listeners, store and log
// files, joins in flight and API connections.
const fdReserve = 400

// raiseNofile lifts RLIMIT_NOFILE (soft and hard) to at least want, up to
// fs.nr_open, and says what it did. Raising the hard limit needs
// CAP_SYS_RESOURCE; without it only the soft limit rises, to the hard one.
func raiseNofile(want uint64) (uint64, string) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, "getrlimit: " + err.Error()
	}
	if rl.Cur >= want {
		return rl.Cur, fmt.Sprintf("already %d (hard %d), enough", rl.Cur, rl.Max)
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && want > n {
			want = n
		}
	}
	nl := syscall.Rlimit{Cur: want, Max: max(want, rl.Max)}
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl)
	if err == nil {
		return want, fmt.Sprintf("raised from %d (hard %d) to %d with setrlimit; the coordinator process inherits it", rl.Cur, rl.Max, want)
	}
	nl = syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
	if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl); err2 != nil {
		return rl.Cur, fmt.Sprintf("setrlimit to %d refused (%v) and the soft limit could not rise either (%v); %d", want, err, err2, rl.Cur)
	}
	return rl.Max, fmt.Sprintf("setrlimit to %d refused: %v (raising the hard limit needs CAP_SYS_RESOURCE, which this machine does not grant even to root); soft limit raised to the hard limit %d", want, err, rl.Max)
}

// buildWard builds the ward binary into dir, from the module this
// process was started in (go run ./bench) or, failing that, the module
// this file was compiled from. The benchprofile tag adds only a CPU
// profiler that stays off unless WARD_BENCH_CPUPROFILE is set
// (cmd/ward/benchprofile.go; scale-ha -scale-ha-profile).
func buildWard(ctx context.Context, dir string) (string, error) {
	root := ""
	if out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output(); err == nil {
		if m := strings.TrimSpace(string(out)); m != "" && m != os.DevNull {
			root = filepath.Dir(m)
		}
	}
	if _, file, _, ok := runtime.Caller(0); root == "" && ok {
		root = filepath.Dir(filepath.Dir(file))
	}
	if root == "" {
		return "", fmt.Errorf("cannot find the ward module: run from the repository (go run ./bench)")
	}
	bin := filepath.Join(dir, "ward")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "benchprofile", "-o", bin, "./cmd/ward")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ward: %v\n%s", err, b)
	}
	return bin, nil
}

// coordProc is a `ward coordinator` process.
type coordProc struct {
	cmd         *exec.Cmd
	contextPath string
	clusterAddr string
	done        chan struct{}
	stderr      string
}

func startCoordinatorProcess(ctx context.Context, bin, dir string, extra ...string) (*coordProc, error) {
	outPath, errPath := filepath.Join(dir, "coordinator.out"), filepath.Join(dir, "coordinator.log")
	outF, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	errF, err := os.Create(errPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"coordinator", "--data", filepath.Join(dir, "coordinator"),
		"--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0", "--advertise", "127.0.0.1"}, joinLimitFlags()...)...)
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.Env = append(os.Environ(), config.ContextEnv+"=")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &coordProc{cmd: cmd, done: make(chan struct{}), stderr: errPath}
	trackChild(cmd.Process.Pid)
	go func() { cmd.Wait(); outF.Close(); errF.Close(); close(p.done) }()
	debugf("scale: coordinator pid %d, log %s", cmd.Process.Pid, errPath)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(outPath)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "export "+config.ContextEnv+"="); ok {
				p.contextPath = v
			}
		}
		if p.contextPath != "" {
			break
		}
		select {
		case <-p.done:
			e, _ := os.ReadFile(errPath)
			return nil, fmt.Errorf("ward coordinator exited: %s", tailBytes(e, 2000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("ward coordinator printed no context line in 30s")
		}
	}
	cctx, err := config.LoadContext(p.contextPath)
	if err != nil {
		p.stop()
		return nil, err
	}
	p.clusterAddr = cctx.Server
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after 30s.
func (p *coordProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// readProcStatus returns the kB (and count) fields of /proc/PID/status.
func readProcStatus(pid int) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}

// procLimit reads one line of /proc/PID/limits (soft limit).
func procLimit(pid int, name string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, name); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				return fs[0], nil
			}
		}
	}
	return "", fmt.Errorf("no %q in limits", name)
}

// memAvailableMB reads MemAvailable from /proc/meminfo, or -1.
func memAvailableMB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				n, _ := strconv.ParseInt(fs[0], 10, 64)
				return n / 1024
			}
		}
	}
	return -1
}
