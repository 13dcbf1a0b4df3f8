// Package connlimit caps what unauthenticated peers can hold on a
// listener: open connections and TLS handshakes in flight, per source
// address and in total. Without caps, anyone who can open TCP connections
// holds file descriptors (shared by every listener of the process) until
// they run out, and agents and admins are locked out.
//
// At a cap a new connection does not wait: it takes the place of a
// connection in the same scope (per source or in total) that holds its slot
// without using it: one that has not sent a byte and waits on its peer
// (an idle TCP connection), one stalled mid-handshake for longer than
// StallGrace, or an idle keep-alive connection; the one waiting longest
// goes first. A connection the server is working on, or whose peer is
// answering within StallGrace, is never dropped: under a reconnect storm the
// coordinator finishes the handshakes it started and refuses new
// connections (their clients retry with backoff) instead of throwing away
// work. So thousands of idle connections only ever displace each other and
// a real client gets through; only when every connection in scope is
// working is the new one refused.
package connlimit

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limits are a listener's caps; 0 turns a cap off.
type Limits struct {
	// MaxConns and MaxConnsPerSource cap every open connection (handshaking,
	// idle or busy). Off on listeners whose peers are authenticated once
	// their handshake ends.
	MaxConns          int
	MaxConnsPerSource int
	// MaxHandshakes and MaxHandshakesPerSource cap connections whose
	// handshake has not ended.
	MaxHandshakes          int
	MaxHandshakesPerSource int
}

// Cap names which cap a connection ran into.
type Cap int

// The caps, per source address and in total.
const (
	ConnsPerSource Cap = iota
	Conns
	HandshakesPerSource
	Handshakes
)

// Event reports a cap that was reached: an older connection was closed to
// make room (Evicted), or the new one was refused because nothing in scope
// could be dropped.
type Event struct {
	Cap     Cap
	Source  string // the source (an IPv4 address, or an IPv6 /64)
	Evicted bool
}

// Gate tracks one listener's connections. It is safe for concurrent use.
type Gate struct {
	lim     Limits
	onLimit func(Event) // called without the lock held

	mu      sync.Mutex
	hs      list.List // *Conn in handshake, oldest first
	conns   list.List // every counted *Conn, least recently active first
	sources map[string]*source
}

type source struct {
	hs, conns list.List
}

// state is where a connection is in its life.
type state int

const (
	handshaking state = iota
	idle              // handshake done; no request in progress
	busy              // a request is in progress
	released
)

// Conn is one admitted connection.
type Conn struct {
	g     *Gate
	raw   net.Conn
	w     *watched
	src   string
	state state
	// Elements in the gate's lists and the source's (nil when not in one).
	hsAll, hsSrc, connAll, connSrc *list.Element
}

// New returns a gate with lim; onLimit (optional) hears every cap reached.
func New(lim Limits, onLimit func(Event)) *Gate {
	return &Gate{lim: lim, onLimit: onLimit, sources: map[string]*source{}}
}

