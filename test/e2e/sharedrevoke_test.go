package e2e

import (
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// TestRevocationAcrossCoordinators: two coordinators on one etcd. An agent
// joined through A is revoked on B: its session on A is cut within a
// second, A refuses it from then on, A's CRL lists it and A requeues its
// tasks. Then a user certificate revoked on B cuts that user's live log
// follow on A within a second.
func TestRevocationAcrossCoordinators(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	a, b := peerCluster(t, srv, "coord-a", "--node-lost-timeout", "60s"), peerCluster(t, srv, "coord-b", "--node-lost-timeout", "60s")
	// B starts first, so B leads: A serves the agents by relaying them to
	// B and learns of B's revocations from the store.
	startPeers(b)
	startPeers(a)
	// n1 knows only A, so its reconnect after the revocation meets A's
	// handshake.
	n1 := a.startAgent("n1", 2, "--coordinator", a.cluster)
	// n2 too: its join string names every coordinator, and the checks
	// below are of A relaying both sessions.
	a.startAgent("n2", 2, "--coordinator", a.cluster)
	id := strings.TrimSpace(a.mustWard("submit", "--count", "4", "--", "sleep", "60"))
	waitFor(t, 10*time.Second, "4 running tasks on A", func() bool { return a.job(id).Counts[api.TaskRunning] == 4 })
	nd, _ := a.node("n1")
	// A carries both sessions to B as streams of one connection (HTTP/2),
	// not one connection per agent.
	if n := strings.Count(a.coord.stderrText(), "relay connection to the leader opened"); n != 1 {
		t.Fatalf("A opened %d relay connections to B for two agents, want 1", n)
	}
	if n := strings.Count(b.coord.stderrText(), "alpn=h2"); n != 1 {
		t.Fatalf("B accepted %d relay connections (alpn=h2) from A, want 1", n)
	}
	// A says when each session went to B, and how.
	for _, node := range []string{"n1", "n2"} {
		if !regexp.MustCompile(`msg="agent session relayed to the leader" node=` + node + ` leader=\S+ via=h2`).MatchString(a.coord.stderrText()) {
			t.Fatalf("A did not log that %s's session was relayed to the leader via h2:\n%s", node, a.coord.stderrText())
		}
	}

	// Revoke n1 on B, which never saw it connect: the record is in etcd.
	before := len(n1.stderrText())
	start := time.Now()
	out := b.mustWard("node", "revoke", "n1", "--reason", "key-compromise")
	took := sessionEnds(t, n1, before, start, 5*time.Second)
	t.Logf("revoked on B, session on A cut after %s (B answered: %s)", took, strings.TrimSpace(out))
	if took > time.Second {
		t.Fatalf("the session on A was cut %s after the revocation on B, want within 1s", took)
	}
	line := logLine(t, a.coord.stderrText(), `msg="revocation from the store applied" serial=`+nd.CertSerial)
	applied, revokedAt := lineTime(t, line, "time="), lineTime(t, line, "revoked_at=")
	t.Logf("revoked on B at %s, applied on A (sessions closed) at %s: %s later (one host, one clock)",
		revokedAt.Format("15:04:05.000"), applied.Format("15:04:05.000"), applied.Sub(revokedAt))
	if applied.Sub(revokedAt) > time.Second {
		t.Fatalf("A applied the revocation %s after B made it, want within 1s", applied.Sub(revokedAt))
	}
	// A requeues n1's tasks on n2, refuses n1 from now on, and lists it in
	// its CRL.
	waitFor(t, 10*time.Second, "n1 revoked on A", func() bool { n, _ := a.node("n1"); return n.State == "revoked" })
	waitFor(t, 20*time.Second, "A's CRL to list n1's certificate", func() bool { return crlLists(t, a, nd.CertSerial) })
	waitFor(t, 20*time.Second, "B's CRL to list n1's certificate", func() bool { return crlLists(t, b, nd.CertSerial) })
	waitFor(t, 20*time.Second, "n1 refused by A at the handshake", func() bool {
		return strings.Contains(a.coord.stderrText(), "connection rejected") && strings.Contains(a.coord.stderrText(), "revoked")
	})
	waitFor(t, 20*time.Second, "n1's tasks to run again", func() bool {
		return a.job(id).Counts[api.TaskRunning] == 2 && a.job(id).Counts[api.TaskQueued] == 2
	})
	a.mustWard("job", "cancel", id)

	// A user following logs on A, whose certificate is revoked on B.
	follow := strings.TrimSpace(a.mustWard("submit", "--", "sh", "-c", "echo started; sleep 60"))
	f := startProc(t, a.dir, "follow", nil, "--context", a.ctxPath, "logs", "-f", follow)
	waitFor(t, 20*time.Second, "the log follow to print", func() bool {
		b, _ := os.ReadFile(f.stdout)
		return strings.Contains(string(b), "started")
	})
	serial := contextSerial(t, a.ctxPath)
	start = time.Now()
	b.mustWard("cert", "revoke", serial)
	waitFor(t, 5*time.Second, "the log follow on A to lose its connection", func() bool {
		return strings.Contains(f.stderrText(), "lost the connection to the coordinator")
	})
	took = time.Since(start)
	t.Logf("user certificate revoked on B, its log follow on A cut after %s", took)
	if took > time.Second {
		t.Fatalf("the log follow on A was cut %s after the revocation on B, want within 1s", took)
	}
	if _, errOut, code := a.ward("node", "ls"); code == 0 {
		t.Fatal("A still accepts the revoked admin certificate")
	} else if !strings.Contains(errOut, "revoked") {
		t.Logf("refusal: %s", errOut)
	}

	// A's own certificate revoked on B: A issues itself a new one, and B's
	// admin reaches A through it.
	ownSerial := func() string {
		b, err := os.ReadFile(filepath.Join(a.data, "pki", "coordinator.crt"))
		if err != nil {
			t.Fatal(err)
		}
		certs, err := pki.ParseCertsPEM(b)
		if err != nil {
			t.Fatal(err)
		}
		return pki.SerialHex(certs[0])
	}
	old := ownSerial()
	b.mustWard("cert", "revoke", old)
	waitFor(t, 10*time.Second, "A to reissue its own certificate", func() bool { return ownSerial() != old })
	if !strings.Contains(a.coord.stderrText(), "this coordinator's own certificate was revoked on another coordinator") {
		t.Fatal("A did not log why it reissued its certificate")
	}
	if out, errOut, code := wardWithContext(contextAt(t, b, a.cluster), "node", "ls"); code != 0 || !strings.Contains(out, "n2") {
		t.Fatalf("B's admin against A after A reissued its certificate: exit %d\n%s%s", code, out, errOut)
	}
}

// crlLists reports whether the CRL c serves on its public port lists serial.
func crlLists(t *testing.T, c *cluster, serial string) bool {
	t.Helper()
	resp, err := c.publicClient().Get("https://" + c.public + "/v1/crl")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		return false
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("%s serves a CRL that does not parse: %v", c.public, err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if pki.SerialString(e.SerialNumber) == serial || e.SerialNumber.Text(16) == serial {
			return true
		}
	}
	return false
}

// logLine is the first log line containing what.
func logLine(t *testing.T, log, what string) string {
	t.Helper()
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, what) {
			return l
		}
	}
	t.Fatalf("no log line contains %s", what)
	return ""
}

// lineTime is the RFC 3339 time after key (such as "time=") in a log line.
func lineTime(t *testing.T, line, key string) time.Time {
	t.Helper()
	_, rest, ok := strings.Cut(line, key)
	v, _, _ := strings.Cut(rest, " ")
	ts, err := time.Parse(time.RFC3339Nano, v)
	if !ok || err != nil {
		t.Fatalf("no %s time in log line: %s", key, line)
	}
	return ts
}
