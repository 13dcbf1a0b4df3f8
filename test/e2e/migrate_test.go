package e2e

import (
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// hostIP returns a non-loopback IPv4 address of this machine, so a test
// can make a connection that the coordinator sees as remote.
func hostIP(t *testing.T) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

// plaintextAddr reads the plaintext listener's address from the log.
func (c *cluster) plaintextAddr() string {
	c.t.Helper()
	var addr string
	waitFor(c.t, 5*time.Second, "the plaintext listener log line", func() bool {
		m := regexp.MustCompile(`listener=plaintext addr=(\S+)`).FindAllStringSubmatch(c.coord.stderrText(), -1)
		if len(m) > 0 {
			addr = m[len(m)-1][1]
		}
		return addr != ""
	})
	return addr
}

func (c *cluster) migration() api.MigrationStatus {
	c.t.Helper()
	var st api.MigrationStatus
	c.wardJSON(&st, "migrate", "status")
	return st
}

func TestPlaintextMigration(t *testing.T) {
	ip := hostIP(t)
	if ip == "" {
		t.Skip("this machine has no non-loopback IPv4 address to stand for a remote peer")
	}
	// A non-loopback plaintext listener needs --insecure-plaintext.
	bad := startProc(t, t.TempDir(), "coord-bad", nil, "coordinator", "--data", t.TempDir(), "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0", "--plaintext-addr", "0.0.0.0:0")
	if code := bad.wait(10 * time.Second); code == 0 || !strings.Contains(bad.stderrText(), "--insecure-plaintext") {
		t.Fatalf("a remote plaintext listener without --insecure-plaintext: %s", bad.stderrText())
	}

	c := newCluster(t, "--plaintext-addr", "0.0.0.0:0", "--insecure-plaintext", "--node-lost-timeout", "60s")
	if !strings.Contains(c.coord.stderrText(), "INSECURE setting in effect: a plaintext listener") {
		t.Fatal("the insecure plaintext listener is not logged loudly at start")
	}
	_, port, _ := net.SplitHostPort(c.plaintextAddr())
	remote := net.JoinHostPort(ip, port)
	c.startAgent("p", 2, "--insecure-plaintext-coordinator", remote)
	c.startAgent("s", 2)
	c.startAgent("k", 1, "--insecure-skip-verify")

	links := map[string]string{}
	for _, n := range c.nodes() {
		links[n.Name] = n.Link
	}
	if links["p"] != "NO" || links["s"] != "YES" || links["k"] != "PARTLY" {
		t.Fatalf("links: %v", links)
	}
	if !strings.Contains(c.agents["p"].stderrText(), "INSECURE: this agent's session runs in PLAINTEXT") ||
		!strings.Contains(c.agents["k"].stderrText(), "INSECURE: --insecure-skip-verify") {
		t.Fatal("insecure agents do not warn at start")
	}
	st := c.migration()
	if len(st.Insecure) != 2 || st.Insecure[0].Node != "k" || st.Insecure[1].Node != "p" || st.Secure != 1 {
		t.Fatalf("migrate status: %+v", st)
	}
	var status api.Status
	certFile, keyFile := certAndKey(t, c)
	hc := c.httpClient(certFile, keyFile)
	resp, err := hc.Get("https://" + c.cluster + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&status)
	resp.Body.Close()
	if joined := strings.Join(status.Insecure, "|"); !strings.Contains(joined, "plaintext listener reachable") || !strings.Contains(joined, "agent p: plaintext") || !strings.Contains(joined, "agent k: does not verify") {
		t.Fatalf("status does not list the insecure settings: %v", status.Insecure)
	}
	resp, _ = hc.Get("https://" + c.cluster + "/metrics")
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ward_sessions{link="NO"} 1`, `ward_sessions{link="PARTLY"} 1`, `ward_sessions{link="YES"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Work on the plaintext agent keeps running through its move to TLS.
	id := strings.TrimSpace(c.mustWard("submit", "--count", "2", "--label", "x=y", "--wait-for-nodes", "--", "true"))
	c.mustWard("job", "cancel", id)
	job := strings.TrimSpace(c.mustWard("submit", "--count", "5", "--", "sh", "-c", "sleep 2; echo {index}"))
	waitFor(t, 10*time.Second, "tasks on p", func() bool {
		d := c.job(job)
		for _, task := range d.Tasks {
			if len(task.Attempts) > 0 && task.Attempts[0].Node == "p" && task.State == api.TaskRunning {
				return true
			}
		}
		return false
	})
	// finish refuses while a remote peer is on plaintext, and names it.
	if _, errOut, code := c.ward("migrate", "finish"); code == 0 || !strings.Contains(errOut, "[p]") {
		t.Fatalf("finish with a remote plaintext peer: %s", errOut)
	}
	out := c.mustWard("migrate", "upgrade", "p")
	if !strings.Contains(out, "Peers not on YES links") {
		t.Fatalf("migrate upgrade: %s", out)
	}
	waitFor(t, 15*time.Second, "p to move to TLS", func() bool { n, _ := c.node("p"); return n.Link == "YES" })
	d := c.waitJob(job, 30*time.Second)
	if d.State != api.JobCompleted {
		t.Fatalf("job %s", d.State)
	}
	for _, task := range d.Tasks {
		if len(task.Attempts) != 1 {
			t.Fatalf("task %d was retried during the move: %+v", task.Index, task.Attempts)
		}
	}
	// The move is remembered: a restart of p stays on TLS.
	c.agents["p"].kill9()
	c.startAgent("p", 2)
	if n, _ := c.node("p"); n.Link != "YES" {
		t.Fatalf("p after restart: %s", n.Link)
	}

	// finish: loopback only, no restart; remote plaintext connections fail,
	// local ones still work, and TLS to it gets a plain answer.
	st = func() api.MigrationStatus { var s api.MigrationStatus; c.wardJSON(&s, "migrate", "finish"); return s }()
	if !st.Finished || !strings.HasPrefix(st.Plaintext, "127.0.0.1:") {
		t.Fatalf("after finish: %+v", st)
	}
	if conn, err := net.DialTimeout("tcp", remote, 2*time.Second); err == nil {
		conn.Close()
		t.Fatal("the plaintext listener still accepts remote connections")
	}
	local := net.JoinHostPort("127.0.0.1", port)
	out, _, code := c.ward("check", local)
	if code == 0 || !strings.Contains(out, "tls_to_plaintext_expected") {
		t.Fatalf("ward check against the plaintext port: %s", out)
	}
	c.startAgent("l", 1, "--insecure-plaintext-coordinator", local)
	if n, _ := c.node("l"); n.Link != "NO" {
		t.Fatalf("local plaintext agent: %s", n.Link)
	}
	c.agents["l"].kill9()
	c.startAgent("l", 1, "--upgrade-tls")
	if n, _ := c.node("l"); n.Link != "YES" {
		t.Fatalf("after --upgrade-tls: %s", n.Link)
	}
	// A failed upgrade is shown, never a silent fallback.
	c.startAgent("f", 1, "--insecure-plaintext-coordinator", local, "--coordinator", "127.0.0.1:1")
	c.mustWard("migrate", "upgrade", "f")
	waitFor(t, 15*time.Second, "f's upgrade failure to be reported", func() bool {
		for _, p := range c.migration().Insecure {
			if p.Node == "f" && strings.Contains(p.UpgradeErr, "refused") {
				return true
			}
		}
		return false
	})
	if n, _ := c.node("f"); n.Link != "NO" || !n.Connected {
		t.Fatalf("f after a failed upgrade: %+v", n)
	}

	// A restart with the original flags stays on loopback.
	c.coord.kill9()
	c.restartCoordinator()
	if addr := c.plaintextAddr(); !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("plaintext after a restart: %s", addr)
	}
	if !strings.Contains(c.coord.stderrText(), "binding the plaintext listener to loopback only") {
		t.Error("the restart does not say why plaintext is loopback only")
	}
	for _, typ := range []string{"migrate.upgrade", "migrate.finish", "migrate.upgrade_failed"} {
		found := false
		for _, e := range c.auditEvents() {
			found = found || e.Type == typ
		}
		if !found {
			t.Errorf("audit log lacks %s", typ)
		}
	}
}
