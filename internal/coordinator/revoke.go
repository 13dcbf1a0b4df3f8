package coordinator

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// CRL reason codes (RFC 5280) by the names `--reason` accepts.
var crlReasons = map[string]int{
	"unspecified": 0, "key-compromise": 1, "ca-compromise": 2, "affiliation-changed": 3,
	"superseded": 4, "cessation-of-operation": 5, "privilege-withdrawn": 9,
}

func reasonNames() string {
	names := make([]string, 0, len(crlReasons))
	for n := range crlReasons {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func parseReason(s string) (string, error) {
	if s == "" {
		return "unspecified", nil
	}
	if _, ok := crlReasons[s]; !ok {
		return "", api.Errorf(api.CodeInvalidArgument, "use one of: "+reasonNames(), "revocation reason %q is not known", s)
	}
	return s, nil
}

// loadRevoked fills the in-memory revocation set from the store, so the
// accept path never reads the store.
func (c *Coordinator) loadRevoked(ctx context.Context) error {
	var serials []string
	err := c.st.Scan(ctx, prefixCerts, func(r store.Record) error {
		var cr certRecord
		if err := json.Unmarshal(r.Value, &cr); err != nil {
			return fmt.Errorf("%s: %w", r.Key, err)
		}
		if cr.Revoked {
			serials = append(serials, cr.Serial)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.revoked.Add(c.now(), serials...)
	return nil
}

// revocation is what to revoke, and why.
type revocation struct {
	serials []string
	// node is taken out of the cluster too; when empty, the node whose
	// current certificate is among those revoked is.
	node   string
	reason string
	who    authz.Principal
	// cascade revokes every certificate renewed from serials as well. A
	// certificate superseded by a renewal does not cascade: its successor
	// is its child.
	cascade bool
}

// revoke marks certificates revoked in the store and in memory, closes
// every live connection that stands for them, and takes their node out of
// the cluster, requeueing its tasks. An already revoked certificate is
// skipped, unless the reason becomes key-compromise (RFC 5280 allows
// that), but its descendants are still revoked: `ward cert revoke OLD
// --reason key-compromise` on a superseded certificate reaches whatever
// was renewed from it. It holds c.lineage, so no renewal of a certificate
// being revoked can slip past it.
func (c *Coordinator) revoke(ctx context.Context, rv revocation) (api.RevokeResult, error) {
	c.lineage.Lock()
	defer c.lineage.Unlock()
	now := c.now()
	res := api.RevokeResult{Serials: []string{}}
	kids := []string{}
	if rv.cascade {
		var err error
		if kids, err = c.descendants(ctx, rv.serials); err != nil {
			return res, fmt.Errorf("find the certificates renewed from %s: %w", strings.Join(rv.serials, ","), err)
		}
	}
	node := rv.node
	var ops []store.Op
	var conds []store.Cond
	var changed, newly []string
	all := append(append([]string{}, rv.serials...), kids...)
	for i, s := range all {
		descendant := i >= len(rv.serials)
		rec, err := c.st.Get(ctx, certKey(s))
		if descendant && errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("read certificate %s: %w", s, err)
		}
		var cr certRecord
		if err := json.Unmarshal(rec.Value, &cr); err != nil {
			return res, fmt.Errorf("%s: %w", rec.Key, err)
		}
		switch {
		case cr.Revoked && rv.reason == "key-compromise" && cr.Reason != "key-compromise":
			cr.Reason = rv.reason
		case cr.Revoked:
			continue
		case descendant && !now.Before(cr.NotAfter):
			continue // expired: nothing to refuse (its own descendants are in kids)
		default:
			cr.Revoked, cr.RevokedAt, cr.Reason = true, now.UTC(), rv.reason
			newly = append(newly, s)
		}
		changed = append(changed, s)
		if descendant {
			res.Renewed = append(res.Renewed, s)
		} else {
			res.Serials = append(res.Serials, s)
		}
		ops = append(ops, putJSON(rec.Key, cr))
		conds = append(conds, store.Unchanged(rec.Key, rec.ModRev))
		if node == "" && cr.Role == string(pki.RoleAgent) {
			if n, _, err := c.nodeRecordOf(ctx, cr.Name); err != nil {
				return res, err
			} else if n != nil && n.CertSerial == s && !n.Revoked {
				node = cr.Name // the node's current certificate: the node is out
			}
		}
	}
	res.Node = node
	if len(ops) == 0 {
		return res, nil
	}
	if node != "" {
		// The node's record: this coordinator's, or the store's when the
		// node joined through another coordinator sharing the store.
		rec, rev, err := c.nodeRecordOf(ctx, node)
		if err != nil {
			return res, err
		}
		if rec != nil {
			c.mu.Lock()
			rec.Revoked = true
			ops = append(ops, putJSON(nodeKey(node), rec))
			c.mu.Unlock()
			if rev != 0 {
				conds = append(conds, store.Unchanged(nodeKey(node), rev))
			}
		}
	}
	if _, err := c.st.Txn(ctx, conds, ops); err != nil {
		if store.IsConflict(err) {
			return res, api.Errorf(api.CodeUnavailable, "run the command again", "a certificate changed while it was being revoked")
		}
		return res, err
	}
	// From here the revocation is durable: apply it everywhere at once.
	c.revoked.Add(now, newly...)
	for _, s := range changed {
		res.Closed += c.live.closeSerial(s)
	}
	if node != "" {
		res.Requeued = c.takeNodeOut(node, "node revoked by "+rv.who.String(), now)
	}
	c.metrics.Revocations.Add(float64(len(newly)))
	for _, s := range changed {
		detail := map[string]string{"reason": rv.reason, "node": node}
		if slices.Contains(res.Renewed, s) {
			detail["renewed_from"] = strings.Join(rv.serials, ",")
		}
		c.Record(rv.who, audit.Event{Type: "cert.revoke", Target: s, Detail: detail})
	}
	if err := c.rebuildCRLs(ctx); err != nil {
		c.log.Error("rebuild CRL after revocation", "err", err)
	}
	if c.revokedSelf(changed) {
		c.log.Warn("this coordinator's own certificate was revoked; issuing a new one")
		if err := c.renewOwnCertificate(now); err != nil {
			c.log.Error("reissue the coordinator certificate", "err", err)
		}
	}
	c.log.Info("revoked", "serials", strings.Join(res.Serials, ","), "renewed_from_them", strings.Join(res.Renewed, ","), "node", node,
		"reason", rv.reason, "sessions_closed", res.Closed, "tasks_requeued", res.Requeued)
	return res, nil
}

// takeNodeOut ends a revoked node's session here and requeues its tasks;
// it returns how many were requeued.
func (c *Coordinator) takeNodeOut(node, why string, now time.Time) int {
	c.mu.Lock()
	if n, ok := c.cl.Node(node); ok {
		n.Revoked, n.Connected = true, false
	}
	if s := c.sessions[node]; s != nil {
		s.closeFor("its node was revoked")
		delete(c.sessions, node)
	}
	if t := c.lostTimers[node]; t != nil {
		t.Stop()
		delete(c.lostTimers, node)
	}
	requeued := len(c.cl.NodeLost(node, why, now))
	ch := c.changesLocked()
	c.mu.Unlock()
	c.commit(ch, nil)
	c.poke()
	return requeued
}

// nodeRecordOf is the node's record: this coordinator's own (rev 0), or
// the store's with its revision when this coordinator has not seen the
// node (it joined through another coordinator on the same store); nil when
// there is no such node.
func (c *Coordinator) nodeRecordOf(ctx context.Context, name string) (*nodeRecord, int64, error) {
	c.mu.Lock()
	n := c.nodes[name]
	c.mu.Unlock()
	if n != nil {
		return n, 0, nil
	}
	rec, err := c.st.Get(ctx, nodeKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read node %s: %w", name, err)
	}
	var nr nodeRecord
	if err := json.Unmarshal(rec.Value, &nr); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", rec.Key, err)
	}
	return &nr, rec.ModRev, nil
}

func (c *Coordinator) revokedSelf(serials []string) bool {
	own := pki.SerialHex(c.ca.src.Leaf())
	for _, s := range serials {
		if s == own {
			return true
		}
	}
	return false
}

// certsOf lists the unexpired, unrevoked certificates issued to identity.
func (c *Coordinator) certsOf(ctx context.Context, identity string, now time.Time) ([]string, error) {
	var out []string
	err := c.st.Scan(ctx, prefixCerts, func(r store.Record) error {
		var cr certRecord
		if err := json.Unmarshal(r.Value, &cr); err != nil {
			return err
		}
		if cr.Identity == identity && !cr.Revoked && now.Before(cr.NotAfter) {
			out = append(out, cr.Serial)
		}
		return nil
	})
	return out, err
}

func (c *Coordinator) apiNodeRevoke(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.RevokeRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.RevokeResult](w)(c.RevokeNode(r.Context(), p, r.PathValue("name"), req.Reason))
}

// RevokeNode revokes every current certificate of a node: its sessions
// close at once, its tasks are requeued, and it can never connect again.
func (c *Coordinator) RevokeNode(ctx context.Context, p authz.Principal, name, reason string) (api.RevokeResult, error) {
	if err := c.allow(p, authz.NodeRevoke); err != nil {
		return api.RevokeResult{}, err
	}
	reason, err := parseReason(reason)
	if err != nil {
		return api.RevokeResult{}, err
	}
	rec, _, err := c.nodeRecordOf(ctx, name)
	if err != nil {
		return api.RevokeResult{}, err
	}
	if rec == nil {
		return api.RevokeResult{}, api.Errorf(api.CodeNotFound, "list nodes with `ward node ls`", "no node named %q", name)
	}
	if rec.Revoked {
		return api.RevokeResult{}, api.Errorf(api.CodeFailedPrecondition, "nothing to do", "node %s is already revoked", name)
	}
	id := pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleAgent, Name: name}
	serials, err := c.certsOf(ctx, id.String(), c.now())
	if err != nil {
		return api.RevokeResult{}, err
	}
	return c.revoke(ctx, revocation{serials: serials, node: name, reason: reason, who: p, cascade: true})
}

func (c *Coordinator) apiCertRevoke(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.RevokeRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.RevokeResult](w)(c.RevokeCert(r.Context(), p, r.PathValue("serial"), req.Reason))
}

