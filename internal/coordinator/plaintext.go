package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/connlimit"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/transport"
)

const keyMigration = "meta/migration"

// migrationRecord is the plaintext-to-TLS migration state.
type migrationRecord struct {
	Finished   bool      `json:"finished"` // plaintext is loopback only, for good
	FinishedAt time.Time `json:"finished_at,omitempty"`
	UpgradeAll bool      `json:"upgrade_all,omitempty"` // every plaintext agent is told to move to TLS
	Upgrade    []string  `json:"upgrade,omitempty"`     // these plaintext agents are told to move
}

// plaintextListener is the migration listener, rebindable at runtime.
type plaintextListener struct {
	mu  sync.Mutex
	ln  net.Listener
	mig migrationRecord
}

func (c *Coordinator) readMigration(ctx context.Context) (migrationRecord, error) {
	rec, err := c.st.Get(ctx, keyMigration)
	if errors.Is(err, store.ErrNotFound) {
		return migrationRecord{}, nil
	}
	if err != nil {
		return migrationRecord{}, err
	}
	var m migrationRecord
	return m, json.Unmarshal(rec.Value, &m)
}

// bindPlaintext opens the plaintext listener if configured. Once the
// migration is finished it binds to loopback only, whatever the
// configuration says.
func (c *Coordinator) bindPlaintext(ctx context.Context) error {
	m, err := c.readMigration(ctx)
	if err != nil {
		return err
	}
	c.plain.mig = m
	if c.cfg.PlaintextAddr == "" {
		return nil
	}
	addr := c.cfg.PlaintextAddr
	host, port, _ := net.SplitHostPort(addr)
	if m.Finished && !config.IsLoopback(host) {
		c.log.Warn("the plaintext migration is finished: binding the plaintext listener to loopback only", "configured", addr,
			"fix", "remove --plaintext-addr/--insecure-plaintext, or give a loopback address")
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("plaintext listener: %w (fix: free the port or change --plaintext-addr)", err)
	}
	c.plain.ln = ln
	return nil
}

func (c *Coordinator) plaintextInsecure() (string, bool) {
	c.plain.mu.Lock()
	defer c.plain.mu.Unlock()
	if c.plain.ln == nil {
		return "", false
	}
	a := c.plain.ln.Addr().(*net.TCPAddr)
	return a.String(), !a.IP.IsLoopback()
}

func (c *Coordinator) logPlaintextListener() {
	addr, remote := c.plaintextInsecure()
	if addr == "" {
		return
	}
	c.log.Info("listening", "listener", "plaintext", "addr", addr, "tls", "none", "client_certs", "agent key signature over a nonce (no encryption)")
	if remote {
		c.log.Warn("INSECURE setting in effect: a plaintext listener is reachable from other hosts; its links show as NO",
			"listener", "plaintext", "addr", addr, "setting", "--insecure-plaintext",
			"fix", "move agents to TLS (`ward migrate upgrade`), then `ward migrate finish`")
	}
}

// servePlaintext accepts on the plaintext listener until it is closed or
// replaced (migrate finish rebinds it).
func (c *Coordinator) servePlaintext(ctx context.Context, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// Until it authenticates, a plaintext peer counts against the
		// cluster port's handshake caps.
		gc := c.plainGate.Admit(conn)
		if gc == nil {
			conn.Close()
			continue
		}
		go c.handlePlaintext(gc.Conn(), gc)
	}
}

