package coordinator

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// Token limits: a token is a bearer secret, so its reach is bounded.
const (
	maxTokenTTL  = 30 * 24 * time.Hour
	maxTokenUses = 10000
)

func (c *Coordinator) apiTokenCreate(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return created(c, w, r, func(req api.TokenCreate) (api.TokenCreated, error) { return c.CreateToken(r.Context(), p, req) })
}

// CreateToken creates a join token, as `ward token create` does, on behalf
// of p. The answer holds the join string, the only copy of the secret.
func (c *Coordinator) CreateToken(ctx context.Context, p authz.Principal, req api.TokenCreate) (api.TokenCreated, error) {
	if err := c.allow(p, authz.TokenCreate); err != nil {
		return api.TokenCreated{}, err
	}
	if req.TTL == 0 {
		req.TTL = api.Duration(time.Hour)
	}
	if req.Uses == 0 {
		req.Uses = 1
	}
	switch {
	case req.TTL.D() < time.Second || req.TTL.D() > maxTokenTTL:
		return api.TokenCreated{}, api.Errorf(api.CodeInvalidArgument, "use a --ttl between 1s and 720h", "token TTL %s is outside 1s..720h", req.TTL.D())
	case req.Uses < 1 || req.Uses > maxTokenUses:
		return api.TokenCreated{}, api.Errorf(api.CodeInvalidArgument, fmt.Sprintf("use --uses between 1 and %d", maxTokenUses), "token uses %d is outside 1..%d", req.Uses, maxTokenUses)
	}
	for k, v := range req.Labels {
		if err := config.ValidLabel(k, v); err != nil {
			return api.TokenCreated{}, api.Errorf(api.CodeInvalidArgument, "use --label key=value with letters, digits, '-', '_', '.' and '/'", "%v", err)
		}
	}
	for _, ip := range req.AllowIPs {
		if net.ParseIP(ip) == nil {
			return api.TokenCreated{}, api.Errorf(api.CodeInvalidArgument, "give IP addresses such as 10.0.0.5", "--allow-ip %q is not an IP address", ip)
		}
	}
	id, secret, err := enroll.NewToken()
	if err != nil {
		return api.TokenCreated{}, err
	}
	now := c.now()
	rec := tokenRecord{
		ID: id, SecretHash: enroll.HashSecret(secret), Created: now.UTC(), Expires: now.Add(req.TTL.D()).UTC(),
		Uses: req.Uses, Labels: req.Labels, AllowDNS: req.AllowDNS, AllowIPs: req.AllowIPs, CreatedBy: p.String(),
	}
	c.tokMu.Lock()
	c.tokens[id] = &rec
	c.tokMu.Unlock()
	if err := c.journal.Wait([]store.Op{putJSON(tokenKey(id), rec)}); err != nil {
		return api.TokenCreated{}, fmt.Errorf("store token: %w", err)
	}
	c.Record(p, audit.Event{Type: "token.create", Target: id, Detail: map[string]string{
		"ttl": req.TTL.D().String(), "uses": fmt.Sprint(req.Uses), "labels": fmt.Sprint(req.Labels)}})
	js := c.joinString(id, secret, "")
	return api.TokenCreated{Token: rec.api(now), Join: js.String()}, nil
}

// AdminID is the identity local operators act as (ward dev, for example).
func (c *Coordinator) AdminID() pki.ID {
	return pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleUser, Name: "admin"}
}

// LocalAdmin is the principal of an operator inside this process, such as
// `ward dev` creating its agents' tokens.
func (c *Coordinator) LocalAdmin() authz.Principal {
	return authz.Principal{ID: c.AdminID(), Role: authz.RoleAdmin, Via: authz.ViaLocal}
}

func (c *Coordinator) apiTokenList(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[[]api.Token](w)(c.Tokens(r.Context(), p))
}

// Tokens lists every join token, oldest first, without secrets.
func (c *Coordinator) Tokens(ctx context.Context, p authz.Principal) ([]api.Token, error) {
	if err := c.allow(p, authz.TokenRead); err != nil {
		return nil, err
	}
	now := c.now()
	c.tokMu.Lock()
	out := make([]api.Token, 0, len(c.tokens))
	for _, t := range c.tokens {
		out = append(out, t.api(now))
	}
	c.tokMu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Created.Before(out[b].Created) })
	return out, nil
}

