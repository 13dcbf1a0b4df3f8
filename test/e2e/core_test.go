package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
)

// TestSecureCluster is the "done when": two agents join, a 4-task
// job prints four lines, and node ls shows both nodes with link YES.
func TestSecureCluster(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", 2)
	c.startAgent("n2", 2, "--label", "zone=b")

	out, errOut, code := c.ward("run", "--count", "4", "--", "echo", "task-{index}")
	if code != 0 {
		t.Fatalf("ward run: exit %d: %s", code, errOut)
	}
	got := lines(out)
	sort.Strings(got)
	want := []string{"[0] task-0", "[1] task-1", "[2] task-2", "[3] task-3"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ward run printed %q, want %q", got, want)
	}

	var nodes []api.Node
	c.wardJSON(&nodes, "node", "ls")
	if len(nodes) != 2 {
		t.Fatalf("node ls: %d nodes", len(nodes))
	}
	for _, n := range nodes {
		if n.Link != "YES" || n.TLSVersion != "TLS 1.3" || n.State != "ready" || n.Slots != 2 {
			t.Errorf("node %s: link %s tls %s state %s slots %d", n.Name, n.Link, n.TLSVersion, n.State, n.Slots)
		}
		if time.Until(n.CertExpiry) < 23*time.Hour || time.Until(n.CertExpiry) > 25*time.Hour {
			t.Errorf("node %s: cert expiry %s is not about 24h away", n.Name, n.CertExpiry)
		}
	}
	table := c.mustWard("node", "ls")
	if !strings.Contains(table, "LINK") || strings.Count(table, "YES") != 2 {
		t.Errorf("node ls table:\n%s", table)
	}

	// A failing task makes `ward run` exit 1; submit returns an ID at once.
	if _, _, code := c.ward("run", "--count", "2", "--", "sh", "-c", "exit {index}"); code != 1 {
		t.Errorf("run with a failing task exited %d, want 1", code)
	}
	id := strings.TrimSpace(c.mustWard("submit", "--count", "3", "--", "echo", "hi"))
	if d := c.waitJob(id, 20*time.Second); d.State != api.JobCompleted {
		t.Errorf("submitted job %s ended %s", id, d.State)
	}
	logs := c.mustWard("logs", id, "--task", "2")
	if strings.TrimSpace(logs) != "[2] hi" {
		t.Errorf("logs --task 2: %q", logs)
	}

	// Restarting the coordinator reuses its CA, identity and context.
	ctxBefore, _ := os.ReadFile(c.ctxPath)
	rootBefore, _ := os.ReadFile(filepath.Join(c.data, "pki", "root-ca.crt"))
	c.coord.interrupt()
	if code := c.coord.wait(15 * time.Second); code != 0 {
		t.Fatalf("coordinator exited %d on interrupt", code)
	}
	c.restartCoordinator()
	ctxAfter, _ := os.ReadFile(c.ctxPath)
	rootAfter, _ := os.ReadFile(filepath.Join(c.data, "pki", "root-ca.crt"))
	if !bytes.Equal(ctxBefore, ctxAfter) || !bytes.Equal(rootBefore, rootAfter) {
		t.Fatal("a restart changed the CA or the admin context")
	}
	if strings.Contains(c.coord.stderrText(), "Created a new cluster CA") {
		t.Fatal("the restart created a new CA")
	}
	waitFor(t, 20*time.Second, "agents to reconnect", func() bool {
		n1, _ := c.node("n1")
		n2, _ := c.node("n2")
		return n1.State == "ready" && n2.State == "ready"
	})
}

