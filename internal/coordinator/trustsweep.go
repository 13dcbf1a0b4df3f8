package coordinator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// A CA leaves the trust bundle when a rotation retires it (or a rollback
// drops the new one). New handshakes are refused from then on, because the
// cluster port's client CAs follow the bundle. Connections opened before
// are authenticated by a certificate the cluster no longer trusts: they
// are closed, as a revocation closes those of a revoked certificate.
// Connections whose holder renewed over them from a CA still trusted (an
// agent's session in the renew phase) stand for the new certificate and
// stay open. A connection checked under the old trust and registered just
// after the sweep is judged when it registers (admitLive).

// vouch records the chain (leaf first) of the certificate conn stands for
// now: the one presented at its handshake, or one renewed over it. Without
// a chain the connection is not judged by this coordinator (a session it
// relays to the leader, which judges it).
func (l *liveConns) vouch(conn net.Conn, chain []*x509.Certificate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.vouchLocked(conn, chain)
}

func (l *liveConns) vouchLocked(conn net.Conn, chain []*x509.Certificate) {
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

// closeUntrusted closes every connection whose chain trusted rejects, and
// returns the leaves of those it closed. The chains are judged outside
// l.mu (a verification each, for thousands of connections), so accepts
// and closes go on meanwhile: a connection closed meanwhile is left out,
// one whose chain a renewal replaced meanwhile is judged again on its new
// chain, and one registered (or vouched for again) after the snapshot
// learns of this sweep from register.
func (l *liveConns) closeUntrusted(trusted func(chain []*x509.Certificate) bool) []*x509.Certificate {
	l.mu.Lock()
	l.sweeps.Add(1)
	snapshot := maps.Clone(l.chains)
	l.mu.Unlock()
	rejected := map[net.Conn]bool{}
	for conn, chain := range snapshot {
		if !trusted(chain) {
			rejected[conn] = true
		}
	}
	l.mu.Lock()
	l.sweeps.Add(1) // a connection absent now was not judged: see register
	var conns []net.Conn
	var leaves []*x509.Certificate
	for conn, chain := range l.chains {
		was, judged := snapshot[conn]
		if !judged {
			continue // registered after the snapshot
		}
		bad := rejected[conn]
		if !sameChain(chain, was) {
			bad = !trusted(chain) // renewed meanwhile: rare, judged here
		}
		if bad {
			conns = append(conns, conn)
			leaves = append(leaves, chain[0])
		}
	}
	l.closeLocked(conns)
	return leaves
}

// sameChain reports whether a and b are the same recorded chain (chains
// are replaced, never changed in place).
func sameChain(a, b []*x509.Certificate) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// trustJudge returns whether a chain (leaf first) still chains to a root
// of the current trust bundle: the predicate of one trust sweep. Its pools
// of intermediates are built once per distinct set of presented CA
// certificates, not per connection; use it from one goroutine.
//
// A coordinator's connection whose certificate no longer chains to the
// trust is kept when that exact certificate is one this cluster issued to
// a coordinator and has not revoked (coordinatorCertRecorded): a follower
// re-certifies from the new issuing CA in the issue phase, but its relay
// and forwarding connections opened before keep presenting the old
// certificate, and the agent sessions it relays over them cannot move to
// another connection, so closing them would drop every relayed session at
// each retirement. What they carry is judged on its own against the
// current trust: each relayed agent session's chain when it opens
// (acceptRelay) and by these sweeps, each forwarded request's chain per
// request. A coordinator certificate someone else minted with the old CA's
// key (a compromise, the reason to rotate) is not recorded, so its
// connections are closed like any other. Expiry is not judged here: only
// trust.
func (c *Coordinator) trustJudge(now time.Time) func(chain []*x509.Certificate) bool {
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
	pools := map[[sha256.Size]byte]*x509.CertPool{}
	return func(chain []*x509.Certificate) bool {
		leaf := chain[0]
		pool := inter
		if len(chain) > 1 {
			// DER is self-delimiting: the concatenation names the set.
			h := sha256.New()
			for _, cert := range chain[1:] {
				h.Write(cert.Raw)
			}
			var key [sha256.Size]byte
			h.Sum(key[:0])
			if pool = pools[key]; pool == nil {
				pool = inter.Clone()
				for _, cert := range chain[1:] {
					pool.AddCert(cert)
				}
				pools[key] = pool
			}
		}
		at := now
		if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
			at = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			if id, ierr := pki.IDFromCert(leaf); ierr == nil && id.Role == pki.RoleCoordinator {
				return c.coordinatorCertRecorded(leaf)
			}
		}
		return err == nil
	}
}

