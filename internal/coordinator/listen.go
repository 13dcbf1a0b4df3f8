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
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// handshakeTimeout bounds a TLS handshake so a silent peer cannot hold a
// goroutine.
const handshakeTimeout = 10 * time.Second

// acceptLoop accepts TCP connections and hands each to its own goroutine
// for the TLS handshake, so one slow peer never blocks the others.
func (c *Coordinator) acceptLoop(ctx context.Context, ln net.Listener, cfg *tls.Config, name string, handle func(*tls.Conn)) {
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, log, go on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			c.log.Warn("accept failed; retrying", "listener", name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go c.handshake(raw, cfg, name, handle)
	}
}

func (c *Coordinator) handshake(raw net.Conn, cfg *tls.Config, name string, handle func(*tls.Conn)) {
	tc := tls.Server(raw, cfg)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		c.rejected(name, raw.RemoteAddr().String(), err)
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	handle(tc)
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
func (c *Coordinator) handleCluster(tc *tls.Conn) {
	cs := tc.ConnectionState()
	peer, err := transport.PeerFromState(&cs, c.cfg.Cluster)
	if err != nil { // VerifyConnection already checked this; defence in depth
		c.rejected("cluster", tc.RemoteAddr().String(), err)
		tc.Close()
		return
	}
	c.accepted("cluster", tc, &cs, peer.ID.String())
	serial := pki.SerialHex(peer.Cert)
	c.live.add(serial, tc)
	if c.revoked.Contains(peer.Cert.SerialNumber) {
		// Revoked between the handshake's check and registration: the
		// revocation's sweep may have missed this connection.
		c.live.remove(serial, tc)
		tc.Close()
		return
	}
	if cs.NegotiatedProtocol == transport.ALPNAgent {
		if peer.ID.Role != pki.RoleAgent {
			c.live.remove(serial, tc)
			c.sendBye(tc, api.Errorf(api.CodePermissionDenied, "use an agent certificate (from `ward agent --join-file FILE`) for agent sessions",
				"%s may not open an agent session: only agent certificates can", peer.ID))
			return
		}
		// A fresh goroutine for the long-lived session: this one's stack
		// grew during the handshake and would stay that size for the
		// session's life (about 8 KB per idle agent).
		go func() {
			defer c.live.remove(serial, tc)
			c.runSession(tc, peer)
		}()
		return
	}
	c.clusterConns.deliver(tc)
}

// handlePublic passes a public connection to the public HTTP server.
func (c *Coordinator) handlePublic(tc *tls.Conn) {
	cs := tc.ConnectionState()
	who := "anonymous"
	if len(cs.PeerCertificates) > 0 {
		if id, err := pki.IDFromCert(cs.PeerCertificates[0]); err == nil {
			who = id.String() + " (unverified)"
		}
	}
	c.accepted("public", tc, &cs, who)
	c.publicConns.deliver(tc)
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
	if state != http.StateClosed && state != http.StateHijacked {
		return
	}
	if tc, ok := conn.(*tls.Conn); ok {
		if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 {
			c.live.remove(pki.SerialHex(cs.PeerCertificates[0]), conn)
		}
	}
}
