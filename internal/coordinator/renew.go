package coordinator

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/transport"
)

// lifetimeFor is the configured leaf lifetime of a role.
func (c *Coordinator) lifetimeFor(r pki.Role) time.Duration {
	switch r {
	case pki.RoleAgent:
		return c.cfg.AgentCertLifetime.D()
	case pki.RoleUser:
		return c.cfg.UserCertLifetime.D()
	}
	return c.cfg.CoordinatorCertLifetime.D()
}

// reissued is a certificate renew or heal issued.
type reissued struct {
	cert    *x509.Certificate
	issuing *x509.Certificate // the CA that issued cert
	chain   []byte            // PEM: the certificate and its issuing CA
	// newKey: the successor has another key than the certificate it
	// renews, which it therefore supersedes.
	newKey bool
}

// reissue issues a successor to current for the same identity, from the
// CSR the holder signed. The CSR may name only what current names. The
// successor records current as its parent, so revoking current revokes it
// too; a revoked current is not renewed (c.lineage orders the two).
func (c *Coordinator) reissue(ctx context.Context, current *x509.Certificate, csrDER []byte, path string, by string) (*reissued, error) {
	if err := c.health.Err(); err != nil {
		return nil, err // renewal writes; it is retried later, well before expiry
	}
	id, err := pki.IDFromCert(current)
	if err != nil {
		return nil, api.Errorf(api.CodePermissionDenied, "present a Ward certificate", "%v", err)
	}
	if id.Cluster != c.cfg.Cluster || id.Role == pki.RoleCoordinator {
		return nil, api.Errorf(api.CodePermissionDenied, "coordinators renew themselves", "%s cannot be renewed through this path", id)
	}
	csr, err := pki.CheckCSR(csrDER, pki.CSRPolicy{ID: id, AllowedDNS: current.DNSNames, AllowedIPs: current.IPAddresses})
	if err != nil {
		return nil, err
	}
	c.lineage.RLock()
	defer c.lineage.RUnlock()
	if c.revoked.Contains(current.SerialNumber) {
		return nil, api.Errorf(api.CodeCertRevoked, "get a new certificate: an agent joins again with a new token", "certificate %s of %s is revoked; it cannot be renewed", pki.SerialHex(current), id)
	}
	var nodeRec *nodeRecord
	if id.Role == pki.RoleAgent {
		c.mu.Lock()
		if n := c.nodes[id.Name]; n != nil {
			cp := *n
			nodeRec = &cp
		}
		c.mu.Unlock()
		if nodeRec == nil || nodeRec.Revoked {
			return nil, api.Errorf(api.CodeCertRevoked, "join again with a new token", "node %s is not registered or was revoked", id.Name)
		}
	}
	now := c.now()
	iss := c.issuer()
	// A user's role goes forward with its certificate: renewal never
	// changes it (a role change is a new certificate, the old revoked).
	cert, err := iss.Issue(pki.LeafSpec{ID: id, PublicKey: csr.PublicKey, Lifetime: c.lifetimeFor(id.Role),
		DNSNames: csr.DNSNames, IPs: csr.IPAddresses, CRLURLs: c.crlURLs(), UserRole: pki.UserRoleOf(current)}, now)
	if err != nil {
		return nil, err
	}
	rec := issuedRecord(cert, iss.CA.Cert)
	rec.Parent = pki.SerialHex(current)
	ops := []store.Op{putJSON(certKey(rec.Serial), rec), store.Put(lineageKey(rec.Parent, rec.Serial), nil)}
	if nodeRec != nil {
		c.mu.Lock()
		if n := c.nodes[id.Name]; n != nil {
			n.CertSerial, n.CertExpiry, n.CertIssuer = rec.Serial, cert.NotAfter, rec.Issuer
			ops = append(ops, putJSON(nodeKey(id.Name), n))
		}
		c.mu.Unlock()
	}
	if err := c.journal.Wait(ops); err != nil {
		return nil, err
	}
	newKey := !pki.PublicKeyMatches(current, csr.PublicKey)
	c.metrics.Renewals.WithLabelValues(string(id.Role), path).Inc()
	c.audit.Record(audit.Event{Type: "cert." + path, Actor: by, Target: id.String(), Detail: map[string]string{
		"old_serial": rec.Parent, "serial": rec.Serial, "not_after": cert.NotAfter.UTC().Format(time.RFC3339), "issuer": rec.Issuer,
		"new_key": strconv.FormatBool(newKey)}})
	c.log.Info("certificate renewed", "identity", id.String(), "path", path, "old_serial", rec.Parent, "serial", rec.Serial,
		"new_key", newKey, "expires", cert.NotAfter.UTC().Format(time.RFC3339))
	return &reissued{cert: cert, issuing: iss.CA.Cert, chain: pki.EncodeCertsPEM(cert, iss.CA.Cert), newKey: newKey}, nil
}

