package coordinator

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// CA rotation phases. Each `ward ca rotate` moves one phase forward; from
// the renew phase it retires the old CA and returns to idle.
const (
	phaseIdle  = 0 // one root, one issuing CA
	phaseTrust = 1 // the new root is in every trust bundle; the old CA still issues
	phaseIssue = 2 // the new issuing CA issues; both roots are trusted
	phaseRenew = 3 // agents were asked to renew (spread out); both roots trusted
)

var phaseNames = []string{"idle", "trust", "issue", "renew"}

const keyRotation = "meta/ca-rotation"

// rotationRecord is the rotation state. Generations name CA files: 1 is
// pki/root-ca.crt and pki/issuing-ca.crt, N>1 lives in pki/gen-N/. Writing
// this record is the commit point of every phase change.
type rotationRecord struct {
	Phase   int       `json:"phase"`
	Current int       `json:"current"`
	Next    int       `json:"next,omitempty"`
	Spread  string    `json:"spread,omitempty"`
	Changed time.Time `json:"changed,omitempty"`
}

func genDir(gen int) string {
	if gen <= 1 {
		return "pki"
	}
	return filepath.Join("pki", "gen-"+strconv.Itoa(gen))
}

func (c *Coordinator) genPath(gen int, name string) string {
	return c.path(genDir(gen), name)
}

// readRotation reads the rotation record, defaulting to generation 1.
func (c *Coordinator) readRotation(ctx context.Context) (rotationRecord, int64, error) {
	rec, err := c.st.Get(ctx, keyRotation)
	if errors.Is(err, store.ErrNotFound) {
		return rotationRecord{Current: 1}, 0, nil
	}
	if err != nil {
		return rotationRecord{}, 0, err
	}
	var r rotationRecord
	if err := json.Unmarshal(rec.Value, &r); err != nil {
		return rotationRecord{}, 0, fmt.Errorf("%s: %w", keyRotation, err)
	}
	if r.Current < 1 {
		r.Current = 1
	}
	return r, rec.ModRev, nil
}

func (c *Coordinator) writeRotation(ctx context.Context, r rotationRecord, rev int64) error {
	r.Changed = c.now().UTC()
	cond := store.Absent(keyRotation)
	if rev != 0 {
		cond = store.Unchanged(keyRotation, rev)
	}
	_, err := c.st.Txn(ctx, []store.Cond{cond}, []store.Op{putJSON(keyRotation, r)})
	return err
}

// applyRotation sets up the CA state for the rotation record at start: the
// current generation (already loaded as root/issuing), the next one during
// a rotation, the cross certificate, and retired generations for heal.
func (c *Coordinator) applyRotation(st *caState, r rotationRecord) error {
	if r.Current > 1 {
		root, iss, err := c.keeper.load(r.Current, true)
		if err != nil {
			return err
		}
		st.root = root
		st.cur.Store(&pki.Issuer{CA: iss, Chain: []*x509.Certificate{iss.Cert, root.Cert}})
	}
	for gen := 1; gen < r.Current; gen++ {
		root, iss, err := c.keeper.load(gen, false)
		if err != nil {
			return err
		}
		st.retiredRoots = append(st.retiredRoots, root.Cert)
		st.retiredIssuers = append(st.retiredIssuers, iss.Cert)
		// Retired CAs never issue again: make sure their keys are gone.
		c.keeper.retire(gen)
	}
	st.cross = c.keeper.cross(max(r.Next, r.Current))
	st.phase.Store(int32(r.Phase))
	if r.Phase >= phaseTrust {
		root, iss, err := c.keeper.load(r.Next, true)
		if err != nil {
			return err
		}
		st.nextRoot, st.nextIssuing = root, iss
	}
	if r.Phase >= phaseIssue {
		old := st.cur.Load()
		st.cur.Store(&pki.Issuer{CA: st.nextIssuing, Chain: []*x509.Certificate{st.nextIssuing.Cert, st.nextRoot.Cert}})
		st.others = []*pki.CA{old.CA}
	}
	return nil
}

// bundleLocked is the trust bundle the rotation state implies. Callers
// hold st.mu (or own st exclusively).
func (st *caState) bundleLocked() pki.Bundle {
	b := pki.Bundle{st.root.Cert}
	if st.nextRoot != nil {
		b = append(b, st.nextRoot.Cert)
	}
	return b
}

// rotMu serializes rotation steps.
var rotMu sync.Mutex

