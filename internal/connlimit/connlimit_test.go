package connlimit

import (
	"net"
	"sync"
	"testing"
	"time"
)

// fakeConn is a net.Conn with a chosen remote address that records Close.
type fakeConn struct {
	net.Conn
	addr   net.Addr
	mu     sync.Mutex
	closed bool
}

func (f *fakeConn) RemoteAddr() net.Addr { return f.addr }
func (f *fakeConn) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}
func (f *fakeConn) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func conn(ip string) *fakeConn {
	return &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

func TestGate(t *testing.T) {
	type step struct {
		op      string // admit (its handshake then waits on a silent peer), work (the server works on its handshake), answering or stalled (the peer sent its hello; the handshake waits for the rest, briefly or past StallGrace), done, busy, idle, release
		conn    int    // index of the connection
		src     string
		refused bool
	}
	tests := []struct {
		name       string
		lim        Limits
		steps      []step
		wantClosed []int // connections closed by the gate, by admit order
		wantEvents []Event
		want       Stats
	}{
		{
			name: "per-source handshake cap drops that source's oldest",
			lim:  Limits{MaxHandshakes: 10, MaxHandshakesPerSource: 2},
			steps: []step{
				{op: "admit", src: "10.0.0.1"}, {op: "admit", src: "10.0.0.2"}, {op: "admit", src: "10.0.0.1"},
				{op: "admit", src: "10.0.0.1"},
			},
			wantClosed: []int{0},
			wantEvents: []Event{{Cap: HandshakesPerSource, Source: "10.0.0.1", Evicted: true}},
			want:       Stats{Handshakes: 3, Sources: 2},
		},
		{
			name: "total handshake cap drops the oldest of any source",
			lim:  Limits{MaxHandshakes: 2, MaxHandshakesPerSource: 2},
			steps: []step{
				{op: "admit", src: "10.0.0.1"}, {op: "admit", src: "10.0.0.2"}, {op: "admit", src: "10.0.0.3"},
			},
			wantClosed: []int{0},
			wantEvents: []Event{{Cap: Handshakes, Source: "10.0.0.3", Evicted: true}},
			want:       Stats{Handshakes: 2, Sources: 2},
		},
		{
			name: "a finished handshake leaves the handshake count",
			lim:  Limits{MaxHandshakes: 1, MaxHandshakesPerSource: 1},
			steps: []step{
				{op: "admit", src: "10.0.0.1"}, {op: "done", conn: 0}, {op: "admit", src: "10.0.0.1"},
			},
			want: Stats{Handshakes: 1, Sources: 1},
		},
		{
			name: "connection cap drops the longest idle, never a busy one",
			lim:  Limits{MaxConns: 3, MaxConnsPerSource: 3, MaxHandshakes: 3, MaxHandshakesPerSource: 3},
			steps: []step{
				{op: "admit", src: "10.0.0.1"}, {op: "done", conn: 0}, {op: "busy", conn: 0},
				{op: "admit", src: "10.0.0.2"}, {op: "done", conn: 1},
				{op: "admit", src: "10.0.0.3"}, {op: "done", conn: 2},
				{op: "busy", conn: 1}, {op: "idle", conn: 1}, // 1 was active after 2: 2 is the longest idle
				{op: "admit", src: "10.0.0.4"},
			},
			wantClosed: []int{2},
			wantEvents: []Event{{Cap: Conns, Source: "10.0.0.4", Evicted: true}},
			want:       Stats{Handshakes: 1, Conns: 3, Sources: 3},
		},
		{
			name: "refused when every connection in scope is busy",
			lim:  Limits{MaxConns: 2, MaxConnsPerSource: 2, MaxHandshakes: 2, MaxHandshakesPerSource: 2},
			steps: []step{
				{op: "admit", src: "10.0.0.1"}, {op: "done", conn: 0}, {op: "busy", conn: 0},
				{op: "admit", src: "10.0.0.1"}, {op: "done", conn: 1}, {op: "busy", conn: 1},
				{op: "admit", src: "10.0.0.1", refused: true},
				{op: "release", conn: 0},
				{op: "admit", src: "10.0.0.1"},
			},
			wantEvents: []Event{{Cap: ConnsPerSource, Source: "10.0.0.1"}},
			want:       Stats{Handshakes: 1, Conns: 2, Sources: 1},
		},
		{
			name: "a handshake the server works on is never dropped: the new connection is refused",
			lim:  Limits{MaxHandshakes: 2, MaxHandshakesPerSource: 2},
			steps: []step{
				{op: "work", src: "10.0.0.1"}, {op: "work", src: "10.0.0.2"},
				{op: "admit", src: "10.0.0.3", refused: true},
				{op: "release", conn: 0},
				{op: "admit", src: "10.0.0.3"},
			},
			wantEvents: []Event{{Cap: Handshakes, Source: "10.0.0.3"}},
			want:       Stats{Handshakes: 2, Sources: 2},
		},
		{
			name: "a peer that answers is given StallGrace; a silent one is not",
			lim:  Limits{MaxHandshakes: 2, MaxHandshakesPerSource: 2},
			steps: []step{
				{op: "answering", src: "10.0.0.1"}, {op: "stalled", src: "10.0.0.2"},
				{op: "admit", src: "10.0.0.3"},     // the stalled one goes
				{op: "admit", src: "10.0.0.4"},     // the silent one just admitted goes
				{op: "answering", src: "10.0.0.5"}, // and the next silent one
				{op: "admit", src: "10.0.0.6", refused: true},
			},
			wantClosed: []int{1, 2, 3},
			wantEvents: []Event{{Cap: Handshakes, Source: "10.0.0.3", Evicted: true}, {Cap: Handshakes, Source: "10.0.0.4", Evicted: true},
				{Cap: Handshakes, Source: "10.0.0.5", Evicted: true}, {Cap: Handshakes, Source: "10.0.0.6"}},
			want: Stats{Handshakes: 2, Sources: 2},
		},
		{
			name: "the handshake waiting longest on its peer goes first",
			lim:  Limits{MaxHandshakes: 3, MaxHandshakesPerSource: 3},
			steps: []step{
				{op: "work", src: "10.0.0.1"}, {op: "admit", src: "10.0.0.2"}, {op: "admit", src: "10.0.0.3"},
				{op: "admit", src: "10.0.0.4"},
			},
			wantClosed: []int{1},
			wantEvents: []Event{{Cap: Handshakes, Source: "10.0.0.4", Evicted: true}},
			want:       Stats{Handshakes: 3, Sources: 3},
		},
		{
			name: "IPv6 peers of one /64 are one source",
			lim:  Limits{MaxHandshakes: 10, MaxHandshakesPerSource: 1},
			steps: []step{
				{op: "admit", src: "2001:db8:1:2::1"}, {op: "admit", src: "2001:db8:1:2::ffff"},
			},
			wantClosed: []int{0},
			wantEvents: []Event{{Cap: HandshakesPerSource, Source: "2001:db8:1:2::/64", Evicted: true}},
			want:       Stats{Handshakes: 1, Sources: 1},
		},
		{
			name: "release after an eviction does not count twice",
			lim:  Limits{MaxHandshakes: 1, MaxHandshakesPerSource: 1},
			steps: []step{
				{op: "admit", src: "10.0.0.1"}, {op: "admit", src: "10.0.0.2"}, {op: "release", conn: 0}, {op: "release", conn: 0},
			},
			wantClosed: []int{0},
			wantEvents: []Event{{Cap: Handshakes, Source: "10.0.0.2", Evicted: true}},
			want:       Stats{Handshakes: 1, Sources: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []Event
			g := New(tt.lim, func(e Event) { events = append(events, e) })
			var raws []*fakeConn
			var admitted []*Conn
			for i, s := range tt.steps {
				switch s.op {
				case "admit", "work", "answering", "stalled":
					raw := conn(s.src)
					c := g.Admit(raw)
					if (c == nil) != s.refused {
						t.Fatalf("step %d: admit %s: refused=%v, want %v", i, s.src, c == nil, s.refused)
					}
					if c != nil {
						raws, admitted = append(raws, raw), append(admitted, c)
						switch s.op {
						case "admit":
							waitOnPeer(c, i)
						case "answering", "stalled":
							// The peer sent its hello; the handshake now waits
							// for its answer: just now, or for longer than
							// StallGrace.
							c.w.heard.Store(true)
							since := time.Now()
							if s.op == "stalled" {
								since = since.Add(-2 * StallGrace)
							}
							c.w.waiting.Store(since.UnixNano())
						}
					}
				case "done":
					admitted[s.conn].HandshakeDone(true)
				case "busy":
					admitted[s.conn].Busy()
				case "idle":
					admitted[s.conn].Idle()
				case "release":
					admitted[s.conn].Release()
				}
			}
			var closed []int
			for i, r := range raws {
				if r.isClosed() {
					closed = append(closed, i)
				}
			}
			if len(closed) != len(tt.wantClosed) || (len(closed) > 0 && !equal(closed, tt.wantClosed)) {
				t.Errorf("closed %v, want %v", closed, tt.wantClosed)
			}
			if len(events) != len(tt.wantEvents) || (len(events) > 0 && !equalEvents(events, tt.wantEvents)) {
				t.Errorf("events %+v, want %+v", events, tt.wantEvents)
			}
			if got := g.Stats(); got != tt.want {
				t.Errorf("stats %+v, want %+v", got, tt.want)
			}
		})
	}
}

// waitOnPeer marks c's handshake as blocked reading from its peer since
// step i (as the handshake goroutine's read does), its peer silent so far.
func waitOnPeer(c *Conn, i int) { c.w.waiting.Store(int64(1000 + i)) }

func equal(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalEvents(a, b []Event) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGateFlood: a flood of idle connections from many sources leaves the
// gate at its caps, and the newest connection is always admitted.
func TestGateFlood(t *testing.T) {
	g := New(Limits{MaxConns: 64, MaxConnsPerSource: 8, MaxHandshakes: 32, MaxHandshakesPerSource: 4}, nil)
	for i := range 10000 {
		raw := conn(net.IPv4(10, 1, byte(i/250), byte(i%250+1)).String())
		c := g.Admit(raw)
		if c == nil {
			t.Fatalf("connection %d refused: idle handshakes must make room", i)
		}
		waitOnPeer(c, i)
	}
	real := g.Admit(conn("192.0.2.1"))
	if real == nil {
		t.Fatal("a new source was refused after the flood")
	}
	if st := g.Stats(); st.Handshakes != 32 || st.Conns != 32 {
		t.Fatalf("stats after the flood: %+v", st)
	}
}

// TestReadsShowWaiting: a read blocked on the peer marks the connection as
// waiting; data arriving ends the wait; after the handshake reads are not
// timed.
func TestReadsShowWaiting(t *testing.T) {
	local, remote := net.Pipe()
	defer local.Close()
	defer remote.Close()
	g := New(Limits{MaxHandshakes: 1, MaxHandshakesPerSource: 1}, nil)
	c := g.Admit(&addrConn{Conn: local})
	if c.w.waitingSince() != 0 {
		t.Fatal("waiting before any read")
	}
	read := make(chan struct{})
	go func() {
		c.Conn().Read(make([]byte, 1))
		close(read)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for c.w.waitingSince() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a blocked read did not mark the connection waiting")
		}
		time.Sleep(time.Millisecond)
	}
	remote.Write([]byte{1})
	<-read
	if c.w.waitingSince() != 0 {
		t.Fatal("still waiting after the data came")
	}
	c.HandshakeDone(false)
	go remote.Write([]byte{2})
	c.Conn().Read(make([]byte, 1))
	if c.w.waitingSince() != 0 {
		t.Fatal("reads after the handshake are timed")
	}
}

// addrConn gives a pipe a TCP remote address.
type addrConn struct{ net.Conn }

func (addrConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(10, 9, 9, 9), Port: 1} }
