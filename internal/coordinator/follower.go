package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/forward"
	"github.com/wardcluster/ward/internal/leader"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// A follower serves agents, the CLI, the API and the web console by
// passing them to the leader (internal/forward): requests through a reverse
// proxy, agent sessions through a relay, both over mutual TLS with this
// coordinator's certificate. The leader accepts the caller's identity only
// from a coordinator, and verifies it again. Why forward and not share the
// job system through the store: placement stays in one process, whose
// in-memory state is the truth while its term holds, so the hot path is the
// same as with one coordinator and there is nothing to reconcile between
// coordinators.

// relayWait bounds how long a follower holds an agent's connection while no
// coordinator leads (an election after the leader died): long enough for
// one, so the agent's session opens as soon as the new leader takes over.
const relayWait = 20 * time.Second

// follower reports whether this coordinator passes its work to a leader:
// it does not hold the job system.
func (c *Coordinator) follower() bool { return !c.holding.Load() }

// held is closed once this coordinator holds the job system. It never
// lets go of it: a coordinator whose lease lapsed leads on or exits.
func (c *Coordinator) held() <-chan struct{} {
	c.heldInit.Do(func() { c.heldCh = make(chan struct{}) })
	return c.heldCh
}

// markHeld records that this coordinator holds the job system.
func (c *Coordinator) markHeld() {
	c.holding.Store(true)
	c.held()
	c.heldClose.Do(func() { close(c.heldCh) })
}

// verifier checks a caller's certificate chain carried by a follower.
func (c *Coordinator) verifier() forward.Verifier {
	return forward.Verifier{Cluster: c.cfg.Cluster, Trust: c.ca.src.Trust, Revoked: c.revoked, Now: c.now}
}

// leaderAddr is the cluster address of the coordinator to forward to.
func (c *Coordinator) leaderAddr(ctx context.Context) (string, error) {
	if c.tracker == nil {
		return "", errNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, relayWait)
	defer cancel()
	for {
		in, err := c.tracker.Wait(ctx, "")
		if err != nil {
			return "", errNoLeader
		}
		if in.ID != c.memberID() {
			return in.ClusterAddr, nil
		}
		if c.holding.Load() {
			return "", errTakingOver // the caller serves it locally next time
		}
		select { // this coordinator won and is restoring: wait for it
		case <-ctx.Done():
			return "", errTakingOver
		case <-c.held():
		}
	}
}

var (
	errNoLeader = api.Errorf(api.CodeUnavailable, "retry in a few seconds: a new leader is elected within the leader lease TTL; `ward status` shows it",
		"no coordinator leads the cluster right now (an election is under way)")
	errTakingOver = api.Errorf(api.CodeUnavailable, "retry now", "this coordinator has just become the leader")
)

// leaderTLS is the client side of a link to the leader.
func (c *Coordinator) leaderTLS(serverName string, alpn string) *tls.Config {
	return transport.ClientConfig(c.ca.src, transport.ClientOptions{Cluster: c.cfg.Cluster, ServerName: serverName, NextProtos: []string{alpn}})
}

// newProxy forwards one listener's requests to the leader.
func (c *Coordinator) newProxy(listener string) *forward.Proxy {
	return forward.NewProxy(listener, c.memberID(), c.leaderAddr,
		func(host string) *tls.Config { return c.leaderTLS(host, transport.ALPNHTTP) },
		func(w http.ResponseWriter, r *http.Request, err error) {
			var ae *api.Error
			if !errors.As(err, &ae) {
				in, _, _ := c.tracker.Leader()
				ae = api.Errorf(api.CodeUnavailable, "retry; if it persists check that coordinators reach each other's cluster port",
					"coordinator %s could not pass the request to the leader %s at %s: %v", c.memberID(), in.ID, in.ClusterAddr, err)
			}
			writeError(w, c, ae)
		})
}

// clusterEntry is the cluster HTTP server's handler. A request a follower
// forwarded is accepted (on the leader only) with its caller's identity and
// routed as on the listener it arrived on; on a follower every request but
// the metrics goes to the leader.
func (c *Coordinator) clusterEntry(routes, public http.Handler) http.Handler {
	proxy := c.newProxy(forward.ListenerCluster)
	status := c.newStatusProxy(routes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case isBlobReplica(r): // between coordinators, on every one
			c.serveBlobReplica(w, r)
		case forward.Forwarded(r):
			c.serveForwarded(w, r, routes, public)
		case c.follower() && c.tracker != nil && isStatusRequest(r):
			status.ServeHTTP(w, r) // answered here, partial, while no leader answers
		case c.follower() && r.URL.Path != "/metrics":
			proxy.ServeHTTP(w, r)
		default:
			routes.ServeHTTP(w, r)
		}
	})
}

