package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
)

func certSerialOf(t *testing.T, path string) (string, time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertsPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return pki.SerialHex(certs[0]), certs[0].NotAfter
}

func contextSerial(t *testing.T, path string) string {
	t.Helper()
	ctx, err := config.LoadContext(path)
	if err != nil {
		t.Fatal(err)
	}
	cred, _, _, err := ctx.Credential()
	if err != nil {
		t.Fatal(err)
	}
	return pki.SerialHex(cred.Leaf())
}

// TestRenewalKeepsSessionsAndTasks: agent, coordinator and CLI
// certificates renew at about two thirds of their life, a running task and
// the agent's session survive renewal and SIGHUP reloads.
func TestRenewalKeepsSessionsAndTasks(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--agent-cert-lifetime", "6s", "--coordinator-cert-lifetime", "8s", "--user-cert-lifetime", "9s")
	a := c.startAgent("a", 1)
	n0, _ := c.node("a")
	coord0, _ := certSerialOf(t, filepath.Join(c.data, "pki", "coordinator.crt"))
	user0 := contextSerial(t, c.ctxPath)
	id := strings.TrimSpace(c.mustWard("submit", "--", "sh", "-c", "sleep 10; echo done"))

	serials := map[string]bool{n0.CertSerial: true}
	waitFor(t, 15*time.Second, "the agent certificate to renew twice", func() bool {
		if n, ok := c.node("a"); ok {
			serials[n.CertSerial] = true
		}
		return len(serials) >= 3
	})
	c.coord.cmd.Process.Signal(syscall.SIGHUP)
	a.cmd.Process.Signal(syscall.SIGHUP)
	d := c.waitJob(id, 20*time.Second)
	if d.State != api.JobCompleted || len(d.Tasks[0].Attempts) != 1 {
		t.Fatalf("the task did not survive renewal: %+v", d.Tasks[0])
	}
	if out := c.mustWard("logs", id); strings.TrimSpace(out) != "[0] done" {
		t.Fatalf("logs: %q", out)
	}
	if n := strings.Count(c.coord.stderrText(), `msg="agent session open" node=a`); n != 1 {
		t.Fatalf("the agent's session was opened %d times: renewal must not drop it", n)
	}
	if coord1, _ := certSerialOf(t, filepath.Join(c.data, "pki", "coordinator.crt")); coord1 == coord0 {
		t.Error("the coordinator's certificate did not renew itself")
	}
	if contextSerial(t, c.ctxPath) == user0 {
		t.Error("the CLI did not renew its user certificate")
	}
	for _, want := range []string{`msg=reloaded`, `msg="certificate renewed"`} {
		if !strings.Contains(c.coord.stderrText(), want) {
			t.Errorf("coordinator log lacks %s", want)
		}
	}
	if !strings.Contains(a.stderrText(), "reloaded certificate and trust bundle") || !strings.Contains(a.stderrText(), `path=session`) {
		t.Errorf("agent log lacks the reload or the renewal:\n%s", a.stderrText())
	}
	if !c.hasAudit("cert.renew", "ok") {
		t.Error("renewals are not audit-logged")
	}
}