// SourceOf is the key a peer is counted under: its IPv4 address, or the
// /64 of its IPv6 address (one host usually holds a whole /64).
func SourceOf(addr net.Addr) string {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		p, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return addr.String()
		}
		ap = p
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// Admit counts raw as a new connection in handshake, closing older ones to
// make room when a cap is reached. It returns nil when raw must be refused
// (every connection in scope is busy); the caller closes raw then.
func (g *Gate) Admit(raw net.Conn) *Conn {
	src := SourceOf(raw.RemoteAddr())
	var events []Event
	var victims []net.Conn
	defer func() {
		for _, v := range victims {
			v.Close()
		}
		if g.onLimit != nil {
			for _, e := range events {
				g.onLimit(e)
			}
		}
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.sources[src]
	if s == nil {
		s = &source{}
		g.sources[src] = s
	}
	// makeRoom drops the oldest droppable connection of l until it holds
	// fewer than max; it fails when nothing in l can be dropped.
	now := time.Now().UnixNano()
	makeRoom := func(l *list.List, max int, c Cap, handshakes bool) bool {
		for max > 0 && l.Len() >= max {
			victim := longestWaiting(l, handshakes, now)
			if victim == nil {
				events = append(events, Event{Cap: c, Source: src})
				return false
			}
			g.dropLocked(victim)
			victims = append(victims, victim.raw)
			events = append(events, Event{Cap: c, Source: src, Evicted: true})
		}
		return true
	}
	ok := makeRoom(&s.hs, g.lim.MaxHandshakesPerSource, HandshakesPerSource, true) &&
		makeRoom(&g.hs, g.lim.MaxHandshakes, Handshakes, true) &&
		makeRoom(&s.conns, g.lim.MaxConnsPerSource, ConnsPerSource, false) &&
		makeRoom(&g.conns, g.lim.MaxConns, Conns, false)
	if !ok {
		if s.hs.Len() == 0 && s.conns.Len() == 0 {
			delete(g.sources, src)
		}
		return nil
	}
	g.sources[src] = s // dropping this source's last connection may have removed it
	c := &Conn{g: g, raw: raw, w: &watched{Conn: raw}, src: src}
	c.hsAll, c.hsSrc = g.hs.PushBack(c), s.hs.PushBack(c)
	if g.countsConns() {
		c.connAll, c.connSrc = g.conns.PushBack(c), s.conns.PushBack(c)
	}
	return c
}

// countsConns reports whether connections are capped after their handshake.
func (g *Gate) countsConns() bool { return g.lim.MaxConns > 0 || g.lim.MaxConnsPerSource > 0 }

// longestWaiting is the connection of l that has waited longest on its
// peer: in a handshake list, one whose handshake is blocked reading from
// the peer; in a connection list, also an idle keep-alive connection (the
// least recently active first). Nil when the server is working on every
// one of them.
func longestWaiting(l *list.List, handshakes bool, now int64) *Conn {
	var best *Conn
	var bestSince int64
	for e := l.Front(); e != nil; e = e.Next() {
		c := e.Value.(*Conn)
		switch {
		case c.state == idle && !handshakes:
			return c // the list is least recently active first
		case c.state == handshaking:
			since := c.w.waitingSince()
			stalled := since != 0 && (!c.w.heard.Load() || now-since > int64(StallGrace))
			if stalled && (best == nil || since < bestSince) {
				best, bestSince = c, since
			}
		}
	}
	return best
}

// StallGrace is how long a handshake whose peer has sent something may
// wait on the peer before it can be dropped to make room: longer than a
// client needs to answer (a round trip and its own share of the
// handshake), so a storm of real clients is not cut short.
const StallGrace = time.Second

// dropLocked forgets c in every list. Callers hold g.mu.
func (g *Gate) dropLocked(c *Conn) {
	if c.state == released {
		return
	}
	s := g.sources[c.src]
	g.removeHandshakeLocked(c, s)
	if c.connAll != nil {
		g.conns.Remove(c.connAll)
		s.conns.Remove(c.connSrc)
		c.connAll, c.connSrc = nil, nil
	}
	c.state = released
	if s.hs.Len() == 0 && s.conns.Len() == 0 {
		delete(g.sources, c.src)
	}
}

func (g *Gate) removeHandshakeLocked(c *Conn, s *source) {
	if c.hsAll != nil {
		g.hs.Remove(c.hsAll)
		s.hs.Remove(c.hsSrc)
		c.hsAll, c.hsSrc = nil, nil
	}
}

// Conn is the connection to run the handshake on: reads through it tell
// the gate when the handshake waits on its peer.
func (c *Conn) Conn() net.Conn { return c.w }

// HandshakeDone ends c's handshake. With keep (a listener whose peers stay
// unauthenticated, such as the public port) c stays counted as an idle
// connection; otherwise it is released.
func (c *Conn) HandshakeDone(keep bool) {
	c.w.done.Store(true)
	if !keep || !c.g.countsConns() {
		c.Release()
		return
	}
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.state != handshaking {
		return
	}
	g.removeHandshakeLocked(c, g.sources[c.src])
	c.state = idle
	g.touchLocked(c)
}

// Busy marks c as serving a request: it is not dropped to make room.
func (c *Conn) Busy() { c.set(busy) }

// Idle marks c as waiting for its next request: it may be dropped, the
// longest-idle first.
func (c *Conn) Idle() { c.set(idle) }

func (c *Conn) set(st state) {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.state == released || c.state == handshaking {
		return
	}
	c.state = st
	g.touchLocked(c)
}

// touchLocked moves c to the back of the connection lists (most recent).
func (g *Gate) touchLocked(c *Conn) {
	if c.connAll == nil {
		return
	}
	g.conns.MoveToBack(c.connAll)
	g.sources[c.src].conns.MoveToBack(c.connSrc)
}

// Release forgets c (it closed). Releasing twice is harmless.
func (c *Conn) Release() {
	c.w.done.Store(true)
	c.g.mu.Lock()
	c.g.dropLocked(c)
	c.g.mu.Unlock()
}

// Source is the key c is counted under.
func (c *Conn) Source() string { return c.src }

// Stats is a gate's current load.
type Stats struct {
	Handshakes int
	Conns      int
	Sources    int
}

// Stats reports the current counts.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{Handshakes: g.hs.Len(), Conns: g.conns.Len(), Sources: len(g.sources)}
}

// watched is a connection whose reads are timed: while a read blocks, the
// connection waits on its peer. Once its handshake is done it only passes
// reads through.
type watched struct {
	net.Conn
	done    atomic.Bool
	heard   atomic.Bool  // the peer has sent a byte
	waiting atomic.Int64 // unix nanos a read began; 0 outside reads
}

func (w *watched) Read(p []byte) (int, error) {
	if w.done.Load() {
		return w.Conn.Read(p)
	}
	w.waiting.Store(time.Now().UnixNano())
	n, err := w.Conn.Read(p)
	w.waiting.Store(0)
	if n > 0 && !w.heard.Load() {
		w.heard.Store(true)
	}
	return n, err
}

// waitingSince is when the read under way began (0: none).
func (w *watched) waitingSince() int64 { return w.waiting.Load() }