// publicEntry is the public HTTP server's handler: on a follower, every
// request but readiness goes to the leader.
func (c *Coordinator) publicEntry(routes http.Handler) http.Handler {
	proxy := c.newProxy(forward.ListenerPublic)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.follower() && r.URL.Path != api.PathReady {
			proxy.ServeHTTP(w, r)
			return
		}
		routes.ServeHTTP(w, r)
	})
}

func (c *Coordinator) serveForwarded(w http.ResponseWriter, r *http.Request, routes, public http.Handler) {
	by, err := forward.FromCoordinator(r.TLS, c.cfg.Cluster)
	if err != nil {
		c.log.Warn("forwarded request refused", "peer_addr", r.RemoteAddr, "err", err)
		writeError(w, c, api.Errorf(api.CodePermissionDenied, "send the request without X-Ward-Forwarded-* headers", "%v", err))
		return
	}
	if c.follower() && !isStatusRequest(r) { // a status is answered, partial
		writeError(w, c, api.Errorf(api.CodeUnavailable, "retry: the coordinator you called forwards to the new leader once it sees it", "coordinator %s does not lead the cluster (any more)", c.memberID()))
		return
	}
	req, listener, err := forward.Accept(r, c.verifier())
	if err != nil {
		c.log.Warn("forwarded request refused", "by", by.String(), "err", err)
		writeError(w, c, api.Errorf(api.CodeUnauthenticated, "present a current Ward client certificate", "%v", err))
		return
	}
	if listener == forward.ListenerPublic {
		public.ServeHTTP(w, req)
		return
	}
	routes.ServeHTTP(w, req)
}

// relaySession carries an agent's session from this follower to the
// leader, waiting for one while an election is under way.
func (c *Coordinator) relaySession(tc *tls.Conn, peer transport.Peer) {
	ctx, cancel := context.WithTimeout(c.serveCtx, relayWait)
	defer cancel()
	skip := ""
	for {
		in, err := c.tracker.Wait(ctx, skip)
		if err != nil {
			c.sendBye(tc, errNoLeader)
			return
		}
		if in.ID == c.memberID() {
			if c.holding.Load() {
				c.runSession(tc, peer)
				return
			}
			// This coordinator won and is restoring: wait for it (one
			// channel for every waiting session, not a timer each: at a
			// takeover with 20,000 agents waiting, 50 ms timers were most
			// of the new leader's CPU).
			select {
			case <-ctx.Done():
			case <-c.held():
			}
			continue
		}
		// The leader runs the session, sees its renewals and judges its
		// certificate's trust; it closes its end when it cuts it.
		cs := tc.ConnectionState()
		mark := c.live.mark()
		c.live.vouch(tc, nil)
		err = c.relay.mux.Relay(ctx, in.ClusterAddr, forward.NewPreamble(cs, tc.RemoteAddr().String(), c.memberID()), tc, func(via string) {
			c.connLog("agent session relayed to the leader", "node", peer.ID.Name, "leader", in.ID, "via", via)
		})
		if errors.Is(err, forward.ErrNotRelayed) {
			// Still this coordinator's to judge, and a trust sweep may
			// have passed it by meanwhile.
			if !c.admitLive(tc, cs.PeerCertificates, mark) {
				return
			}
			c.log.Warn("cannot reach the leader to relay an agent session; waiting for another", "node", peer.ID.Name, "leader", in.ID, "addr", in.ClusterAddr, "err", err)
			skip = in.Fence
			continue
		}
		c.connLog("relayed agent session ended", "node", peer.ID.Name, "leader", in.ID)
		return
	}
}

