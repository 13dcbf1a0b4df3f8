package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// enterpriseCA makes, with openssl, a root CA and a server certificate for
// 127.0.0.1 and localhost, and a client certificate claiming a Ward admin
// identity, as an enterprise PKI would issue them.
func enterpriseCA(t *testing.T) (dir string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir = t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "root.key", "-out", "root.pem", "-days", "30", "-subj", "/CN=Enterprise Root")
	os.WriteFile(filepath.Join(dir, "server.ext"), []byte("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"), 0o644)
	run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=head.example")
	run("x509", "-req", "-in", "server.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial", "-out", "server.pem", "-days", "10", "-extfile", "server.ext")
	os.WriteFile(filepath.Join(dir, "wrong.ext"), []byte("subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth\n"), 0o644)
	run("x509", "-req", "-in", "server.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial", "-out", "wrong.pem", "-days", "10", "-extfile", "wrong.ext")
	os.WriteFile(filepath.Join(dir, "client.ext"), []byte("subjectAltName=URI:spiffe://ward/user/admin\nextendedKeyUsage=clientAuth\n"), 0o644)
	run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=impostor")
	run("x509", "-req", "-in", "client.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial", "-out", "client.pem", "-days", "10", "-extfile", "client.ext")
	run("pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-certfile", "root.pem", "-out", "server.p12", "-passout", "pass:s3cret")
	for _, f := range []string{"server.key", "client.key", "root.key", "server.p12"} {
		os.Chmod(filepath.Join(dir, f), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "p12.pass"), []byte("s3cret\n"), 0o600)
	return dir
}

func TestExternalServerCertificate(t *testing.T) {
	ent := enterpriseCA(t)
	c := newCluster(t, "--tls-cert", filepath.Join(ent, "server.pem"), "--tls-key", filepath.Join(ent, "server.key"), "--tls-ca", filepath.Join(ent, "root.pem"))
	if !strings.Contains(c.coord.stderrText(), "using an externally issued server certificate") {
		t.Fatal("the coordinator does not say it uses the external certificate")
	}
	// The CLI verifies it; ward check shows the enterprise chain.
	out := c.mustWard("check", c.cluster, "--ca", filepath.Join(ent, "root.pem"), "--cert", certFileOf(t, c), "--key", keyFileOf(t, c))
	if !strings.Contains(out, "Enterprise Root") || !strings.Contains(out, "verdict: ok") {
		t.Fatalf("ward check:\n%s", out)
	}
	// Agents join with the enterprise root as their pin, and run tasks.
	c.startAgent("a", 1)
	if out, _, code := c.ward("run", "--", "echo", "via-enterprise-cert"); code != 0 || !strings.Contains(out, "via-enterprise-cert") {
		t.Fatalf("run: %d %s", code, out)
	}
	// The enterprise root is never a client CA: a certificate it issued,
	// even one naming a Ward admin identity, is refused at the handshake.
	cert, err := tls.LoadX509KeyPair(filepath.Join(ent, "client.pem"), filepath.Join(ent, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	rootPEM, _ := os.ReadFile(filepath.Join(ent, "root.pem"))
	roots.AppendCertsFromPEM(rootPEM)
	conn, err := tls.Dial("tcp", c.cluster, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte("GET /v1/tokens HTTP/1.1\r\nHost: x\r\n\r\n"))
		buf := make([]byte, 64)
		_, err = conn.Read(buf)
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client certificate from the enterprise CA was accepted")
	}

	// A PKCS#12 with a password file works too.
	c2 := newCluster(t, "--tls-cert", filepath.Join(ent, "server.p12"), "--tls-password-file", filepath.Join(ent, "p12.pass"))
	c2.mustWard("node", "ls")

	// Refusals, each with its own message.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", filepath.Join(ent, "wrong.pem"), "--tls-key", filepath.Join(ent, "server.key"), "--tls-ca", filepath.Join(ent, "root.pem")}, "do not cover the advertised name"},
		{[]string{"--tls-cert", filepath.Join(ent, "server.pem"), "--tls-key", filepath.Join(ent, "client.key"), "--tls-ca", filepath.Join(ent, "root.pem")}, "does not belong to the certificate"},
		{[]string{"--tls-cert", filepath.Join(ent, "server.pem"), "--tls-key", filepath.Join(ent, "server.key")}, "pass the root with --tls-ca"},
		{[]string{"--tls-cert", filepath.Join(ent, "server.p12")}, "password"},
	} {
		p := startProc(t, t.TempDir(), "coord-ext-bad", nil, append([]string{"coordinator", "--data", t.TempDir(), "--advertise", "127.0.0.1", "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, tc.args...)...)
		if code := p.wait(10 * time.Second); code == 0 || !strings.Contains(p.stderrText(), tc.want) {
			t.Errorf("%v: exit %d, want %q in:\n%s", tc.args, code, tc.want, p.stderrText())
		}
	}
}

func certFileOf(t *testing.T, c *cluster) string { cert, _ := certAndKey(t, c); return cert }
func keyFileOf(t *testing.T, c *cluster) string  { _, key := certAndKey(t, c); return key }
