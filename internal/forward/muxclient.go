package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Mux is a follower's side of the relay: it carries agent sessions to the
// leader as streams over a few mutual TLS connections per leader address,
// opened on demand: one until it carries spreadAt sessions, then up to
// conns, each new session on the least busy (more only while all are
// full). A leader of the previous version, which offers no multiplexed
// relay, gets each session over a connection of its own (ward-relay/1).
type Mux struct {
	conns  int
	tlsFor func(serverName string) *tls.Config
	tr     *http.Transport
	hooks  MuxHooks
	now    func() time.Time
	ctx    context.Context // ends at Close, and with it every dial in flight
	stop   context.CancelFunc

	mu      sync.Mutex
	pools   map[string]*pool
	singles map[net.Conn]struct{} // per-session relay connections (ward-relay/1) open
	closed  bool
}

// MuxHooks tell the Mux's owner what it does, for its logs. Each may be nil.
type MuxHooks struct {
	// Opened is told of each new multiplexed connection.
	Opened func(addr string)
	// Legacy is told when the leader at addr turned out to offer no
	// multiplexed relay (it refused ALPN h2: a coordinator of the previous
	// version). Sessions to it then travel over a connection each
	// (ward-relay/1) and h2 is tried again after legacyRecheck.
	Legacy func(addr string, err error)
}

// pool is a leader address's relay connections and what the last dials
// found out.
type pool struct {
	conns       []*http.ClientConn
	dial        *dial     // the dial in flight, if any
	failErr     error     // the last dial's failure, remembered until failUntil
	failUntil   time.Time //
	legacyUntil time.Time // before this, relay per session: the leader offers no h2
}

// dial is one connection being opened; done is closed when it ends, with
// err set on failure.
type dial struct {
	done chan struct{}
	err  error
}

const (
	// spreadAt is the sessions a relay connection carries before the next
	// one is opened: small clusters need one connection, large ones spread
	// over m.conns.
	spreadAt = 512
	// dialTimeout bounds opening a relay connection (TCP and TLS).
	dialTimeout = 10 * time.Second
	// failTTL is how long a failed dial is remembered: sessions that
	// arrive meanwhile fail at once (and wait for another leader) instead
	// of each dialing a leader that does not answer.
	failTTL = 2 * time.Second
	// legacyRecheck is how long a leader that refused h2 is relayed to per
	// session before h2 is tried again (it may have been upgraded).
	legacyRecheck = time.Minute
)

// errNoMux says the leader refused ALPN h2 (no_application_protocol):
// it is of a version without multiplexed relays.
var errNoMux = errors.New("the leader offers no multiplexed relay")

// NewMux relays over conns connections per leader, dialed with the
// client configuration tlsFor builds for a server name (the follower's own
// coordinator certificate; its NextProtos are set here).
func NewMux(conns int, tlsFor func(serverName string) *tls.Config, hooks MuxHooks) *Mux {
	if conns < 1 {
		conns = 1
	}
	var p http.Protocols
	p.SetHTTP2(true)
	ctx, stop := context.WithCancel(context.Background())
	m := &Mux{conns: conns, tlsFor: tlsFor, hooks: hooks, now: time.Now, ctx: ctx, stop: stop,
		pools: map[string]*pool{}, singles: map[net.Conn]struct{}{}}
	m.tr = &http.Transport{
		Protocols: &p,
		HTTP2:     muxConfig(),
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := m.dialTLS(ctx, addr, ALPNMux)
			if noApplicationProtocol(err) {
				return nil, fmt.Errorf("%w (it refused ALPN %q: %v)", errNoMux, ALPNMux, err)
			}
			return c, err
		},
	}
	return m
}

// dialTLS opens a mutual TLS connection to addr that negotiated alpn.
func (m *Mux) dialTLS(ctx context.Context, addr, alpn string) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg := m.tlsFor(host)
	cfg.NextProtos = []string{alpn}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if got := tc.ConnectionState().NegotiatedProtocol; got != alpn {
		tc.Close()
		return nil, fmt.Errorf("the leader at %s does not speak %q (ALPN %q): it is not a Ward coordinator of a compatible version", addr, alpn, got)
	}
	return tc, nil
}

