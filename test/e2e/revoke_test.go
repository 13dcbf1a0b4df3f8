package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// sessionEnds waits until the agent logs that its session ended after
// the given log size, and returns how long that took from start.
func sessionEnds(t *testing.T, p *proc, from int, start time.Time, within time.Duration) time.Duration {
	t.Helper()
	var took time.Duration
	waitFor(t, within, "the agent's session to close", func() bool {
		b, _ := os.ReadFile(p.stderr)
		if len(b) > from && (strings.Contains(string(b[from:]), "cannot reach coordinator") || strings.Contains(string(b[from:]), "session ended") || strings.Contains(string(b[from:]), "agent stopping")) {
			took = time.Since(start)
			return true
		}
		return false
	})
	return took
}

func TestRevocation(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "60s")
	a := c.startAgent("a", 2)
	c.startAgent("b", 2)
	id := strings.TrimSpace(c.mustWard("submit", "--count", "4", "--", "sleep", "30"))
	waitFor(t, 10*time.Second, "4 running tasks", func() bool { return c.job(id).Counts[api.TaskRunning] == 4 })
	na, _ := c.node("a")

	// Revoke node a: its live session closes within a second.
	before := len(a.stderrText())
	start := time.Now()
	out := c.mustWard("node", "revoke", "a", "--reason", "key-compromise")
	took := sessionEnds(t, a, before, start, time.Second)
	t.Logf("revocation to disconnect: %s", took)
	if !strings.Contains(out, "1 session(s) closed") || !strings.Contains(out, "2 task(s) requeued") {
		t.Fatalf("node revoke: %s", out)
	}
	// Its running tasks became lost and were requeued (not waiting 60s).
	d := c.job(id)
	lost := 0
	for _, task := range d.Tasks {
		if task.Attempts[0].Node == "a" {
			if task.Attempts[0].State != api.TaskLost || !strings.Contains(task.Attempts[0].Reason, "revoked") || task.State != api.TaskQueued {
				t.Fatalf("task %d: %+v", task.Index, task)
			}
			lost++
		}
	}
	if lost != 2 {
		t.Fatalf("%d of a's tasks lost, want 2", lost)
	}
	if n, _ := c.node("a"); n.State != "revoked" {
		t.Fatalf("node a state %s", n.State)
	}
	// The agent sees that its own certificate is revoked and stops.
	if code := a.wait(30 * time.Second); code == 0 || !strings.Contains(a.stderrText(), "revoked") {
		t.Fatalf("revoked agent exited %d:\n%s", code, a.stderrText())
	}

	// New handshakes with a's certificate are refused during the handshake.
	dir := c.agentDir("a")
	cred, err := identity.LoadCredential(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	bundlePEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	bundle, _ := pki.ParseCertsPEM(bundlePEM)
	src := identity.NewSource(cred, bundle)
	conn, err := tls.Dial("tcp", c.cluster, transport.ClientConfig(src, transport.ClientOptions{ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNAgent}}))
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("a revoked certificate was not refused at the handshake: %v", err)
	}
	waitFor(t, 5*time.Second, "the rejection log line", func() bool {
		return strings.Contains(c.coord.stderrText(), "reason=revoked")
	})

	// The CRL: from the CLI and the public port, readable by openssl, and
	// openssl verify -crl_check rejects the revoked certificate only.
	tmp := t.TempDir()
	crlFile := filepath.Join(tmp, "crl.der")
	c.mustWard("ca", "crl", "--out", crlFile)
	der, _ := os.ReadFile(crlFile)
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := new(big.Int).SetString(na.CertSerial, 16)
	found := false
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 && e.ReasonCode == 1 {
			found = true
		}
	}
	if !found {
		t.Fatalf("the CRL does not list %s with reason key-compromise", na.CertSerial)
	}
	resp, err := c.publicClient().Get("https://" + c.public + api.PathCRL)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if pc, err := x509.ParseRevocationList(pub); err != nil || pc.Number.Cmp(crl.Number) < 0 {
		t.Fatalf("public CRL: %v", err)
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		text, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text").CombinedOutput()
		if err != nil || !strings.Contains(strings.ToLower(strings.ReplaceAll(string(text), ":", "")), strings.TrimLeft(na.CertSerial, "0")) {
			t.Fatalf("openssl crl: %v\n%s", err, text)
		}
		crlPEM := filepath.Join(tmp, "crl.pem")
		if out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlFile, "-out", crlPEM).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		chain, _ := os.ReadFile(filepath.Join(dir, "agent.crt"))
		certs, _ := pki.ParseCertsPEM(chain)
		leaf, inter, root := filepath.Join(tmp, "a.pem"), filepath.Join(tmp, "issuing.pem"), filepath.Join(tmp, "root.pem")
		os.WriteFile(leaf, pki.EncodeCertsPEM(certs[0]), 0o644)
		os.WriteFile(inter, pki.EncodeCertsPEM(certs[1]), 0o644)
		os.WriteFile(root, bundlePEM, 0o644)
		verify := func(cert string) (string, error) {
			out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", root, "-untrusted", inter, "-CRLfile", crlPEM, cert).CombinedOutput()
			return string(out), err
		}
		if out, err := verify(leaf); err == nil || !strings.Contains(out, "certificate revoked") {
			t.Fatalf("openssl verify accepted the revoked certificate: %s", out)
		}
		bchain, _ := os.ReadFile(filepath.Join(c.agentDir("b"), "agent.crt"))
		bcerts, _ := pki.ParseCertsPEM(bchain)
		bleaf := filepath.Join(tmp, "b.pem")
		os.WriteFile(bleaf, pki.EncodeCertsPEM(bcerts[0]), 0o644)
		if out, err := verify(bleaf); err != nil {
			t.Fatalf("openssl verify rejected a good certificate: %s", out)
		}
	}

	// ward cert ls shows the revocation; cert revoke works by serial.
	var certs []api.Cert
	c.wardJSON(&certs, "cert", "ls")
	for _, ce := range certs {
		if ce.Serial == na.CertSerial && (!ce.Revoked || ce.Reason != "key-compromise") {
			t.Fatalf("cert ls: %+v", ce)
		}
	}
	nb, _ := c.node("b")
	start = time.Now()
	before = len(c.agents["b"].stderrText())
	out = c.mustWard("cert", "revoke", nb.CertSerial, "--reason", "superseded")
	sessionEnds(t, c.agents["b"], before, start, time.Second)
	if !strings.Contains(out, "node b") {
		t.Fatalf("cert revoke of b's certificate: %s", out)
	}
	if _, errOut, code := c.ward("cert", "revoke", "ffff", "--reason", "oops"); code == 0 || !strings.Contains(errOut, "not known") {
		t.Fatalf("bad reason: %s", errOut)
	}
	if _, errOut, code := c.ward("cert", "revoke", "ffff"); code == 0 || !strings.Contains(errOut, "NOT_FOUND") {
		t.Fatalf("unknown serial: %s", errOut)
	}

	// The revocation set survives a restart; the node name can be reused
	// by a new join.
	c.coord.kill9()
	c.restartCoordinator()
	conn, err = tls.Dial("tcp", c.cluster, transport.ClientConfig(src, transport.ClientOptions{ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNAgent}}))
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a revoked certificate was accepted after a restart")
	}
	os.RemoveAll(c.agentDir("a"))
	c.startAgent("a", 2)

	// Metrics report the revocations.
	certFile, keyFile := certAndKey(t, c)
	mresp, err := c.httpClient(certFile, keyFile).Get("https://" + c.cluster + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{"ward_cert_expiry_seconds{kind=\"agent\"", "ward_crl_age_seconds", "ward_handshakes_total{listener=\"cluster\",reason=\"revoked\",result=\"rejected\"}", "ward_sessions{link=\"YES\"}"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var st json.RawMessage
	c.wardJSON(&st, "node", "ls")
}