func (c *Coordinator) apiTokenRevoke(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[api.Token](w)(c.RevokeToken(r.Context(), p, r.PathValue("id")))
}

// RevokeToken makes a join token unusable.
func (c *Coordinator) RevokeToken(ctx context.Context, p authz.Principal, id string) (api.Token, error) {
	if err := c.allow(p, authz.TokenRevoke); err != nil {
		return api.Token{}, err
	}
	if !enroll.ValidTokenID(id) {
		return api.Token{}, api.Errorf(api.CodeInvalidArgument, "pass the 16-hex-digit ID that `ward token ls` shows", "%q is not a token ID", id)
	}
	c.tokMu.Lock()
	t := c.tokens[id]
	if t == nil {
		c.tokMu.Unlock()
		return api.Token{}, api.Errorf(api.CodeNotFound, "list tokens with `ward token ls`", "no token with ID %s", id)
	}
	t.Revoked = true
	rec, out := *t, t.api(c.now())
	c.tokMu.Unlock()
	if err := c.journal.Wait([]store.Op{putJSON(tokenKey(id), rec)}); err != nil {
		return api.Token{}, err
	}
	c.Record(p, audit.Event{Type: "token.revoke", Target: id})
	return out, nil
}

// loadTokens reads every token into memory, the authority for joins.
func (c *Coordinator) loadTokens(ctx context.Context) error {
	return c.st.Scan(ctx, prefixTokens, func(r store.Record) error {
		var t tokenRecord
		if err := json.Unmarshal(r.Value, &t); err != nil {
			return fmt.Errorf("%s: %w", r.Key, err)
		}
		c.tokens[t.ID] = &t
		return nil
	})
}

// checkToken applies the token rules in an order that leaks nothing to a
// caller without the secret: the secret first, then revoked, expired, used.
func checkToken(t *tokenRecord, secret string, now time.Time) error {
	if !enroll.SecretMatches(secret, t.SecretHash) {
		return tokenInvalid()
	}
	switch {
	case t.Revoked:
		return api.Errorf(api.CodeTokenRevoked, "ask an admin for a new token (`ward token create`)", "the join token %s was revoked", t.ID)
	case !now.Before(t.Expires):
		return api.Errorf(api.CodeTokenExpired, "ask an admin for a new token (`ward token create --ttl ...`)", "the join token %s expired at %s", t.ID, t.Expires.UTC().Format(time.RFC3339))
	case t.Used >= t.Uses:
		return api.Errorf(api.CodeTokenUsed, "ask an admin for a new token; tokens are single-use unless created with --uses N", "the join token %s has already been used %d of %d times", t.ID, t.Used, t.Uses)
	}
	return nil
}

func tokenInvalid() error {
	return api.Errorf(api.CodeTokenInvalid, "copy the join string again from `ward token create`; the secret does not match any token", "the join token is not valid")
}

// apiJoin enrolls an agent: rate limit, token, CSR policy, name check, then
// the token is consumed and the node registered in one atomic transaction.
func (c *Coordinator) apiJoin(w http.ResponseWriter, r *http.Request) {
	src, _, _ := net.SplitHostPort(r.RemoteAddr)
	var req api.JoinRequest
	resp, err := c.join(w, r, src, &req)
	err = c.storeError(err)
	ev := audit.Event{Type: "join", Actor: src, Target: req.Name, Detail: map[string]string{}}
	// The token's ID (never its secret) tells an admin which token a
	// failed attempt tried.
	tokenID := ""
	if enroll.ValidTokenID(req.TokenID) {
		tokenID = req.TokenID
		ev.Detail["token_id"] = tokenID
	}
	if err != nil {
		e := api.AsError(err)
		ev.Result = string(e.Code)
		ev.Detail["message"] = e.Message
		c.log.Info("join refused", "peer_addr", r.RemoteAddr, "node", req.Name, "token_id", tokenID, "code", string(e.Code), "reason", e.Message)
		c.audit.Record(ev)
		writeError(w, c, err)
		return
	}
	// One event records both the join and the issuance (its serial).
	ev.Detail["serial"], ev.Detail["identity"], ev.Detail["issued"] = resp.serial, resp.id, "agent certificate"
	c.audit.Record(ev)
	c.log.Info("agent joined", "node", req.Name, "peer_addr", r.RemoteAddr, "token_id", tokenID, "cert_serial", resp.serial)
	writeJSON(w, http.StatusOK, resp.JoinResponse)
}

