package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
)

// haFDReserve is the descriptors a coordinator of the HA cluster keeps
// free beside its agents: listeners, etcd, its log, relay connections,
// joins and API connections in flight.
const haFDReserve = 250

// joinHandshakeBudget is the joins in flight at once across every
// simulator: under the public port's default cap of 256 handshakes.
const joinHandshakeBudget = 192

// simChildReserve is what a simulator process keeps free beside its
// sessions: join connections, stdio, the runtime's own.
const simChildReserve = 400

// runScaleHA holds ever more idle simulated agents across several `ward
// coordinator` processes sharing one local etcd (mutual TLS): agents are
// spread evenly over the coordinators (with -scale-ha-on-leader=false,
// over the followers only), and simulated by several child processes of
// this binary, each under the open-files limit. Followers relay their
// agents' sessions to the leader as HTTP/2 streams; the leader runs every
// session. At each step: agents held, each coordinator's RSS, descriptors
// and goroutines per agent, heartbeat lag, time to connect, CPU per
// process.
func runScaleHA(ctx context.Context, r *Result) error {
	steps, err := parseSteps(opts.scaleHASteps)
	if err != nil {
		return err
	}
	n := opts.scaleHACoords
	if n < 2 {
		return fmt.Errorf("-scale-ha-coordinators %d: want at least 2", n)
	}
	limit, why := raiseNofile(1 << 20)
	r.note("RLIMIT_NOFILE: %s", why)
	r.param("rlimit_nofile", limit)
	r.param("coordinators", n)
	r.param("agents_on_leader", opts.scaleHAOnLeader)
	r.param("steps", opts.scaleHASteps)
	r.param("settle", opts.scaleSettle.String())
	r.param("join_concurrency", fmt.Sprintf("%d per simulator process, at most %d in all (the leader's public port keeps its default cap of 256 handshakes in flight)", opts.scaleJoinC, joinHandshakeBudget))
	r.param("connect_concurrency_per_process", opts.scaleConnC)
	r.param("store", "one local etcd member (its own process, fsync on, mutual TLS)")
	used := n
	if !opts.scaleHAOnLeader {
		used = n - 1
	}
	perCoord := int(limit) - haFDReserve
	ceiling := perCoord * used
	target := steps[len(steps)-1]
	if ceiling < target {
		r.note("the open-files limit caps this run at %d agents: %d coordinators holding agents × (limit %d − %d kept for listeners, etcd, logs, relay and API connections); %d agents would need %d descriptors in each",
			ceiling, used, limit, haFDReserve, target, (target+used-1)/used+haFDReserve)
		var capped []int
		for _, s := range steps {
			if s < ceiling {
				capped = append(capped, s)
			}
		}
		steps = append(capped, ceiling)
	}
	r.param("steps_run", fmt.Sprint(steps))
	perChild := int(limit) - simChildReserve
	children := (steps[len(steps)-1] + perChild - 1) / perChild
	r.param("simulator_processes", children)
	joinLimitNote(r)
	r.note("agents join at the leader's public port with real keys, CSRs and certificates from the cluster CA; bench shortcut: a simulator's joins share kept-alive connections (as many as it joins at once) instead of one new connection per join (the TLS handshake of a join is what -scale measures; here the sessions are); a join that meets a closed or refused connection is tried again (counted in join retries). Sessions are real mutual TLS from the agent's own certificate to its coordinator")

	dir, done, err := scenarioDir("scale-ha")
	if err != nil {
		return err
	}
	defer done()
	profPrefix := ""
	if opts.scaleHAProfile != "" {
		abs, err := filepath.Abs(opts.scaleHAProfile)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			return err
		}
		profPrefix = filepath.Join(abs, "coord")
		os.Setenv(profileEnv, profPrefix)
		defer os.Unsetenv(profileEnv)
	}
	h, err := startHACluster(ctx, "scale-ha", dir, n)
	if err != nil {
		return err
	}
	defer h.stop()
	lead, err := waitLeader(ctx, h.members, nil)
	if err != nil {
		return err
	}
	var hold []*haMember // the coordinators agents connect to
	for _, m := range h.members {
		if m != lead || opts.scaleHAOnLeader {
			hold = append(hold, m)
		}
	}
	sims, err := startSimChildren(ctx, r, lead, hold, children, steps[len(steps)-1])
	if err != nil {
		return err
	}
	defer sims.stop()

	var prev = map[*haMember]memPoint{}
	if st, err := readProcStatus(lead.proc.cmd.Process.Pid); err == nil {
		r.fig("rss_baseline_mb", round(float64(st["VmRSS"])/1024, 1), "MB").withNote("the leader with no agent")
	}
	have := make([]int, len(hold)) // agents connected to each of hold
	reached, connectAll := 0, time.Duration(0)
	for _, step := range steps {
		if avail := memAvailableMB(); avail >= 0 && avail < opts.scaleMinFree {
			r.Status = "partial"
			r.note("stopped at %d agents: MemAvailable %d MB is below -scale-min-free-mb %d", reached, avail, opts.scaleMinFree)
			break
		}
		// Spread step−reached new agents so every coordinator of hold
		// ends with its even share, and each simulator process with its.
		grow := make([][]int, children)
		for j := range grow {
			grow[j] = make([]int, len(hold))
		}
		for i := range hold {
			want := step / len(hold)
			if i < step%len(hold) {
				want++
			}
			add := want - have[i]
			for j := range children {
				grow[j][i] = add / children
				if j < add%children {
					grow[j][i]++
				}
			}
			have[i] = want
		}
		cpu0 := h.cpu(sims)
		t0 := time.Now()
		reps, err := sims.grow(grow)
		if err != nil {
			return err
		}
		took := time.Since(t0)
		connectAll += took
		var joined, failed int
		var joinS, connS float64
		var retries int64
		var hello []time.Duration
		firstErr, stopped := "", ""
		for _, rp := range reps {
			if rp.Stopped != "" {
				stopped = rp.Stopped
			}
			joined += rp.Joined
			failed += rp.Failed
			joinS, connS = max(joinS, rp.JoinSeconds), max(connS, rp.ConnSeconds)
			retries += rp.JoinRetries
			for _, us := range rp.HelloUS {
				hello = append(hello, time.Duration(us)*time.Microsecond)
			}
			if firstErr == "" {
				firstErr = rp.FirstError
			}
		}
		slices.Sort(hello)
		if failed > 0 {
			return fmt.Errorf("step %d: %d agents failed to join or connect; first: %s", step, failed, firstErr)
		}
		reached = step
		if stopped != "" {
			// Some simulators stopped short: count what is connected.
			st, err := sims.stats()
			if err != nil {
				return err
			}
			reached = int(st.live)
			r.Status = "partial"
			r.note("stopped adding agents at %d: %s", reached, stopped)
		}
		progress("scale-ha: %d agents joined in %.1fs, connected in %.1fs (%d retried joins)", joined, joinS, connS, retries)
		visible, err := lead.admin.waitConnected(ctx, reached, 3*time.Minute)
		if err != nil {
			return fmt.Errorf("the leader's status: %w", err)
		}
		lag0, _ := scrapeLag(ctx, lead.admin)
		st0, _ := sims.stats()
		time.Sleep(opts.scaleSettle)
		st1, err := sims.stats()
		if err != nil {
			return err
		}
		lag, _, lagErr := scrapeMetrics(ctx, lead.admin)
		for i := range have {
			have[i] = int(st1.perCoord[i]) // what is connected, for the figures and the next step
		}
		cpu1 := h.cpu(sims)
		tag := fmt.Sprintf("@%d", reached)
		r.fig("agents_held"+tag, float64(st1.live), "").withNote(fmt.Sprintf("live sessions in the simulators after the settle time; %d ended unexpectedly", st1.ended))
		r.fig("joins_per_s"+tag, round(float64(joined)/joinS, 0), "/s").withNote(fmt.Sprintf("%d joins retried after UNAVAILABLE (token contended)", retries))
		r.fig("session_opens_per_s"+tag, round(float64(joined)/connS, 0), "/s")
		r.fig("hello_welcome_p99_ms"+tag, ms(percentile(hello, 99)), "ms").withNote(fmt.Sprintf("handshake + Hello → Welcome while the step's agents connect (through a follower: relayed); p50 %.1f ms", ms(percentile(hello, 50))))
		r.fig("connect_step_s"+tag, round(took.Seconds(), 1), "s").withNote(fmt.Sprintf("join and connect the step's %d new agents; the leader counted them all %s later", joined, visible.Round(time.Millisecond)))
		r.fig("heartbeats_per_s"+tag, round(float64(st1.heartbeats-st0.heartbeats)/opts.scaleSettle.Seconds(), 0), "/s")
		if d := lag.sub(lag0); lagErr == nil && d.count > 0 {
			r.fig("heartbeat_lag_p50_ms"+tag, round(d.quantile(0.5)*1000, 2), "ms").withNote("the leader's ward_heartbeat_lag_seconds during the settle time (bucket upper bound)")
			r.fig("heartbeat_lag_p99_ms"+tag, round(d.quantile(0.99)*1000, 2), "ms")
		} else {
			r.note("heartbeat lag at %d agents: none observed (%v)", reached, lagErr)
		}
		h.memoryFigures(ctx, r, tag, lead, hold, have, prev, reached)
		r.fig("simulator_rss_per_agent_kb"+tag, round(float64(st1.rssKB)/float64(reached), 2), "KB").withNote(fmt.Sprintf("%d simulator processes", children))
		h.cpuFigures(r, tag, lead, cpu0, cpu1, time.Since(t0))
		progress("scale-ha: %d agents held: step %s", st1.live, time.Since(t0).Round(time.Second))
		if stopped != "" {
			break
		}
	}
	r.fig("time_to_connect_all_s", round(connectAll.Seconds(), 1), "s").withNote("every step's join and connect, summed")
	if profPrefix != "" {
		for _, m := range []*haMember{lead, hold[len(hold)-1]} {
			r.note("%s", profileTop(ctx, profPrefix, m))
		}
	}
	r.fig("agents_reached", float64(reached), "").atLeast(float64(target))
	return nil
}