// RotateCA moves the CA rotation one phase forward (or back with
// rollback) and returns the new status.
func (c *Coordinator) RotateCA(ctx context.Context, p authz.Principal, req api.RotateRequest) (api.CAStatus, error) {
	if err := c.allow(p, authz.CARotate); err != nil {
		return api.CAStatus{}, err
	}
	rotMu.Lock()
	defer rotMu.Unlock()
	r, rev, err := c.readRotation(ctx)
	if err != nil {
		return api.CAStatus{}, err
	}
	if !sameRotation(r, c.ca.applied) {
		// Another coordinator on the store moved the rotation and its
		// change has not arrived here yet: catch up first.
		if err := c.adoptRotationLocked(ctx, r); err != nil {
			return api.CAStatus{}, fmt.Errorf("follow the CA rotation moved on another coordinator: %w", err)
		}
	}
	from := r.Phase
	if req.Rollback {
		err = c.rotateBack(ctx, &r)
	} else {
		err = c.rotateForward(ctx, &r, req)
	}
	if err != nil {
		return api.CAStatus{}, err
	}
	if err := c.writeRotation(ctx, r, rev); err != nil {
		return api.CAStatus{}, fmt.Errorf("record the rotation phase: %w", err)
	}
	c.ca.applied = r
	c.afterRotationCommit(ctx, from, r)
	c.Record(p, audit.Event{Type: "ca.rotate", Detail: map[string]string{
		"from": phaseNames[from], "to": phaseNames[r.Phase], "rollback": strconv.FormatBool(req.Rollback), "generation": strconv.Itoa(r.Current)}})
	c.log.Info("CA rotation", "from", phaseNames[from], "to", phaseNames[r.Phase], "rollback", req.Rollback, "generation", r.Current)
	return c.caStatus(ctx)
}

func (c *Coordinator) rotateForward(ctx context.Context, r *rotationRecord, req api.RotateRequest) error {
	now := c.now()
	switch r.Phase {
	case phaseIdle:
		c.ca.mu.RLock()
		oldRoot := c.ca.root
		c.ca.mu.RUnlock()
		if oldRoot.Key == nil {
			return api.Errorf(api.CodeFailedPrecondition, "the root key is kept offline, so rotation cannot run online: have your CA sign a new issuing CA (`ward ca csr`), stop the coordinator and install it with `ward ca import --force --cert`; every agent must then join again",
				"the root CA's key is not on this coordinator, so it cannot create and cross-sign a new root")
		}
		gen := r.Current + 1
		root, err := pki.NewRootCAGeneration(c.cfg.Cluster, gen, now, pki.RootLifetime)
		if err != nil {
			return err
		}
		iss, err := pki.NewIssuingCA(root, c.cfg.Cluster, gen, now, pki.IssuingLifetime)
		if err != nil {
			return err
		}
		cross, err := pki.CrossSign(iss.Cert, oldRoot, now)
		if err != nil {
			return err
		}
		if err := c.keeper.save(gen, root, iss, cross); err != nil {
			return err
		}
		c.ca.mu.Lock()
		c.ca.nextRoot, c.ca.nextIssuing, c.ca.cross = root, iss, cross
		c.ca.mu.Unlock()
		r.Phase, r.Next = phaseTrust, gen
	case phaseTrust:
		c.ca.mu.Lock()
		old := c.issuer()
		c.ca.others = []*pki.CA{old.CA}
		c.ca.cur.Store(&pki.Issuer{CA: c.ca.nextIssuing, Chain: []*x509.Certificate{c.ca.nextIssuing.Cert, c.ca.nextRoot.Cert}})
		c.ca.mu.Unlock()
		r.Phase = phaseIssue
	case phaseIssue:
		spread := req.Spread.D()
		if spread <= 0 {
			spread = 5 * time.Minute
		}
		r.Phase, r.Spread = phaseRenew, spread.String()
	case phaseRenew:
		old, _, err := c.agentsOnOldCA(ctx)
		if err != nil {
			return err
		}
		if len(old) > 0 && !req.Force {
			return api.Errorf(api.CodeFailedPrecondition,
				"wait for them (`ward ca status`), or pass --force: an agent still on the old CA renews through the public port when it returns, within the heal grace window",
				"%d agent(s) still hold certificates from the old CA: %v", len(old), old)
		}
		c.ca.mu.Lock()
		c.ca.retiredRoots = append(c.ca.retiredRoots, c.ca.root.Cert)
		for _, o := range c.ca.others {
			c.ca.retiredIssuers = append(c.ca.retiredIssuers, o.Cert)
		}
		c.ca.root, c.ca.others = c.ca.nextRoot, nil
		c.ca.nextRoot, c.ca.nextIssuing = nil, nil
		c.ca.mu.Unlock()
		r.Phase, r.Current, r.Next, r.Spread = phaseIdle, r.Next, 0, ""
	}
	return nil
}

