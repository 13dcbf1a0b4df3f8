package coordinator

import (
	"crypto/x509"
	"net"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// A CA leaves the trust bundle when a rotation retires it (or a rollback
// drops the new one). New handshakes are refused from then on, because the
// cluster port's client CAs follow the bundle. Connections opened before
// are authenticated by a certificate the cluster no longer trusts: they
// are closed, as a revocation closes those of a revoked certificate.
// Connections whose holder renewed over them from a CA still trusted (an
// agent's session in the renew phase) stand for the new certificate and
// stay open.

// vouch records the chain (leaf first) of the certificate conn stands for
// now: the one presented at its handshake, or one renewed over it. Without
// a chain the connection is not judged by this coordinator (a session it
// relays to the leader, which judges it).
func (l *liveConns) vouch(conn net.Conn, chain []*x509.Certificate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.byConn[conn]; !ok {
		return // closed, or never registered
	}
	if len(chain) == 0 {
		delete(l.chains, conn)
		return
	}
	if l.chains == nil {
		l.chains = map[net.Conn][]*x509.Certificate{}
	}
	l.chains[conn] = chain
}

// vouchRenewed makes conn stand for renewed when it stood for old: its
// holder proved old's key at the handshake and renewed's with the CSR. A
// connection that stands for another certificate (a follower's, carrying
// a forwarded renewal) keeps its own.
func (l *liveConns) vouchRenewed(conn net.Conn, old, renewed *x509.Certificate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if chain := l.chains[conn]; len(chain) > 0 && chain[0].Equal(old) {
		l.chains[conn] = []*x509.Certificate{renewed}
	}
}

// closeUntrusted closes every connection whose chain trusted rejects, and
// returns the leaves of those it closed.
func (l *liveConns) closeUntrusted(trusted func(chain []*x509.Certificate) bool) []*x509.Certificate {
	l.mu.Lock()
	var conns []net.Conn
	var leaves []*x509.Certificate
	for conn, chain := range l.chains {
		if !trusted(chain) {
			conns = append(conns, conn)
			leaves = append(leaves, chain[0])
		}
	}
	l.closeLocked(conns)
	return leaves
}

// closeRetiredTrust closes the connections whose certificate no longer
// chains to a root of the current trust bundle. It runs after every trust
// change of a rotation, on each coordinator that applies it.
//
// Connections of coordinators are left alone: they carry other peers'
// identities, each judged on its own (a relayed agent session here, a
// forwarded request's chain per request), and a coordinator re-certifies
// itself from the new issuing CA in the issue phase, before any
// retirement. Expiry is not judged here either: only trust.
func (c *Coordinator) closeRetiredTrust(now time.Time) {
	roots := c.ca.src.Trust()
	inter := x509.NewCertPool()
	c.ca.mu.RLock()
	for _, ca := range append([]*pki.CA{c.ca.nextIssuing}, c.ca.others...) {
		if ca != nil {
			inter.AddCert(ca.Cert)
		}
	}
	for _, cert := range c.issuer().Chain {
		inter.AddCert(cert)
	}
	c.ca.mu.RUnlock()
	trusted := func(chain []*x509.Certificate) bool {
		leaf := chain[0]
		if id, err := pki.IDFromCert(leaf); err == nil && id.Role == pki.RoleCoordinator {
			return true
		}
		pool := inter.Clone()
		for _, cert := range chain[1:] {
			pool.AddCert(cert)
		}
		at := now
		if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
			at = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err == nil
	}
	closed := c.live.closeUntrusted(trusted)
	for _, leaf := range closed {
		who := leaf.Subject.CommonName
		if id, err := pki.IDFromCert(leaf); err == nil {
			who = id.String()
		}
		c.connLog("connection closed: its certificate's CA is no longer trusted", "identity", who,
			"cert_serial", pki.SerialHex(leaf), "cert_issuer", leaf.Issuer.CommonName,
			"fix", "the client must use a certificate of the current CA: the CLI renews itself while a rotation runs; an agent heals through the public port")
	}
	if len(closed) > 0 {
		c.log.Info("CA rotation: closed connections of certificates no longer trusted", "closed", len(closed))
	}
}