// memPoint is a coordinator's memory at one step.
type memPoint struct {
	rssKB   int64
	direct  int // agents connected to it
	cluster int // agents of the cluster
}

// memoryFigures reads each coordinator's RSS, descriptors and goroutines,
// per agent, and the growth since the previous step (prev, updated).
func (h *haCluster) memoryFigures(ctx context.Context, r *Result, tag string, lead *haMember, hold []*haMember, have []int, prev map[*haMember]memPoint, reached int) {
	direct := map[*haMember]int{}
	for i, m := range hold {
		direct[m] = have[i]
	}
	var detail []string
	var folPer, folMarg, folFDs, folGo []float64
	margTag := ""
	for _, m := range h.members {
		pid := m.proc.cmd.Process.Pid
		st, _ := readProcStatus(pid)
		fds := countFDs(pid)
		_, mem, _ := scrapeMetrics(ctx, m.admin)
		now := memPoint{rssKB: st["VmRSS"], direct: direct[m], cluster: reached}
		p, had := prev[m]
		prev[m] = now
		if had {
			margTag = fmt.Sprintf("@%d-%d", p.cluster, reached)
		}
		role := "follower"
		if m == lead {
			role = "leader"
		}
		detail = append(detail, fmt.Sprintf("%s %s: %d agents connected, RSS %d MB, %d fds, %.0f goroutines", m.id(), role, now.direct, now.rssKB/1024, fds, mem["go_goroutines"]))
		if m == lead {
			r.fig("leader_rss_mb"+tag, round(float64(now.rssKB)/1024, 0), "MB").withNote("runs every session of the cluster")
			r.fig("leader_rss_per_agent_kb"+tag, round(float64(now.rssKB)/float64(reached), 2), "KB").withNote("RSS / every agent of the cluster")
			if now.direct > 0 {
				r.fig("leader_rss_per_connected_agent_kb"+tag, round(float64(now.rssKB)/float64(now.direct), 2), "KB").withNote("RSS / agents connected to the leader itself")
			}
			if had && reached > p.cluster {
				r.fig("leader_rss_marginal_per_agent_kb"+margTag, round(float64(now.rssKB-p.rssKB)/float64(reached-p.cluster), 2), "KB").
					withNote(fmt.Sprintf("RSS growth / agents added to the cluster (%d of them connected to the leader)", now.direct-p.direct))
			}
			r.fig("leader_fds"+tag, float64(fds), "").withNote(fmt.Sprintf("%d agents connected to it; the others' sessions reach it as HTTP/2 streams", now.direct))
			r.fig("leader_goroutines_per_agent"+tag, round(mem["go_goroutines"]/float64(reached), 2), "")
			continue
		}
		if now.direct > 0 {
			folPer = append(folPer, float64(now.rssKB)/float64(now.direct))
			folFDs = append(folFDs, float64(fds)/float64(now.direct))
			folGo = append(folGo, mem["go_goroutines"]/float64(now.direct))
			if had && now.direct > p.direct {
				folMarg = append(folMarg, float64(now.rssKB-p.rssKB)/float64(now.direct-p.direct))
			}
		}
	}
	meanFig := func(name string, v []float64, unit, note string) {
		if len(v) == 0 {
			return
		}
		slices.Sort(v)
		sum := 0.0
		for _, x := range v {
			sum += x
		}
		r.fig(name, round(sum/float64(len(v)), 3), unit).withNote(fmt.Sprintf("%s, mean of %d followers (%.2f–%.2f)", note, len(v), v[0], v[len(v)-1]))
	}
	meanFig("follower_rss_per_agent_kb"+tag, folPer, "KB", "RSS / agents connected")
	meanFig("follower_rss_marginal_per_agent_kb"+margTag, folMarg, "KB", "RSS growth / agents added")
	meanFig("follower_fds_per_agent"+tag, folFDs, "", "open descriptors / agents connected")
	meanFig("follower_goroutines_per_agent"+tag, folGo, "", "goroutines / agents connected")
	r.note("at %d agents: %s", reached, strings.Join(detail, "; "))
}