func (c *Coordinator) rotateBack(ctx context.Context, r *rotationRecord) error {
	switch r.Phase {
	case phaseIdle:
		return api.Errorf(api.CodeFailedPrecondition, "start one with `ward ca rotate`; a finished rotation cannot be undone, rotate again instead",
			"no CA rotation is in progress")
	case phaseTrust:
		c.ca.mu.Lock()
		c.ca.nextRoot, c.ca.nextIssuing, c.ca.cross = nil, nil, nil
		c.ca.mu.Unlock()
		c.keeper.drop(r.Next)
		r.Phase, r.Next = phaseIdle, 0
		// A cross certificate from an earlier finished rotation serves on.
		if cross := c.keeper.cross(r.Current); cross != nil {
			c.ca.mu.Lock()
			c.ca.cross = cross
			c.ca.mu.Unlock()
		}
	case phaseIssue:
		c.ca.mu.Lock()
		old := c.ca.others[0]
		c.ca.cur.Store(&pki.Issuer{CA: old, Chain: []*x509.Certificate{old.Cert, c.ca.root.Cert}})
		c.ca.others = nil
		c.ca.mu.Unlock()
		r.Phase = phaseTrust
	case phaseRenew:
		r.Phase, r.Spread = phaseIssue, ""
	}
	return nil
}

// afterRotationCommit applies a committed phase change to everything that
// runs: trust bundles (ours and the agents'), our own certificate, CRLs,
// and the renewal campaign.
func (c *Coordinator) afterRotationCommit(ctx context.Context, from int, r rotationRecord) {
	c.ca.mu.RLock()
	bundle := c.ca.bundleLocked()
	c.ca.mu.RUnlock()
	c.ca.phase.Store(int32(r.Phase))
	c.ca.src.SetTrust(bundle)
	c.closeRetiredTrust(c.now())
	if r.Phase == phaseIdle && from == phaseRenew {
		// Retired: delete the old keys, which must never issue again.
		for gen := 1; gen < r.Current; gen++ {
			c.keeper.retire(gen)
		}
	}
	// Our own certificate follows the issuing CA; the served chain follows
	// the cross certificate and roots.
	if c.ca.own.Load().Leaf().CheckSignatureFrom(c.issuer().CA.Cert) != nil {
		if err := c.renewOwnCertificate(c.now()); err != nil {
			c.log.Error("reissue the coordinator certificate for the rotation", "err", err)
		}
	} else {
		c.ca.src.SetCredential(c.servedChain(c.ca.own.Load()))
	}
	if err := c.rebuildCRLs(ctx); err != nil {
		c.log.Error("rebuild CRLs for the rotation", "err", err)
	}
	c.pushTrust(bundle)
	if r.Phase == phaseRenew && from == phaseIssue {
		c.renewalCampaign(r)
	}
}

// pushTrust sends the trust bundle to every connected agent.
func (c *Coordinator) pushTrust(bundle pki.Bundle) {
	c.mu.Lock()
	sessions := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()
	pemBundle := append(bundle, c.ca.external...).PEM()
	for _, s := range sessions {
		s.send(api.FrameTrust, api.Trust{BundlePEM: pemBundle})
	}
}

// renewalCampaign asks every connected agent still on the old issuing CA
// to renew, at a random moment within the spread window, so a fleet never
// renews in one burst.
func (c *Coordinator) renewalCampaign(r rotationRecord) {
	spread, _ := time.ParseDuration(r.Spread)
	current := c.issuer().CA.Cert.Subject.CommonName
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for name, s := range c.sessions {
		if rec := c.nodes[name]; rec != nil && rec.CertIssuer != current {
			s.send(api.FrameRenewNow, api.RenewNow{Delay: api.Duration(rand.N(spread + 1))})
			n++
		}
	}
	c.log.Info("CA rotation: asked agents to renew", "agents", n, "spread", spread.String())
}

