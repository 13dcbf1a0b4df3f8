package diagnose_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

func TestCheckPublicPortOK(t *testing.T) {
	f := newFixture(t)
	addr, _ := tlsServer(t, publicConfig(f.server))
	r := check(t, diagnose.Options{Address: addr, Roots: f.roots()})
	expect(t, r, diagnose.CodeOK)
	if r.TLSVersion != "TLS 1.3" || r.KeyExchange != "X25519MLKEM768" || r.Cipher == "" {
		t.Errorf("facts: version %q, key exchange %q, cipher %q", r.TLSVersion, r.KeyExchange, r.Cipher)
	}
	if len(r.Chain) != 2 || r.Chain[0].SHA256 != pki.Fingerprint(f.server.Leaf) || r.Chain[0].SPKIPin != pki.SPKIPin(f.server.Leaf).String() {
		t.Errorf("chain: %+v", r.Chain)
	}
	if r.ClientCert != diagnose.ClientCertNotAsked {
		t.Errorf("client cert %q, want %q", r.ClientCert, diagnose.ClientCertNotAsked)
	}
	if r.ClientCertAsked || r.ClientCertSent || r.Insecure || r.RevocationChecked {
		t.Errorf("flags: asked %v sent %v insecure %v revocation %v", r.ClientCertAsked, r.ClientCertSent, r.Insecure, r.RevocationChecked)
	}
}

// TestCheckClusterPort covers the cluster port (TLS 1.3, client certificate
// required): accepted, required, rejected, and the server's own view.
func TestCheckClusterPort(t *testing.T) {
	f := newFixture(t)
	expiredAgent, _ := f.ca.LeafAt(t, pki.RoleAgent, "old", time.Now().Add(-72*time.Hour), 24*time.Hour)
	tests := []struct {
		name       string
		cert       *tls.Certificate
		want       diagnose.Code
		inMsg      []string
		serverWant diagnose.Code // verdict of ServerSide on the server's handshake error
	}{
		{name: "accepted", cert: &f.agent, want: diagnose.CodeOK, inMsg: []string{"accepted the client certificate"}},
		{name: "no client certificate", want: diagnose.CodeClientCertRequired, inMsg: []string{"certificate_required (116)"}, serverWant: diagnose.CodeClientCertRequired},
		{name: "certificate from another CA", cert: &f.stranger, want: diagnose.CodeClientCertRejected, inMsg: []string{"unknown_ca (48)"}, serverWant: diagnose.CodeClientCertRejected},
		{name: "expired client certificate", cert: &expiredAgent, want: diagnose.CodeClientCertRejected, inMsg: []string{"certificate_expired (45)"}, serverWant: diagnose.CodeClientCertRejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, errs := tlsServer(t, clusterConfig(f))
			r := check(t, diagnose.Options{Address: addr, Roots: f.roots(), ClientCert: tc.cert})
			expect(t, r, tc.want, tc.inMsg...)
			if !r.ClientCertAsked || r.ClientCertSent != (tc.cert != nil) {
				t.Errorf("asked %v sent %v", r.ClientCertAsked, r.ClientCertSent)
			}
			if want := map[bool]string{true: diagnose.ClientCertSent, false: diagnose.ClientCertNoneSent}[tc.cert != nil]; r.ClientCert != want {
				t.Errorf("client cert %q, want %q", r.ClientCert, want)
			}
			if tc.serverWant != "" {
				serverVerdict(t, errs, tc.serverWant)
			}
		})
	}
}

// TestCheckTLS12ClusterPort: a TLS 1.2 server refuses a client certificate
// inside the handshake, not on the first read.
func TestCheckTLS12ClusterPort(t *testing.T) {
	f := newFixture(t)
	cfg := clusterConfig(f)
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want diagnose.Code
	}{
		{"accepted", &f.agent, diagnose.CodeOK},
		{"no client certificate", nil, diagnose.CodeClientCertRequired},
		{"certificate from another CA", &f.stranger, diagnose.CodeClientCertRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := tlsServer(t, cfg)
			r := check(t, diagnose.Options{Address: addr, Roots: f.roots(), ClientCert: tc.cert, MinTLS: tls.VersionTLS12})
			expect(t, r, tc.want)
			if r.TLSVersion != "TLS 1.2" {
				t.Errorf("version %q, want TLS 1.2", r.TLSVersion)
			}
		})
	}
}

