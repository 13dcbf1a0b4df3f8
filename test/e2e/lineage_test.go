package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// renewOverSession renews a's certificate on its live session with key and
// returns the new certificate.
func (a *scriptedAgent) renewOverSession(key crypto.Signer) *x509.Certificate {
	a.t.Helper()
	csr, err := enroll.CreateCSR(key, pki.ID{Cluster: a.cluster, Role: pki.RoleAgent, Name: a.name})
	if err != nil {
		a.t.Fatal(err)
	}
	a.send(api.FrameRenewRequest, api.RenewRequest{CSR: csr})
	var r api.Renewed
	a.expect(api.FrameRenewed, &r)
	if r.Error != nil {
		a.t.Fatalf("renewal refused: %v", r.Error)
	}
	chain, err := pki.ParseCertsPEM(r.ChainPEM)
	if err != nil {
		a.t.Fatal(err)
	}
	return chain[0]
}

// renewOverHTTP renews id's certificate with key over POST /v1/certs/renew
// on hc (which presents the certificate being renewed) and returns the new
// certificate.
func renewOverHTTP(t *testing.T, ctx context.Context, c *cluster, hc *http.Client, id pki.ID, key crypto.Signer) *x509.Certificate {
	t.Helper()
	csr, err := enroll.CreateCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(api.RenewRequest{CSR: csr})
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+c.cluster+"/v1/certs/renew", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("renew over HTTP: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("renew over HTTP: %s", resp.Status)
	}
	var rn api.Renewed
	if err := json.NewDecoder(resp.Body).Decode(&rn); err != nil {
		t.Fatal(err)
	}
	return parseChainPEM(t, rn.ChainPEM)[0]
}

// handshakeOK reports whether the cluster port accepts cert (with key) at
// a new handshake; a refusal reaches the client on its first read.
func handshakeOK(t *testing.T, c *cluster, bundle pki.Bundle, cert *x509.Certificate, issuing *x509.Certificate, key crypto.Signer) bool {
	t.Helper()
	src := identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{cert, issuing}, Key: key}, bundle)
	conn, err := tls.Dial("tcp", c.cluster, transport.ClientConfig(src, transport.ClientOptions{ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNHTTP}}))
	if err != nil {
		return false
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err == nil
}

func certBySerial(t *testing.T, c *cluster, serial string) api.Cert {
	t.Helper()
	var certs []api.Cert
	c.wardJSON(&certs, "cert", "ls", "--all")
	for _, ce := range certs {
		if ce.Serial == serial {
			return ce
		}
	}
	t.Fatalf("certificate %s is not in cert ls", serial)
	return api.Cert{}
}

// opensslSerial writes the form `openssl x509 -text` prints: colon-separated
// upper-case bytes, with a leading 00 when the top bit is set.
func opensslSerial(cert *x509.Certificate) string {
	b := cert.SerialNumber.Bytes()
	if b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}

// TestRevocationFollowsRenewal is the attack: a certificate stolen
// for a moment and renewed over POST /v1/certs/renew with the thief's own
// key. The renewal supersedes the stolen certificate: it is refused from
// then on and the victim's session that presented it is closed, while the
// connection that renewed stays open. Revoking the stolen certificate with
// key-compromise afterwards (it is revoked already) revokes everything
// renewed from it, however deep.
func TestRevocationFollowsRenewal(t *testing.T) {
	c := newCluster(t)
	bundle := clusterBundle(t, c)
	victim := newScriptedAgent(t, c, "victim")
	victim.connect(api.Hello{})
	stolen := victim.cert()
	issuing := parseChain(t, victim.src.Certificate())[1]
	stolenKey := victim.src.Certificate().PrivateKey.(crypto.Signer)

	// The thief renews the stolen certificate with its own key.
	var reused []bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
	thiefHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: transport.ClientConfig(victim.src,
		transport.ClientOptions{ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNHTTP}})}, Timeout: 10 * time.Second}
	thiefKey, _ := pki.GenerateKey()
	renewed := renewOverHTTP(t, httptrace.WithClientTrace(context.Background(), trace), c, thiefHTTP, pki.ID{Cluster: victim.cluster, Role: pki.RoleAgent, Name: "victim"}, thiefKey)

	old := certBySerial(t, c, pki.SerialHex(stolen))
	if !old.Revoked || old.Reason != "superseded" {
		t.Fatalf("the certificate renewed with a new key: %+v, want revoked as superseded", old)
	}
	if nw := certBySerial(t, c, pki.SerialHex(renewed)); nw.Parent != pki.SerialHex(stolen) || nw.Revoked {
		t.Fatalf("the renewal's record: %+v, want parent %s", nw, pki.SerialHex(stolen))
	}
	if handshakeOK(t, c, bundle, stolen, issuing, stolenKey) {
		t.Fatal("the superseded certificate still passes a handshake")
	}
	if !sessionClosed(victim) {
		t.Fatal("the victim's session with the superseded certificate stayed open")
	}
	// The connection that renewed is not cut: the next request reuses it.
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "https://"+c.cluster+"/v1/status", nil)
	if resp, err := thiefHTTP.Do(req); err != nil {
		t.Fatalf("the renewing connection was cut: %v", err)
	} else {
		resp.Body.Close()
	}
	if len(reused) != 2 || !reused[1] {
		t.Fatalf("connection reuse %v: the renewing connection did not stay open", reused)
	}

	// The thief opens a session with its certificate and renews it again,
	// with yet another key, over that session: the session goes on.
	thief := &scriptedAgent{t: t, c: c, name: "victim", cluster: victim.cluster, hdr: make([]byte, 5),
		src: identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{renewed, issuing}, Key: thiefKey}, bundle)}
	thief.connect(api.Hello{})
	key3, _ := pki.GenerateKey()
	third := thief.renewOverSession(key3)
	id := strings.TrimSpace(c.mustWard("submit", "--", "true"))
	var as api.Assign
	thief.expect(api.FrameAssign, &as)
	thief.send(api.FrameResults, api.Results{Results: []api.TaskResult{result(as.Tasks[0], 0)}})
	c.waitJob(id, 10*time.Second)
	if handshakeOK(t, c, bundle, renewed, issuing, thiefKey) || !handshakeOK(t, c, bundle, third, issuing, key3) {
		t.Fatal("after the second renewal with a new key, the second certificate must be refused and the third accepted")
	}

	// The admin learns of the theft and revokes the stolen certificate, as
	// openssl prints its serial. It is revoked already, but what was
	// renewed from it goes too, and the session that stands for it.
	out := c.mustWard("cert", "revoke", opensslSerial(stolen), "--reason", "key-compromise")
	if !strings.Contains(out, pki.SerialHex(third)) || !strings.Contains(out, "renewed from it revoked too") {
		t.Fatalf("cert revoke output: %s", out)
	}
	if handshakeOK(t, c, bundle, third, issuing, key3) {
		t.Fatal("a certificate renewed from a revoked one still passes a handshake")
	}
	if !sessionClosed(thief) {
		t.Fatal("the session of the certificate renewed from the revoked one stayed open")
	}
	if ce := certBySerial(t, c, pki.SerialHex(stolen)); ce.Reason != "key-compromise" {
		t.Fatalf("the stolen certificate's reason: %q, want key-compromise", ce.Reason)
	}
	if n, _ := c.node("victim"); n.State != "revoked" {
		t.Fatalf("node victim: %s, want revoked (its current certificate was revoked)", n.State)
	}
}