// catchUpDelay is the renewal delay for an agent that connects while a
// rotation is past its trust phase and it still holds an old certificate;
// zero means no renewal is needed.
func (c *Coordinator) catchUpDelay(cert *x509.Certificate) time.Duration {
	if c.ca.phase.Load() != phaseRenew {
		return 0 // before the renew phase agents keep their certificates; after it, the old CA is retired and agents heal
	}
	cur := c.issuer().CA.Cert
	if cert.CheckSignatureFrom(cur) == nil {
		return 0
	}
	return time.Duration(rand.N(int64(5*time.Second))) + time.Millisecond
}

// agentsOnOldCA lists registered, unrevoked agents whose certificate was
// not issued by the current issuing CA, and counts agents per issuing CA.
// On a shared store it reads every node record there, so agents served by
// other coordinators count too.
func (c *Coordinator) agentsOnOldCA(ctx context.Context) (old []string, perIssuer map[string]int, err error) {
	current := c.issuer().CA.Cert.Subject.CommonName
	perIssuer = map[string]int{}
	count := func(n *nodeRecord) {
		if n.Revoked {
			return
		}
		perIssuer[n.CertIssuer]++
		if n.CertIssuer != current {
			old = append(old, n.Name)
		}
	}
	if c.cfg.EtcdStore() {
		err = c.st.Scan(ctx, prefixNodes, func(r store.Record) error {
			var n nodeRecord
			if err := json.Unmarshal(r.Value, &n); err != nil {
				return fmt.Errorf("%s: %w", r.Key, err)
			}
			count(&n)
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("read the node records: %w", err)
		}
	} else {
		c.mu.Lock()
		for _, n := range c.nodes {
			count(n)
		}
		c.mu.Unlock()
	}
	sort.Strings(old)
	return old, perIssuer, nil
}

func caInfo(cert *x509.Certificate) api.CAInfo {
	return api.CAInfo{Subject: cert.Subject.CommonName, Serial: pki.SerialHex(cert), Pin: pki.SPKIPin(cert).String(), NotAfter: cert.NotAfter}
}

func (c *Coordinator) caStatus(ctx context.Context) (api.CAStatus, error) {
	r, _, err := c.readRotation(ctx)
	if err != nil {
		return api.CAStatus{}, err
	}
	st := api.CAStatus{Phase: r.Phase, PhaseName: phaseNames[r.Phase], Generation: r.Current, Changed: r.Changed, Agents: map[string]int{}}
	for _, root := range c.ca.src.Bundle() {
		st.Roots = append(st.Roots, caInfo(root))
	}
	st.Issuing = caInfo(c.issuer().CA.Cert)
	for _, ca := range c.issuingCAs() {
		st.Trusted = append(st.Trusted, caInfo(ca.Cert))
	}
	if st.OnOldCA, st.Agents, err = c.agentsOnOldCA(ctx); err != nil {
		return api.CAStatus{}, err
	}
	if cur := c.currentCRL(); cur != nil {
		st.CRL = &api.CRLInfo{Number: cur.number, ThisUpdate: cur.thisUpdate, NextUpdate: cur.nextUpdate, Revoked: cur.entries}
	}
	switch r.Phase {
	case phaseIdle:
		st.Next = "`ward ca rotate` creates a new root and issuing CA and adds the root to every trust bundle"
	case phaseTrust:
		st.Next = "`ward ca rotate` makes the new issuing CA issue every new certificate"
	case phaseIssue:
		st.Next = "`ward ca rotate --spread 5m` asks every agent to renew, spread over the window"
	case phaseRenew:
		if len(st.OnOldCA) > 0 {
			st.Next = fmt.Sprintf("waiting for %d agent(s) to renew; then `ward ca rotate` retires the old CA (--force retires now; they heal when they return)", len(st.OnOldCA))
		} else {
			st.Next = "`ward ca rotate` retires the old CA"
		}
	}
	return st, nil
}

func (c *Coordinator) apiCAStatus(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[api.CAStatus](w)(c.CAStatus(r.Context(), p))
}

// CAStatus is the CA and rotation state: roots, issuing CAs, the phase and
// its next step, agents per issuing CA, and the current CRL.
func (c *Coordinator) CAStatus(ctx context.Context, p authz.Principal) (api.CAStatus, error) {
	if err := c.allow(p, authz.CARead); err != nil {
		return api.CAStatus{}, err
	}
	return c.caStatus(ctx)
}

func (c *Coordinator) apiCARotate(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.RotateRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.CAStatus](w)(c.RotateCA(r.Context(), p, req))
}
