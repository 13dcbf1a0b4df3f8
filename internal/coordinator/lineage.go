package coordinator

import (
	"context"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// Certificate lineage: every certificate renewed from another records its
// parent (certRecord.Parent) and an index key under its parent, so that
// revoking a certificate revokes everything renewed from it, however many
// renewals deep. Without it a certificate stolen for a moment could be
// renewed, with the thief's own key, into one its revocation did not
// reach. Certificates renewed before lineage was recorded have no parent.
const prefixLineage = "certkids/"

func lineageKey(parent, child string) string { return prefixLineage + parent + "/" + child }

// descendants lists every certificate renewed from serials at any depth,
// parents before children; serials themselves are not in it.
func (c *Coordinator) descendants(ctx context.Context, serials []string) ([]string, error) {
	seen := make(map[string]bool, len(serials))
	for _, s := range serials {
		seen[s] = true
	}
	var out []string
	queue := append([]string(nil), serials...)
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		prefix := prefixLineage + parent + "/"
		err := c.st.Scan(ctx, prefix, func(r store.Record) error {
			child := strings.TrimPrefix(r.Key, prefix)
			if !seen[child] {
				seen[child] = true
				out = append(out, child)
				queue = append(queue, child)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// liveConns tracks every open cluster connection by the serials of the
// certificates it stands for, so a revocation cuts them at once: the one
// it presented, and the ones renewed over it.
type liveConns struct {
	mu       sync.Mutex
	bySerial map[string]map[net.Conn]struct{}
	byConn   map[net.Conn][]string
	// chains holds, per connection, the chain of the certificate it
	// stands for now (see vouch), which must stay trusted.
	chains map[net.Conn][]*x509.Certificate
	// sweeps counts the trust sweeps' snapshots of chains and their ends
	// (bumped under mu at both): see mark and register.
	sweeps atomic.Uint64
}

// add ties conn to serial (besides any serial it has already).
func (l *liveConns) add(serial string, conn net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addLocked(serial, conn)
}

func (l *liveConns) addLocked(serial string, conn net.Conn) {
	if l.bySerial == nil {
		l.bySerial, l.byConn = map[string]map[net.Conn]struct{}{}, map[net.Conn][]string{}
	}
	if l.bySerial[serial] == nil {
		l.bySerial[serial] = map[net.Conn]struct{}{}
	}
	if _, ok := l.bySerial[serial][conn]; !ok {
		l.bySerial[serial][conn] = struct{}{}
		l.byConn[conn] = append(l.byConn[conn], serial)
	}
}

// mark is taken before a connection's certificate is checked against
// the trust bundle (before its handshake): register compares it, so a
// connection checked under a trust a sweep then replaced, and registered
// after that sweep's snapshot, is judged by its caller instead.
func (l *liveConns) mark() uint64 { return l.sweeps.Load() }

// register ties conn to serial and vouches chain for it, at once. It
// reports whether a trust sweep took its snapshot or ended since mark:
// conn may have escaped that sweep (it was not registered, or had no chain
// while a follower relayed it), and the caller must judge it against the
// current trust (Coordinator.admitLive).
func (l *liveConns) register(serial string, conn net.Conn, chain []*x509.Certificate, mark uint64) (missed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addLocked(serial, conn)
	l.vouchLocked(conn, chain)
	return l.sweeps.Load() != mark
}

// renewed records a renewal of old into chain[0] (chain leaf first) made
// over conn, in one step: conn stands for the new serial too and, when the
// successor has a new key (old is then revoked, superseded), for it
// instead of old. If conn stood for old, it now stands for the renewed
// certificate in trust sweeps: its holder proved old's key at the
// handshake and the new one with the CSR. A connection that stands for
// another certificate (a follower's, carrying a forwarded renewal) keeps
// its own chain. A connection already closed is left out.
func (l *liveConns) renewed(conn net.Conn, old *x509.Certificate, chain []*x509.Certificate, newKey bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.byConn[conn]; !ok {
		return
	}
	// Tie the new serial first: untying old then leaves conn registered,
	// with its chain.
	l.addLocked(pki.SerialHex(chain[0]), conn)
	if newKey {
		l.untieLocked(pki.SerialHex(old), conn)
	}
	if cur := l.chains[conn]; len(cur) > 0 && cur[0].Equal(old) {
		l.chains[conn] = chain
	}
}

func (l *liveConns) untieLocked(serial string, conn net.Conn) {
	delete(l.bySerial[serial], conn)
	if len(l.bySerial[serial]) == 0 {
		delete(l.bySerial, serial)
	}
	serials := l.byConn[conn]
	for i, s := range serials {
		if s == serial {
			serials = append(serials[:i], serials[i+1:]...)
			break
		}
	}
	if len(serials) == 0 {
		delete(l.byConn, conn)
		delete(l.chains, conn)
	} else {
		l.byConn[conn] = serials
	}
}

// remove forgets conn (it closed).
func (l *liveConns) remove(conn net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range append([]string(nil), l.byConn[conn]...) {
		l.untieLocked(s, conn)
	}
}

// closeSerial closes every connection that stands for serial.
func (l *liveConns) closeSerial(serial string) int {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.bySerial[serial]))
	for conn := range l.bySerial[serial] {
		conns = append(conns, conn)
	}
	l.closeLocked(conns)
	return len(conns)
}

// closeLocked unties conns from every serial, releases l.mu (held by the
// caller) and closes them.
func (l *liveConns) closeLocked(conns []net.Conn) {
	for _, conn := range conns {
		for _, s := range append([]string(nil), l.byConn[conn]...) {
			l.untieLocked(s, conn)
		}
	}
	l.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
	}
}