// handlePlaintext refuses TLS and other protocols with a clear answer, and
// authenticates an agent by a signature over a fresh nonce before running
// its session over plaintext.
func (c *Coordinator) handlePlaintext(conn net.Conn, gc *connlimit.Conn) {
	defer gc.Release()
	peerAddr := conn.RemoteAddr().String()
	conn.SetDeadline(time.Now().Add(c.cfg.Limits.HandshakeTimeout.D()))
	head := make([]byte, len(api.PlaintextPreface))
	n, err := io.ReadFull(conn, head)
	if n > 0 && head[0] == 0x16 { // a TLS ClientHello
		conn.Write([]byte(diagnose.PlaintextRefusal))
		conn.Close()
		c.rejectedPlain(peerAddr, "tls_to_plaintext_expected", "a TLS client connected to the plaintext listener", "connect to the cluster port for TLS")
		return
	}
	if err != nil || string(head) != api.PlaintextPreface {
		conn.Write([]byte("WARD/1 ERROR this port speaks the Ward agent protocol in plaintext, for migration only; use the cluster port (TLS)\n"))
		conn.Close()
		c.rejectedPlain(peerAddr, "not_ward_agent", "the peer did not open with the Ward agent preface", "point the client at the cluster port")
		return
	}
	mark := c.live.mark() // before plaintextAuth checks the chain against the trust bundle
	peer, err := c.plaintextAuth(conn)
	if err != nil {
		e := api.AsError(err)
		c.sendBye(conn, e)
		c.rejectedPlain(peerAddr, string(e.Code), e.Message, e.Fix)
		return
	}
	conn.SetDeadline(time.Time{})
	gc.Release() // authenticated: no longer counted
	serial := pki.SerialHex(peer.Cert)
	defer c.live.remove(conn)
	if !c.admitLive(conn, []*x509.Certificate{peer.Cert}, mark) {
		return // revoked or no longer trusted since the check
	}
	c.connLog("connection accepted", "listener", "plaintext", "peer_addr", peerAddr, "identity", peer.ID.String(), "tls", "none",
		"cert_serial", serial, "link", string(transport.LinkNo), "revocation_checked", true)
	c.metrics.Handshakes.WithLabelValues("plaintext", "accepted", "ok").Inc()
	c.runSession(conn, peer)
}

func (c *Coordinator) rejectedPlain(peer, code, detail, fix string) {
	c.metrics.Handshakes.WithLabelValues("plaintext", "rejected", code).Inc()
	c.connLog("connection rejected", "listener", "plaintext", "peer_addr", peer, "reason", code, "detail", detail, "fix", fix)
	c.audit.Record(audit.Event{Type: "auth.failure", Actor: peer, Result: code, Detail: map[string]string{"listener": "plaintext", "detail": detail}})
}