// acceptRelay runs, on the leader, an agent session a follower relays
// over a connection of its own (ALPN ward-relay/1: followers of the
// previous version) or as a stream of a multiplexed connection.
func (c *Coordinator) acceptRelay(tc net.Conn, by transport.Peer) {
	if by.ID.Role != pki.RoleCoordinator {
		c.sendBye(tc, api.Errorf(api.CodePermissionDenied, "only coordinators relay agent sessions", "%s may not relay agent sessions", by.ID))
		return
	}
	if c.follower() {
		c.sendBye(tc, errNoLeader)
		return
	}
	tc.SetReadDeadline(time.Now().Add(helloTimeout))
	mark := c.live.mark() // before the chain is checked against the trust bundle
	p, err := forward.ReadPreamble(tc)
	if err == nil {
		var id pki.ID
		certs, cerr := p.Certificates()
		if err = cerr; err == nil {
			if id, _, err = c.verifier().Verify(certs); err == nil && id.Role != pki.RoleAgent {
				err = errors.New(id.String() + " is not an agent")
			}
		}
		if err == nil {
			tc.SetReadDeadline(time.Time{})
			agent := transport.Peer{ID: id, Cert: certs[0], TLSVersion: p.TLSVersion, Cipher: p.Cipher, Link: transport.LinkYes, Via: p.By}
			conn := &relayedConn{Conn: tc, remote: sourceAddr(p.Source)}
			defer c.live.remove(conn)
			if !c.admitLive(conn, certs, mark) {
				return // revoked or no longer trusted since the check
			}
			c.runSession(conn, agent)
			return
		}
	}
	c.log.Warn("relayed agent session refused", "by", by.ID.String(), "err", err)
	c.sendBye(tc, api.Errorf(api.CodeUnauthenticated, "the agent must present a current certificate of this cluster", "%v", err))
}

// relayMux is both sides of multiplexed relays: the follower's
// connections to the leader, and the leader's server of its followers'.
type relayMux struct {
	mux   *forward.Mux
	conns *connQueue
	srv   *http.Server
}

// relayConnsPerLeader is how many connections a follower relays its
// agents' sessions over (more only while these are full, at
// forward.MaxStreams sessions each): a few, so one connection's reader is
// not the only one carrying a follower's agents.
const relayConnsPerLeader = 4

// startRelay sets up both sides of multiplexed relays.
func (c *Coordinator) startRelay() error {
	c.relay.conns = newConnQueue(c.clusterLn.Addr())
	srv, err := forward.NewRelayServer(c.acceptMuxRelay, slog.NewLogLogger(c.log.Handler(), slog.LevelDebug))
	if err != nil {
		return err
	}
	c.relay.srv = srv
	c.relay.srv.ConnState = c.trackHTTPConn
	c.relay.mux = forward.NewMux(relayConnsPerLeader, func(host string) *tls.Config { return c.leaderTLS(host, transport.ALPNRelayMux) }, forward.MuxHooks{
		Opened: func(addr string) { c.connLog("relay connection to the leader opened", "leader_addr", addr) },
		Legacy: func(addr string, err error) {
			c.log.Warn("the leader runs an older Ward without multiplexed relays: each agent session on this coordinator is relayed over a connection of its own (ward-relay/1) until it is upgraded; upgrade it (or fail over to an upgraded coordinator) to finish the rolling upgrade",
				"leader_addr", addr, "err", err)
		},
	})
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.relay.srv.Serve(c.relay.conns) }()
	return nil
}

// stopRelay ends every relayed session, on both sides.
func (c *Coordinator) stopRelay() {
	c.relay.mux.Close()
	c.relay.srv.Close()
}

// acceptMuxRelay runs a stream of a multiplexed relay connection: only a
// coordinator's connection reaches here (handleCluster), checked again.
func (c *Coordinator) acceptMuxRelay(conn net.Conn, cs *tls.ConnectionState) {
	by, err := transport.PeerFromState(cs, c.cfg.Cluster)
	if err != nil {
		c.sendBye(conn, api.Errorf(api.CodePermissionDenied, "only coordinators relay agent sessions", "%v", err))
		return
	}
	c.acceptRelay(conn, by)
}

// relayedConn is a relayed session's connection: its remote address is
// the agent's, not the relaying follower's.
type relayedConn struct {
	net.Conn
	remote net.Addr
}

func (r *relayedConn) RemoteAddr() net.Addr { return r.remote }

// sourceAddr parses a carried "host:port" (falling back to an empty TCP
// address).
func sourceAddr(s string) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", s); err == nil {
		return a
	}
	return &net.TCPAddr{}
}

// startTracking follows the leader record, on etcd.
func (c *Coordinator) startTracking(ctx context.Context) {
	if c.cfg.EtcdStore() {
		c.tracker = leader.Track(ctx, c.st)
	}
}
