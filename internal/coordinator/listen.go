package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/connlimit"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// listener is one TLS listener: its caps on unauthenticated peers and
// what to do with a connection whose handshake succeeded.
type listener struct {
	name string
	ln   net.Listener
	cfg  *tls.Config
	gate *connlimit.Gate
	// keep: after the handshake the peer is still unauthenticated (the
	// public port), so the connection stays counted until it closes.
	keep bool
	// handle gets the live connections' mark taken before the handshake
	// (see liveConns.mark).
	handle func(tc *tls.Conn, gc *connlimit.Conn, mark uint64)
}

// acceptLoop accepts TCP connections and hands each to its own goroutine
// for the TLS handshake, so one slow peer never blocks the others. The
// listener's gate decides first: at a cap an older connection makes room,
// or the new one is closed at once.
func (c *Coordinator) acceptLoop(ctx context.Context, l *listener) {
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, log, go on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			c.log.Warn("accept failed; retrying", "listener", l.name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		gc := l.gate.Admit(raw)
		if gc == nil {
			raw.Close()
			continue
		}
		go c.handshake(raw, gc, l)
	}
}

func (c *Coordinator) handshake(raw net.Conn, gc *connlimit.Conn, l *listener) {
	// Through gc's connection, so the gate sees when the handshake waits on
	// its peer.
	tc := tls.Server(gc.Conn(), l.cfg)
	tc.SetDeadline(time.Now().Add(c.cfg.Limits.HandshakeTimeout.D()))
	mark := c.live.mark() // before the handshake reads the trust bundle
	if err := tc.Handshake(); err != nil {
		gc.Release()
		c.rejected(l.name, raw.RemoteAddr().String(), err)
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	gc.HandshakeDone(l.keep)
	l.handle(tc, gc, mark)
}

// newGates builds each listener's caps from the configuration.
func (c *Coordinator) newGates() {
	lim := c.cfg.Limits
	c.publicGate = connlimit.New(connlimit.Limits{
		MaxConns: lim.PublicMaxConns, MaxConnsPerSource: lim.PublicMaxConnsPerSource,
		MaxHandshakes: lim.PublicMaxHandshakes, MaxHandshakesPerSource: lim.PublicMaxHandshakesPerSource,
	}, func(e connlimit.Event) { c.limitReached("public", e) })
	cluster := connlimit.Limits{MaxHandshakes: lim.ClusterMaxHandshakes, MaxHandshakesPerSource: lim.ClusterMaxHandshakesPerSource}
	c.clusterGate = connlimit.New(cluster, func(e connlimit.Event) { c.limitReached("cluster", e) })
	c.plainGate = connlimit.New(cluster, func(e connlimit.Event) { c.limitReached("plaintext", e) })
}

// limitSetting names the setting behind a listener's cap.
func limitSetting(listener string, cp connlimit.Cap) (setting string, code api.Code) {
	prefix := "public_"
	if listener != "public" {
		prefix = "cluster_"
	}
	switch cp {
	case connlimit.Conns:
		return prefix + "max_conns", api.CodeConnLimit
	case connlimit.ConnsPerSource:
		return prefix + "max_conns_per_source", api.CodeConnLimit
	case connlimit.Handshakes:
		return prefix + "max_handshakes", api.CodeHandshakeLimit
	default:
		return prefix + "max_handshakes_per_source", api.CodeHandshakeLimit
	}
}

// limitReached counts a cap reached and logs it, at most once every 10
// seconds per listener and cap with the count since the last line: a flood
// must not flood the log too.
func (c *Coordinator) limitReached(listener string, e connlimit.Event) {
	setting, code := limitSetting(listener, e.Cap)
	action := "refused"
	if e.Evicted {
		action = "evicted"
	}
	c.metrics.ListenerLimits.WithLabelValues(listener, setting, action).Inc()
	if n, ok := c.limitLog.note(listener+"/"+setting+"/"+action, time.Now()); ok {
		what, fix := "new connections were closed at once: the coordinator is working on every connection in scope (a reconnect storm, or a peer keeping it busy); their clients retry",
			"if these are real clients arriving together, raise "+setting+" or let them retry; if the host is short of CPU, that is the limit"
		if e.Evicted {
			what, fix = "connections that held a slot without using it (silent, stalled or idle) were closed to make room for new ones",
				"if these are real clients, raise "+setting+"; otherwise a peer is holding connections open (see last_source)"
		}
		c.log.Warn("listener limit reached", "listener", listener, "code", string(code), "setting", setting,
			"action", action, "count", n, "last_source", e.Source, "detail", what, "fix", fix)
	}
}

// rateLog lets a repeated event through to the log at most once per period,
// with how many times it happened since.
type rateLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	n    map[string]int
}

const rateLogPeriod = 10 * time.Second

// note counts one event of key; ok says to log it now, with n events.
func (r *rateLog) note(key string, now time.Time) (n int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.n = map[string]time.Time{}, map[string]int{}
	}
	r.n[key]++
	if now.Sub(r.last[key]) < rateLogPeriod {
		return 0, false
	}
	n = r.n[key]
	r.last[key], r.n[key] = now, 0
	return n, true
}