// cpu reads the CPU time of every process of the run: coordinators, etcd,
// simulators, and this one.
func (h *haCluster) cpu(s *simChildren) map[string]time.Duration {
	out := map[string]time.Duration{"etcd": procCPU(h.srv.Pid()), "bench": procCPU(os.Getpid())}
	for _, m := range h.members {
		out[m.id()] = procCPU(m.proc.cmd.Process.Pid)
	}
	for _, c := range s.procs {
		out["simulators"] += procCPU(c.pid)
	}
	return out
}

// cpuFigures says where the step's CPU went, per process.
func (h *haCluster) cpuFigures(r *Result, tag string, lead *haMember, a, b map[string]time.Duration, wall time.Duration) {
	var total time.Duration
	var parts []string
	keys := make([]string, 0, len(b))
	for k := range b {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		d := b[k] - a[k]
		total += d
		name := k
		if k == lead.id() {
			name += " (leader)"
		}
		parts = append(parts, fmt.Sprintf("%s %.1f s", name, d.Seconds()))
	}
	r.fig("cpu_cores"+tag, round(total.Seconds()/wall.Seconds(), 2), "cores").
		withNote(fmt.Sprintf("CPU of every process of the run over the step (%s wall): %s", wall.Round(time.Second), strings.Join(parts, ", ")))
	r.fig("leader_cpu_s"+tag, round((b[lead.id()]-a[lead.id()]).Seconds(), 1), "s")
}

