package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// muxRig is a leader's relay server on loopback (real mutual TLS, HTTP/2)
// and a follower's Mux dialing it.
type muxRig struct {
	addr   string
	mux    *Mux
	conns  atomic.Int32 // TCP connections the leader accepted
	agent  tls.Certificate
	byName map[string]func(conn net.Conn, p Preamble) // leader behaviour per agent name
	mu     sync.Mutex
}

func newMuxRig(t *testing.T, conns int) *muxRig {
	t.Helper()
	ca := pkitest.NewCluster(t, "test")
	leader, _ := ca.Leaf(t, pki.RoleCoordinator, "c1")
	follower, _ := ca.Leaf(t, pki.RoleCoordinator, "c2")
	agent, _ := ca.Leaf(t, pki.RoleAgent, "n1")
	r := &muxRig{agent: agent, byName: map[string]func(net.Conn, Preamble){}}
	srv, err := NewRelayServer(func(conn net.Conn, cs *tls.ConnectionState) {
		if _, err := FromCoordinator(cs, "test"); err != nil {
			t.Errorf("relay from a non-coordinator: %v", err)
			return
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := ReadPreamble(conn)
		if err != nil {
			t.Errorf("preamble: %v", err)
			return
		}
		conn.SetReadDeadline(time.Time{})
		r.mu.Lock()
		f := r.byName[p.Source]
		r.mu.Unlock()
		if f == nil {
			f = echo
		}
		f(conn, p)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln := tls.NewListener(&countingListener{Listener: ln, n: &r.conns}, &tls.Config{
		Certificates: []tls.Certificate{leader}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: ca.Bundle().Pool(), NextProtos: []string{ALPNMux}, MinVersion: tls.VersionTLS13})
	go srv.Serve(tln)
	t.Cleanup(func() { srv.Close() })
	r.addr = ln.Addr().String()
	r.mux = NewMux(conns, func(host string) *tls.Config {
		return &tls.Config{RootCAs: ca.Bundle().Pool(), ServerName: host, Certificates: []tls.Certificate{follower}, MinVersion: tls.VersionTLS13}
	}, MuxHooks{})
	t.Cleanup(r.mux.Close)
	return r
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func echo(conn net.Conn, _ Preamble) {
	buf := make([]byte, 1024)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			conn.Close()
			return
		}
	}
}

// relay starts a session named name; it returns the agent's end.
func (r *muxRig) relay(t *testing.T, name string) (net.Conn, chan error) {
	t.Helper()
	agentEnd, followerEnd := net.Pipe()
	p := Preamble{Chain: [][]byte{r.agent.Certificate[0]}, Source: name, By: "c2"}
	done := make(chan error, 1)
	go func() { done <- r.mux.Relay(context.Background(), r.addr, p, followerEnd, nil) }()
	t.Cleanup(func() { agentEnd.Close() })
	return agentEnd, done
}

func roundTrip(conn net.Conn, msg string) error {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("got %q, want %q", got, msg)
	}
	return nil
}

// TestMuxManySessionsFewConnections: 1,500 sessions share two TCP
// connections (the second opened once the first carries spreadAt), each
// session's bytes reach only its own stream.
func TestMuxManySessionsFewConnections(t *testing.T) {
	r := newMuxRig(t, 2)
	var agents []net.Conn
	for i := range 1500 {
		a, _ := r.relay(t, fmt.Sprintf("10.0.0.1:%d", i))
		agents = append(agents, a)
	}
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := roundTrip(a, fmt.Sprintf("frame of session %d", i)); err != nil {
				t.Errorf("session %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	// A new connection takes 100 streams until the leader's SETTINGS
	// arrive (HTTP/2's initial limit): under load one more may be opened.
	if n := r.conns.Load(); n < 2 || n > 3 {
		t.Fatalf("the leader accepted %d connections for 1,500 sessions, want 2 (3 at most)", n)
	}
	if n := r.mux.Conns(); n < 2 || n > 3 {
		t.Fatalf("the follower holds %d relay connections, want 2 (3 at most)", n)
	}
}

// TestMuxSlowSessionDoesNotStall: a session the leader does not read and
// one whose agent does not read fill their streams' windows; the others on
// the same connection go on.
func TestMuxSlowSessionDoesNotStall(t *testing.T) {
	r := newMuxRig(t, 1)
	stuck := make(chan struct{})
	defer close(stuck)
	r.byName["unread"] = func(conn net.Conn, _ Preamble) { <-stuck; conn.Close() }
	r.byName["flood"] = func(conn net.Conn, _ Preamble) {
		chunk := bytes.Repeat([]byte("x"), 16<<10)
		for {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}
	unread, _ := r.relay(t, "unread")
	go func() { // the agent sends far more than the stream's window
		chunk := bytes.Repeat([]byte("y"), 16<<10)
		for range 8 * ConnWindow / len(chunk) {
			if _, err := unread.Write(chunk); err != nil {
				return
			}
		}
	}()
	r.relay(t, "flood") // its agent never reads
	time.Sleep(200 * time.Millisecond)
	for i := range 20 {
		a, _ := r.relay(t, fmt.Sprintf("ok-%d", i))
		if err := roundTrip(a, "heartbeat"); err != nil {
			t.Fatalf("session %d beside two stalled ones: %v", i, err)
		}
	}
	if n := r.conns.Load(); n != 1 {
		t.Fatalf("%d connections, want the one shared by every session", n)
	}
}

// TestMuxLeaderCloses: what the leader writes before it closes (a Bye)
// reaches the agent, then the agent's connection ends; a Close from
// another goroutine (a revocation) ends a session blocked reading, and one
// blocked writing to an agent that does not read.
func TestMuxLeaderCloses(t *testing.T) {
	r := newMuxRig(t, 1)
	r.byName["bye"] = func(conn net.Conn, _ Preamble) {
		conn.Write([]byte("bye frame"))
		conn.Close()
	}
	cut := make(chan net.Conn, 2)
	readErr := make(chan error, 1)
	r.byName["reader"] = func(conn net.Conn, _ Preamble) {
		cut <- conn
		_, err := conn.Read(make([]byte, 10))
		readErr <- err
	}
	writeErr := make(chan error, 1)
	r.byName["writer"] = func(conn net.Conn, _ Preamble) {
		cut <- conn
		chunk := make([]byte, 16<<10)
		for {
			if _, err := conn.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
	}

	a, done := r.relay(t, "bye")
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(a)
	if string(got) != "bye frame" || err != nil {
		t.Fatalf("agent read %q, %v; want the bye and EOF", got, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Relay: %v", err)
	}

	for _, name := range []string{"reader", "writer"} {
		a, done := r.relay(t, name)
		conn := <-cut
		if name == "writer" {
			time.Sleep(200 * time.Millisecond) // the window fills: the leader's Write waits
		}
		conn.Close()
		select {
		case err := <-map[string]chan error{"reader": readErr, "writer": writeErr}[name]:
			if err == nil {
				t.Fatalf("%s: no error after Close", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still blocked 10 s after Close", name)
		}
		a.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, a)
		if err := <-done; err != nil {
			t.Fatalf("%s: Relay: %v", name, err)
		}
	}
}

// TestMuxAgentCloses: the agent closing its connection, or the follower
// cutting it (a revocation seen by the follower's watch), ends the
// leader's reads and the relay.
func TestMuxAgentCloses(t *testing.T) {
	for _, cutByFollower := range []bool{false, true} {
		t.Run(fmt.Sprint("cutByFollower=", cutByFollower), func(t *testing.T) {
			r := newMuxRig(t, 1)
			readErr := make(chan error, 1)
			r.byName["a"] = func(conn net.Conn, _ Preamble) {
				_, err := io.ReadAll(conn)
				readErr <- err
				conn.Close()
			}
			agentEnd, followerEnd := net.Pipe()
			p := Preamble{Chain: [][]byte{r.agent.Certificate[0]}, Source: "a"}
			done := make(chan error, 1)
			go func() { done <- r.mux.Relay(context.Background(), r.addr, p, followerEnd, nil) }()
			agentEnd.Write([]byte("last words"))
			if cutByFollower {
				followerEnd.Close()
			} else {
				agentEnd.Close()
			}
			select {
			case <-readErr:
			case <-time.After(10 * time.Second):
				t.Fatal("the leader's read did not end")
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Relay did not return")
			}
			agentEnd.Close()
		})
	}
}

// TestMuxReadDeadline: a passed read deadline ends the leader's read with
// os.ErrDeadlineExceeded, which the session reports as a silent agent.
func TestMuxReadDeadline(t *testing.T) {
	r := newMuxRig(t, 1)
	readErr := make(chan error, 1)
	r.byName["quiet"] = func(conn net.Conn, _ Preamble) {
		conn.SetReadDeadline(time.Now().Add(time.Hour))
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // moved earlier while idle
		_, err := conn.Read(make([]byte, 10))
		readErr <- err
		conn.Close()
	}
	r.relay(t, "quiet")
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read error %v, want a deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read deadline did not end the read")
	}
}

// TestMuxNoLeader: a leader that cannot be reached leaves the agent's
// connection untouched, so the follower can relay it elsewhere.
func TestMuxNoLeader(t *testing.T) {
	r := newMuxRig(t, 1)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := ln.Addr().String()
	ln.Close()
	agentEnd, followerEnd := net.Pipe()
	defer agentEnd.Close()
	p := Preamble{Chain: [][]byte{r.agent.Certificate[0]}, Source: "x"}
	err := r.mux.Relay(context.Background(), gone, p, followerEnd, nil)
	if !errors.Is(err, ErrNotRelayed) {
		t.Fatalf("err = %v, want ErrNotRelayed", err)
	}
	go agentEnd.Write([]byte("hello"))
	followerEnd.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(followerEnd, got); err != nil || string(got) != "hello" {
		t.Fatalf("the agent's connection was touched: %q, %v", got, err)
	}
	// and the same connection relays to the real leader afterwards
	done := make(chan error, 1)
	go func() { done <- r.mux.Relay(context.Background(), r.addr, p, followerEnd, nil) }()
	if err := roundTrip(agentEnd, "after a failed try"); err != nil {
		t.Fatal(err)
	}
	agentEnd.Close()
	<-done
}

// fakeClock is a Mux's clock in tests that cross failTTL or legacyRecheck.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// followerMux is a Mux with a follower's coordinator certificate of ca and
// a fake clock.
func followerMux(t *testing.T, ca *pkitest.CA, hooks MuxHooks) (*Mux, *fakeClock) {
	t.Helper()
	follower, _ := ca.Leaf(t, pki.RoleCoordinator, "c2")
	m := NewMux(1, func(host string) *tls.Config {
		return &tls.Config{RootCAs: ca.Bundle().Pool(), ServerName: host, Certificates: []tls.Certificate{follower}, MinVersion: tls.VersionTLS13}
	}, hooks)
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	m.now = clock.now
	t.Cleanup(m.Close)
	return m, clock
}

// listen accepts TCP connections on loopback, counts them and hands each
// to serve.
func listen(t *testing.T, serve func(net.Conn)) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go serve(c)
		}
	}()
	return ln.Addr().String(), &n
}

// TestMuxLegacyLeader: a leader of the previous version refuses ALPN h2
// (no_application_protocol). The follower relays each session over a
// connection of its own (ward-relay/1: the preamble, then the agent's
// bytes), says so once, does not ask for h2 again for each session, and
// asks again after legacyRecheck.
func TestMuxLegacyLeader(t *testing.T) {
	ca := pkitest.NewCluster(t, "test")
	leader, _ := ca.Leaf(t, pki.RoleCoordinator, "c1")
	agent, _ := ca.Leaf(t, pki.RoleAgent, "n1")
	cfg := &tls.Config{Certificates: []tls.Certificate{leader}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Bundle().Pool(),
		NextProtos: []string{"ward-agent/1", "ward-relay/1", "http/1.1"}, MinVersion: tls.VersionTLS13} // the previous version's cluster port
	addr, conns := listen(t, func(c net.Conn) {
		defer c.Close()
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil || tc.ConnectionState().NegotiatedProtocol != "ward-relay/1" {
			return
		}
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := ReadPreamble(tc); err != nil {
			t.Errorf("preamble: %v", err)
			return
		}
		tc.SetReadDeadline(time.Time{})
		echo(tc, Preamble{})
	})
	var mu sync.Mutex
	var told []string
	m, clock := followerMux(t, ca, MuxHooks{Legacy: func(a string, err error) {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, a)
		if !strings.Contains(err.Error(), "no application protocol") {
			t.Errorf("the legacy notice's cause %q does not name the refused ALPN", err)
		}
	}})
	session := func(name string) {
		t.Helper()
		agentEnd, followerEnd := net.Pipe()
		defer agentEnd.Close()
		vias := make(chan string, 1)
		done := make(chan error, 1)
		p := Preamble{Chain: [][]byte{agent.Certificate[0]}, Source: name, By: "c2"}
		go func() { done <- m.Relay(context.Background(), addr, p, followerEnd, func(via string) { vias <- via }) }()
		if err := roundTrip(agentEnd, "through the old leader: "+name); err != nil {
			t.Fatal(err)
		}
		if via := <-vias; via != "ward-relay/1" {
			t.Fatalf("relayed via %q, want ward-relay/1", via)
		}
		agentEnd.Close()
		if err := <-done; err != nil {
			t.Fatalf("relay: %v", err)
		}
	}
	session("s1") // an h2 handshake refused, then a ward-relay/1 connection
	session("s2") // a ward-relay/1 connection only
	if got := conns.Load(); got != 3 {
		t.Fatalf("the old leader saw %d connections for two sessions, want 3 (one h2 try, then one per session)", got)
	}
	clock.add(legacyRecheck)
	session("s3") // h2 tried again: perhaps it was upgraded
	if got := conns.Load(); got != 5 {
		t.Fatalf("after %s the old leader saw %d connections, want 5 (h2 tried again)", legacyRecheck, got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(told) != 2 || told[0] != addr {
		t.Fatalf("the legacy notice came %d times (%v), want once per h2 try (2)", len(told), told)
	}
}

// TestMuxOneDialAtATime: while a relay connection is being opened to a
// leader that does not answer its handshake, further sessions wait for
// that dial (no second one) only as long as their own context allows,
// and Close ends the dial.
func TestMuxOneDialAtATime(t *testing.T) {
	ca := pkitest.NewCluster(t, "test")
	agent, _ := ca.Leaf(t, pki.RoleAgent, "n1")
	accepted := make(chan struct{}, 10)
	addr, conns := listen(t, func(c net.Conn) { // takes the connection, never answers the handshake
		accepted <- struct{}{}
		buf := make([]byte, 1024)
		for {
			if _, err := c.Read(buf); err != nil {
				c.Close()
				return
			}
		}
	})
	m, _ := followerMux(t, ca, MuxHooks{})
	p := Preamble{Chain: [][]byte{agent.Certificate[0]}, Source: "x"}
	relay := func(ctx context.Context) chan error {
		done := make(chan error, 1)
		_, followerEnd := net.Pipe()
		go func() { done <- m.Relay(ctx, addr, p, followerEnd, nil) }()
		return done
	}
	first := relay(context.Background())
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the first session did not dial")
	}
	start := time.Now()
	var waiting []chan error
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		waiting = append(waiting, relay(ctx))
	}
	for _, done := range waiting {
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRelayed) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want ErrNotRelayed for the session's own deadline", err)
			}
		case <-time.After(dialTimeout / 2):
			t.Fatalf("a session with a 100ms deadline waited %s for another's dial", time.Since(start).Round(time.Millisecond))
		}
	}
	if got := conns.Load(); got != 1 {
		t.Fatalf("%d dials to one leader at once, want 1", got)
	}
	m.Close()
	select {
	case err := <-first:
		if !errors.Is(err, ErrNotRelayed) {
			t.Fatalf("err = %v, want ErrNotRelayed", err)
		}
	case <-time.After(dialTimeout / 2):
		t.Fatal("Close did not end the dial in flight")
	}
}