// plaintextAuth runs the challenge: the agent signs a fresh nonce with the
// key of a certificate from the trust bundle. This authenticates the agent
// but, without TLS, not the link: anyone on the path can read or alter it.
func (c *Coordinator) plaintextAuth(conn net.Conn) (transport.Peer, error) {
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return transport.Peer{}, err
	}
	b, _ := api.AppendFrame(nil, api.FrameChallenge, api.Challenge{Nonce: nonce})
	if _, err := conn.Write(b); err != nil {
		return transport.Peer{}, err
	}
	// The peer is not authenticated yet: its frame is bounded like a
	// request body on the public port.
	t, body, err := api.ReadFrameLimit(conn, make([]byte, 5), c.cfg.Limits.PublicMaxRequestBytes)
	var tooLarge *api.FrameTooLargeError
	if errors.As(err, &tooLarge) {
		return transport.Peer{}, api.Errorf(api.CodeFrameTooLarge, "send the agent certificate and signature as `ward agent` does; an admin can raise public_max_request_bytes",
			"the authentication frame is %d bytes, over public_max_request_bytes (%d bytes)", tooLarge.Size, tooLarge.Limit)
	}
	if err != nil || t != api.FrameAuth {
		return transport.Peer{}, api.Errorf(api.CodeUnauthenticated, "upgrade the agent", "no authentication frame: %v", err)
	}
	var auth api.Auth
	if err := api.DecodeFrame(t, body, &auth); err != nil {
		return transport.Peer{}, api.Errorf(api.CodeUnauthenticated, "upgrade the agent", "%v", err)
	}
	chain, err := pki.ParseCertsPEM(auth.ChainPEM)
	if err != nil {
		return transport.Peer{}, api.Errorf(api.CodeUnauthenticated, "send the agent certificate", "%v", err)
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, ca := range chain[1:] {
		inter.AddCert(ca)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.ca.src.Trust(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return transport.Peer{}, api.Errorf(api.CodeUnauthenticated, "the agent needs a certificate from this cluster's CA", "the certificate does not verify: %v", err)
	}
	if c.revoked.Contains(leaf.SerialNumber) {
		return transport.Peer{}, api.Errorf(api.CodeCertRevoked, "join again with a new token", "certificate %s is revoked", pki.SerialHex(leaf))
	}
	id, err := pki.IDFromCert(leaf)
	if err != nil || id.Cluster != c.cfg.Cluster || id.Role != pki.RoleAgent {
		return transport.Peer{}, api.Errorf(api.CodePermissionDenied, "only agents use this listener", "%s may not open an agent session", id)
	}
	if err := VerifyPlaintextAuth(leaf, nonce, id, auth.Signature); err != nil {
		return transport.Peer{}, api.Errorf(api.CodeUnauthenticated, "the agent must sign with its own key", "%v", err)
	}
	return transport.Peer{ID: id, Cert: leaf, Link: transport.LinkNo}, nil
}

// VerifyPlaintextAuth checks an agent's signature over the challenge.
func VerifyPlaintextAuth(leaf *x509.Certificate, nonce []byte, id pki.ID, sig []byte) error {
	msg := api.PlaintextAuthMessage(nonce, id.String())
	var alg x509.SignatureAlgorithm
	switch leaf.PublicKey.(type) {
	case ed25519.PublicKey:
		alg = x509.PureEd25519
	case interface{ Size() int }: // *rsa.PublicKey
		alg = x509.SHA256WithRSA
	default:
		alg = x509.ECDSAWithSHA256
	}
	if err := leaf.CheckSignature(alg, msg, sig); err != nil {
		return fmt.Errorf("the challenge signature does not verify with the certificate's key: %w", err)
	}
	return nil
}

// wantsUpgrade reports whether a plaintext agent should be told to move.
func (c *Coordinator) wantsUpgrade(node string) bool {
	c.plain.mu.Lock()
	defer c.plain.mu.Unlock()
	return c.plain.mig.UpgradeAll || slices.Contains(c.plain.mig.Upgrade, node)
}

func (c *Coordinator) writeMigration(ctx context.Context, m migrationRecord) error {
	return c.journal.Wait([]store.Op{putJSON(keyMigration, m)})
}

func (c *Coordinator) migrationStatus() api.MigrationStatus {
	addr, _ := c.plaintextInsecure()
	c.plain.mu.Lock()
	st := api.MigrationStatus{Plaintext: addr, Finished: c.plain.mig.Finished, Insecure: []api.PeerLink{}}
	c.plain.mu.Unlock()
	c.mu.Lock()
	for name, s := range c.sessions {
		switch s.link {
		case transport.LinkYes:
			st.Secure++
		default:
			reason := "plaintext session (no TLS)"
			if s.link == transport.LinkPartly {
				reason = "the agent does not verify the coordinator's certificate (--insecure-skip-verify)"
			}
			st.Insecure = append(st.Insecure, api.PeerLink{Node: name, Addr: s.conn.RemoteAddr().String(), Link: string(s.link), Reason: reason, UpgradeErr: s.upgradeErr.Load().(string)})
		}
	}
	c.mu.Unlock()
	sort.Slice(st.Insecure, func(a, b int) bool { return st.Insecure[a].Node < st.Insecure[b].Node })
	return st
}

func (c *Coordinator) apiMigrateStatus(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[api.MigrationStatus](w)(c.MigrationStatus(r.Context(), p))
}

// MigrationStatus lists the peers whose link is not YES yet, and where the
// plaintext listener stands.
func (c *Coordinator) MigrationStatus(ctx context.Context, p authz.Principal) (api.MigrationStatus, error) {
	if err := c.allow(p, authz.MigrateRead); err != nil {
		return api.MigrationStatus{}, err
	}
	return c.migrationStatus(), nil
}

func (c *Coordinator) apiMigrateUpgrade(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.MigrateRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.MigrationStatus](w)(c.MigrateUpgrade(r.Context(), p, req))
}

