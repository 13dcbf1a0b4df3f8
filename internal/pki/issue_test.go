package pki_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

func mustCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCheckCSR(t *testing.T) {
	p256, _ := pki.GenerateKey()
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	id := pki.ID{Cluster: "test", Role: pki.RoleAgent, Name: "node-1"}
	bcCA, _ := asn1.Marshal(struct{ IsCA bool }{true})
	bcLeaf, _ := asn1.Marshal(struct{}{})
	adminURI, _ := url.Parse("spiffe://test/user/admin")

	tests := []struct {
		name   string
		key    crypto.Signer
		tmpl   x509.CertificateRequest
		policy pki.CSRPolicy
		want   api.Code // "" means accepted
	}{
		{name: "plain", key: p256, tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "node-1"}}},
		{name: "own identity", key: p256, tmpl: x509.CertificateRequest{URIs: []*url.URL{id.URI()}}},
		{name: "leaf basic constraints", key: p256, tmpl: x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: bcLeaf}}}},
		{name: "CA bit", key: p256, tmpl: x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bcCA}}}, want: api.CodeCSRCARequested},
		{name: "weak curve", key: p224, want: api.CodeCSRWeakKey},
		{name: "weak rsa", key: rsa1024, want: api.CodeCSRWeakKey},
		{name: "admin identity", key: p256, tmpl: x509.CertificateRequest{URIs: []*url.URL{adminURI}}, want: api.CodeCSRSANNotAllowed},
		{name: "dns not allowed", key: p256, tmpl: x509.CertificateRequest{DNSNames: []string{"coordinator.example"}}, want: api.CodeCSRSANNotAllowed},
		{name: "dns allowed by token", key: p256, tmpl: x509.CertificateRequest{DNSNames: []string{"n1.example"}}, policy: pki.CSRPolicy{AllowedDNS: []string{"n1.example"}}},
		{name: "email", key: p256, tmpl: x509.CertificateRequest{EmailAddresses: []string{"a@b.c"}}, want: api.CodeCSRSANNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.policy.ID = id
			_, err := pki.CheckCSR(mustCSR(t, tt.key, &tt.tmpl), tt.policy)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if got := api.CodeOf(err); got != tt.want {
				t.Fatalf("code = %s (%v), want %s", got, err, tt.want)
			}
		})
	}
	t.Run("garbage", func(t *testing.T) {
		if _, err := pki.CheckCSR([]byte("nope"), pki.CSRPolicy{ID: id}); api.CodeOf(err) != api.CodeCSRInvalid {
			t.Fatalf("got %v", err)
		}
	})
}

func TestIssueChainsAndRoles(t *testing.T) {
	ca := pkitest.New(t)
	key, _ := pki.GenerateKey()
	now := time.Now()
	tests := []struct {
		role pki.Role
		eku  x509.ExtKeyUsage
		bad  x509.ExtKeyUsage
	}{
		{pki.RoleAgent, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		{pki.RoleUser, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		{pki.RoleCoordinator, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageAny},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			id := pki.ID{Cluster: "test", Role: tt.role, Name: "x1"}
			cert, err := ca.Issuer.Issue(pki.LeafSpec{ID: id, PublicKey: key.Public(), Lifetime: time.Hour}, now)
			if err != nil {
				t.Fatal(err)
			}
			inter := x509.NewCertPool()
			inter.AddCert(ca.Issuing.Cert)
			opts := x509.VerifyOptions{Roots: ca.Bundle().Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{tt.eku}}
			if _, err := cert.Verify(opts); err != nil {
				t.Fatalf("verify with %v: %v", tt.eku, err)
			}
			opts.KeyUsages = []x509.ExtKeyUsage{tt.bad}
			if tt.bad != x509.ExtKeyUsageAny {
				if _, err := cert.Verify(opts); err == nil {
					t.Fatalf("verified for %v, which the role must not have", tt.bad)
				}
			}
			got, err := pki.IDFromCert(cert)
			if err != nil || got != id {
				t.Fatalf("IDFromCert = %v, %v; want %v", got, err, id)
			}
			if cert.IsCA {
				t.Fatal("leaf is a CA")
			}
		})
	}
	t.Run("user role in a second URI SAN", func(t *testing.T) {
		id := pki.ID{Cluster: "test", Role: pki.RoleUser, Name: "ann"}
		cert, err := ca.Issuer.Issue(pki.LeafSpec{ID: id, PublicKey: key.Public(), Lifetime: time.Hour, UserRole: "submitter"}, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := pki.UserRoleOf(cert); got != "submitter" {
			t.Fatalf("UserRoleOf = %q", got)
		}
		if len(cert.URIs) != 2 || cert.URIs[1].String() != "urn:ward:role:submitter" {
			t.Fatalf("URIs %v", cert.URIs)
		}
		if got, err := pki.IDFromCert(cert); err != nil || got != id {
			t.Fatalf("IDFromCert = %v, %v", got, err)
		}
		if _, err := ca.Issuer.Issue(pki.LeafSpec{ID: pki.ID{Cluster: "test", Role: pki.RoleAgent, Name: "n"}, PublicKey: key.Public(), Lifetime: time.Hour, UserRole: "admin"}, now); err == nil {
			t.Fatal("an agent certificate was issued with a user role")
		}
	})
	t.Run("lifetime capped at issuing CA", func(t *testing.T) {
		id := pki.ID{Cluster: "test", Role: pki.RoleAgent, Name: "x2"}
		cert, err := ca.Issuer.Issue(pki.LeafSpec{ID: id, PublicKey: key.Public(), Lifetime: 100 * 365 * 24 * time.Hour}, now)
		if err != nil {
			t.Fatal(err)
		}
		if !cert.NotAfter.Equal(ca.Issuing.Cert.NotAfter) {
			t.Fatalf("NotAfter %v, want capped at %v", cert.NotAfter, ca.Issuing.Cert.NotAfter)
		}
	})
}

func TestParseID(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		role pki.Role
	}{
		{"spiffe://c1/agent/node-1", true, pki.RoleAgent},
		{"spiffe://c1/user/admin", true, pki.RoleUser},
		{"spiffe://c1/coordinator/c-1", true, pki.RoleCoordinator},
		{"spiffe://c1/root/x", false, ""},
		{"spiffe://c1/agent/Node", false, ""},
		{"spiffe://c1/agent/a/b", false, ""},
		{"https://c1/agent/a", false, ""},
		{"spiffe://c1:80/agent/a", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, _ := url.Parse(tt.in)
			id, err := pki.ParseID(u)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && id.Role != tt.role {
				t.Fatalf("role %q", id.Role)
			}
		})
	}
}

// BenchmarkIssueFromCSR is the join's CA work: parse and check the CSR
// under the policy, then sign the leaf.
func BenchmarkIssueFromCSR(b *testing.B) {
	ca := pkitest.New(b)
	key, _ := pki.GenerateKey()
	id := pki.ID{Cluster: "test", Role: pki.RoleAgent, Name: "n1"}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URI()}}, key)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		csr, err := pki.CheckCSR(der, pki.CSRPolicy{ID: id})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ca.Issuer.Issue(pki.LeafSpec{ID: id, PublicKey: csr.PublicKey, Lifetime: 24 * time.Hour}, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issued/s")
}
