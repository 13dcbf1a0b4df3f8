package coordinator

import (
	"net"
	"testing"
)

// closeConn is a net.Conn that records Close.
type closeConn struct {
	net.Conn
	closed bool
}

func (c *closeConn) Close() error { c.closed = true; return nil }

func TestLiveConns(t *testing.T) {
	var l liveConns
	a, b, r := &closeConn{}, &closeConn{}, &closeConn{}
	l.add("s1", a)
	l.add("s1", b)
	l.add("s1", r)
	// r renewed with a new key: it stands for s2 only; b renewed with the
	// same key: it stands for both.
	l.move("s1", "s2", r)
	l.add("s3", b)
	if n := l.closeSerial("s1"); n != 2 || !a.closed || !b.closed || r.closed {
		t.Fatalf("closing s1 closed %d: a %v b %v r %v; want a and b, not the connection that moved to s2", n, a.closed, b.closed, r.closed)
	}
	if n := l.closeSerial("s3"); n != 0 {
		t.Fatalf("b was closed with s1 but is still tied to s3 (%d)", n)
	}
	l.remove(r)
	if n := l.closeSerial("s2"); n != 0 || r.closed {
		t.Fatalf("a removed connection was closed by its serial")
	}
	if len(l.bySerial) != 0 || len(l.byConn) != 0 {
		t.Fatalf("left over: %v %v", l.bySerial, l.byConn)
	}
}