// RevokeCert revokes one certificate by serial (as `ward cert ls` shows it
// or as openssl prints it), and every certificate renewed from it. When one
// of them is a node's current certificate, the node is revoked with it.
func (c *Coordinator) RevokeCert(ctx context.Context, p authz.Principal, serial, reason string) (api.RevokeResult, error) {
	if err := c.allow(p, authz.CertRevoke); err != nil {
		return api.RevokeResult{}, err
	}
	reason, err := parseReason(reason)
	if err != nil {
		return api.RevokeResult{}, err
	}
	n, err := pki.ParseSerial(serial)
	if err != nil {
		return api.RevokeResult{}, api.Errorf(api.CodeInvalidArgument, "give the serial as `ward cert ls` or `openssl x509 -serial` prints it", "%v", err)
	}
	serial = pki.SerialString(n)
	if _, err := c.st.Get(ctx, certKey(serial)); errors.Is(err, store.ErrNotFound) {
		return api.RevokeResult{}, api.Errorf(api.CodeNotFound, "list certificates with `ward cert ls`", "no certificate with serial %s was issued by this cluster", serial)
	} else if err != nil {
		return api.RevokeResult{}, err
	}
	res, err := c.revoke(ctx, revocation{serials: []string{serial}, reason: reason, who: p, cascade: true})
	if err != nil {
		return res, err
	}
	if len(res.Serials)+len(res.Renewed) == 0 {
		return res, api.Errorf(api.CodeFailedPrecondition, "nothing to do", "certificate %s is already revoked, and so is every certificate renewed from it", serial)
	}
	return res, nil
}

