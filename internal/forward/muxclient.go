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
// full).
type Mux struct {
	conns  int
	tr     *http.Transport
	opened func(addr string)

	mu    sync.Mutex
	pools map[string][]*http.ClientConn
}

// spreadAt is the sessions a relay connection carries before the next
// one is opened: small clusters need one connection, large ones spread
// over m.conns.
const spreadAt = 512

// NewMux relays over conns connections per leader, dialed with the
// client configuration tlsFor builds for a server name (the follower's own
// coordinator certificate; its NextProtos are set here). opened, if set,
// is told of each new connection.
func NewMux(conns int, tlsFor func(serverName string) *tls.Config, opened func(addr string)) *Mux {
	if conns < 1 {
		conns = 1
	}
	var p http.Protocols
	p.SetHTTP2(true)
	m := &Mux{conns: conns, opened: opened, pools: map[string][]*http.ClientConn{}}
	m.tr = &http.Transport{
		Protocols: &p,
		HTTP2:     muxConfig(),
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			cfg := tlsFor(host)
			cfg.NextProtos = []string{ALPNMux}
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if got := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != ALPNMux {
				c.Close()
				return nil, fmt.Errorf("the leader at %s does not offer multiplexed relays (ALPN %q, not %q): upgrade it to this coordinator's version", addr, got, ALPNMux)
			}
			return c, nil
		},
	}
	return m
}

// conn returns a connection to addr with a stream reserved: the least
// busy one, or a new one while the least busy carries spreadAt sessions
// and there are fewer than m.conns, or all are full. Connections to other addresses (a former leader) that carry no
// session are closed.
func (m *Mux) conn(ctx context.Context, addr string) (*http.ClientConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, pool := range m.pools {
		if a == addr {
			continue
		}
		keep := pool[:0]
		for _, cc := range pool {
			if cc.Err() != nil || cc.InFlight() == 0 {
				cc.Close()
				continue
			}
			keep = append(keep, cc)
		}
		if len(keep) == 0 {
			delete(m.pools, a)
		} else {
			m.pools[a] = keep
		}
	}
	live := m.pools[addr][:0]
	for _, cc := range m.pools[addr] {
		if cc.Err() == nil {
			live = append(live, cc)
		} else {
			cc.Close()
		}
	}
	m.pools[addr] = live
	for try := 0; ; try++ {
		var best *http.ClientConn
		for _, cc := range live {
			if cc.Available() > 0 && (best == nil || cc.InFlight() < best.InFlight()) {
				best = cc
			}
		}
		if best == nil || (best.InFlight() >= spreadAt && len(live) < m.conns) {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			cc, err := m.tr.NewClientConn(dctx, "https", addr)
			cancel()
			if err != nil {
				if best == nil {
					return nil, err
				}
			} else {
				live = append(live, cc)
				m.pools[addr] = live
				best = cc
				if m.opened != nil {
					m.opened(addr)
				}
			}
		}
		if err := best.Reserve(); err == nil {
			return best, nil
		}
		// Filled up meanwhile: choose again (a full pool dials).
		if ctx.Err() != nil || try == 3 {
			return nil, fmt.Errorf("every relay connection to %s is full", addr)
		}
	}
}

// Conns is how many relay connections are open, to every address.
func (m *Mux) Conns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, pool := range m.pools {
		n += len(pool)
	}
	return n
}

// Close closes every relay connection, and so every session relayed.
func (m *Mux) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, pool := range m.pools {
		for _, cc := range pool {
			cc.Close()
		}
		delete(m.pools, a)
	}
}

// ErrNotRelayed wraps an error from Relay before any of the agent's bytes
// were read: the caller may relay the same connection elsewhere.
var ErrNotRelayed = errors.New("the session was not relayed")

// Relay carries the agent session on agent to the leader at addr: p
// first, then the agent's bytes, both ways, until either side ends; then
// it closes agent. An error wrapping ErrNotRelayed means nothing was read
// from agent (and it is left open); ctx bounds only the wait for the
// leader's answer.
func (m *Mux) Relay(ctx context.Context, addr string, p Preamble, agent net.Conn) error {
	cc, err := m.conn(ctx, addr)
	if err != nil {
		return fmt.Errorf("%w: open a relay connection to the leader at %s: %v", ErrNotRelayed, addr, err)
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