// MigrateUpgrade tells plaintext agents (all, or the named ones) to move to
// the TLS cluster port, now and whenever they reconnect.
func (c *Coordinator) MigrateUpgrade(ctx context.Context, p authz.Principal, req api.MigrateRequest) (api.MigrationStatus, error) {
	if err := c.allow(p, authz.MigrateUpgrade); err != nil {
		return api.MigrationStatus{}, err
	}
	c.plain.mu.Lock()
	m := c.plain.mig
	if len(req.Nodes) == 0 {
		m.UpgradeAll = true
	} else {
		for _, n := range req.Nodes {
			if !slices.Contains(m.Upgrade, n) {
				m.Upgrade = append(m.Upgrade, n)
			}
		}
	}
	c.plain.mig = m
	c.plain.mu.Unlock()
	if err := c.writeMigration(ctx, m); err != nil {
		return api.MigrationStatus{}, err
	}
	told := 0
	c.mu.Lock()
	for name, s := range c.sessions {
		if s.link == transport.LinkNo && c.wantsUpgradeLocked(m, name) {
			s.send(api.FrameUpgradeTLS, api.UpgradeTLS{ClusterAddrs: []string{c.advertisedAddr(c.cfg.ClusterAddr)}})
			told++
		}
	}
	c.mu.Unlock()
	c.Record(p, audit.Event{Type: "migrate.upgrade", Detail: map[string]string{"nodes": fmt.Sprint(req.Nodes), "told": fmt.Sprint(told)}})
	c.log.Info("migration: asked plaintext agents to move to TLS", "agents", told, "nodes", req.Nodes)
	return c.migrationStatus(), nil
}

func (c *Coordinator) wantsUpgradeLocked(m migrationRecord, node string) bool {
	return m.UpgradeAll || slices.Contains(m.Upgrade, node)
}

func (c *Coordinator) apiMigrateFinish(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.MigrateRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.MigrationStatus](w)(c.MigrateFinish(r.Context(), p, req))
}

// MigrateFinish rebinds the plaintext listener to loopback only, without a
// restart, and remembers it. It refuses while remote agents still use
// plaintext, naming them, unless forced (then their sessions are closed).
func (c *Coordinator) MigrateFinish(ctx context.Context, p authz.Principal, req api.MigrateRequest) (api.MigrationStatus, error) {
	if err := c.allow(p, authz.MigrateFinish); err != nil {
		return api.MigrationStatus{}, err
	}
	var remote []*session
	var names []string
	c.mu.Lock()
	for name, s := range c.sessions {
		if s.link == transport.LinkNo {
			if h, _, _ := net.SplitHostPort(s.conn.RemoteAddr().String()); !config.IsLoopback(h) {
				remote = append(remote, s)
				names = append(names, name)
			}
		}
	}
	c.mu.Unlock()
	sort.Strings(names)
	if len(remote) > 0 && !req.Force {
		return api.MigrationStatus{}, api.Errorf(api.CodeFailedPrecondition, "move them first (`ward migrate upgrade`, or restart them with --upgrade-tls), or pass --force to cut them off",
			"%d agent(s) still use plaintext from other hosts: %v", len(remote), names)
	}
	c.plain.mu.Lock()
	old := c.plain.ln
	var rebound net.Listener
	if old != nil {
		_, port, _ := net.SplitHostPort(old.Addr().String())
		old.Close()
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			c.plain.ln = nil
			c.plain.mu.Unlock()
			return api.MigrationStatus{}, fmt.Errorf("rebind the plaintext listener to loopback: %w", err)
		}
		c.plain.ln, rebound = ln, ln
	}
	c.plain.mig.Finished, c.plain.mig.FinishedAt = true, c.now().UTC()
	m := c.plain.mig
	c.plain.mu.Unlock()
	if rebound != nil {
		go c.servePlaintext(c.serveCtx, rebound)
		c.logPlaintextListener()
	}
	for _, s := range remote {
		c.sendBye(s.conn, api.Errorf(api.CodeFailedPrecondition, "restart the agent with --upgrade-tls", "the coordinator finished the move to TLS; plaintext is loopback only now"))
	}
	if err := c.writeMigration(ctx, m); err != nil {
		return api.MigrationStatus{}, err
	}
	c.Record(p, audit.Event{Type: "migrate.finish", Detail: map[string]string{"forced": fmt.Sprint(req.Force), "cut_off": fmt.Sprint(names)}})
	c.log.Info("migration finished: plaintext is loopback only", "cut_off", names)
	return c.migrationStatus(), nil
}

// PlaintextAddr is the bound plaintext migration listener address, or ""
// when it is not open.
func (c *Coordinator) PlaintextAddr() string {
	addr, _ := c.plaintextInsecure()
	return addr
}