func (c *Coordinator) apiCertList(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	out, _, err := c.Certs(r.Context(), p, api.CertFilter{})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// Certs lists the certificates the cluster CA issued that f selects, in
// order of issue (or newest first), and how many match in all.
func (c *Coordinator) Certs(ctx context.Context, p authz.Principal, f api.CertFilter) ([]api.Cert, int, error) {
	if err := c.allow(p, authz.CertRead); err != nil {
		return nil, 0, err
	}
	now := c.now()
	all := []api.Cert{}
	err := c.st.Scan(ctx, prefixCerts, func(rec store.Record) error {
		var cr certRecord
		if err := json.Unmarshal(rec.Value, &cr); err != nil {
			return err
		}
		if f.Role != "" && cr.Role != f.Role {
			return nil
		}
		switch f.State {
		case api.CertActive:
			if cr.Revoked || !now.Before(cr.NotAfter) {
				return nil
			}
		case api.CertRevoked:
			if !cr.Revoked {
				return nil
			}
		case api.CertExpired:
			if cr.Revoked || now.Before(cr.NotAfter) {
				return nil
			}
		}
		all = append(all, api.Cert{Serial: cr.Serial, Identity: cr.Identity, Role: cr.Role, Name: cr.Name, Issuer: cr.Issuer,
			NotBefore: cr.NotBefore, NotAfter: cr.NotAfter, Revoked: cr.Revoked, RevokedAt: cr.RevokedAt, Reason: cr.Reason, Parent: cr.Parent})
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].NotBefore.Before(all[b].NotBefore) })
	if f.Newest {
		slices.Reverse(all)
	}
	return page(all, f.Offset, f.Limit), len(all), nil
}

