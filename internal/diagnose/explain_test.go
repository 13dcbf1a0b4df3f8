package diagnose_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

// stdDial connects the way an agent or any standard Go client does (normal
// verification, no manual checks), reads once, and returns the error.
func stdDial(addr string, cfg *tls.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	_, err = conn.Read(make([]byte, 1))
	return err
}

// sendAnyway presents cert whatever CAs the server lists as acceptable, as
// Ward's own clients do.
func sendAnyway(cert tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}

// TestExplain classifies real errors from a standard Go TLS client.
func TestExplain(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	expired, _ := f.ca.LeafAt(t, pki.RoleCoordinator, "c1", now.Add(-72*time.Hour), 24*time.Hour)
	notYet, _ := f.ca.LeafAt(t, pki.RoleCoordinator, "c1", now.Add(72*time.Hour), 24*time.Hour)
	roots := f.roots()
	tls12 := publicConfig(f.server)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	tests := []struct {
		name  string
		err   func(t *testing.T) error
		want  diagnose.Code
		inMsg string
	}{
		{"nil", func(*testing.T) error { return nil }, diagnose.CodeOK, ""},
		{"unknown authority", func(t *testing.T) error {
			addr, _ := tlsServer(t, publicConfig(f.server))
			return stdDial(addr, &tls.Config{RootCAs: f.other.Bundle().Pool()}, 5*time.Second)
		}, diagnose.CodeUnknownAuthority, "Ward Root CA test"},
		{"name mismatch", func(t *testing.T) error {
			addr, _ := tlsServer(t, publicConfig(f.server))
			return stdDial(addr, &tls.Config{RootCAs: roots, ServerName: "wrong.example"}, 5*time.Second)
		}, diagnose.CodeNameMismatch, "DNS:localhost"},
		{"expired", func(t *testing.T) error {
			addr, _ := tlsServer(t, publicConfig(expired))
			return stdDial(addr, &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeExpired, "expired at"},
		{"not yet valid", func(t *testing.T) error {
			addr, _ := tlsServer(t, publicConfig(notYet))
			return stdDial(addr, &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeNotYetValid, "not valid until"},
		{"client certificate required", func(t *testing.T) error {
			addr, _ := tlsServer(t, clusterConfig(f))
			return stdDial(addr, &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeClientCertRequired, "certificate_required (116)"},
		{"client certificate from another CA, not sent", func(t *testing.T) error {
			// Go's client sends no certificate that the server's list of
			// acceptable CAs excludes.
			addr, _ := tlsServer(t, clusterConfig(f))
			return stdDial(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{f.stranger}}, 5*time.Second)
		}, diagnose.CodeClientCertRequired, "not from a CA the server lists as acceptable"},
		{"client certificate rejected", func(t *testing.T) error {
			addr, _ := tlsServer(t, clusterConfig(f))
			return stdDial(addr, &tls.Config{RootCAs: roots, GetClientCertificate: sendAnyway(f.stranger)}, 5*time.Second)
		}, diagnose.CodeClientCertRejected, "unknown_ca (48)"},
		{"protocol version", func(t *testing.T) error {
			addr, _ := tlsServer(t, tls12)
			return stdDial(addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}, 5*time.Second)
		}, diagnose.CodeProtocolVersion, "protocol_version (70)"},
		{"HTTP server", func(t *testing.T) error {
			srv := httptest.NewServer(http.NotFoundHandler())
			t.Cleanup(srv.Close)
			return stdDial(srv.Listener.Addr().String(), &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeNotTLS, "HTTP"},
		{"Ward plaintext listener", func(t *testing.T) error {
			return stdDial(plaintextRefuser(t), &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeTLSToPlaintext, "WARD/"},
		{"refused", func(t *testing.T) error {
			return stdDial(closedPort(t), &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeRefused, "127.0.0.1"},
		{"dns", func(t *testing.T) error {
			return stdDial("nonexistent.invalid:443", &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeDNS, "nonexistent.invalid"},
		{"timeout", func(t *testing.T) error {
			return stdDial(silentServer(t), &tls.Config{RootCAs: roots}, 300*time.Millisecond)
		}, diagnose.CodeTimeout, ""},
		{"closed", func(t *testing.T) error {
			return stdDial(rawServer(t, func(net.Conn) {}), &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeClosed, ""},
		{"pin mismatch from the wire contract", func(*testing.T) error {
			return api.Errorf(api.CodePinMismatch, "get the new pin", "the server's CA does not match the pin")
		}, diagnose.CodePinMismatch, "does not match"},
		{"wrapped", func(t *testing.T) error {
			return errors.Join(errors.New("join failed"), stdDial(closedPort(t), &tls.Config{}, time.Second))
		}, diagnose.CodeRefused, ""},
		{"anything else", func(*testing.T) error { return errors.New("disk full") }, diagnose.CodeUnclassified, "disk full"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			v := diagnose.Explain(err)
			if v.Code != tc.want {
				t.Fatalf("Explain(%v) = %s (%s), want %s", err, v.Code, v.Message, tc.want)
			}
			if !strings.Contains(v.Message, tc.inMsg) {
				t.Errorf("message %q does not mention %q", v.Message, tc.inMsg)
			}
			if v.Code != diagnose.CodeOK && (v.Message == "" || v.Fix == "") {
				t.Errorf("no message or fix: %+v", v)
			}
			t.Logf("%v\n  → %s: %s\n    fix: %s", err, v.Code, v.Message, v.Fix)
		})
	}
}

// TestServerSide classifies real handshake errors seen by a Go TLS server
// configured like Ward's ports.
func TestServerSide(t *testing.T) {
	f := newFixture(t)
	expiredAgent, _ := f.ca.LeafAt(t, pki.RoleAgent, "old", time.Now().Add(-72*time.Hour), 24*time.Hour)
	roots := f.roots()
	tls12 := publicConfig(f.server)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	tests := []struct {
		name   string
		server *tls.Config
		client func(addr string)
		want   diagnose.Code
		inMsg  string
	}{
		{"plaintext HTTP to the TLS port", publicConfig(f.server), func(addr string) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			_, _ = io.Copy(io.Discard, c)
		}, diagnose.CodeNotTLS, "plaintext HTTP"},
		{"client without a certificate", clusterConfig(f), func(addr string) {
			_ = stdDial(addr, &tls.Config{RootCAs: roots}, 5*time.Second)
		}, diagnose.CodeClientCertRequired, ""},
		{"client certificate from another CA", clusterConfig(f), func(addr string) {
			_ = stdDial(addr, &tls.Config{RootCAs: roots, GetClientCertificate: sendAnyway(f.stranger)}, 5*time.Second)
		}, diagnose.CodeClientCertRejected, "not signed by a CA this port trusts"},
		{"expired client certificate", clusterConfig(f), func(addr string) {
			_ = stdDial(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{expiredAgent}}, 5*time.Second)
		}, diagnose.CodeClientCertRejected, "has expired"},
		{"client offers only TLS 1.2", publicConfig(f.server), func(addr string) {
			_ = stdDial(addr, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12}, 5*time.Second)
		}, diagnose.CodeProtocolVersion, "TLS 1.2"},
		{"client refuses the server's certificate", publicConfig(f.server), func(addr string) {
			_ = stdDial(addr, &tls.Config{RootCAs: f.other.Bundle().Pool()}, 5*time.Second)
		}, diagnose.CodeUnknownAuthority, ""},
		{"no common cipher suite", tls12, func(addr string) {
			_ = stdDial(addr, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}}, 5*time.Second)
		}, diagnose.CodeCipherMismatch, ""},
		{"client hangs up", publicConfig(f.server), func(addr string) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
			}
		}, diagnose.CodeClosed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, errs := tlsServer(t, tc.server)
			tc.client(addr)
			err := serverErr(t, errs)
			v := diagnose.ServerSide(err)
			if v.Code != tc.want {
				t.Fatalf("ServerSide(%v) = %s (%s), want %s", err, v.Code, v.Message, tc.want)
			}
			if !strings.Contains(v.Message, tc.inMsg) || v.Message == "" || v.Fix == "" {
				t.Errorf("verdict %+v; want a message mentioning %q and a fix", v, tc.inMsg)
			}
			t.Logf("%v\n  → %s: %s\n    fix: %s", err, v.Code, v.Message, v.Fix)
		})
	}
	if v := diagnose.ServerSide(nil); v.Code != diagnose.CodeOK {
		t.Errorf("ServerSide(nil) = %s", v.Code)
	}
}