// renewedOver finishes a renewal made over conn, a live connection that
// presented old: conn now stands for the new certificate too, so revoking
// either closes it. A successor with a new key supersedes old: old is
// revoked (reason superseded, its successor kept), which closes every
// other connection that presented it; conn stays open, because it proved
// the old key at its handshake and the new key with the CSR, so it is the
// new certificate's holder.
func (c *Coordinator) renewedOver(conn net.Conn, old *x509.Certificate, r *reissued, by authz.Principal) {
	if conn != nil {
		c.live.renewed(conn, old, []*x509.Certificate{r.cert, r.issuing}, r.newKey)
	}
	if !r.newKey {
		return
	}
	oldSerial := pki.SerialHex(old)
	if _, err := c.revoke(context.Background(), revocation{serials: []string{oldSerial}, reason: "superseded", who: by}); err != nil {
		c.log.Error("revoke the certificate a renewal with a new key superseded", "serial", oldSerial, "err", err,
			"fix", "revoke it by hand: ward cert revoke "+oldSerial+" --reason superseded")
	}
}

// renewOverSession answers an agent's RenewRequest on its live session;
// the session itself is untouched.
func (c *Coordinator) renewOverSession(s *session, body []byte) {
	var req api.RenewRequest
	if err := api.DecodeFrame(api.FrameRenewRequest, body, &req); err != nil {
		s.send(api.FrameRenewed, api.Renewed{Error: api.Errorf(api.CodeInvalidArgument, "upgrade the agent", "%v", err)})
		return
	}
	r, err := c.reissue(context.Background(), s.peer.Cert, req.CSR, "renew", s.peer.ID.String())
	if err != nil {
		s.send(api.FrameRenewed, api.Renewed{Error: api.AsError(c.storeError(err))})
		return
	}
	c.renewedOver(s.conn, s.peer.Cert, r, authz.Principal{ID: s.peer.ID, Via: authz.ViaCert, Source: s.conn.RemoteAddr().String(), CertSerial: pki.SerialHex(s.peer.Cert)})
	s.send(api.FrameRenewed, api.Renewed{ChainPEM: r.chain, BundlePEM: c.clientBundle().PEM()})
}

// connKey finds a request's connection in its context (see ConnContext).
type connKey struct{}

// withConn is the cluster server's ConnContext: renewals need the
// connection they arrived on.
func withConn(ctx context.Context, conn net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, conn)
}

// apiRenew renews the caller's own certificate (users: the CLI does this at
// two thirds of the certificate's life).
func (c *Coordinator) apiRenew(w http.ResponseWriter, r *http.Request) {
	peer, err := transport.PeerFromState(r.TLS, c.cfg.Cluster)
	if err != nil {
		writeError(w, c, api.Errorf(api.CodeUnauthenticated, "present a Ward certificate", "%v", err))
		return
	}
	var req api.RenewRequest
	if err := c.readJSON(w, r, &req); err != nil {
		writeError(w, c, err)
		return
	}
	res, err := c.reissue(r.Context(), peer.Cert, req.CSR, "renew", peer.ID.String())
	if err != nil {
		writeError(w, c, err)
		return
	}
	conn, _ := r.Context().Value(connKey{}).(net.Conn)
	c.renewedOver(conn, peer.Cert, res, authz.Principal{ID: peer.ID, Via: authz.ViaCert, Source: r.RemoteAddr, CertSerial: pki.SerialHex(peer.Cert)})
	writeJSON(w, http.StatusOK, api.Renewed{ChainPEM: res.chain, BundlePEM: c.clientBundle().PEM()})
}