// coordinatorCertRecorded reports whether leaf is, byte for byte, a
// certificate this cluster issued to a coordinator and has not revoked.
// When that cannot be told (no record, a record without a thumbprint, the
// store unavailable), it is not: the connection is closed, and a real
// coordinator reconnects with its current certificate.
func (c *Coordinator) coordinatorCertRecorded(leaf *x509.Certificate) bool {
	if c.st == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	serial := pki.SerialHex(leaf)
	raw, err := c.st.Get(ctx, certKey(serial))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("CA rotation: cannot read a coordinator's certificate record; its connection is closed and it reconnects",
				"cert_serial", serial, "err", err)
		}
		return false
	}
	var rec certRecord
	if json.Unmarshal(raw.Value, &rec) != nil || rec.Revoked || rec.Role != string(pki.RoleCoordinator) || rec.SHA256 == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(rec.SHA256), []byte(pki.Fingerprint(leaf))) == 1
}

// closeRetiredTrust closes the connections whose certificate no longer
// chains to a root of the current trust bundle. It runs after every trust
// change of a rotation, on each coordinator that applies it.
func (c *Coordinator) closeRetiredTrust(now time.Time) {
	closed := c.live.closeUntrusted(c.trustJudge(now))
	for _, leaf := range closed {
		c.logUntrusted(leaf)
	}
	if len(closed) > 0 {
		c.log.Info("CA rotation: closed connections of certificates no longer trusted", "closed", len(closed))
	}
}

// logUntrusted logs a connection closed because its certificate's CA
// left the trust bundle.
func (c *Coordinator) logUntrusted(leaf *x509.Certificate) {
	who := leaf.Subject.CommonName
	if id, err := pki.IDFromCert(leaf); err == nil {
		who = id.String()
	}
	fix := "the client must use a certificate of the current CA: the CLI renews itself while a rotation runs; an agent heals through the public port"
	if id, err := pki.IDFromCert(leaf); err == nil && id.Role == pki.RoleCoordinator {
		fix = "a coordinator of this cluster reconnects with its current certificate; this certificate is not one the cluster issued (or it was issued before certificate thumbprints were recorded): if no coordinator of yours presents it, the old CA's key may be in other hands"
	}
	c.connLog("connection closed: its certificate's CA is no longer trusted", "identity", who,
		"cert_serial", pki.SerialHex(leaf), "cert_issuer", leaf.Issuer.CommonName, "fix", fix)
}

// admitLive registers conn, which presented chain (leaf first) checked
// against the trust and revocations of a moment after mark (see
// liveConns.mark), with the live connections. It closes conn and returns
// false when the certificate was revoked, or left the trust bundle,
// between that check and the registration: the sweep of that change may
// have missed conn.
func (c *Coordinator) admitLive(conn net.Conn, chain []*x509.Certificate, mark uint64) bool {
	leaf := chain[0]
	missed := c.live.register(pki.SerialHex(leaf), conn, chain, mark)
	if c.revoked.Contains(leaf.SerialNumber) {
		c.live.remove(conn)
		conn.Close()
		return false
	}
	if missed && !c.trustJudge(c.now())(chain) {
		c.live.remove(conn)
		conn.Close()
		c.logUntrusted(leaf)
		return false
	}
	return true
}