// TestMuxRemembersAFailedDial: a dial that failed is remembered for
// failTTL: sessions meanwhile fail at once, saying so, without dialing.
func TestMuxRemembersAFailedDial(t *testing.T) {
	ca := pkitest.NewCluster(t, "test")
	agent, _ := ca.Leaf(t, pki.RoleAgent, "n1")
	addr, conns := listen(t, func(c net.Conn) { c.Close() }) // a leader that drops every connection
	m, clock := followerMux(t, ca, MuxHooks{})
	p := Preamble{Chain: [][]byte{agent.Certificate[0]}, Source: "x"}
	try := func() error {
		_, followerEnd := net.Pipe()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return m.Relay(ctx, addr, p, followerEnd, nil)
	}
	if err := try(); !errors.Is(err, ErrNotRelayed) {
		t.Fatalf("err = %v, want ErrNotRelayed", err)
	}
	if err := try(); !errors.Is(err, ErrNotRelayed) || !strings.Contains(err.Error(), "the last try") {
		t.Fatalf("err = %v, want ErrNotRelayed naming the remembered failure", err)
	}
	if got := conns.Load(); got != 1 {
		t.Fatalf("%d dials within %s of a failure, want 1", got, failTTL)
	}
	clock.add(failTTL)
	try()
	if got := conns.Load(); got != 2 {
		t.Fatalf("%d dials after %s, want 2 (the failure forgotten)", got, failTTL)
	}
}
