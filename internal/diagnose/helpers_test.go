package diagnose_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// fixture is one cluster CA, a stranger CA, and the certificates the tests
// serve and present.
type fixture struct {
	ca, other *pkitest.CA
	server    tls.Certificate // coordinator leaf: localhost, 127.0.0.1
	agent     tls.Certificate // client certificate from the cluster CA
	stranger  tls.Certificate // client certificate from another CA
}

var (
	fixtureOnce sync.Once
	shared      *fixture
)

// newFixture makes the CAs once per test binary: key generation is the
// slow part and no test changes them.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		ca := pkitest.New(t)
		other := pkitest.NewCluster(t, "other")
		server, _ := ca.Leaf(t, pki.RoleCoordinator, "c1")
		agent, _ := ca.Leaf(t, pki.RoleAgent, "n1")
		stranger, _ := other.Leaf(t, pki.RoleAgent, "n1")
		shared = &fixture{ca: ca, other: other, server: server, agent: agent, stranger: stranger}
	})
	if shared == nil {
		t.Fatal("fixture setup failed in an earlier test")
	}
	return shared
}

func (f *fixture) roots() *x509.CertPool { return f.ca.Bundle().Pool() }

// issue signs a server certificate with the cluster's issuing CA; edit
// changes the template (names, validity, CRL distribution points).
func (f *fixture) issue(t *testing.T, edit func(*x509.Certificate)) tls.Certificate {
	t.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	serial, err := pki.NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "c1", Organization: []string{"Ward cluster test"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.ca.Issuing.Cert, key.Public(), f.ca.Issuing.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, f.ca.Issuing.Cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// publicConfig is Ward's public port: TLS 1.3, server authentication only.
func publicConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
}

// clusterConfig is Ward's cluster port: TLS 1.3, and a client certificate
// from the cluster CA required at the handshake.
func clusterConfig(f *fixture) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{f.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    f.roots(),
	}
}

// tlsServer serves cfg on 127.0.0.1:0. Each connection handshakes and then
// is read until the client leaves; handshake errors, the server's view of
// each failure, arrive on errs.
func tlsServer(t *testing.T, cfg *tls.Config) (addr string, errs <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					select {
					case ch <- err:
					default:
					}
					return
				}
				_, _ = io.Copy(io.Discard, tc)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), ch
}

// rawServer accepts TCP connections and runs serve on each.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// plaintextRefuser behaves like Ward's plaintext listener meeting a TLS
// client: it reads the hello, answers PlaintextRefusal and closes.
func plaintextRefuser(t *testing.T) string {
	return rawServer(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = io.WriteString(c, diagnose.PlaintextRefusal)
	})
}

// silentServer accepts and never answers, until the test ends.
func silentServer(t *testing.T) string {
	done := make(chan struct{})
	addr := rawServer(t, func(c net.Conn) {
		<-done
	})
	t.Cleanup(func() { close(done) })
	return addr
}

// closedPort returns an address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// serverErr waits for the server's handshake error.
func serverErr(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the server reported no handshake error")
	}
	return nil
}

// serverVerdict waits for the server side of a check to report a handshake
// error that ServerSide classifies as code. A check may open several
// connections (the attempt, then probes), and their server goroutines
// report in any order, so errors with other verdicts are skipped.
func serverVerdict(t *testing.T, errs <-chan error, code diagnose.Code) diagnose.Verdict {
	t.Helper()
	var seen []string
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-errs:
			v := diagnose.ServerSide(err)
			if v.Code == code {
				return v
			}
			seen = append(seen, fmt.Sprintf("%s (%v)", v.Code, err))
		case <-deadline:
			t.Fatalf("the server reported no handshake error classified %s; it reported: %v", code, seen)
			return diagnose.Verdict{}
		}
	}
}

// expect fails the test unless r has code, showing the whole report.
func expect(t *testing.T, r *diagnose.Report, code diagnose.Code, inMessage ...string) {
	t.Helper()
	var text bytes.Buffer
	r.WriteText(&text)
	if r.Code != code {
		t.Fatalf("verdict %s, want %s\n%s", r.Code, code, text.String())
	}
	all := r.Message + "\n" + strings.Join(r.Details, "\n")
	for _, s := range inMessage {
		if !strings.Contains(all, s) {
			t.Errorf("report does not mention %q\n%s", s, text.String())
		}
	}
	if r.Code != diagnose.CodeOK && (r.Message == "" || r.Fix == "") {
		t.Errorf("verdict %s without message or fix\n%s", r.Code, text.String())
	}
	if testing.Verbose() {
		t.Logf("\n%s", text.String())
	}
}

func check(t *testing.T, o diagnose.Options) *diagnose.Report {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return diagnose.Check(ctx, o)
}

// writePEM writes a certificate, the chain above it and its key as PEM
// files for openssl: -cert, -cert_chain and -key.
func writePEM(t *testing.T, dir, name string, cert tls.Certificate) (certPath, chainPath, keyPath string) {
	t.Helper()
	var chain []byte
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, pki.EncodeCertsPEM(c)...)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.MarshalKeyPEM(cert.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	certPath = filepath.Join(dir, name+".pem")
	chainPath = filepath.Join(dir, name+"-chain.pem")
	keyPath = filepath.Join(dir, name+".key")
	for path, data := range map[string][]byte{certPath: pki.EncodeCertsPEM(leaf), chainPath: chain, keyPath: key} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, chainPath, keyPath
}

// opensslServer starts `openssl s_server` on 127.0.0.1 with an OS-chosen
// port, read from its "ACCEPT host:port" line (printed once it listens), and
// kills it when the test ends. It skips the test when openssl is absent.
func opensslServer(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH")
	}
	cmd := exec.Command(bin, append([]string{"s_server", "-accept", "127.0.0.1:0", "-www"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	addrCh := make(chan string, 1)
	go func() {
		sent := false
		for lines.Scan() {
			if l := lines.Text(); !sent && strings.HasPrefix(l, "ACCEPT ") {
				addrCh <- strings.TrimSpace(strings.TrimPrefix(l, "ACCEPT "))
				sent = true
			}
		}
		if !sent {
			close(addrCh)
		}
	}()
	select {
	case addr, ok := <-addrCh:
		if !ok {
			t.Fatalf("openssl s_server %v exited without listening: %s", args, stderr.String())
		}
		return addr
	case <-time.After(10 * time.Second):
		t.Fatalf("openssl s_server %v printed no ACCEPT line: %s", args, stderr.String())
	}
	return ""
}