type joinResult struct {
	api.JoinResponse
	serial, id string
}

// join runs one join attempt; req is filled as far as the body was read,
// for the audit event.
func (c *Coordinator) join(w http.ResponseWriter, r *http.Request, src string, req *api.JoinRequest) (*joinResult, error) {
	// The body first (it is small and bounded): an attempt from an address
	// over its rate still passes with a valid token.
	if err := c.readJSON(w, r, req); err != nil {
		return nil, err
	}
	if err := c.health.Err(); err != nil {
		return nil, err // a join writes; the agent retries STORE_UNAVAILABLE
	}
	if err := c.admitAttempt(src, func(now time.Time) bool { return c.tokenValid(req.TokenID, req.Secret, now) }); err != nil {
		return nil, err
	}
	return c.joinChecked(req)
}

// admitAttempt applies the join rate limits to a join or heal from src:
// per source address, then for all sources together. An attempt from an
// address over its rate still passes when validToken (optional) says its
// token is valid, so a flood from a shared address (a NAT) does not lock
// out the real agents behind it; every admitted attempt counts toward the
// global limit.
func (c *Coordinator) admitAttempt(src string, validToken func(time.Time) bool) error {
	now := c.now()
	if ok, wait := c.joinPerSource.Allow(src, now); !ok && (validToken == nil || !validToken(now)) {
		return rateLimited(wait, fmt.Sprintf("too many join and heal attempts from %s: over join_rate=%g/s, join_burst=%d per source address", src, c.cfg.JoinRate, c.cfg.JoinBurst),
			"retry after the time given (`ward agent` does so on its own); if these are real agents behind one address, an admin can raise join_rate and join_burst")
	}
	if ok, wait := c.joinGlobal.Allow("", now); !ok {
		return rateLimited(wait, fmt.Sprintf("too many join and heal attempts from all addresses together: over join_global_rate=%g/s, join_global_burst=%d", c.cfg.JoinGlobalRate, c.cfg.JoinGlobalBurst),
			"retry after the time given (`ward agent` does so on its own); an admin can raise join_global_rate and join_global_burst when many agents join at once")
	}
	return nil
}

// rateLimited is a RATE_LIMITED error that says when to retry.
func rateLimited(wait time.Duration, msg, fix string) error {
	e := api.Errorf(api.CodeRateLimited, fix, "%s", msg)
	e.RetryAfter = api.Duration(max(wait, 100*time.Millisecond).Round(time.Millisecond))
	return e
}

// tokenValid reports whether secret opens the live token tokenID.
func (c *Coordinator) tokenValid(tokenID, secret string, now time.Time) bool {
	if !enroll.ValidTokenID(tokenID) {
		return false
	}
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	t := c.tokens[tokenID]
	return t != nil && checkToken(t, secret, now) == nil
}