// page is the part of a listing from offset, at most limit long (limit 0:
// all of the rest).
func page[T any](all []T, offset, limit int) []T {
	if offset >= len(all) {
		return all[:0]
	}
	all = all[max(offset, 0):]
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all
}

// crlState is the current CRL of one issuing CA.
type crlState struct {
	der        []byte
	number     int64
	thisUpdate time.Time
	nextUpdate time.Time
	entries    int
}

// rebuildCRLs signs a fresh CRL for every issuing CA that is still
// trusted, with the next CRL number, and swaps them in.
func (c *Coordinator) rebuildCRLs(ctx context.Context) error {
	c.crlMu.Lock()
	defer c.crlMu.Unlock()
	byIssuer := map[string][]x509.RevocationListEntry{}
	err := c.st.Scan(ctx, prefixCerts, func(r store.Record) error {
		var cr certRecord
		if err := json.Unmarshal(r.Value, &cr); err != nil {
			return err
		}
		if !cr.Revoked {
			return nil
		}
		serial, ok := parseSerial(cr.Serial)
		if !ok {
			return nil
		}
		byIssuer[cr.IssuerSerial] = append(byIssuer[cr.IssuerSerial], x509.RevocationListEntry{
			SerialNumber: serial, RevocationTime: cr.RevokedAt, ReasonCode: crlReasons[cr.Reason],
		})
		return nil
	})
	if err != nil {
		return err
	}
	now := c.now()
	issuers := c.issuingCAs()
	first, err := c.takeCRLNumbers(ctx, int64(len(issuers)))
	if err != nil {
		return err
	}
	next := map[string]*crlState{}
	for i, iss := range issuers {
		num := first + int64(i)
		key := pki.SerialHex(iss.Cert)
		der, err := pki.CreateCRL(iss, byIssuer[key], num, now, c.cfg.CRLValidity.D())
		if err != nil {
			return err
		}
		next[key] = &crlState{der: der, number: num, thisUpdate: now, nextUpdate: now.Add(c.cfg.CRLValidity.D()), entries: len(byIssuer[key])}
	}
	c.crls.Store(&next)
	c.pushCRLs()
	return nil
}

