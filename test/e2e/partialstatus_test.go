package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestStatusThroughFollowerDuringElection: three coordinators on one etcd,
// an agent. The leader B is killed; `ward status` through the follower A
// is asked again and again until a new leader answers. Every call succeeds
// within seconds: while no leader answers, A answers itself, marked
// partial, with the reason and the last leader, and without the job
// system's figures, which only a leader knows; once a leader answers, the
// status is whole again.
func TestStatusThroughFollowerDuringElection(t *testing.T) {
	a, b, _ := threeCoordinators(t)
	a.startAgent("n1", 1)
	var st api.Status
	a.wardJSON(&st, "status")
	if st.Partial != nil || st.Nodes != 1 {
		t.Fatalf("status through A with a leader: partial %+v, nodes %d", st.Partial, st.Nodes)
	}

	b.coord.kill9()
	killed := time.Now()
	partial := map[string]int{}
	for {
		start := time.Now()
		out, errOut, code := a.ward("status", "-o", "json")
		took := time.Since(start)
		if code != 0 {
			t.Fatalf("status through A %s after the leader died: exit %d after %s\n%s", time.Since(killed).Round(time.Millisecond), code, took, errOut)
		}
		if took > 5*time.Second {
			t.Fatalf("status through A took %s during the election", took)
		}
		var st api.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		if st.Partial == nil {
			if leaderOf(st) == "" || leaderOf(st) == b.cluster || st.Nodes != 1 {
				t.Fatalf("a whole status without a new leader: leader %q, nodes %d", leaderOf(st), st.Nodes)
			}
			t.Logf("a new leader answered %s after the kill", time.Since(killed).Round(time.Millisecond))
			break
		}
		ps := st.Partial
		partial[ps.Election]++
		if ps.LastLeader == "" || ps.Reason == "" || ps.LeaseTTL.D() <= 0 {
			t.Fatalf("partial status: %+v; want the reason and the last leader", ps)
		}
		switch ps.Election {
		case api.ElectionLeaderUnreachable: // A tried B
			if !strings.Contains(ps.Reason, b.cluster) {
				t.Fatalf("partial status while B's term holds: %+v; want the reason to name B", ps)
			}
		case api.ElectionUnderWay: // B's term ended; its record is the last
			if !strings.Contains(ps.LastLeader, b.cluster) {
				t.Fatalf("partial status during the election: %+v; want B as the last leader", ps)
			}
		case api.ElectionTakingOver: // the winner answered, still loading
			if strings.Contains(ps.LastLeader, b.cluster) {
				t.Fatalf("partial status of the winner: %+v; want the winner as the last leader", ps)
			}
		default:
			t.Fatalf("partial status with election state %q", ps.Election)
		}
		if st.Nodes != 0 || st.Connected != 0 || st.AgentVersions != nil {
			t.Fatalf("a partial status claims the job system's figures: nodes %d, connected %d, versions %v", st.Nodes, st.Connected, st.AgentVersions)
		}
		if len(st.Coordinators) != 3 || st.Coordinator == "" {
			t.Fatalf("a partial status without the coordinators: %+v", st.Coordinators)
		}
		if partial[ps.Election] == 1 {
			// The text form says what it is, and leaves out what it cannot know.
			if text, _, code := a.ward("status"); code == 0 && !strings.Contains(text, "PARTIAL:") && !strings.Contains(text, "LEADER") {
				t.Fatalf("partial status text:\n%s", text)
			} else if code == 0 && strings.Contains(text, "PARTIAL:") {
				t.Logf("partial status text:\n%s", text)
				if !strings.Contains(text, "unknown until a leader answers") {
					t.Fatalf("partial status text shows the job system's figures:\n%s", text)
				}
			}
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatal("no new leader 30 s after the kill")
		}
	}
	t.Logf("partial answers by election state: %v", partial)
	if partial[api.ElectionLeaderUnreachable] == 0 {
		t.Fatal("no partial status while the dead leader's term still held")
	}
}