// countFDs is how many descriptors a process holds.
func countFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// simChildren are the simulator processes of a run.
type simChildren struct {
	procs []*simChild
	cmds  []*exec.Cmd
}

// startSimChildren starts k simulator processes: agents join at lead's
// public port with tokens made for each process, and connect to hold.
func startSimChildren(ctx context.Context, r *Result, lead *haMember, hold []*haMember, k, agents int) (*simChildren, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	const tokensPerChild = 8
	uses := (agents+k-1)/k/tokensPerChild + 100
	s := &simChildren{}
	for j := range k {
		// Every simulator joins at the leader's public port, whose cap on
		// handshakes in flight (public_max_handshakes, 256) keeps its
		// default: stay under it together.
		joinC := max(1, min(opts.scaleJoinC, joinHandshakeBudget/k))
		var cfg = simChildConfig{Index: j, Public: lead.public, JoinC: joinC, ConnC: opts.scaleConnC, SrcIPs: opts.scaleSrcIPs, MinFreeMB: opts.scaleMinFree}
		for _, m := range hold {
			cfg.Coordinators = append(cfg.Coordinators, m.cluster)
		}
		for range tokensPerChild {
			var tc api.TokenCreated
			if err := lead.admin.do(ctx, http.MethodPost, "/v1/tokens", api.TokenCreate{TTL: api.Duration(2 * time.Hour), Uses: uses}, &tc); err != nil {
				s.stop()
				return nil, err
			}
			js, err := enroll.ParseJoinString(tc.Join)
			if err != nil {
				s.stop()
				return nil, err
			}
			cfg.Tokens = append(cfg.Tokens, tc.Join)
			cfg.Cluster, cfg.Pin = js.Cluster, js.Pin.String()
		}
		cmd := exec.Command(self, simChildArg)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err == nil {
			var out interface{ Read([]byte) (int, error) }
			out, err = cmd.StdoutPipe()
			if err == nil {
				err = cmd.Start()
			}
			if err == nil {
				trackChild(cmd.Process.Pid)
				sc := bufio.NewScanner(out)
				sc.Buffer(make([]byte, 1<<20), 64<<20)
				s.procs = append(s.procs, &simChild{in: in, out: sc, pid: cmd.Process.Pid})
				s.cmds = append(s.cmds, cmd)
				b, _ := json.Marshal(cfg)
				_, err = in.Write(append(b, '\n'))
			}
		}
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("start simulator process %d: %w", j, err)
		}
	}
	rep, err := s.procs[0].ask(simChildCommand{})
	if err != nil {
		s.stop()
		return nil, err
	}
	r.param("simulator_nofile", rep.Limit)
	return s, nil
}