// apiHeal renews an agent certificate that expired while the agent was
// offline, within the grace window, unless it was revoked. The agent
// proves possession of its key at the handshake (the expired certificate
// is its client certificate) and again by signing the CSR. It also lets an
// agent whose certificate chains to a CA retired during its absence
// catch up.
func (c *Coordinator) apiHeal(w http.ResponseWriter, r *http.Request) {
	src, _, _ := net.SplitHostPort(r.RemoteAddr)
	resp, who, err := c.heal(w, r, src)
	err = c.storeError(err)
	if err != nil {
		e := api.AsError(err)
		c.log.Info("heal refused", "peer_addr", r.RemoteAddr, "identity", who, "code", string(e.Code), "reason", e.Message)
		c.audit.Record(audit.Event{Type: "cert.heal", Actor: src, Target: who, Result: string(e.Code), Detail: map[string]string{"message": e.Message}})
		writeError(w, c, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (c *Coordinator) heal(w http.ResponseWriter, r *http.Request, src string) (*api.HealResponse, string, error) {
	if err := c.admitAttempt(src, nil); err != nil {
		return nil, "", err
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, "", api.Errorf(api.CodeUnauthenticated, "present the expired agent certificate as the client certificate, as `ward agent` does", "no client certificate was presented")
	}
	leaf := r.TLS.PeerCertificates[0]
	id, err := pki.IDFromCert(leaf)
	who := ""
	if err == nil {
		who = id.String()
	}
	if err != nil || id.Role != pki.RoleAgent || id.Cluster != c.cfg.Cluster {
		return nil, who, api.Errorf(api.CodePermissionDenied, "only agents of this cluster heal", "the certificate is not an agent certificate of cluster %s", c.cfg.Cluster)
	}
	if c.revoked.Contains(leaf.SerialNumber) {
		return nil, who, api.Errorf(api.CodeCertRevoked, "join again with a new token, if an admin allows this node back", "certificate %s of %s is revoked", pki.SerialHex(leaf), id)
	}
	// The chain must be one this cluster issued: check signatures at a time
	// inside the certificate's validity, against current and retired roots.
	roots := x509.NewCertPool()
	for _, root := range c.allRoots() {
		roots.AddCert(root)
	}
	inter := x509.NewCertPool()
	for _, ca := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(ca)
	}
	for _, ca := range c.knownIssuingCAs() {
		inter.AddCert(ca)
	}
	at := leaf.NotAfter.Add(-time.Second)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, who, api.Errorf(api.CodeUnauthenticated, "join again with a new token", "the certificate was not issued by this cluster: %v", err)
	}
	now := c.now()
	expired := !now.Before(leaf.NotAfter)
	if expired {
		if over := now.Sub(leaf.NotAfter); over > c.cfg.HealGrace.D() {
			return nil, who, api.Errorf(api.CodeGraceWindowExpired, "this node needs a new token: ask an admin for `ward token create`, then start the agent with a fresh data directory and --join-file",
				"the certificate expired %s ago, beyond the %s grace window", over.Round(time.Second), c.cfg.HealGrace.D())
		}
	} else if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.ca.src.Trust(), Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		return nil, who, api.Errorf(api.CodeFailedPrecondition, "connect to the cluster port; renewal happens over the session", "the certificate is valid and trusted; nothing to heal")
	}
	c.mu.Lock()
	rec := c.nodes[id.Name]
	current := rec != nil && rec.CertSerial == pki.SerialHex(leaf)
	revokedNode := rec != nil && rec.Revoked
	c.mu.Unlock()
	switch {
	case rec == nil || revokedNode:
		return nil, who, api.Errorf(api.CodeCertRevoked, "join again with a new token", "node %s is not registered or was revoked", id.Name)
	case !current:
		return nil, who, api.Errorf(api.CodePermissionDenied, "use the node's latest certificate", "certificate %s is not node %s's current certificate", pki.SerialHex(leaf), id.Name)
	}
	var req api.HealRequest
	if err := c.readJSON(w, r, &req); err != nil {
		return nil, who, err
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || !pki.PublicKeyMatches(leaf, csr.PublicKey) {
		return nil, who, api.Errorf(api.CodeCSRInvalid, "sign the request with the node's existing key", "the request must carry the same key as the certificate being healed")
	}
	res, err := c.reissue(r.Context(), leaf, req.CSR, "heal", src)
	if err != nil {
		return nil, who, err
	}
	return &api.HealResponse{ChainPEM: res.chain, BundlePEM: c.clientBundle().PEM()}, who, nil
}

// allRoots lists the trusted roots and the retired ones.
func (c *Coordinator) allRoots() []*x509.Certificate {
	c.ca.mu.RLock()
	defer c.ca.mu.RUnlock()
	return append(append([]*x509.Certificate{}, c.ca.src.Bundle()...), c.ca.retiredRoots...)
}

// knownIssuingCAs lists every issuing CA this cluster has used.
func (c *Coordinator) knownIssuingCAs() []*x509.Certificate {
	out := []*x509.Certificate{}
	for _, ca := range c.issuingCAs() {
		out = append(out, ca.Cert)
	}
	c.ca.mu.RLock()
	defer c.ca.mu.RUnlock()
	return append(out, c.ca.retiredIssuers...)
}
