package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// TestJoinStringNamesEveryCoordinator: three coordinators on one etcd. A
// join string made on the leader B names B's public address first, then
// A's and C's. Once B is dead, an agent joins with it, and a person logs
// in with a user join string B made: both through a coordinator still up.
func TestJoinStringNamesEveryCoordinator(t *testing.T) {
	a, b, c := threeCoordinators(t)
	want := []string{b.public, a.public, c.public}
	sameAddrs := func(js enroll.JoinString) bool {
		got := js.Addrs()
		return len(got) == 3 && got[0] == b.public && slices.Contains(got, a.public) && slices.Contains(got, c.public)
	}
	// B learns of A and C with its next member report (every 2 s).
	var join string
	waitFor(t, 20*time.Second, "B's join strings to name the three coordinators", func() bool {
		join = b.token()
		js, err := enroll.ParseJoinString(join)
		return err == nil && sameAddrs(js)
	})
	joinErin := filepath.Join(b.dir, "join-erin")
	b.mustWard("user", "add", "erin", "--role", "viewer", "--out", joinErin)
	if js, err := enroll.ParseJoinString(strings.TrimSpace(string(mustRead(t, joinErin)))); err != nil || !sameAddrs(js) {
		t.Fatalf("erin's join string names %v (%v), want %v", js.Addrs(), err, want)
	}

	b.coord.kill9()
	awaitNewLeader(t, a, b)
	p := startProc(t, a.dir, "agent-n1", nil, "agent", "--data", a.agentDir("n1"), "--name", "n1", "--slots", "1",
		"--join-file", a.writeJoinFile(join))
	waitFor(t, 30*time.Second, "n1 to join through a coordinator still up", func() bool {
		if !p.running() {
			t.Fatalf("the agent exited: %s", p.stderrText())
		}
		n, ok := a.node("n1")
		return ok && n.State == "ready"
	})
	id := strings.TrimSpace(a.mustWard("submit", "--", "true"))
	if d := a.waitJob(id, 30*time.Second); d.State != api.JobCompleted {
		t.Fatalf("a job on the agent that joined after B died: %s", d.State)
	}
	erin := &person{c: a, name: "erin", ctxPath: filepath.Join(t.TempDir(), "context")}
	erin.login(joinErin)
	erin.must("job", "ls", "--all")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// threeCoordinators starts coordinators A, B and C on a new etcd, B first
// so that B leads.
func threeCoordinators(t *testing.T) (a, b, c *cluster) {
	t.Helper()
	srv := etcdtest.StartT(t, etcdtest.Options{})
	a, b, c = peerCluster(t, srv, "coord-a"), peerCluster(t, srv, "coord-b"), peerCluster(t, srv, "coord-c")
	startPeers(b)
	startPeers(a, c)
	return a, b, c
}

// awaitNewLeader waits until a leader other than gone answers status
// through via (a whole status: the new leader has loaded the job system).
func awaitNewLeader(t *testing.T, via, gone *cluster) {
	t.Helper()
	waitFor(t, 20*time.Second, "a new leader", func() bool {
		st, ok := via.haStatus()
		l := leaderOf(st)
		return ok && st.Partial == nil && l != "" && l != gone.cluster
	})
}