// noApplicationProtocol reports whether err is the server's TLS alert
// no_application_protocol: it offers none of the protocols asked for.
func noApplicationProtocol(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && op.Err != nil &&
		op.Err.Error() == tls.AlertError(120).Error() // no_application_protocol (RFC 7301)
}

// conn returns a connection to addr with a stream reserved: the least
// busy one, or a new one while the least busy carries spreadAt sessions
// and there are fewer than m.conns, or all are full. One dial per address
// is in flight at a time, outside the lock; a caller that needs it waits
// for it as long as ctx allows. An error wrapping errNoMux says to relay
// per session. Connections to other addresses (a former leader) that
// carry no session are closed.
func (m *Mux) conn(ctx context.Context, addr string) (*http.ClientConn, error) {
	for try := 0; ; try++ {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, errors.New("the relay is shut down")
		}
		m.pruneLocked(addr)
		p := m.pools[addr]
		now := m.now()
		if now.Before(p.legacyUntil) {
			m.mu.Unlock()
			return nil, errNoMux
		}
		var best *http.ClientConn
		for _, cc := range p.conns {
			if cc.Available() > 0 && (best == nil || cc.InFlight() < best.InFlight()) {
				best = cc
			}
		}
		more := best == nil || (best.InFlight() >= spreadAt && len(p.conns) < m.conns)
		if more && p.dial == nil && !now.Before(p.failUntil) {
			p.dial = m.startDialLocked(addr)
		}
		if best != nil {
			err := best.Reserve()
			m.mu.Unlock()
			if err == nil {
				return best, nil
			}
			if try == 3 { // filled up meanwhile, again and again
				return nil, fmt.Errorf("every relay connection to %s is full", addr)
			}
			continue
		}
		d, failErr, failAt := p.dial, p.failErr, p.failUntil.Add(-failTTL)
		m.mu.Unlock()
		if d == nil {
			return nil, fmt.Errorf("the last try, %s ago, failed: %w", now.Sub(failAt).Round(time.Millisecond), failErr)
		}
		select {
		case <-d.done:
			if d.err != nil {
				return nil, d.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pruneLocked drops addr's dead connections, closes the idle ones of
// every other address, and makes sure addr has a pool.
func (m *Mux) pruneLocked(addr string) {
	for a, p := range m.pools {
		keep := p.conns[:0]
		for _, cc := range p.conns {
			switch {
			case cc.Err() != nil, a != addr && cc.InFlight() == 0:
				cc.Close()
			default:
				keep = append(keep, cc)
			}
		}
		clear(p.conns[len(keep):])
		p.conns = keep
		if a != addr && len(keep) == 0 && p.dial == nil {
			delete(m.pools, a)
		}
	}
	if m.pools[addr] == nil {
		m.pools[addr] = &pool{}
	}
}

// startDialLocked opens a connection to addr in the background (bounded
// by dialTimeout and Close, not by the caller who needed it: the next
// session uses it) and records the result in addr's pool.
func (m *Mux) startDialLocked(addr string) *dial {
	d := &dial{done: make(chan struct{})}
	go func() {
		ctx, cancel := context.WithTimeout(m.ctx, dialTimeout)
		cc, err := m.tr.NewClientConn(ctx, "https", addr)
		cancel()
		m.mu.Lock()
		p := m.pools[addr]
		if p == nil {
			p = &pool{}
			m.pools[addr] = p
		}
		p.dial = nil
		legacy := errors.Is(err, errNoMux)
		switch {
		case m.closed:
			if err == nil {
				cc.Close()
			}
			err = errors.New("the relay is shut down")
		case err == nil:
			p.conns = append(p.conns, cc)
			p.failErr, p.failUntil, p.legacyUntil = nil, time.Time{}, time.Time{}
		case legacy:
			p.legacyUntil = m.now().Add(legacyRecheck)
		default:
			p.failErr, p.failUntil = err, m.now().Add(failTTL)
		}
		closed := m.closed
		m.mu.Unlock()
		switch { // told before the waiters go on, so the log reads in order
		case closed:
		case err == nil && m.hooks.Opened != nil:
			m.hooks.Opened(addr)
		case legacy && m.hooks.Legacy != nil:
			m.hooks.Legacy(addr, err)
		}
		d.err = err
		close(d.done)
	}()
	return d
}

// Conns is how many relay connections are open, to every address.
func (m *Mux) Conns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range m.pools {
		n += len(p.conns)
	}
	return n
}

// Close closes every relay connection, and so every session relayed, and
// ends every dial in flight.
func (m *Mux) Close() {
	m.stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for a, p := range m.pools {
		for _, cc := range p.conns {
			cc.Close()
		}
		delete(m.pools, a)
	}
	for c := range m.singles {
		c.Close()
	}
}

// ErrNotRelayed wraps an error from Relay before any of the agent's bytes
// were read: the caller may relay the same connection elsewhere.
var ErrNotRelayed = errors.New("the session was not relayed")

// Relay carries the agent session on agent to the leader at addr: p
// first, then the agent's bytes, both ways, until either side ends; then
// it closes agent. started, if set, is told once the leader took the
// session, with the protocol that carries it (ALPNMux, or
// transport.ALPNRelay to a leader of the previous version). An error
// wrapping ErrNotRelayed means nothing was read from agent (and it is left
// open); ctx bounds only the wait for the leader's answer.
func (m *Mux) Relay(ctx context.Context, addr string, p Preamble, agent net.Conn, started func(via string)) error {
	if started == nil {
		started = func(string) {}
	}
	cc, err := m.conn(ctx, addr)
	if errors.Is(err, errNoMux) {
		return m.relaySingle(ctx, addr, p, agent, started)
	}
	if err != nil {
		return fmt.Errorf("%w: open a relay connection to the leader at %s: %w", ErrNotRelayed, addr, err)
	}
	var pre bytes.Buffer
	if err := WritePreamble(&pre, p); err != nil {
		cc.Release()
		return fmt.Errorf("%w: %v", ErrNotRelayed, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := &agentBody{pre: pre.Bytes(), agent: agent, ready: make(chan struct{}), failed: make(chan struct{})}
	req, err := http.NewRequestWithContext(sctx, http.MethodPost, "https://"+addr+RelayPath, body)
	if err != nil {
		cc.Release()
		return fmt.Errorf("%w: %v", ErrNotRelayed, err)
	}
	req.ContentLength = -1
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := cc.RoundTrip(req)
		got <- answer{resp, err}
	}()
	var a answer
	select {
	case a = <-got:
	case <-ctx.Done():
		a.err = ctx.Err()
		go func() { // the answer may yet come: let its stream go
			if late := <-got; late.err == nil {
				late.resp.Body.Close()
			}
		}()
	}
	if a.err == nil && a.resp.StatusCode != http.StatusOK {
		a.resp.Body.Close()
		a.err = fmt.Errorf("the leader answered %s", a.resp.Status)
	}
	if a.err != nil {
		close(body.failed)
		cancel()
		return fmt.Errorf("%w: the leader at %s: %v", ErrNotRelayed, addr, a.err)
	}
	close(body.ready)
	started(ALPNMux)
	buf := make([]byte, 4<<10)
	io.CopyBuffer(agent, a.resp.Body, buf)
	agent.Close()
	a.resp.Body.Close()
	return nil
}

// agentBody is a relayed session's request body: the preamble, then,
// once the leader has answered, the agent's bytes.
type agentBody struct {
	pre           []byte
	agent         net.Conn
	ready, failed chan struct{}
}

func (b *agentBody) Read(p []byte) (int, error) {
	if len(b.pre) > 0 {
		n := copy(p, b.pre)
		b.pre = b.pre[n:]
		return n, nil
	}
	select {
	case <-b.ready:
	case <-b.failed:
		return 0, ErrNotRelayed
	}
	return b.agent.Read(p)
}

// Close is called by the transport when the stream ends. It leaves the
// agent's connection open: what the leader sent last (a Bye) may still be
// on its way to the agent; Relay closes it once the response has ended,
// which also ends a read of the agent in progress.
func (b *agentBody) Close() error { return nil }
