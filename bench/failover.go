package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
)

// failoverTarget is the bound on kill -9 of the leader → first
// task placed by the new leader, with default settings.
const failoverTarget = 5 * time.Second

// runFailover: three `ward coordinator` processes on one local etcd,
// in-process agents that know all three, and, -failover-runs times: kill
// -9 of the leader, then a job submitted through a survivor (retried
// while no coordinator leads); the figure is kill → the job's first task
// done, which the new leader placed. The killed coordinator is restarted
// (as a follower) before the next run.
func runFailover(ctx context.Context, r *Result) error {
	runs := opts.failoverRuns
	r.param("runs", runs)
	r.param("coordinators", 3)
	r.param("agents", opts.failoverAgents)
	r.param("leader_lease_ttl", "default (3s)")
	r.param("store", "one local etcd member (its own process, fsync on, mutual TLS)")
	dir, done, err := scenarioDir("failover")
	if err != nil {
		return err
	}
	defer done()
	h, err := startHACluster(ctx, "failover", dir, 3)
	if err != nil {
		return err
	}
	defer h.stop()
	members := h.members
	addrs := h.clusterAddrs()
	p0 := &inproc{dir: members[0].dir, admin: members[0].admin}
	fleet, err := joinAgents(ctx, p0, "f", opts.failoverAgents, 4, 4, noopExec{}, func(c *config.Agent) { c.Coordinators = addrs })
	if err != nil {
		return err
	}
	defer fleet.stop()
	fleet.run()

	var took, elected []time.Duration
	for run := range runs {
		lead, err := waitLeader(ctx, members, nil)
		if err != nil {
			return err
		}
		if _, err := lead.admin.waitConnected(ctx, opts.failoverAgents, time.Minute); err != nil {
			return err
		}
		var via *haMember
		for _, m := range members {
			if m != lead {
				via = m
				break
			}
		}
		progress("failover: run %d, kill -9 of the leader %s", run+1, lead.cluster)
		lead.proc.cmd.Process.Kill()
		killed := time.Now()
		<-lead.proc.done
		d, e, err := firstTaskAfter(ctx, via, members, lead, killed)
		if err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		took, elected = append(took, d), append(elected, e)
		if err := h.start(ctx, lead); err != nil {
			return fmt.Errorf("restart the killed coordinator: %w", err)
		}
		if err := waitMembers(ctx, members, 3); err != nil {
			return err
		}
	}
	slices.Sort(took)
	slices.Sort(elected)
	r.fig("kill_to_first_task_p50_ms", ms(percentile(took, 50)), "ms")
	r.fig("kill_to_first_task_max_ms", ms(took[len(took)-1]), "ms").atMost(ms(failoverTarget)).
		withNote("kill -9 of the leader → the first task of a job submitted through a survivor has run (placed by the new leader)")
	r.fig("kill_to_new_leader_p50_ms", ms(percentile(elected, 50)), "ms").withNote("until a survivor's status names the new leader; the lease TTL is most of it")
	r.fig("kill_to_new_leader_max_ms", ms(elected[len(elected)-1]), "ms")
	return nil
}

// firstTaskAfter submits a job through via until a leader accepts it and
// waits for its first task done; it returns kill → that task, and kill →
// the first status naming a new leader.
func firstTaskAfter(ctx context.Context, via *haMember, members []*haMember, dead *haMember, killed time.Time) (time.Duration, time.Duration, error) {
	deadline := killed.Add(60 * time.Second)
	var job api.Job
	for {
		var err error
		job, err = via.admin.submit(ctx, api.JobSpec{Argv: []string{"true"}, Count: opts.failoverAgents})
		if err == nil {
			break
		}
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeUnavailable {
			debugf("failover: submit: %v", err)
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("no coordinator accepted a job within 60 s of the kill: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lead, err := waitLeader(ctx, members, dead)
	if err != nil {
		return 0, 0, err
	}
	elected := lead.electedAfter(killed)
	for {
		d, err := via.admin.jobDetail(ctx, job.ID)
		if err == nil && d.Counts[api.TaskCompleted] > 0 {
			return time.Since(killed), elected, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("job %s had no task done within 60 s of the kill (last error %v)", job.ID, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// electedAfter is how long after t this coordinator's status first named
// it the leader (read from its own member record: Since of the term).
func (m *haMember) electedAfter(t time.Time) time.Duration {
	st, err := m.admin.status(context.Background())
	if err != nil {
		return 0
	}
	for _, co := range st.Coordinators {
		if co.Leader && co.ClusterAddr == m.cluster && !co.LeaderSince.IsZero() {
			return co.LeaderSince.Sub(t)
		}
	}
	return 0
}

// waitLeader returns the live member that leads (not dead).
func waitLeader(ctx context.Context, members []*haMember, dead *haMember) (*haMember, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, m := range members {
			if m == dead || m.proc == nil {
				continue
			}
			st, err := m.admin.status(ctx)
			if err != nil {
				continue
			}
			for _, co := range st.Coordinators {
				if co.Leader && co.Alive {
					for _, l := range members {
						if l.cluster == co.ClusterAddr && l != dead {
							return l, nil
						}
					}
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, errors.New("no leader within 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMembers waits until a status lists n live coordinators.
func waitMembers(ctx context.Context, members []*haMember, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, m := range members {
			if st, err := m.admin.status(ctx); err == nil {
				alive := 0
				for _, co := range st.Coordinators {
					if co.Alive {
						alive++
					}
				}
				if alive >= n {
					return nil
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d live coordinators not listed within 60 s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