// grow asks every simulator for more agents at once.
func (s *simChildren) grow(grow [][]int) ([]simChildReply, error) {
	reps := make([]simChildReply, len(s.procs))
	errs := make([]error, len(s.procs))
	var wg sync.WaitGroup
	for j, c := range s.procs {
		wg.Add(1)
		go func() { defer wg.Done(); reps[j], errs[j] = c.ask(simChildCommand{Grow: grow[j]}) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return reps, nil
}

// simTotals sums the simulators' counters.
type simTotals struct {
	live, ended, heartbeats, rssKB int64
	perCoord                       []int64 // live sessions per coordinator agents connect to
}

func (s *simChildren) stats() (simTotals, error) {
	var t simTotals
	for _, c := range s.procs {
		rep, err := c.ask(simChildCommand{})
		if err != nil {
			return t, err
		}
		for i, l := range rep.Live {
			t.live += l
			if i >= len(t.perCoord) {
				t.perCoord = append(t.perCoord, 0)
			}
			t.perCoord[i] += l
		}
		t.ended += rep.Ended
		t.heartbeats += rep.Heartbeats
		t.rssKB += rep.RSSKB
	}
	return t, nil
}

// stop closes the simulators' stdin (they close their sessions and exit)
// and waits for them, killing any still there after 60 s.
func (s *simChildren) stop() {
	for _, c := range s.procs {
		c.in.Close()
	}
	for _, cmd := range s.cmds {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}

// profileEnv names the prefix of a benchprofile-tagged coordinator's CPU
// profiles (cmd/ward/benchprofile.go).
const profileEnv = "WARD_BENCH_CPUPROFILE"

// profileTop merges m's complete profile segments (all but the one being
// written) and returns the top of `go tool pprof -top`.
func profileTop(ctx context.Context, prefix string, m *haMember) string {
	files, _ := filepath.Glob(fmt.Sprintf("%s.%d.*", prefix, m.proc.cmd.Process.Pid))
	slices.Sort(files)
	if len(files) < 2 {
		return fmt.Sprintf("CPU profile of %s: no complete 10 s segment", m.id())
	}
	files = files[:len(files)-1]
	out, err := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof", "-top", "-nodecount=18"}, files...)...).Output()
	if err != nil {
		return fmt.Sprintf("CPU profile of %s: go tool pprof: %v", m.id(), err)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "File:") && !strings.HasPrefix(l, "Type:") && !strings.HasPrefix(l, "Time:") && !strings.HasPrefix(l, "Showing") {
			keep = append(keep, l)
		}
	}
	return fmt.Sprintf("CPU profile of %s (%d segments of 10 s, %s*): %s", m.id(), len(files), prefix, strings.Join(keep, " | "))
}
