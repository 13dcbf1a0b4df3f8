package coordinator

import (
	"crypto/x509"
	"net"
	"testing"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// closeConn is a net.Conn that records Close.
type closeConn struct {
	net.Conn
	closed bool
}

func (c *closeConn) Close() error { c.closed = true; return nil }

func TestLiveConns(t *testing.T) {
	ca := pkitest.New(t)
	cert := func(name string) *x509.Certificate {
		c, _ := ca.Leaf(t, pki.RoleAgent, name)
		return c.Leaf
	}
	s1, s2, s3 := cert("n"), cert("n"), cert("n")
	var l liveConns
	a, b, r, gone := &closeConn{}, &closeConn{}, &closeConn{}, &closeConn{}
	for _, conn := range []*closeConn{a, b, r} {
		l.add(pki.SerialHex(s1), conn)
		l.vouch(conn, []*x509.Certificate{s1})
	}
	// r renewed with a new key: it stands for s2 only; b renewed with the
	// same key: it stands for both. A renewal over a connection closed
	// meanwhile ties nothing.
	l.renewed(r, s1, []*x509.Certificate{s2}, true)
	l.renewed(b, s1, []*x509.Certificate{s3}, false)
	l.renewed(gone, s1, []*x509.Certificate{s2}, true)
	if n := l.closeSerial(pki.SerialHex(s1)); n != 2 || !a.closed || !b.closed || r.closed {
		t.Fatalf("closing s1 closed %d: a %v b %v r %v; want a and b, not the connection that moved to s2", n, a.closed, b.closed, r.closed)
	}
	if n := l.closeSerial(pki.SerialHex(s3)); n != 0 {
		t.Fatalf("b was closed with s1 but is still tied to s3 (%d)", n)
	}
	if _, ok := l.byConn[gone]; ok {
		t.Fatal("a renewal registered a connection that was not live")
	}
	l.remove(r)
	if n := l.closeSerial(pki.SerialHex(s2)); n != 0 || r.closed {
		t.Fatalf("a removed connection was closed by its serial")
	}
	if len(l.bySerial) != 0 || len(l.byConn) != 0 || len(l.chains) != 0 {
		t.Fatalf("left over: %v %v %v", l.bySerial, l.byConn, l.chains)
	}
}
