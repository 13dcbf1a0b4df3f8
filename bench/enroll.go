package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/wardcluster/ward/internal/config"
)

// Join rate limits used wherever many simulated agents join from a few
// loopback addresses, per address and for all together. The defaults (2/s,
// burst 20 per source address; 100/s, burst 500 in total) would throttle
// the benchmark, not the coordinator; every scenario that raises them says
// so in its output.
const (
	benchJoinRate  = 1e6
	benchJoinBurst = 1 << 30
)

func raiseJoinLimit(c *config.Coordinator) {
	c.JoinRate, c.JoinGlobalRate = benchJoinRate, benchJoinRate
	c.JoinBurst, c.JoinGlobalBurst = benchJoinBurst, benchJoinBurst
}

// joinLimitFlags are raiseJoinLimit's settings as coordinator flags.
func joinLimitFlags() []string {
	rate, burst := strconv.FormatFloat(benchJoinRate, 'f', -1, 64), strconv.Itoa(benchJoinBurst)
	return []string{"--join-rate", rate, "--join-burst", burst, "--join-global-rate", rate, "--join-global-burst", burst}
}

func joinLimitNote(r *Result) {
	d := config.CoordinatorDefaults()
	r.param("join_rate", benchJoinRate)
	r.param("join_burst", benchJoinBurst)
	r.note("JOIN RATE LIMITS RAISED: join_rate and join_global_rate=%g/s, join_burst and join_global_burst=%d (defaults %g/s and %g/s, bursts %d and %d), because the simulated agents join from a few loopback addresses and faster than a fleet normally joins",
		float64(benchJoinRate), benchJoinBurst, d.JoinRate, d.JoinGlobalRate, d.JoinBurst, d.JoinGlobalBurst)
}

// runEnroll joins N real agents (agent.New with a join string: own key,
// CSR, pinned bootstrap, files in its own data dir) and then connects them
// (agent.Run: mTLS session, Hello/Welcome), and compares the rates with the
// crypto ceiling.
func runEnroll(ctx context.Context, r *Result) error {
	ceil, err := getCeilings(ctx, r)
	if err != nil {
		return err
	}
	n := opts.enrollAgents
	r.param("agents", n)
	r.param("concurrency", opts.enrollConc)
	r.param("agent_data_dirs", opts.agentDir)
	joinLimitNote(r)
	p, err := startCoordinator(ctx, "enroll", raiseJoinLimit)
	if err != nil {
		return err
	}
	defer p.stop()

	t0, cpu0 := time.Now(), processCPU()
	fleet, err := joinAgents(ctx, p, "e", n, 1, opts.enrollConc, noopExec{})
	if err != nil {
		return err
	}
	joinDur, joinCPU := time.Since(t0), processCPU()-cpu0
	defer fleet.stop()
	progress("enroll: %d joins in %s", n, joinDur.Round(time.Millisecond))

	t1, cpu1 := time.Now(), processCPU()
	fleet.run()
	if _, err := p.admin.waitConnected(ctx, n, 2*time.Minute); err != nil {
		return err
	}
	connDur, connCPU := time.Since(t1), processCPU()-cpu1
	progress("enroll: %d sessions open in %s", n, connDur.Round(time.Millisecond))

	joins := float64(n) / joinDur.Seconds()
	conns := float64(n) / connDur.Seconds()
	both := float64(n) / (joinDur + connDur).Seconds()
	r.fig("joins_per_s", round(joins, 0), "/s").ratio(ceil.join(), "join_ceiling").
		withNote("agent.New with a join string: key, CSR, pinned join, files")
	r.fig("connects_per_s", round(conns, 0), "/s").ratio(ceil.MTLS, "mtls_handshakes_per_s").
		withNote("agent.Run until /v1/status counts every session")
	r.fig("enrolled_per_s", round(both, 0), "/s").ratio(ceil.enroll(), "enroll_ceiling").
		withNote("join + connect")
	r.fig("enroll_ratio_to_ceiling", round(both/ceil.enroll(), 3), "").atLeast(0.70)
	// CPU per agent (bench process: agents and coordinator together) tells
	// work from waiting: at the ceiling a join costs one public handshake
	// (both sides) and one CSR check+issue, a connect one mTLS handshake.
	r.fig("join_cpu_us", round(float64(joinCPU.Microseconds())/float64(n), 0), "µs").
		withNote(fmt.Sprintf("CPU per join, both sides; the ceiling's public handshake + CSR is %.0f µs", float64(ceil.PublicCPU.Microseconds())+1e6*float64(runtime.GOMAXPROCS(0))/ceil.CSR))
	r.fig("connect_cpu_us", round(float64(connCPU.Microseconds())/float64(n), 0), "µs").
		withNote(fmt.Sprintf("CPU per connect, both sides; the ceiling's mTLS handshake is %d µs", ceil.MTLSCPU.Microseconds()))
	r.fig("join_time_s", round(joinDur.Seconds(), 2), "s")
	r.fig("connect_time_s", round(connDur.Seconds(), 2), "s")
	if n < 100 {
		r.note("only %d agents: rates are dominated by start-up", n)
	}
	return nil
}
