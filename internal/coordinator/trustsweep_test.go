package coordinator

import (
	"crypto/x509"
	"testing"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// TestLiveConnsCloseUntrusted: a trust change closes the connections whose
// certificate the new trust rejects, keeps the ones renewed over from a
// trusted CA, and leaves alone those it does not judge (relayed sessions,
// which the leader judges).
func TestLiveConnsCloseUntrusted(t *testing.T) {
	oldCA, newCA := pkitest.New(t), pkitest.New(t)
	leaf := func(ca *pkitest.CA, name string) []*x509.Certificate {
		c, _ := ca.Leaf(t, pki.RoleAgent, name)
		return []*x509.Certificate{c.Leaf, ca.Issuing.Cert}
	}
	var l liveConns
	conns := map[string]*closeConn{}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"old", leaf(oldCA, "old")},
		{"new", leaf(newCA, "new")},
		{"renewed", leaf(oldCA, "renewed")},
		{"relayed", leaf(oldCA, "relayed")},
		{"forwarder", leaf(oldCA, "forwarder")},
	} {
		conns[tc.name] = &closeConn{}
		l.add(tc.name, conns[tc.name])
		l.vouch(conns[tc.name], tc.chain)
	}
	l.vouchRenewed(conns["renewed"], l.chains[conns["renewed"]][0], leaf(newCA, "renewed")[0])
	// A renewal forwarded over a connection that stands for another
	// certificate changes nothing.
	l.vouchRenewed(conns["forwarder"], leaf(oldCA, "someone")[0], leaf(newCA, "someone")[0])
	l.vouch(conns["relayed"], nil)

	roots := x509.NewCertPool()
	roots.AddCert(newCA.Root.Cert)
	inter := x509.NewCertPool()
	inter.AddCert(newCA.Issuing.Cert)
	closed := l.closeUntrusted(func(chain []*x509.Certificate) bool {
		_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err == nil
	})
	want := map[string]bool{"old": true, "forwarder": true}
	for name, c := range conns {
		if c.closed != want[name] {
			t.Errorf("%s: closed %v, want %v", name, c.closed, want[name])
		}
	}
	if len(closed) != 2 {
		t.Errorf("closed %d connections, want 2", len(closed))
	}
	for _, name := range []string{"old", "forwarder"} {
		if len(l.bySerial[name]) != 0 {
			t.Errorf("%s: still tied to its serial after being closed", name)
		}
	}
	l.remove(conns["new"])
	if _, ok := l.chains[conns["new"]]; ok {
		t.Error("a removed connection's chain is kept")
	}
}
