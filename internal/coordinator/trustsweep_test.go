package coordinator

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
	"github.com/wardcluster/ward/internal/transport"
)

// chainOf issues an agent certificate of ca and returns its chain, leaf
// first, as a handshake presents it.
func chainOf(t *testing.T, ca *pkitest.CA, name string) []*x509.Certificate {
	t.Helper()
	c, _ := ca.Leaf(t, pki.RoleAgent, name)
	return []*x509.Certificate{c.Leaf, ca.Issuing.Cert}
}

// TestLiveConnsCloseUntrusted: a trust change closes the connections whose
// certificate the new trust rejects, keeps the ones renewed over from a
// trusted CA, and leaves alone those it does not judge (relayed sessions,
// which the leader judges).
func TestLiveConnsCloseUntrusted(t *testing.T) {
	oldCA, newCA := pkitest.New(t), pkitest.New(t)
	var l liveConns
	conns := map[string]*closeConn{}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"old", chainOf(t, oldCA, "old")},
		{"new", chainOf(t, newCA, "new")},
		{"renewed", chainOf(t, oldCA, "renewed")},
		{"relayed", chainOf(t, oldCA, "relayed")},
		{"forwarder", chainOf(t, oldCA, "forwarder")},
	} {
		conns[tc.name] = &closeConn{}
		l.add(tc.name, conns[tc.name])
		l.vouch(conns[tc.name], tc.chain)
	}
	l.renewed(conns["renewed"], l.chains[conns["renewed"]][0], chainOf(t, newCA, "renewed"), false)
	// A renewal forwarded over a connection that stands for another
	// certificate changes nothing.
	l.renewed(conns["forwarder"], chainOf(t, oldCA, "someone")[0], chainOf(t, newCA, "someone"), false)
	l.vouch(conns["relayed"], nil)

	roots := x509.NewCertPool()
	roots.AddCert(newCA.Root.Cert)
	closed := l.closeUntrusted(func(chain []*x509.Certificate) bool {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
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

// sweepCoordinator is a coordinator with just what trust sweeps use:
// its CA state trusting the roots of trusted, issuing from issuing.
func sweepCoordinator(t *testing.T, issuing *pkitest.CA, trusted ...*pkitest.CA) *Coordinator {
	t.Helper()
	own, key := issuing.Leaf(t, pki.RoleCoordinator, "c1")
	c := &Coordinator{log: slog.New(slog.NewTextHandler(io.Discard, nil)), revoked: transport.NewRevocationSet(), now: time.Now,
		ca: &caState{src: identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{own.Leaf, issuing.Issuing.Cert}, Key: key}, nil)}}
	setTrust(c, issuing, trusted...)
	return c
}

// setTrust applies a trust change as a rotation phase does, without the
// sweep.
func setTrust(c *Coordinator, issuing *pkitest.CA, trusted ...*pkitest.CA) {
	var bundle pki.Bundle
	for _, ca := range trusted {
		bundle = append(bundle, ca.Root.Cert)
	}
	c.ca.cur.Store(issuing.Issuer)
	c.ca.src.SetTrust(bundle)
}

// TestTrustSweepAfterRenewal: a connection over which its holder renewed
// stands for the renewed certificate in every later trust sweep, whether
// the renewal kept the key or not: it stays open when the old CA is
// retired, and is closed when a rollback drops the CA that renewed it.
func TestTrustSweepAfterRenewal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		newKey bool
		keep   string // the CA the trust keeps: "old" (rollback) or "new" (retirement)
		closed bool
	}{
		{"new key, old CA retired", true, "new", false},
		{"new key, new CA rolled back", true, "old", true},
		{"same key, old CA retired", false, "new", false},
		{"same key, new CA rolled back", false, "old", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldCA, newCA := pkitest.New(t), pkitest.New(t)
			c := sweepCoordinator(t, newCA, oldCA, newCA) // issue/renew phase
			conn := &closeConn{}
			old := chainOf(t, oldCA, "n1")
			if !c.admitLive(conn, old, c.live.mark()) {
				t.Fatal("a trusted connection was refused")
			}
			c.live.renewed(conn, old[0], chainOf(t, newCA, "n1"), tc.newKey)
			keep := map[string]*pkitest.CA{"old": oldCA, "new": newCA}[tc.keep]
			setTrust(c, keep, keep)
			c.closeRetiredTrust(time.Now())
			if conn.closed != tc.closed {
				t.Fatalf("closed %v, want %v", conn.closed, tc.closed)
			}
		})
	}
}

// TestAdmitLiveAfterSweep: a connection whose certificate was checked
// under a trust that a sweep then replaced, and registered after that
// sweep, is judged at registration: closed if the new trust rejects it.
func TestAdmitLiveAfterSweep(t *testing.T) {
	for _, tc := range []struct {
		name       string
		markBefore bool // the handshake began before the sweep
		ca         string
		want       bool
	}{
		{"old CA, checked before the retirement", true, "old", false},
		{"new CA, checked before the retirement", true, "new", true},
		{"new CA, checked after the retirement", false, "new", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldCA, newCA := pkitest.New(t), pkitest.New(t)
			c := sweepCoordinator(t, newCA, oldCA, newCA)
			mark := c.live.mark()
			setTrust(c, newCA, newCA) // the old CA is retired
			c.closeRetiredTrust(time.Now())
			if !tc.markBefore {
				mark = c.live.mark()
			}
			conn := &closeConn{}
			chain := chainOf(t, map[string]*pkitest.CA{"old": oldCA, "new": newCA}[tc.ca], "n1")
			got := c.admitLive(conn, chain, mark)
			if got != tc.want || conn.closed == tc.want {
				t.Fatalf("admitted %v (closed %v), want %v", got, conn.closed, tc.want)
			}
			if _, live := c.live.byConn[conn]; live != tc.want {
				t.Fatalf("registered %v, want %v", live, tc.want)
			}
		})
	}
}

