package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// TestHAFaultSoak is the fault soak against three coordinators on one real
// etcd: four real agents (told every coordinator) run short tasks while a
// seeded schedule, every 2 to 4 seconds, kills -9 the leader (twice a
// round) or a follower and restarts it on the same ports after 0.2 to 2 s,
// kills -9 and restarts an agent, or stops one (SIGSTOP) past its liveness
// and lost timeouts and resumes it. Jobs are submitted all along through a
// coordinator that may be the leader or a follower. The checkers are
// TestFaultSoak's: every task completed exactly once with its output, every
// submission audited (on whichever coordinator led), and no task ran on
// two agents, or twice on one, at once. Its size follows the same
// WARD_SOAK_* settings.
func TestHAFaultSoak(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	args := []string{"--heartbeat-interval", "1s", "--node-lost-timeout", "2s"}
	peers := []*cluster{peerCluster(t, srv, "coord-1", args...), peerCluster(t, srv, "coord-2", args...), peerCluster(t, srv, "coord-3", args...)}
	startPeers(peers...)
	front := peers[0] // the CLI's coordinator: a follower or the leader
	var addrs, audits []string
	for _, p := range peers {
		addrs = append(addrs, p.cluster)
		audits = append(audits, p.data)
	}
	waitFor(t, 30*time.Second, "three live coordinators and a leader", func() bool {
		st, ok := front.haStatus()
		alive := 0
		for _, co := range st.Coordinators {
			if co.Alive {
				alive++
			}
		}
		return ok && alive == 3 && leaderOf(st) != ""
	})

	// Each agent prefers another coordinator (most sessions are relayed by
	// a follower), and fails over to the others in turn.
	s := newSoakRun(t, front, func(name string) []string {
		i := int(name[len(name)-1]-'0') % len(addrs)
		return []string{"--coordinator", strings.Join(append(slices.Clone(addrs[i:]), addrs[:i]...), ",")}
	})
	// leader is the coordinator leading now (waiting out an election in
	// progress), and the others; changes counts the new leaders it saw.
	var last *cluster
	changes := 0
	leader := func() (*cluster, []*cluster) {
		var lead *cluster
		var rest []*cluster
		defer func() {
			if last != nil && lead != last {
				changes++
			}
			last = lead
		}()
		waitFor(t, 30*time.Second, "a live leader", func() bool {
			st, ok := front.haStatus()
			if !ok {
				return false
			}
			lead, rest = nil, nil
			for _, p := range peers {
				if p.cluster == leaderOf(st) && p.coord.running() {
					lead = p
				} else {
					rest = append(rest, p)
				}
			}
			return lead != nil
		})
		return lead, rest
	}
	restart := func(p *cluster, f *soakFault) {
		f.Target = p.cluster
		p.coord.kill9()
		s.pause(200, 2000)
		p.restartCoordinator()
	}
	s.run([]string{"kill-leader", "kill-leader", "kill-follower", "kill-agent", "stop-agent"}, func(kind string, f *soakFault) {
		lead, rest := leader()
		switch kind {
		case "kill-leader":
			restart(lead, f)
		case "kill-follower":
			restart(rest[s.rng.IntN(len(rest))], f)
		}
	})
	lead, _ := leader()
	s.check(audits, map[string]any{"coordinators": len(peers), "leader_changes": changes, "leader_at_end": lead.cluster})
	if changes == 0 {
		t.Error("the leadership never moved to another coordinator: the soak did not exercise a failover")
	}
}
