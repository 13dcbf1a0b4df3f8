// Package pkitest makes Ward certificate authorities in memory for tests, so
// that no certificate is ever committed and none expires under CI.
package pkitest

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// CA is a root and issuing CA pair for one test cluster.
type CA struct {
	Cluster string
	Root    *pki.CA
	Issuing *pki.CA
	Issuer  *pki.Issuer
}

// New returns a fresh two-level CA for cluster "test".
func New(tb testing.TB) *CA {
	tb.Helper()
	return NewCluster(tb, "test")
}

// NewCluster returns a fresh two-level CA for the named cluster.
func NewCluster(tb testing.TB, cluster string) *CA {
	tb.Helper()
	now := time.Now()
	root, err := pki.NewRootCA(cluster, now, pki.RootLifetime)
	if err != nil {
		tb.Fatal(err)
	}
	iss, err := pki.NewIssuingCA(root, cluster, 1, now, pki.IssuingLifetime)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{
		Cluster: cluster,
		Root:    root,
		Issuing: iss,
		Issuer:  &pki.Issuer{CA: iss, Chain: []*x509.Certificate{iss.Cert, root.Cert}},
	}
}

// Bundle returns the trust bundle holding the root.
func (c *CA) Bundle() pki.Bundle { return pki.Bundle{c.Root.Cert} }

// Leaf issues a certificate for role/name with a fresh key, valid for a day.
// Coordinator leaves also name localhost and 127.0.0.1.
func (c *CA) Leaf(tb testing.TB, role pki.Role, name string) (tls.Certificate, crypto.Signer) {
	tb.Helper()
	return c.LeafAt(tb, role, name, time.Now(), 24*time.Hour)
}

// LeafAt issues a leaf as if at now, for lifetime; a past now with a short
// lifetime makes an expired certificate.
func (c *CA) LeafAt(tb testing.TB, role pki.Role, name string, now time.Time, lifetime time.Duration) (tls.Certificate, crypto.Signer) {
	tb.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	spec := pki.LeafSpec{ID: pki.ID{Cluster: c.Cluster, Role: role, Name: name}, PublicKey: key.Public(), Lifetime: lifetime}
	if role == pki.RoleCoordinator {
		spec.DNSNames = []string{"localhost"}
		spec.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	cert, err := c.Issuer.Issue(spec, now)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{
		Certificate: [][]byte{cert.Raw, c.Issuing.Cert.Raw},
		PrivateKey:  key,
		Leaf:        cert,
	}, key
}