// TestClusterPortRequiresClientCertAtHandshake uses openssl as an outside
// peer: without a certificate it gets a handshake alert, never HTTP; and a
// TLS 1.2-only client is refused.
func TestClusterPortRequiresClientCertAtHandshake(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	c := newCluster(t)
	run := func(args ...string) string {
		cmd := exec.Command("openssl", append([]string{"s_client", "-connect", c.cluster, "-servername", "127.0.0.1"}, args...)...)
		cmd.Stdin = strings.NewReader("GET /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	out := run("-tls1_3", "-ign_eof")
	if !strings.Contains(out, "alert certificate required") && !strings.Contains(out, "alert number 116") {
		t.Errorf("openssl without a certificate did not get the certificate-required alert:\n%s", out)
	}
	if strings.Contains(out, "HTTP/1.1") {
		t.Errorf("openssl without a certificate got an HTTP response:\n%s", out)
	}
	out = run("-tls1_2")
	if !strings.Contains(out, "protocol version") && !strings.Contains(out, "alert number 70") {
		t.Errorf("a TLS 1.2-only client was not refused with a protocol version alert:\n%s", out)
	}
	if !strings.Contains(c.coord.stderrText(), "reason=client_cert_required") {
		t.Errorf("the coordinator did not log the rejection reason")
	}
	if !c.hasAudit("auth.failure", "client_cert_required") {
		t.Errorf("the rejection is not in the audit log")
	}
}

// TestAgentCertificateCannotCallAdminAPI: authorization reads the role
// from the certificate's identity.
func TestAgentCertificateCannotCallAdminAPI(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", 1)
	dir := c.agentDir("n1")
	hc := c.httpClient(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"))
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/tokens", `{"uses":1}`},
		{"GET", "/v1/nodes", ""},
		{"POST", "/v1/jobs", `{"argv":["true"]}`},
	} {
		req, _ := http.NewRequest(tc.method, "https://"+c.cluster+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		e := decodeAPIError(t, resp)
		if resp.StatusCode != http.StatusForbidden || e.Code != api.CodePermissionDenied || !strings.Contains(e.Message, "agent certificate") {
			t.Errorf("%s %s with an agent certificate: %d %s %q", tc.method, tc.path, resp.StatusCode, e.Code, e.Message)
		}
	}
	// The admin certificate (from the context) may.
	out := c.mustWard("token", "ls", "-o", "json")
	if !strings.HasPrefix(strings.TrimSpace(out), "[") {
		t.Errorf("admin token ls: %s", out)
	}
}

// joinWith posts a join request carrying a CSR built by the test.
func joinWith(t *testing.T, join string, name string, key crypto.Signer, tmpl *x509.CertificateRequest) error {
	t.Helper()
	js, err := enroll.ParseJoinString(join)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = enroll.Join(context.Background(), js, api.JoinRequest{Name: name, CSR: der, Slots: 1})
	return err
}

// TestJoinRefusals covers every refusal: each is refused with its stable
// code, and each is in the audit log.
func TestJoinRefusals(t *testing.T) {
	c := newCluster(t)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	caBit, _ := asn1.Marshal(struct{ IsCA bool }{true})
	admin, _ := url.Parse("spiffe://ward/user/admin")
	plain := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}

	code := func(err error) api.Code {
		var e *api.Error
		if errors.As(err, &e) {
			return e.Code
		}
		t.Fatalf("not an API error: %v", err)
		return ""
	}

	t.Run("reused token", func(t *testing.T) {
		join := c.token()
		if err := joinWith(t, join, "reuse-1", p256, plain); err != nil {
			t.Fatalf("first use refused: %v", err)
		}
		if got := code(joinWith(t, join, "reuse-2", p256, plain)); got != api.CodeTokenUsed {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("expired token", func(t *testing.T) {
		join := c.token("--ttl", "1s")
		time.Sleep(1100 * time.Millisecond) // the token's own TTL must pass
		if got := code(joinWith(t, join, "expired", p256, plain)); got != api.CodeTokenExpired {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("revoked token", func(t *testing.T) {
		join := c.token()
		js, _ := enroll.ParseJoinString(join)
		c.mustWard("token", "revoke", js.TokenID)
		if got := code(joinWith(t, join, "revoked", p256, plain)); got != api.CodeTokenRevoked {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		js, _ := enroll.ParseJoinString(c.token())
		_, other, _ := enroll.NewToken()
		js.Secret = other
		if got := code(joinWith(t, js.String(), "wrong-secret", p256, plain)); got != api.CodeTokenInvalid {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("CSR with CA bit", func(t *testing.T) {
		tmpl := &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caBit}}}
		if got := code(joinWith(t, c.token(), "ca-bit", p256, tmpl)); got != api.CodeCSRCARequested {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("weak key", func(t *testing.T) {
		if got := code(joinWith(t, c.token(), "weak", rsa1024, plain)); got != api.CodeCSRWeakKey {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("SAN the token does not allow", func(t *testing.T) {
		tmpl := &x509.CertificateRequest{URIs: []*url.URL{admin}}
		if got := code(joinWith(t, c.token(), "san", p256, tmpl)); got != api.CodeCSRSANNotAllowed {
			t.Fatalf("got %s", got)
		}
		tmpl = &x509.CertificateRequest{DNSNames: []string{"coordinator.example"}}
		if got := code(joinWith(t, c.token(), "san-dns", p256, tmpl)); got != api.CodeCSRSANNotAllowed {
			t.Fatalf("dns: got %s", got)
		}
		// A token that allows the name lets it through.
		if err := joinWith(t, c.token("--allow-dns", "n7.example"), "san-ok", p256, &x509.CertificateRequest{DNSNames: []string{"n7.example"}}); err != nil {
			t.Fatalf("allowed DNS SAN refused: %v", err)
		}
	})
	t.Run("node name in use", func(t *testing.T) {
		if got := code(joinWith(t, c.token(), "reuse-1", p256, plain)); got != api.CodeNodeNameInUse {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("malformed join request", func(t *testing.T) {
		resp, err := c.publicClient().Post("https://"+c.public+api.PathJoin, "application/json", strings.NewReader(`{"token_id": 7}`))
		if err != nil {
			t.Fatal(err)
		}
		if e := decodeAPIError(t, resp); e.Code != api.CodeInvalidArgument {
			t.Fatalf("got %s", e.Code)
		}
	})
	t.Run("malformed join string", func(t *testing.T) {
		dir := t.TempDir()
		for _, bad := range []string{"wardjoin://127.0.0.1?cluster=ward", "not-a-join-string", strings.TrimSuffix(c.token(), "A")[:40]} {
			f := filepath.Join(dir, "join")
			os.WriteFile(f, []byte(bad), 0o600)
			p := startProc(t, dir, "bad-join", nil, "agent", "--data", filepath.Join(dir, "a"), "--name", "bad", "--join-file", f)
			if code := p.wait(10 * time.Second); code == 0 {
				t.Fatalf("agent accepted %q", bad)
			}
			if msg := p.stderrText(); !strings.Contains(msg, string(api.CodeJoinStringMalformed)) || !strings.Contains(msg, "malformed join string") {
				t.Fatalf("agent error for %q: %s", bad, msg)
			}
		}
	})

	for _, want := range []api.Code{api.CodeTokenUsed, api.CodeTokenExpired, api.CodeTokenRevoked, api.CodeTokenInvalid,
		api.CodeCSRCARequested, api.CodeCSRWeakKey, api.CodeCSRSANNotAllowed, api.CodeNodeNameInUse, api.CodeInvalidArgument} {
		if !c.hasAudit("join", string(want)) {
			t.Errorf("audit log has no join refused with %s", want)
		}
	}
}

// TestJoinRateLimit: attempts beyond the per-address burst are refused.
func TestJoinRateLimit(t *testing.T) {
	c := newCluster(t, "--join-burst", "5", "--join-rate", "0.1")
	js, _ := enroll.ParseJoinString(c.token())
	_, other, _ := enroll.NewToken()
	js.Secret = other
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var codes []api.Code
	for i := 0; i < 8; i++ {
		err := joinWith(t, js.String(), fmt.Sprintf("rl-%d", i), p256, &x509.CertificateRequest{})
		codes = append(codes, api.CodeOf(err))
	}
	want := []api.Code{"TOKEN_INVALID", "TOKEN_INVALID", "TOKEN_INVALID", "TOKEN_INVALID", "TOKEN_INVALID", "RATE_LIMITED", "RATE_LIMITED", "RATE_LIMITED"}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
	if !c.hasAudit("join", string(api.CodeRateLimited)) {
		t.Error("rate-limited attempts are not audit-logged")
	}
}

// TestPinMismatchSendsNothing: an agent whose join pin does not match
// stops with both pins and never sends its request.
func TestPinMismatchSendsNothing(t *testing.T) {
	c := newCluster(t)
	js, _ := enroll.ParseJoinString(c.token())
	other := pki.SPKIPin(mustRoot(t))
	js.Pin = other
	f := c.writeJoinFile(js.String())
	p := startProc(t, c.dir, "pin-agent", nil, "agent", "--data", filepath.Join(c.dir, "pin-agent"), "--name", "pin", "--join-file", f)
	if code := p.wait(15 * time.Second); code == 0 {
		t.Fatal("agent with a wrong pin did not stop")
	}
	msg := p.stderrText()
	ctx := readContext(t, c.ctxPath)
	if !strings.Contains(msg, "pin mismatch") || !strings.Contains(msg, other.String()) || !strings.Contains(msg, ctx.Pins[0]) {
		t.Fatalf("the error does not show the expected and the actual pin:\n%s", msg)
	}
	for _, e := range c.auditEvents() {
		if e.Type == "join" {
			t.Fatalf("the coordinator saw a join request: %+v", e)
		}
	}
	if _, err := os.Stat(filepath.Join(c.dir, "pin-agent", "agent.json")); err == nil {
		t.Fatal("the agent stored an identity")
	}
}

func mustRoot(t *testing.T) *x509.Certificate {
	root, err := pki.NewRootCA("other", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return root.Cert
}

// TestKeyPermissionsRefused: a key file others can read stops the process
// with the chmod that fixes it.
func TestKeyPermissionsRefused(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", 1)
	c.agents["n1"].kill9()
	key := filepath.Join(c.agentDir("n1"), "agent.key")
	os.Chmod(key, 0o644)
	p := startProc(t, c.dir, "agent-perm", nil, "agent", "--data", c.agentDir("n1"))
	if code := p.wait(10 * time.Second); code == 0 {
		t.Fatal("agent started with a 0644 key")
	}
	if msg := p.stderrText(); !strings.Contains(msg, "chmod 600 "+key) {
		t.Fatalf("agent error lacks the fix: %s", msg)
	}
	// The same holds for the coordinator's CA key.
	c.coord.kill9()
	caKey := filepath.Join(c.data, "pki", "issuing-ca.key")
	os.Chmod(caKey, 0o640)
	p = startProc(t, c.dir, "coord-perm", nil, "coordinator", "--data", c.data, "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0")
	if code := p.wait(10 * time.Second); code == 0 {
		t.Fatal("coordinator started with a 0640 CA key")
	}
	if msg := p.stderrText(); !strings.Contains(msg, "chmod 600 "+caKey) {
		t.Fatalf("coordinator error lacks the fix: %s", msg)
	}
}

// TestSecretsStayOutOfLogsAndPS: the join secret is scrubbed from the
// process list and never logged; the agent's key never leaves its file.
func TestSecretsStayOutOfLogsAndPS(t *testing.T) {
	c := newCluster(t)
	join := c.token()
	js, _ := enroll.ParseJoinString(join)
	p := startProc(t, c.dir, "agent-argv", nil, "agent", "--data", c.agentDir("argv"), "--name", "argv", "--slots", "1", "--join", join)
	waitFor(t, 20*time.Second, "the agent to join", func() bool { n, ok := c.node("argv"); return ok && n.State == "ready" })
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cmdline, []byte(js.Secret)) {
		t.Fatal("the join secret is visible in the process list")
	}
	keyPEM, _ := os.ReadFile(filepath.Join(c.agentDir("argv"), "agent.key"))
	key, _ := pki.ParseKeyPEM(keyPEM)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	for _, f := range []string{c.coord.stderr, c.coord.stdout, p.stderr, filepath.Join(c.data, "audit.log")} {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(js.Secret)) {
			t.Errorf("%s contains the join secret", f)
		}
		if bytes.Contains(b, keyPEM[30:80]) || bytes.Contains(b, keyDER[10:40]) {
			t.Errorf("%s contains the agent key", f)
		}
	}
	if !strings.Contains(p.stderrText(), "use --join-file") {
		t.Error("the agent did not warn about --join on the command line")
	}
	// The secret is not stored either: only its hash.
	tokens := c.mustWard("token", "ls", "-o", "json")
	if strings.Contains(tokens, js.Secret) {
		t.Error("token ls shows the secret")
	}
}

func readContext(t *testing.T, path string) struct{ Pins []string } {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ctx struct{ Pins []string }
	json.Unmarshal(b, &ctx)
	return ctx
}

// TestCLIPins: --pin replaces the context's pins on the CLI's connection,
// is checked, and is never silently ignored.
func TestCLIPins(t *testing.T) {
	c := newCluster(t)
	good := readContext(t, c.ctxPath).Pins[0]
	other := pki.SPKIPin(mustRoot(t)).String()
	if _, errOut, code := c.ward("node", "ls", "--pin", other); code == 0 || !strings.Contains(errOut, "pin_mismatch") || !strings.Contains(errOut, other) {
		t.Fatalf("a wrong --pin was not refused: %s", errOut)
	}
	// Staging a rotation: either pin may match.
	if _, errOut, code := c.ward("node", "ls", "--pin", other, "--pin", strings.ToUpper(strings.TrimPrefix(good, "sha256:"))); code != 0 {
		t.Fatalf("staged pins refused: %s", errOut)
	}
	if _, errOut, code := c.ward("node", "ls", "--pin", "sha256:abc"); code == 0 || !strings.Contains(errOut, "64 hex digits") {
		t.Fatalf("a malformed pin: %s", errOut)
	}
	if _, errOut, _ := c.ward("node", "ls", "--pin", "sha1:"+strings.Repeat("ab", 20)); !strings.Contains(errOut, "SHA-1") {
		t.Fatalf("no legacy warning: %s", errOut)
	}
}
