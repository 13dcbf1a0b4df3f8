package diagnose_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

// TestCheckAgainstOpenSSL proves the verdicts against a TLS stack that is
// not Go's: `openssl s_server`, with certificates written to temp files.
func TestCheckAgainstOpenSSL(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	now := time.Now()
	expired, _ := f.ca.LeafAt(t, pki.RoleCoordinator, "c1", now.Add(-72*time.Hour), 24*time.Hour)
	wrongName := f.issue(t, func(c *x509.Certificate) { c.DNSNames, c.IPAddresses = []string{"coord.example"}, nil })
	serve := func(name string, cert tls.Certificate, extra ...string) []string {
		c, chain, key := writePEM(t, dir, name, cert)
		return append([]string{"-cert", c, "-cert_chain", chain, "-key", key}, extra...)
	}
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, pki.EncodeCertsPEM(f.ca.Root.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	verify := []string{"-Verify", "5", "-verify_return_error", "-CAfile", rootFile}

	tests := []struct {
		name   string
		server []string
		opts   diagnose.Options
		want   diagnose.Code
		inMsg  []string
		tls    string
	}{
		{name: "TLS 1.2 only, Ward default", server: serve("good", f.server, "-tls1_2"), want: diagnose.CodeProtocolVersion,
			inMsg: []string{"protocol_version (70)", "the server speaks TLS 1.2"}},
		{name: "TLS 1.2 only, --min-tls 1.2", server: serve("good", f.server, "-tls1_2"), opts: diagnose.Options{MinTLS: tls.VersionTLS12}, want: diagnose.CodeOK, tls: "TLS 1.2"},
		{name: "TLS 1.3 ok", server: serve("good", f.server), want: diagnose.CodeOK, tls: "TLS 1.3"},
		{name: "expired", server: serve("expired", expired), want: diagnose.CodeExpired, inMsg: []string{"this machine's clock says"}},
		{name: "wrong name", server: serve("wrongname", wrongName), want: diagnose.CodeNameMismatch, inMsg: []string{"DNS:coord.example"}},
		{name: "client certificate required", server: serve("good", f.server, verify...), want: diagnose.CodeClientCertRequired, inMsg: []string{"certificate_required (116)"}},
		{name: "client certificate required, TLS 1.2", server: serve("good", f.server, append(verify, "-tls1_2")...), opts: diagnose.Options{MinTLS: tls.VersionTLS12}, want: diagnose.CodeClientCertRequired},
		{name: "client certificate from another CA", server: serve("good", f.server, verify...), opts: diagnose.Options{ClientCert: &f.stranger}, want: diagnose.CodeClientCertRejected},
		{name: "client certificate accepted", server: serve("good", f.server, verify...), opts: diagnose.Options{ClientCert: &f.agent}, want: diagnose.CodeOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Address = opensslServer(t, tc.server...)
			tc.opts.Roots = f.roots()
			r := check(t, tc.opts)
			expect(t, r, tc.want, tc.inMsg...)
			if tc.tls != "" && r.TLSVersion != tc.tls {
				t.Errorf("TLS version %q, want %q", r.TLSVersion, tc.tls)
			}
		})
	}
}
