package diagnose_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

// crlServer serves whatever CRL bytes are stored in it, over plain HTTP, as
// Ward's public port serves its CRL.
func crlServer(t *testing.T) (url string, crl *atomic.Pointer[[]byte]) {
	t.Helper()
	crl = new(atomic.Pointer[[]byte])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b := crl.Load()
		if b == nil {
			http.NotFound(w, nil)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(*b)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/ca.crl", crl
}

func TestCheckRevocation(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	url, served := crlServer(t)
	deadURL := "http://" + closedPort(t) + "/ca.crl"

	withCDP := f.issue(t, func(c *x509.Certificate) { c.CRLDistributionPoints = []string{url} })
	withDeadCDP := f.issue(t, func(c *x509.Certificate) { c.CRLDistributionPoints = []string{deadURL} })
	revokedEntry := func(cert *x509.Certificate) []x509.RevocationListEntry {
		return []x509.RevocationListEntry{{SerialNumber: cert.SerialNumber, RevocationTime: now.Add(-time.Hour), ReasonCode: 1}}
	}
	listing, err := pki.CreateCRL(f.ca.Issuing, revokedEntry(withCDP.Leaf), 1, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	listingPlain, err := pki.CreateCRL(f.ca.Issuing, revokedEntry(f.server.Leaf), 2, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := pki.CreateCRL(f.ca.Issuing, nil, 3, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := pki.CreateCRL(f.ca.Issuing, nil, 4, now.Add(-3*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.CreateCRL(f.other.Issuing, nil, 5, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "ca.crl.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: listingPlain}), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		serve       []byte
		server      string // which certificate the server uses
		crl         *diagnose.CRLSource
		want        diagnose.Code
		wantChecked bool
		inMsg       []string
	}{
		{name: "revoked via distribution point", server: "cdp", serve: listing, want: diagnose.CodeRevoked, wantChecked: true,
			inMsg: []string{pki.SerialHex(withCDP.Leaf), "keyCompromise", url}},
		{name: "not revoked via distribution point", server: "cdp", serve: empty, want: diagnose.CodeOK, wantChecked: true},
		{name: "revoked via CRL URL option", server: "plain", serve: listingPlain, crl: &diagnose.CRLSource{URL: url}, want: diagnose.CodeRevoked, wantChecked: true},
		{name: "revoked via CRL file (PEM)", server: "plain", crl: diagnose.ParseCRLSource(pemFile), want: diagnose.CodeRevoked, wantChecked: true},
		{name: "CRL option overrides distribution point", server: "cdp", serve: listing, crl: &diagnose.CRLSource{URL: deadURL}, want: diagnose.CodeRevocationUnavailable, inMsg: []string{deadURL, "refused"}},
		{name: "unreachable distribution point", server: "deadcdp", want: diagnose.CodeRevocationUnavailable, inMsg: []string{deadURL}},
		{name: "CRL URL answers 404", server: "plain", crl: &diagnose.CRLSource{URL: url}, want: diagnose.CodeRevocationUnavailable, inMsg: []string{"404"}},
		{name: "stale CRL", server: "cdp", serve: stale, want: diagnose.CodeRevocationUnavailable, inMsg: []string{"stale"}},
		{name: "CRL signed by another CA", server: "cdp", serve: foreign, want: diagnose.CodeRevocationUnavailable, inMsg: []string{"not signed by the certificate's issuer"}},
		{name: "missing CRL file", server: "plain", crl: &diagnose.CRLSource{Path: filepath.Join(dir, "nope.crl")}, want: diagnose.CodeRevocationUnavailable, inMsg: []string{"nope.crl"}},
		{name: "no CRL anywhere", server: "plain", want: diagnose.CodeOK, inMsg: []string{"revocation not checked"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.serve != nil {
				served.Store(&tc.serve)
			} else {
				served.Store(nil)
			}
			cert := f.server
			switch tc.server {
			case "cdp":
				cert = withCDP
			case "deadcdp":
				cert = withDeadCDP
			}
			addr, _ := tlsServer(t, publicConfig(cert))
			r := check(t, diagnose.Options{Address: addr, Roots: f.roots(), CRL: tc.crl})
			expect(t, r, tc.want, tc.inMsg...)
			if r.RevocationChecked != tc.wantChecked {
				t.Errorf("RevocationChecked = %v, want %v", r.RevocationChecked, tc.wantChecked)
			}
		})
	}
}

// TestRevokedServerGetsNoClientCert: a revoked server fails before the
// client certificate is sent.
func TestRevokedServerGetsNoClientCert(t *testing.T) {
	f := newFixture(t)
	url, served := crlServer(t)
	crl, err := pki.CreateCRL(f.ca.Issuing, []x509.RevocationListEntry{{SerialNumber: f.server.Leaf.SerialNumber, RevocationTime: time.Now()}}, 1, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	served.Store(&crl)
	addr, _ := tlsServer(t, clusterConfig(f))
	r := check(t, diagnose.Options{Address: addr, Roots: f.roots(), ClientCert: &f.agent, CRL: &diagnose.CRLSource{URL: url}})
	expect(t, r, diagnose.CodeRevoked)
	if r.ClientCertSent {
		t.Error("client certificate sent to a revoked server")
	}
}

// httpsCRLServer serves crl over TLS with cert, as a coordinator's public
// port serves its CRL.
func httpsCRLServer(t *testing.T, cert tls.Certificate, crl []byte) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(crl)
	}))
	srv.TLS = publicConfig(cert)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/crl"
}

// TestCRLFetchUsesTheCheckTrust: the CRL named by the server's certificate
// is fetched over https with the trust the server itself was checked with:
// the --ca roots, the pinned certificate alone, or (insecure) none. Before,
// the fetch always used the system roots, so a check with only --pin or
// with --insecure-skip-verify answered revocation_unavailable.
func TestCRLFetchUsesTheCheckTrust(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	empty, err := pki.CreateCRL(f.ca.Issuing, nil, 1, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good := httpsCRLServer(t, f.server, empty)
	strangerCert, _ := f.other.Leaf(t, pki.RoleCoordinator, "c1")
	impostor := httpsCRLServer(t, strangerCert, empty)
	issuingPin := pki.SPKIPin(f.ca.Issuing.Cert)

	tests := []struct {
		name        string
		cdp         string
		opts        diagnose.Options
		want        diagnose.Code
		wantChecked bool
		inMsg       []string
	}{
		{name: "with --ca", cdp: good, opts: diagnose.Options{Roots: f.roots()}, want: diagnose.CodeOK, wantChecked: true},
		{name: "with a pin alone", cdp: good, opts: diagnose.Options{Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeOK, wantChecked: true},
		{name: "a pin alone does not trust another CRL server", cdp: impostor, opts: diagnose.Options{Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeRevocationUnavailable,
			inMsg: []string{"unknown_authority"}},
		{name: "insecure", cdp: good, opts: diagnose.Options{InsecureSkipVerify: true}, want: diagnose.CodeOK, wantChecked: true,
			inMsg: []string{"without verifying that server (--insecure-skip-verify)"}},
		{name: "insecure with a pin", cdp: good, opts: diagnose.Options{InsecureSkipVerify: true, Pins: []pki.Pin{issuingPin}}, want: diagnose.CodeOK, wantChecked: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := f.issue(t, func(c *x509.Certificate) { c.CRLDistributionPoints = []string{tc.cdp} })
			addr, _ := tlsServer(t, publicConfig(cert))
			tc.opts.Address = addr
			r := check(t, tc.opts)
			expect(t, r, tc.want, tc.inMsg...)
			if r.RevocationChecked != tc.wantChecked {
				t.Errorf("RevocationChecked = %v, want %v", r.RevocationChecked, tc.wantChecked)
			}
		})
	}
}