// takeCRLNumbers reserves n consecutive CRL numbers by compare-and-set on
// the counter in the store and returns the first, so coordinators sharing
// a store never sign two different CRLs with one number.
func (c *Coordinator) takeCRLNumbers(ctx context.Context, n int64) (int64, error) {
	for {
		num, cond := int64(0), store.Absent(keyCRLNumber)
		rec, err := c.st.Get(ctx, keyCRLNumber)
		switch {
		case err == nil:
			if num, err = strconv.ParseInt(string(rec.Value), 10, 64); err != nil {
				return 0, fmt.Errorf("%s: %w", keyCRLNumber, err)
			}
			cond = store.Unchanged(keyCRLNumber, rec.ModRev)
		case !errors.Is(err, store.ErrNotFound):
			return 0, err
		}
		_, err = c.st.Txn(ctx, []store.Cond{cond}, []store.Op{store.Put(keyCRLNumber, []byte(strconv.FormatInt(num+n, 10)))})
		if err == nil {
			return num + 1, nil
		}
		if !store.IsConflict(err) {
			return 0, err
		}
	}
}

// kickCRL asks crlLoop to sign fresh CRLs soon (a revocation made on
// another coordinator arrived).
func (c *Coordinator) kickCRL() {
	select {
	case c.crlKick <- struct{}{}:
	default:
	}
}

// crlLoop refreshes the CRLs at half their validity, well before their
// next-update time, and when kicked.
func (c *Coordinator) crlLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		kicked := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.crlKick:
			kicked = true
		}
		if cur := c.currentCRL(); kicked || cur == nil || c.now().After(cur.thisUpdate.Add(c.cfg.CRLValidity.D()/2)) {
			if err := c.rebuildCRLs(ctx); err != nil {
				c.log.Error("refresh CRL", "err", err)
			}
		}
	}
}

// currentCRL is the CRL of the issuing CA that issues now.
func (c *Coordinator) currentCRL() *crlState {
	m := c.crls.Load()
	if m == nil {
		return nil
	}
	return (*m)[pki.SerialHex(c.issuer().CA.Cert)]
}

// serveCRL answers GET /v1/crl (the issuing CA's CRL, DER) and
// GET /v1/crl/{issuer} (the CRL of a given issuing CA serial).
func (c *Coordinator) serveCRL(w http.ResponseWriter, r *http.Request) {
	m := c.crls.Load()
	var st *crlState
	if issuer := r.PathValue("issuer"); issuer != "" && m != nil {
		st = (*m)[issuer]
	} else {
		st = c.currentCRL()
	}
	if st == nil {
		writeError(w, c, api.Errorf(api.CodeNotFound, "fetch /v1/crl for the current issuing CA", "no CRL for that issuing CA"))
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Last-Modified", st.thisUpdate.UTC().Format(http.TimeFormat))
	w.Header().Set("Expires", st.nextUpdate.UTC().Format(http.TimeFormat))
	w.Write(st.der)
}

// serveCRLs answers GET /v1/crls: every trusted issuing CA's CRL as PEM,
// for agents without a session to fetch.
func (c *Coordinator) serveCRLs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(c.crlsPEM())
}

// crlsPEM is every trusted issuing CA's current CRL, PEM, in a stable order.
func (c *Coordinator) crlsPEM() []byte {
	m := c.crls.Load()
	if m == nil {
		return nil
	}
	keys := make([]string, 0, len(*m))
	for k := range *m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []byte
	for _, k := range keys {
		out = append(out, pki.EncodeCRLPEM((*m)[k].der)...)
	}
	return out
}

// pushCRLs sends the current CRLs to every connected agent, so they check
// the coordinator against fresh revocation data without fetching it.
func (c *Coordinator) pushCRLs() {
	pemCRLs := c.crlsPEM()
	c.mu.Lock()
	sessions := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()
	b, err := api.AppendFrame(nil, api.FrameCRLs, api.CRLs{PEM: pemCRLs})
	if err != nil {
		return
	}
	for _, s := range sessions {
		s.sendRaw(b)
	}
}

func parseSerial(hexSerial string) (*big.Int, bool) {
	return new(big.Int).SetString(hexSerial, 16)
}
