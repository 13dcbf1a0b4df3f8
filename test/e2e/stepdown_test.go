package e2e

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// tcpProxy passes TCP connections to target until paused: pausing cuts
// every connection through it and refuses new ones, as a network
// partition between one coordinator and etcd would.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	paused bool
	conns  map[net.Conn]struct{}
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); p.pause() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pass(c)
		}
	}()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) pass(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.paused {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

func (p *tcpProxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

func (p *tcpProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

// TestFormerLeaderStepsDown: coordinator A leads, reaching etcd through a
// proxy; B reaches it directly. A is cut off from etcd long enough for its
// lease to end and B to lead. When A reaches etcd again it sees that B
// leads: it steps down in the same process (no exit, no supervisor),
// rebuilds from the store and serves as B's follower on the same ports:
// status through A names B as the leader, its agent is served again, and
// a job submitted through A runs.
func TestFormerLeaderStepsDown(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	proxy := startTCPProxy(t, srv.Endpoint)
	b := peerCluster(t, srv, "coord-b", "--node-lost-timeout", "60s")
	a := peerCluster(t, srv, "coord-a", "--node-lost-timeout", "60s")
	for i, arg := range a.args {
		if strings.HasPrefix(arg, "etcd://") {
			a.args[i] = "etcd://" + proxy.addr()
		}
	}
	startPeers(a) // A leads
	startPeers(b)
	a.startAgent("n1", 1, "--coordinator", a.cluster)
	id := strings.TrimSpace(a.mustWard("submit", "--count", "2", "--", "true"))
	if d := a.waitJob(id, 30*time.Second); d.State != api.JobCompleted {
		t.Fatalf("job before the partition: %s", d.State)
	}
	pid := a.coord.cmd.Process.Pid

	proxy.pause()
	waitFor(t, 30*time.Second, "B to lead while A is cut off from etcd", func() bool {
		st, ok := b.haStatus()
		return ok && leaderOf(st) == b.cluster
	})
	proxy.resume()
	waitFor(t, 30*time.Second, "A to step down", func() bool {
		return strings.Contains(a.coord.stderrText(), `msg="stepped down: starting again as a follower, with the state in the store"`)
	})
	if !a.coord.running() || a.coord.cmd.Process.Pid != pid {
		t.Fatalf("A's process exited: %s", a.coord.stderrText())
	}
	waitFor(t, 30*time.Second, "status through A to name B as the leader and A as a follower", func() bool {
		st, ok := a.haStatus()
		if !ok || st.Partial != nil || leaderOf(st) != b.cluster {
			return false
		}
		for _, co := range st.Coordinators {
			if co.ClusterAddr == a.cluster && co.Alive && !co.Leader {
				return true
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "n1 served again", func() bool { n, ok := a.node("n1"); return ok && n.State == "ready" })
	id = strings.TrimSpace(a.mustWard("submit", "--count", "3", "--", "true"))
	if d := a.waitJob(id, 30*time.Second); d.State != api.JobCompleted || d.Counts[api.TaskCompleted] != 3 {
		t.Fatalf("job through A after it stepped down: %s %v", d.State, d.Counts)
	}
	if !a.coord.running() {
		t.Fatalf("A stopped: %s", a.coord.stderrText())
	}
	t.Logf("A: %s", logLine(t, a.coord.stderrText(), `msg="stepped down`))
}