// rejected logs and audits one refused handshake with its verdict code.
func (c *Coordinator) rejected(listener, peer string, err error) {
	v := diagnose.ServerSide(err)
	if errors.Is(err, transport.ErrRevoked) {
		v = diagnose.Verdict{Code: "revoked", Message: "the client's certificate is revoked", Fix: "the client must get a new certificate: an agent joins again with a new token"}
	}
	c.metrics.Handshakes.WithLabelValues(listener, "rejected", string(v.Code)).Inc()
	c.connLog("connection rejected", "listener", listener, "peer_addr", peer, "reason", string(v.Code), "detail", err.Error(), "fix", v.Fix)
	c.audit.Record(audit.Event{Type: "auth.failure", Actor: peer, Result: string(v.Code), Detail: map[string]string{"listener": listener, "detail": err.Error()}})
}

// accepted logs one line per accepted connection: who, how, and the
// validity window of the certificate it presented.
func (c *Coordinator) accepted(listener string, tc *tls.Conn, cs *tls.ConnectionState, identity string) {
	args := []any{"listener", listener, "peer_addr", tc.RemoteAddr().String(), "identity", identity,
		"tls", transport.VersionName(cs.Version), "cipher", tls.CipherSuiteName(cs.CipherSuite),
		"alpn", cs.NegotiatedProtocol}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		args = append(args, "cert_serial", pki.SerialHex(leaf),
			"cert_not_before", leaf.NotBefore.UTC().Format(time.RFC3339), "cert_not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
			"revocation_checked", listener == "cluster")
	}
	c.connLog("connection accepted", args...)
	c.metrics.Handshakes.WithLabelValues(listener, "accepted", "ok").Inc()
}

// handleCluster routes a verified cluster connection by ALPN: agents to a
// session, everything else to the HTTP API.
func (c *Coordinator) handleCluster(tc *tls.Conn, _ *connlimit.Conn, mark uint64) {
	cs := tc.ConnectionState()
	peer, err := transport.PeerFromState(&cs, c.cfg.Cluster)
	if err != nil { // VerifyConnection already checked this; defence in depth
		c.rejected("cluster", tc.RemoteAddr().String(), err)
		tc.Close()
		return
	}
	c.accepted("cluster", tc, &cs, peer.ID.String())
	if !c.admitLive(tc, cs.PeerCertificates, mark) {
		return // revoked or no longer trusted since the handshake
	}
	if cs.NegotiatedProtocol == transport.ALPNAgent {
		if peer.ID.Role != pki.RoleAgent {
			c.live.remove(tc)
			c.sendBye(tc, api.Errorf(api.CodePermissionDenied, "use an agent certificate (from `ward agent --join-file FILE`) for agent sessions",
				"%s may not open an agent session: only agent certificates can", peer.ID))
			return
		}
		// A fresh goroutine for the long-lived session: this one's stack
		// grew during the handshake and would stay that size for the
		// session's life (about 8 KB per idle agent).
		go func() {
			defer c.live.remove(tc)
			if c.tracker != nil && c.follower() {
				c.relaySession(tc, peer)
				return
			}
			c.runSession(tc, peer)
		}()
		return
	}
	if cs.NegotiatedProtocol == transport.ALPNRelay {
		go func() {
			defer c.live.remove(tc)
			c.acceptRelay(tc, peer)
		}()
		return
	}
	if cs.NegotiatedProtocol == transport.ALPNRelayMux {
		if peer.ID.Role != pki.RoleCoordinator {
			c.live.remove(tc)
			c.connLog("connection refused", "listener", "cluster", "peer_addr", tc.RemoteAddr().String(), "identity", peer.ID.String(),
				"reason", "only coordinators open multiplexed relay connections (ALPN h2); the API speaks http/1.1")
			tc.Close()
			return
		}
		c.relay.conns.deliver(tc)
		return
	}
	c.clusterConns.deliver(tc)
}

// handlePublic passes a public connection to the public HTTP server; the
// server's connection states keep its gate entry current.
func (c *Coordinator) handlePublic(tc *tls.Conn, gc *connlimit.Conn, _ uint64) {
	cs := tc.ConnectionState()
	who := "anonymous"
	if len(cs.PeerCertificates) > 0 {
		if id, err := pki.IDFromCert(cs.PeerCertificates[0]); err == nil {
			who = id.String() + " (unverified)"
		}
	}
	c.accepted("public", tc, &cs, who)
	c.publicTracked.Store(tc, gc)
	c.publicConns.deliver(tc)
}

// trackPublicConn keeps the public gate's view of each connection current:
// a connection serving a request is never evicted; an idle one may be.
func (c *Coordinator) trackPublicConn(conn net.Conn, state http.ConnState) {
	v, ok := c.publicTracked.Load(conn)
	if !ok {
		return
	}
	gc := v.(*connlimit.Conn)
	switch state {
	case http.StateActive:
		gc.Busy()
	case http.StateIdle:
		gc.Idle()
	case http.StateClosed, http.StateHijacked:
		gc.Release()
		c.publicTracked.Delete(conn)
	}
}

// connQueue is a net.Listener fed with connections whose handshake is done,
// so the HTTP servers never see a connection this package did not log.
type connQueue struct {
	ch   chan net.Conn
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{ch: make(chan net.Conn), addr: addr, done: make(chan struct{})}
}

func (q *connQueue) deliver(conn net.Conn) {
	select {
	case q.ch <- conn:
	case <-q.done:
		conn.Close()
	}
}

// Accept returns the next delivered connection.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept.
func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

// Addr is the underlying listener's address.
func (q *connQueue) Addr() net.Addr { return q.addr }

// trackHTTPConn forgets API connections when they close.
func (c *Coordinator) trackHTTPConn(conn net.Conn, state http.ConnState) {
	if state == http.StateClosed || state == http.StateHijacked {
		c.live.remove(conn)
	}
}