// TestHealWithinGraceWindow: an agent offline past its certificate's
// expiry renews with its old key, and after the window it needs a token.
func TestHealWithinGraceWindow(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--agent-cert-lifetime", "5s", "--heal-grace", "1m")
	c.startAgent("a", 1)
	c.agents["a"].kill9()
	old, notAfter := certSerialOf(t, filepath.Join(c.agentDir("a"), "agent.crt"))
	time.Sleep(time.Until(notAfter) + 500*time.Millisecond) // the certificate must really expire
	p := c.startAgent("a", 1)
	if now, _ := certSerialOf(t, filepath.Join(c.agentDir("a"), "agent.crt")); now == old {
		t.Fatal("the agent came back with its expired certificate")
	}
	if !strings.Contains(p.stderrText(), "path=heal") || !c.hasAudit("cert.heal", "ok") {
		t.Fatalf("no heal recorded:\n%s", p.stderrText())
	}
	if out, errOut, code := c.ward("run", "--", "echo", "healed"); code != 0 || !strings.Contains(out, "healed") {
		t.Fatalf("the healed agent does not run tasks: exit %d\nstdout: %s\nstderr: %s\nagent log:\n%s\ncoordinator log:\n%s",
			code, out, errOut, p.stderrText(), c.coord.stderrText())
	}

	c2 := newCluster(t, "--agent-cert-lifetime", "5s", "--heal-grace", "1s")
	c2.startAgent("b", 1)
	c2.agents["b"].kill9()
	_, notAfter = certSerialOf(t, filepath.Join(c2.agentDir("b"), "agent.crt"))
	time.Sleep(time.Until(notAfter) + 2*time.Second)
	q := startProc(t, c2.dir, "agent-b-late", nil, "agent", "--data", c2.agentDir("b"))
	if code := q.wait(20 * time.Second); code == 0 {
		t.Fatal("an agent past the grace window started")
	}
	if msg := q.stderrText(); !strings.Contains(msg, "GRACE_WINDOW_EXPIRED") || !strings.Contains(msg, "new token") {
		t.Fatalf("error does not say a new token is needed:\n%s", msg)
	}
	if !c2.hasAudit("cert.heal", string(api.CodeGraceWindowExpired)) {
		t.Error("the refused heal is not audit-logged")
	}
}

// TestAgentKeyInTPM: an agent whose key lives in a (software) TPM joins,
// runs tasks, renews and restarts with the same identity; no key file.
func TestAgentKeyInTPM(t *testing.T) {
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm is not installed")
	}
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sw := exec.Command("swtpm", "socket", "--tpm2", "--server", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(port),
		"--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"), "--tpmstate", "dir="+dir, "--flags", "not-need-init,startup-clear")
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Process.Kill(); sw.Wait() })
	waitFor(t, 10*time.Second, "swtpm to listen", func() bool {
		conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	device := "tcp://127.0.0.1:" + strconv.Itoa(port)
	c := newCluster(t, "--agent-cert-lifetime", "6s")
	c.startAgent("t", 1, "--key", "tpm", "--tpm-device", device)
	if _, err := os.Stat(filepath.Join(c.agentDir("t"), "agent.key")); err == nil {
		t.Fatal("a TPM agent wrote a key file")
	}
	n0, _ := c.node("t")
	if out, _, code := c.ward("run", "--", "echo", "from-tpm"); code != 0 || !strings.Contains(out, "from-tpm") {
		t.Fatal("the TPM agent does not run tasks")
	}
	waitFor(t, 15*time.Second, "a renewal signed by the TPM key", func() bool {
		n, _ := c.node("t")
		return n.CertSerial != n0.CertSerial
	})
	c.agents["t"].kill9()
	c.startAgent("t", 1, "--key", "tpm", "--tpm-device", device)
	// Starting with the wrong key store is refused with the fix.
	c.agents["t"].kill9()
	p := startProc(t, c.dir, "agent-t-file", nil, "agent", "--data", c.agentDir("t"))
	if code := p.wait(10 * time.Second); code == 0 || !strings.Contains(p.stderrText(), "--key tpm") {
		t.Fatalf("a TPM agent started with --key file: %s", p.stderrText())
	}
	// A TPM that is not there gives a clear error.
	q := startProc(t, c.dir, "agent-no-tpm", nil, "agent", "--data", filepath.Join(dir, "x"), "--key", "tpm", "--tpm-device", "/dev/tpm-absent",
		"--join-file", c.writeJoinFile(c.token()), "--name", "x")
	if code := q.wait(10 * time.Second); code == 0 || !strings.Contains(q.stderrText(), "/dev/tpm-absent") {
		t.Fatalf("missing TPM: %s", q.stderrText())
	}
}
