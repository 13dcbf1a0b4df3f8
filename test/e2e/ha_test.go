package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// coordProc is one coordinator of a several-coordinator cluster.
type coordProc struct {
	proc    *proc
	data    string
	ctxPath string
	cluster string
	public  string
}

// startPeer starts another coordinator on the cluster's etcd, with its own
// data directory and coordinator id; it finds the cluster CA in etcd.
func (c *cluster) startPeer(name string, args ...string) *coordProc {
	c.t.Helper()
	data := filepath.Join(c.dir, name)
	full := append([]string{"coordinator", "--data", data, "--coordinator-id", name, "--advertise", "127.0.0.1", "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, args...)
	p := startProc(c.t, c.dir, name, nil, full...)
	cp := &coordProc{proc: p, data: data}
	waitFor(c.t, 30*time.Second, name+"'s export line", func() bool {
		b, _ := os.ReadFile(p.stdout)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "export WARD_CONTEXT=") {
				cp.ctxPath = strings.TrimPrefix(l, "export WARD_CONTEXT=")
			}
		}
		if !p.running() {
			c.t.Fatalf("%s exited: %s", name, p.stderrText())
		}
		return cp.ctxPath != ""
	})
	ctx, err := config.LoadContext(cp.ctxPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cp.cluster, cp.public = ctx.Server, ctx.Public
	return cp
}

// use points the CLI at coordinator p.
func (c *cluster) use(p *coordProc) { c.ctxPath, c.cluster, c.public = p.ctxPath, p.cluster, p.public }

// haStatus is `ward status -o json`, or false when it failed.
func (c *cluster) haStatus() (api.Status, bool) {
	out, _, code := c.ward("status", "-o", "json")
	var st api.Status
	if code != 0 || jsonUnmarshal(out, &st) != nil {
		return st, false
	}
	return st, true
}

// leaderOf is the live leader's cluster address in st.
func leaderOf(st api.Status) string {
	for _, co := range st.Coordinators {
		if co.Leader && co.Alive {
			return co.ClusterAddr
		}
	}
	return ""
}

// indexCounts reads the lines tasks appended: index → times it ran to
// the end.
func indexCounts(t *testing.T, path string) map[int]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, l := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("bad line %q in %s", l, path)
		}
		out[n]++
	}
	return out
}