// joinChecked enrolls an agent whose attempt passed the rate limits.
func (c *Coordinator) joinChecked(req *api.JoinRequest) (*joinResult, error) {
	if !enroll.ValidTokenID(req.TokenID) {
		return nil, tokenInvalid()
	}
	if err := pki.ValidName("node", req.Name); err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "start the agent with a valid --name", "%v", err)
	}
	if req.Slots < 1 || req.Slots > 100000 {
		return nil, api.Errorf(api.CodeInvalidArgument, "use --slots between 1 and 100000", "slots %d is out of range", req.Slots)
	}
	if req.Memory < 0 || req.Memory > api.MaxTaskMemory {
		return nil, api.Errorf(api.CodeInvalidArgument, "start the agent with --memory between 0 and 1PiB", "memory %d bytes is out of range", req.Memory)
	}
	for k, v := range req.Labels {
		if err := config.ValidLabel(k, v); err != nil {
			return nil, api.Errorf(api.CodeInvalidArgument, "fix the agent's --label", "%v", err)
		}
	}
	// Check the token (without consuming it) before any CA work, so bad
	// tokens cost nothing; then check and sign the CSR; then consume the
	// token and register the node atomically in memory, and make both
	// durable through the journal, where concurrent joins share a commit.
	now := c.now()
	c.tokMu.Lock()
	tok := c.tokens[req.TokenID]
	var err error
	if tok == nil {
		err = tokenInvalid()
	} else {
		err = checkToken(tok, req.Secret, now)
	}
	var allowDNS, allowIPs []string
	if err == nil {
		allowDNS, allowIPs = tok.AllowDNS, tok.AllowIPs
	}
	c.tokMu.Unlock()
	if err != nil {
		return nil, err
	}
	id := pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleAgent, Name: req.Name}
	policy := pki.CSRPolicy{ID: id, AllowedDNS: allowDNS}
	for _, ip := range allowIPs {
		policy.AllowedIPs = append(policy.AllowedIPs, net.ParseIP(ip))
	}
	csr, err := pki.CheckCSR(req.CSR, policy)
	if err != nil {
		return nil, err
	}
	iss := c.issuer()
	cert, err := iss.Issue(pki.LeafSpec{ID: id, PublicKey: csr.PublicKey, Lifetime: c.cfg.AgentCertLifetime.D(), DNSNames: csr.DNSNames, IPs: csr.IPAddresses, CRLURLs: c.crlURLs()}, now)
	if err != nil {
		return nil, err
	}
	ops, err := c.consumeToken(req, cert, iss, now)
	if err != nil {
		return nil, err
	}
	if err := c.journal.Wait(ops); err != nil {
		return nil, err
	}
	crec := issuedRecord(cert, iss.CA.Cert)
	return &joinResult{
		JoinResponse: api.JoinResponse{
			Node: req.Name, Cluster: c.cfg.Cluster,
			ChainPEM:     pki.EncodeCertsPEM(cert, iss.CA.Cert),
			BundlePEM:    c.clientBundle().PEM(),
			CRLsPEM:      c.crlsPEM(),
			ClusterAddrs: c.clusterAddrs(),
			PublicAddrs:  c.publicAddrs(),
		},
		serial: crec.Serial, id: id.String(),
	}, nil
}

// consumeToken uses the token once more and registers the node, under the
// locks that make both atomic in memory, and returns the writes that make
// them durable. The token is checked again: another join may have used it
// up meanwhile.
func (c *Coordinator) consumeToken(req *api.JoinRequest, cert *x509.Certificate, iss *pki.Issuer, now time.Time) ([]store.Op, error) {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	tok := c.tokens[req.TokenID]
	if tok == nil {
		return nil, tokenInvalid()
	}
	if err := checkToken(tok, req.Secret, now); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.nodes[req.Name]; old != nil && !old.Revoked {
		return nil, api.Errorf(api.CodeNodeNameInUse, fmt.Sprintf("start the agent with another --name, or revoke the old node first (`ward node revoke %s`)", req.Name),
			"a node named %q is already registered", req.Name)
	}
	tok.Used++
	node := &nodeRecord{
		Name: req.Name, Joined: now.UTC(), TokenID: tok.ID, TokenLabels: tok.Labels, Labels: req.Labels, Slots: req.Slots, Memory: req.Memory,
		CertSerial: pki.SerialHex(cert), CertExpiry: cert.NotAfter, CertIssuer: iss.CA.Cert.Subject.CommonName, Hostname: req.Hostname,
	}
	c.nodes[node.Name] = node
	sn := c.cl.UpsertNode(node.Name, node.Slots, effectiveLabels(node))
	sn.Revoked, sn.Drain, sn.Memory = false, false, node.Memory
	crec := issuedRecord(cert, iss.CA.Cert)
	return []store.Op{putJSON(tokenKey(tok.ID), tok), putJSON(nodeKey(node.Name), node), putJSON(certKey(crec.Serial), crec)}, nil
}

func issuedRecord(cert, issuer *x509.Certificate) certRecord {
	id, _ := pki.IDFromCert(cert)
	return certRecord{
		Serial: pki.SerialHex(cert), Identity: id.String(), Role: string(id.Role), Name: id.Name,
		Issuer: issuer.Subject.CommonName, IssuerSerial: pki.SerialHex(issuer), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		SHA256: pki.Fingerprint(cert),
	}
}

// effectiveLabels merges the agent's labels with its token's, the token's
// winning: an admin's labels cannot be overridden from the node.
func effectiveLabels(n *nodeRecord) map[string]string {
	out := baseLabels(n)
	for k, v := range n.prof.applied.labels {
		out[k] = v
	}
	return out
}