// TestCloseUntrustedOutsideLock: a sweep judges chains without holding the
// live connections' lock, so accepts and closes go on meanwhile; what
// changes meanwhile is honoured: a connection closed is left out, one
// renewed is judged on its new chain, one registered late learns of the
// sweep.
func TestCloseUntrustedOutsideLock(t *testing.T) {
	ca := pkitest.New(t)
	var l liveConns
	conns := map[string]*closeConn{}
	chains := map[string][]*x509.Certificate{}
	for _, name := range []string{"bad", "closing", "renewed-bad", "renewed-good", "good", "handed"} {
		conns[name], chains[name] = &closeConn{}, chainOf(t, ca, name)
		l.add(name, conns[name])
		l.vouch(conns[name], chains[name])
	}
	good := map[*x509.Certificate]bool{chains["good"][0]: true, chains["renewed-bad"][0]: true}
	goodRenewal, badRenewal := chainOf(t, ca, "renewed-good"), chainOf(t, ca, "renewed-bad")
	good[goodRenewal[0]] = true
	late := &closeConn{}
	var mark, handedMark uint64
	calls := 0
	closed := l.closeUntrusted(func(chain []*x509.Certificate) bool {
		calls++
		if calls > len(chains) {
			// The chains renewed meanwhile, judged again (under the lock).
			return good[chain[0]]
		}
		if !l.mu.TryLock() {
			t.Fatal("a chain is judged under the live connections' lock")
		}
		l.mu.Unlock()
		if calls == 1 {
			l.remove(conns["closing"])
			l.renewed(conns["renewed-good"], chains["renewed-good"][0], goodRenewal, true)
			l.renewed(conns["renewed-bad"], chains["renewed-bad"][0], badRenewal, true)
			if !l.register("late", late, chainOf(t, ca, "late"), mark) {
				t.Error("a connection registered after the sweep's snapshot was not told")
			}
			// A follower hands "handed" to the leader (no chain: not
			// judged here) until after the sweep.
			handedMark = l.mark()
			l.vouch(conns["handed"], nil)
		}
		return good[chain[0]]
	})
	want := map[string]bool{"bad": true, "renewed-bad": true}
	for name, c := range conns {
		if c.closed != want[name] {
			t.Errorf("%s: closed %v, want %v", name, c.closed, want[name])
		}
	}
	if calls != len(chains)+2 {
		t.Errorf("%d chains judged, want each of the %d once and the 2 renewed again", calls, len(chains))
	}
	if !l.register("handed", conns["handed"], chains["handed"], handedMark) {
		t.Error("a connection vouched for again after the sweep, which passed it by, was not told")
	}
	if len(closed) != 2 || late.closed {
		t.Errorf("closed %d connections (the late one: %v), want 2 (not the late one)", len(closed), late.closed)
	}
}

// TestTrustSweepCoordinators: when a CA leaves the trust, a coordinator's
// connection made with a certificate of it stays open only if this exact
// certificate is one the cluster issued to a coordinator and did not
// revoke (a follower's relay connection opened before it re-certified);
// one minted by someone else with the old CA's key is closed.
func TestTrustSweepCoordinators(t *testing.T) {
	oldCA, newCA := pkitest.New(t), pkitest.New(t)
	c := sweepCoordinator(t, newCA, oldCA, newCA)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c.st = st
	coordinator := func(name string) []*x509.Certificate {
		cert, _ := oldCA.Leaf(t, pki.RoleCoordinator, name)
		return []*x509.Certificate{cert.Leaf, oldCA.Issuing.Cert}
	}
	other := coordinator("other")
	for _, tc := range []struct {
		name   string
		record func(rec *certRecord) // nil: no record
		closed bool
	}{
		{"issued by the cluster", func(*certRecord) {}, false},
		{"minted elsewhere", nil, true},
		{"record without a thumbprint", func(r *certRecord) { r.SHA256 = "" }, true},
		{"revoked", func(r *certRecord) { r.Revoked = true }, true},
		{"another certificate with its serial", func(r *certRecord) { r.SHA256 = pki.Fingerprint(other[0]) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setTrust(c, newCA, oldCA, newCA)
			chain := coordinator("c2")
			if tc.record != nil {
				rec := issuedRecord(chain[0], chain[1])
				tc.record(&rec)
				if _, err := st.Txn(context.Background(), nil, []store.Op{putJSON(certKey(rec.Serial), rec)}); err != nil {
					t.Fatal(err)
				}
			}
			conn := &closeConn{}
			if !c.admitLive(conn, chain, c.live.mark()) {
				t.Fatal("refused while its CA is trusted")
			}
			setTrust(c, newCA, newCA) // the old CA is retired
			c.closeRetiredTrust(time.Now())
			if conn.closed != tc.closed {
				t.Fatalf("closed %v, want %v", conn.closed, tc.closed)
			}
			c.live.remove(conn)
		})
	}
}