// TestRevocationReachesEveryRenewal: renewals with the same key chain up;
// revoking the first certificate (given as `openssl x509 -serial` prints
// it) revokes every later one and takes the node out, also after a
// restart. A renewal over the HTTP API records its parent too.
func TestRevocationReachesEveryRenewal(t *testing.T) {
	c := newCluster(t)
	bundle := clusterBundle(t, c)
	f := newScriptedAgent(t, c, "f")
	f.connect(api.Hello{})
	first := f.cert()
	chain := parseChain(t, f.src.Certificate())
	key := f.src.Certificate().PrivateKey.(crypto.Signer)
	second := f.renewOverSession(key)
	third := f.renewOverSession(key)
	for _, ce := range []*x509.Certificate{first, second, third} {
		if rec := certBySerial(t, c, pki.SerialHex(ce)); rec.Revoked {
			t.Fatalf("a same-key renewal revoked %s", rec.Serial)
		}
	}
	// Over HTTP with the third certificate: a fourth.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: transport.ClientConfig(
		identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{third, chain[1]}, Key: key}, bundle),
		transport.ClientOptions{ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNHTTP}})}, Timeout: 10 * time.Second}
	fourth := renewOverHTTP(t, context.Background(), c, hc, pki.ID{Cluster: f.cluster, Role: pki.RoleAgent, Name: "f"}, key)
	if rec := certBySerial(t, c, pki.SerialHex(fourth)); rec.Parent != pki.SerialHex(third) {
		t.Fatalf("the HTTP renewal's parent is %q, want %s", rec.Parent, pki.SerialHex(third))
	}

	serialArg := "serial=" + strings.ToUpper(pki.SerialHex(first))
	if _, err := exec.LookPath("openssl"); err == nil {
		pem := filepath.Join(t.TempDir(), "first.pem")
		os.WriteFile(pem, pki.EncodeCertsPEM(first), 0o644)
		o, err := exec.Command("openssl", "x509", "-in", pem, "-noout", "-serial").Output()
		if err != nil {
			t.Fatal(err)
		}
		serialArg = strings.TrimSpace(string(o))
	}
	out := c.mustWard("cert", "revoke", serialArg)
	for _, ce := range []*x509.Certificate{second, third, fourth} {
		if !strings.Contains(out, pki.SerialHex(ce)) {
			t.Errorf("revoking the first certificate did not revoke %s: %s", pki.SerialHex(ce), out)
		}
	}
	if !strings.Contains(out, "node f") {
		t.Errorf("the node whose current certificate was revoked is not out: %s", out)
	}
	c.coord.kill9()
	c.restartCoordinator()
	for _, ce := range []*x509.Certificate{first, second, third, fourth} {
		if handshakeOK(t, c, bundle, ce, chain[1], key) {
			t.Errorf("certificate %s passes a handshake after its ancestor was revoked", pki.SerialHex(ce))
		}
	}
	if _, errOut, code := c.ward("cert", "revoke", pki.SerialHex(first)); code == 0 || !strings.Contains(errOut, "already revoked, and so is every certificate renewed from it") {
		t.Fatalf("revoking again: exit %d %s", code, errOut)
	}
}

// sessionClosed reads a's frames until the coordinator closes the session
// (true) or 5 s pass (false).
func sessionClosed(a *scriptedAgent) bool {
	a.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := api.ReadFrame(a.conn, a.hdr); err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

func clusterBundle(t *testing.T, c *cluster) pki.Bundle {
	t.Helper()
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		t.Fatal(err)
	}
	_, bundle, _, err := ctx.Credential()
	if err != nil {
		t.Fatal(err)
	}
	return bundle
}

func parseChain(t *testing.T, tc *tls.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range tc.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cert)
	}
	return out
}

func parseChainPEM(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	chain, err := pki.ParseCertsPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}