func TestCheckServerCertificate(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	expired, _ := f.ca.LeafAt(t, pki.RoleCoordinator, "c1", now.Add(-72*time.Hour), 24*time.Hour)
	notYet, _ := f.ca.LeafAt(t, pki.RoleCoordinator, "c1", now.Add(72*time.Hour), 24*time.Hour)
	otherName := f.issue(t, func(c *x509.Certificate) {
		c.DNSNames = []string{"coord.example"}
		c.IPAddresses = nil
	})
	expiredOtherName := f.issue(t, func(c *x509.Certificate) {
		c.DNSNames, c.IPAddresses = []string{"coord.example"}, nil
		c.NotBefore, c.NotAfter = now.Add(-3*time.Hour), now.Add(-2*time.Hour)
	})
	agentAsServer := f.agent // no serverAuth usage
	withRoot := f.server
	withRoot.Certificate = append(append([][]byte{}, f.server.Certificate...), f.ca.Root.Cert.Raw)
	// A stranger's server certificate sent along with the cluster's issuing
	// CA: the pinned certificate is presented, but nothing chains to it.
	strangerServer, _ := f.other.Leaf(t, pki.RoleCoordinator, "c1")
	strangerChain := strangerServer
	strangerChain.Certificate = [][]byte{strangerServer.Certificate[0], f.ca.Issuing.Cert.Raw}

	rootPin := pki.SPKIPin(f.ca.Root.Cert)
	issuingPin := pki.SPKIPin(f.ca.Issuing.Cert)
	leafThumb := pki.CertSHA256(f.server.Leaf)
	strangerPin := pki.SPKIPin(f.other.Root.Cert)

	tests := []struct {
		name  string
		cert  tls.Certificate
		opts  diagnose.Options
		want  diagnose.Code
		inMsg []string
		check func(*testing.T, *diagnose.Report)
	}{
		{name: "expired", cert: expired, opts: diagnose.Options{Roots: f.roots()}, want: diagnose.CodeExpired,
			inMsg: []string{"expired at " + expired.Leaf.NotAfter.UTC().Format(time.RFC3339), "this machine's clock says"}},
		{name: "not yet valid", cert: notYet, opts: diagnose.Options{Roots: f.roots()}, want: diagnose.CodeNotYetValid,
			inMsg: []string{"not valid until", "this machine's clock says"}},
		{name: "expired by the given clock", cert: f.server, opts: diagnose.Options{Roots: f.roots(), Now: func() time.Time { return now.Add(48 * time.Hour) }}, want: diagnose.CodeExpired},
		{name: "unknown authority", cert: f.server, opts: diagnose.Options{Roots: f.other.Bundle().Pool()}, want: diagnose.CodeUnknownAuthority,
			inMsg: []string{f.ca.Issuing.Cert.Subject.String(), f.ca.Root.Cert.Subject.String(), pki.Fingerprint(f.ca.Issuing.Cert)},
			check: func(t *testing.T, r *diagnose.Report) {
				if len(r.Chain) != 2 {
					t.Errorf("the presented chain was not kept: %d certificates", len(r.Chain))
				}
				if !strings.Contains(r.Fix, "ward ca export") || !strings.Contains(r.Fix, issuingPin.String()) {
					t.Errorf("fix %q", r.Fix)
				}
			}},
		{name: "unknown authority with system roots", cert: f.server, opts: diagnose.Options{}, want: diagnose.CodeUnknownAuthority, inMsg: []string{"system's trusted roots"}},
		{name: "name mismatch", cert: otherName, opts: diagnose.Options{Roots: f.roots()}, want: diagnose.CodeNameMismatch,
			inMsg: []string{`does not name "127.0.0.1"`, "DNS:coord.example"}},
		{name: "name given explicitly", cert: otherName, opts: diagnose.Options{Roots: f.roots(), ServerName: "coord.example"}, want: diagnose.CodeOK},
		{name: "expired wins over name mismatch", cert: expiredOtherName, opts: diagnose.Options{Roots: f.roots()}, want: diagnose.CodeExpired,
			inMsg: []string{"also name_mismatch"}},
		{name: "client certificate served as server certificate", cert: agentAsServer, opts: diagnose.Options{Roots: f.roots()}, want: diagnose.CodeCertificateInvalid,
			inMsg: []string{"serverAuth"}},
		{name: "pin on the root", cert: f.server, opts: diagnose.Options{Roots: f.roots(), Pins: []pki.Pin{rootPin}}, want: diagnose.CodeOK},
		{name: "pin on the leaf thumbprint", cert: f.server, opts: diagnose.Options{Roots: f.roots(), Pins: []pki.Pin{strangerPin, leafThumb}}, want: diagnose.CodeOK},
		{name: "pin mismatch", cert: f.server, opts: diagnose.Options{Roots: f.roots(), Pins: []pki.Pin{strangerPin}}, want: diagnose.CodePinMismatch,
			inMsg: []string{"expected pins: " + strangerPin.String(), issuingPin.String(), rootPin.String(), pki.SPKIPin(f.server.Leaf).String()}},
		{name: "insecure with a good pin", cert: f.server, opts: diagnose.Options{InsecureSkipVerify: true, Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeOK,
			check: func(t *testing.T, r *diagnose.Report) {
				if !r.Insecure || !strings.Contains(r.Message, "insecure") {
					t.Errorf("insecure not reported: %v %q", r.Insecure, r.Message)
				}
			}},
		// A pin alone, without --ca, is the trust anchor, as in an agent's
		// join: the chain must lead to the pinned certificate, and name,
		// validity and usage are checked as with --ca.
		{name: "pin alone on the issuing CA", cert: f.server, opts: diagnose.Options{Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeOK,
			inMsg: []string{"verified up to the pinned certificate", "trust anchor: the pinned certificate"},
			check: func(t *testing.T, r *diagnose.Report) {
				if r.Insecure {
					t.Error("a pinned check reported as insecure")
				}
			}},
		{name: "pin alone on a root the server sends", cert: withRoot, opts: diagnose.Options{Pins: []pki.Pin{rootPin}}, want: diagnose.CodeOK},
		{name: "pin alone on the leaf thumbprint", cert: f.server, opts: diagnose.Options{Pins: []pki.Pin{leafThumb}}, want: diagnose.CodeOK},
		{name: "pin alone on a root the server does not send", cert: f.server, opts: diagnose.Options{Pins: []pki.Pin{rootPin}}, want: diagnose.CodePinMismatch,
			inMsg: []string{"does not send its root"}},
		{name: "pin alone, wrong pin", cert: withRoot, opts: diagnose.Options{Pins: []pki.Pin{strangerPin}}, want: diagnose.CodePinMismatch,
			// Every presented certificate's pin is in the message itself.
			check: func(t *testing.T, r *diagnose.Report) {
				for _, c := range []*x509.Certificate{withRoot.Leaf, f.ca.Issuing.Cert, f.ca.Root.Cert} {
					if !strings.Contains(r.Message, pki.SPKIPin(c).String()) || !strings.Contains(r.Message, pki.Fingerprint(c)) {
						t.Errorf("message lacks the pins of %q: %s", c.Subject, r.Message)
					}
				}
			}},
		{name: "pin alone still checks the name", cert: otherName, opts: diagnose.Options{Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeNameMismatch},
		{name: "pin alone still checks validity", cert: expired, opts: diagnose.Options{Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeExpired},
		{name: "pin alone on a CA the leaf does not chain to", cert: strangerChain, opts: diagnose.Options{Pins: []pki.Pin{pki.SPKIPin(f.ca.Issuing.Cert)}}, want: diagnose.CodeUnknownAuthority,
			inMsg: []string{"does not lead to the pinned certificate"}},
		{name: "pin alone still checks usage", cert: agentAsServer, opts: diagnose.Options{Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeCertificateInvalid},
		{name: "insecure with a bad pin", cert: f.server, opts: diagnose.Options{InsecureSkipVerify: true, Pins: []pki.Pin{strangerPin}}, want: diagnose.CodePinMismatch},
		{name: "insecure with a pin and an expired leaf", cert: expired, opts: diagnose.Options{InsecureSkipVerify: true, Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeExpired},
		{name: "insecure without pins", cert: expired, opts: diagnose.Options{InsecureSkipVerify: true, ServerName: "elsewhere.example"}, want: diagnose.CodeOK,
			inMsg: []string{"NOTHING", "warning (not enforced, insecure)", `does not name "elsewhere.example"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := tlsServer(t, publicConfig(tc.cert))
			tc.opts.Address = addr
			r := check(t, tc.opts)
			expect(t, r, tc.want, tc.inMsg...)
			if len(r.Chain) == 0 {
				t.Error("no chain in the report")
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestVerificationStopsBeforeClientCert: a server that fails verification
// never receives the client certificate.
func TestVerificationStopsBeforeClientCert(t *testing.T) {
	f := newFixture(t)
	addr, errs := tlsServer(t, clusterConfig(f))
	r := check(t, diagnose.Options{Address: addr, Roots: f.other.Bundle().Pool(), ClientCert: &f.agent})
	expect(t, r, diagnose.CodeUnknownAuthority)
	if r.ClientCertSent {
		t.Error("the client certificate was sent to an unverified server")
	}
	// The check stopped before the client certificate stage: it must not
	// claim the server did not ask for one.
	if r.ClientCert != diagnose.ClientCertNotReached {
		t.Errorf("client cert %q, want %q", r.ClientCert, diagnose.ClientCertNotReached)
	}
	var text strings.Builder
	r.WriteText(&text)
	if !strings.Contains(text.String(), "client cert:   not reached") || strings.Contains(text.String(), "not asked for") {
		t.Errorf("text:\n%s", text.String())
	}
	serverVerdict(t, errs, diagnose.CodeUnknownAuthority) // the client refused the server
}

func TestCheckProtocolAndCipher(t *testing.T) {
	f := newFixture(t)
	t.Run("server speaks only TLS 1.2", func(t *testing.T) {
		cfg := publicConfig(f.server)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		addr, errs := tlsServer(t, cfg)
		r := check(t, diagnose.Options{Address: addr, Roots: f.roots()})
		expect(t, r, diagnose.CodeProtocolVersion, "offered TLS 1.3 only", "the server speaks TLS 1.2")
		if !strings.Contains(r.Fix, "--min-tls 1.2") {
			t.Errorf("fix %q", r.Fix)
		}
		if v := serverVerdict(t, errs, diagnose.CodeProtocolVersion); !strings.Contains(v.Message, "TLS 1.3") {
			t.Errorf("ServerSide: %s %q", v.Code, v.Message)
		}
		r = check(t, diagnose.Options{Address: addr, Roots: f.roots(), MinTLS: tls.VersionTLS12})
		expect(t, r, diagnose.CodeOK)
	})
	t.Run("no common cipher suite", func(t *testing.T) {
		cfg := publicConfig(f.server)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
		addr, errs := tlsServer(t, cfg)
		r := check(t, diagnose.Options{Address: addr, Roots: f.roots(), MinTLS: tls.VersionTLS12})
		expect(t, r, diagnose.CodeCipherMismatch, "handshake_failure (40)")
		serverVerdict(t, errs, diagnose.CodeCipherMismatch)
	})
}

func TestCheckNotTLS(t *testing.T) {
	t.Run("plain HTTP server", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		r := check(t, diagnose.Options{Address: srv.Listener.Addr().String()})
		expect(t, r, diagnose.CodeNotTLS, `"HTTP/1.1 400 Bad Request\r\n"`)
	})
	t.Run("Ward plaintext listener", func(t *testing.T) {
		r := check(t, diagnose.Options{Address: plaintextRefuser(t)})
		expect(t, r, diagnose.CodeTLSToPlaintext, "WARD/1 PLAINTEXT-ONLY this port expects plaintext, not TLS")
	})
	t.Run("SSH-like banner", func(t *testing.T) {
		addr := rawServer(t, func(c net.Conn) { _, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n")) })
		r := check(t, diagnose.Options{Address: addr})
		expect(t, r, diagnose.CodeNotTLS, "SSH server")
	})
}

func TestCheckNetwork(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		addr := closedPort(t)
		expect(t, check(t, diagnose.Options{Address: addr}), diagnose.CodeRefused, addr)
	})
	t.Run("timeout", func(t *testing.T) {
		addr := silentServer(t)
		start := time.Now()
		r := check(t, diagnose.Options{Address: addr, Timeout: 300 * time.Millisecond})
		expect(t, r, diagnose.CodeTimeout, addr, "300ms")
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("took %s with a 300ms timeout", took)
		}
	})
	t.Run("dns", func(t *testing.T) {
		expect(t, check(t, diagnose.Options{Address: "nonexistent.invalid:443"}), diagnose.CodeDNS, "nonexistent.invalid")
	})
	t.Run("server closes at once", func(t *testing.T) {
		addr := rawServer(t, func(c net.Conn) {})
		expect(t, check(t, diagnose.Options{Address: addr}), diagnose.CodeClosed)
	})
}

func TestCheckInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts diagnose.Options
		in   string
	}{
		{"no port", diagnose.Options{Address: "127.0.0.1"}, "not host:port"},
		{"empty port", diagnose.Options{Address: "coord.example:"}, "not host:port"},
		{"bad port", diagnose.Options{Address: "coord.example:99999"}, "not a port number"},
		{"TLS 1.1", diagnose.Options{Address: "coord.example:7443", MinTLS: tls.VersionTLS11}, "TLS 1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, check(t, tc.opts), diagnose.CodeInvalidOptions, tc.in)
		})
	}
}