func checkExactlyOnce(t *testing.T, path string, n int) {
	t.Helper()
	counts := indexCounts(t, path)
	var missing, dup []int
	for i := 0; i < n; i++ {
		switch counts[i] {
		case 1:
		case 0:
			missing = append(missing, i)
		default:
			dup = append(dup, i)
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(counts) != n {
		t.Fatalf("%s: %d indexes ran; missing %v, more than once %v", path, len(counts), missing, dup)
	}
}

// TestHAFailover: three coordinators on one etcd, three agents connected
// to different coordinators, 1,000 tasks. kill -9 of the leader in the
// middle: a follower takes over and places within 10 s, and every index
// runs to the end exactly once. Then kill -9 of a follower that agents are
// connected to: they move to another coordinator, and again nothing is
// lost or run twice.
func TestHAFailover(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	args := append(etcdArgs(srv), "--node-lost-timeout", "60s")
	c := newCluster(t, args...)
	first := &coordProc{proc: c.coord, data: c.data, ctxPath: c.ctxPath, cluster: c.cluster, public: c.public}
	c2 := c.startPeer("coord-2", args...)
	c3 := c.startPeer("coord-3", args...)
	coords := []*coordProc{first, c2, c3}

	// Every coordinator answers the CLI; all agree on one leader, the
	// first, and list three live coordinators.
	for _, p := range coords {
		c.use(p)
		waitFor(t, 20*time.Second, "status through "+p.cluster+" to list 3 live coordinators", func() bool {
			st, ok := c.haStatus()
			alive := 0
			for _, co := range st.Coordinators {
				if co.Alive {
					alive++
				}
			}
			return ok && alive == 3 && leaderOf(st) == first.cluster && len(st.StoreEndpoints) == 1 && st.StoreEndpoints[0].OK
		})
	}
	// Each coordinator refreshes its list of peers with its next report:
	// wait for a report from each made after all three were live, so
	// agents are given all three.
	allLive := time.Now()
	waitFor(t, 20*time.Second, "a report from each coordinator", func() bool {
		st, ok := c.haStatus()
		n := 0
		for _, co := range st.Coordinators {
			if co.Alive && co.Reported.After(allLive) {
				n++
			}
		}
		return ok && n == 3
	})
	c.use(first)
	text := c.mustWard("status")
	if strings.Count(text, "coordinator:") != 3 || !strings.Contains(text, "LEADER") || !strings.Contains(text, "etcd:") {
		t.Errorf("status lists no three coordinators with a leader and etcd:\n%s", text)
	}

	// Agents join through a follower's public port (the join is forwarded)
	// and each prefers another coordinator.
	c.use(c2)
	order := map[string][]string{
		"a": {c2.cluster, c3.cluster, first.cluster},
		"b": {c3.cluster, c2.cluster, first.cluster},
		"c": {first.cluster, c2.cluster, c3.cluster},
	}
	for _, name := range []string{"a", "b", "c"} {
		c.startAgent(name, 4, "--coordinator", strings.Join(order[name], ","))
	}
	waitFor(t, 20*time.Second, "each agent on its first coordinator", func() bool {
		ok := 0
		for _, n := range c.nodes() {
			if strings.HasSuffix(n.Coordinator, "@"+order[n.Name][0]) {
				ok++
			}
		}
		return ok == 3
	})
	// Agents learned every coordinator at join and in their Welcome.
	for _, name := range []string{"a", "b", "c"} {
		b, err := os.ReadFile(filepath.Join(c.agentDir(name), "agent.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range coords {
			if !strings.Contains(string(b), p.cluster) {
				t.Errorf("agent %s's state does not list coordinator %s: %s", name, p.cluster, b)
			}
		}
	}
	if table := c.mustWard("node", "ls"); !strings.Contains(table, "COORDINATOR") || !strings.Contains(table, "@"+c3.cluster) {
		t.Errorf("node ls shows no coordinator per agent:\n%s", table)
	}

	// 1,000 tasks, each appending its index once it has run.
	out1 := filepath.Join(c.dir, "ran-1")
	id := strings.TrimSpace(c.mustWard("submit", "--count", "1000", "--", "sh", "-c", "sleep 0.05; echo {index} >> "+out1))
	waitFor(t, 60*time.Second, "a third of the tasks to finish", func() bool { return len(indexCounts(t, out1)) >= 300 })
	first.proc.kill9()
	killed := time.Now()
	var queuedAtTakeover int
	waitFor(t, 15*time.Second, "a new leader", func() bool {
		st, ok := c.haStatus()
		if !ok || leaderOf(st) == "" || leaderOf(st) == first.cluster {
			return false
		}
		d := c.job(id)
		queuedAtTakeover = d.Counts[api.TaskQueued]
		return true
	})
	elected := time.Since(killed)
	waitFor(t, 15*time.Second, "the new leader to place tasks", func() bool {
		d := c.job(id)
		return d.Counts[api.TaskQueued] < queuedAtTakeover || d.State == api.JobCompleted
	})
	placed := time.Since(killed)
	t.Logf("kill -9 of the leader: new leader seen after %s, placing after %s", elected.Round(time.Millisecond), placed.Round(time.Millisecond))
	if placed > 10*time.Second {
		t.Errorf("the new leader placed %s after the kill, want within 10 s", placed)
	}
	if d := c.waitJob(id, 120*time.Second); d.State != api.JobCompleted || d.Counts[api.TaskCompleted] != 1000 {
		t.Fatalf("job %s after the failover: %s %v", id, d.State, d.Counts)
	}
	checkExactlyOnce(t, out1, 1000)

	// Kill -9 a follower that agents are on: they move.
	st, _ := c.haStatus()
	lead := leaderOf(st)
	var victim, survivor *coordProc
	for _, p := range []*coordProc{c2, c3} {
		if p.cluster != lead {
			victim = p
		} else {
			survivor = p
		}
	}
	// Agent a moves to the follower by preference (a restart with another
	// --coordinator order), so the kill below has an agent to move.
	c.agents["a"].interrupt()
	c.agents["a"].wait(20 * time.Second)
	c.startAgent("a", 4, "--coordinator", victim.cluster+","+survivor.cluster)
	waitFor(t, 30*time.Second, "an agent on the follower "+victim.cluster, func() bool {
		for _, n := range c.nodes() {
			if n.Connected && strings.HasSuffix(n.Coordinator, "@"+victim.cluster) {
				return true
			}
		}
		return false
	})
	c.use(survivor)
	out2 := filepath.Join(c.dir, "ran-2")
	id2 := strings.TrimSpace(c.mustWard("submit", "--count", "300", "--", "sh", "-c", "sleep 0.05; echo {index} >> "+out2))
	waitFor(t, 60*time.Second, "a third of the second job", func() bool { return len(indexCounts(t, out2)) >= 100 })
	victim.proc.kill9()
	waitFor(t, 30*time.Second, "every agent on the surviving coordinator", func() bool {
		ns := c.nodes()
		on := 0
		for _, n := range ns {
			if n.Connected && strings.HasSuffix(n.Coordinator, "@"+survivor.cluster) {
				on++
			}
		}
		return on == 3
	})
	if d := c.waitJob(id2, 120*time.Second); d.State != api.JobCompleted || d.Counts[api.TaskCompleted] != 300 {
		t.Fatalf("job %s after the follower died: %s %v", id2, d.State, d.Counts)
	}
	checkExactlyOnce(t, out2, 300)
}
