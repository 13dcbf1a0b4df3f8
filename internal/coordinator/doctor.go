package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/buildinfo"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/transport"
)

// Doctor thresholds.
const (
	skewWarn     = 30 * time.Second
	skewCritical = 5 * time.Minute
	broadUses    = 10
	broadTTL     = 24 * time.Hour
)

// doctor checks the whole cluster and returns every finding, most severe
// first. Each has a stable code, a severity and a fix.
func (c *Coordinator) doctor(ctx context.Context, horizon time.Duration) ([]api.Finding, error) {
	now := c.now()
	var out []api.Finding
	add := func(sev, code, finding, fix string) {
		out = append(out, api.Finding{Severity: sev, Code: code, Finding: finding, Fix: fix})
	}
	expiring := func(kind, name string, notAfter time.Time, fix string) {
		switch left := notAfter.Sub(now); {
		case left <= 0:
			add(api.SeverityCritical, "CERT_EXPIRED", fmt.Sprintf("%s %s expired at %s", kind, name, notAfter.UTC().Format(time.RFC3339)), fix)
		case left < horizon:
			add(api.SeverityWarning, "CERT_EXPIRING", fmt.Sprintf("%s %s expires in %s (at %s), within the %s horizon", kind, name, left.Round(time.Minute), notAfter.UTC().Format(time.RFC3339), horizon), fix)
		}
	}

	// Leaves renew themselves at two thirds of their life, so for them the
	// signal is a renewal that is overdue, not a horizon; CAs are rotated
	// by hand, so they get the horizon.
	overdue := func(kind, name string, notBefore, notAfter time.Time, fix string) {
		life := notAfter.Sub(notBefore)
		due := notBefore.Add(time.Duration(float64(life) * identity.RenewFraction)).Add(life / 10)
		switch {
		case !now.Before(notAfter):
			add(api.SeverityCritical, "CERT_EXPIRED", fmt.Sprintf("%s %s expired at %s", kind, name, notAfter.UTC().Format(time.RFC3339)), fix)
		case now.After(due):
			add(api.SeverityWarning, "CERT_RENEWAL_OVERDUE", fmt.Sprintf("%s %s should have renewed by %s and expires in %s", kind, name, due.UTC().Format(time.RFC3339), notAfter.Sub(now).Round(time.Second)), fix)
		}
	}
	own := c.ca.src.Leaf()
	overdue("the coordinator certificate", pki.SerialHex(own), own.NotBefore, own.NotAfter, "check the coordinator log for \"renew the coordinator certificate\"")
	for _, iss := range c.issuingCAs() {
		expiring("issuing CA", iss.Cert.Subject.CommonName, iss.Cert.NotAfter, "rotate the CA: `ward ca rotate`")
	}
	for _, root := range c.ca.src.Bundle() {
		expiring("root CA", root.Subject.CommonName, root.NotAfter, "rotate the CA: `ward ca rotate`")
	}
	certs := map[string]certRecord{}
	err := c.st.Scan(ctx, prefixCerts, func(r store.Record) error {
		var cr certRecord
		if err := json.Unmarshal(r.Value, &cr); err != nil {
			return err
		}
		certs[cr.Serial] = cr
		if cr.Role == string(pki.RoleUser) && !cr.Revoked && cr.NotAfter.After(now) && cr.NotAfter.Sub(now) < horizon {
			add(api.SeverityInfo, "CERT_EXPIRING", fmt.Sprintf("user certificate %s (%s) expires in %s", cr.Serial, cr.Name, cr.NotAfter.Sub(now).Round(time.Minute)),
				"the CLI renews it when used; an unused context expires, and the coordinator renews its admin context at start")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	if m := c.maintenance(); m.On {
		msg := ""
		if m.Message != "" {
			msg = ": " + m.Message
		}
		add(api.SeverityWarning, "MAINTENANCE", fmt.Sprintf("the cluster is in maintenance mode since %s (turned on by %s)%s; submissions from users who are not admins are refused", m.Since.UTC().Format(time.RFC3339), m.By, msg),
			"`ward cluster maintenance off` once the work is done")
	}

	// Insecure settings in effect.
	if c.cfg.MinTLS == "1.2" {
		add(api.SeverityWarning, "TLS12_ALLOWED", "the coordinator accepts TLS 1.2 (min_tls=1.2)", "upgrade old clients, then remove min_tls (TLS 1.3 is the default)")
	}
	if addr, remote := c.plaintextInsecure(); remote {
		add(api.SeverityCritical, "INSECURE_PLAINTEXT", "a plaintext listener is reachable from other hosts on "+addr, "move agents to TLS (`ward migrate upgrade`), then `ward migrate finish`")
	}
	if st := c.health.State(); !st.Writable {
		add(api.SeverityCritical, string(api.CodeStoreUnavailable), fmt.Sprintf("the %s cannot write since %s: %s; new work is refused until it can", c.backend.desc, st.Since.UTC().Format(time.RFC3339), st.Error), st.Fix)
	}
	if f, ok := c.sharedAdminFinding(); ok {
		out = append(out, f)
	}
	if c.cfg.StoreNoSync {
		add(api.SeverityCritical, "STORE_NOSYNC", "store commits are not fsynced (insecure_store_nosync): a crash can lose acknowledged work", "remove insecure_store_nosync")
	}
	if c.cfg.InsecureEtcdPlaintext {
		add(api.SeverityCritical, "INSECURE_ETCD_PLAINTEXT", "the link to the etcd store ("+c.cfg.Store+") is plaintext (insecure_etcd_plaintext): anyone on the path can read and change every job, token and certificate record",
			"issue etcd certificates (`ward etcd certs`), serve etcd over TLS with --client-cert-auth, then pass --etcd-ca, --etcd-cert and --etcd-key instead")
	}
	if t := c.backend.etcdTLS; t != nil {
		leaf := t.Cert.Leaf
		expiring("etcd client certificate", c.cfg.EtcdCert, leaf.NotAfter, "issue a new one (`ward etcd certs --client NAME`), replace "+c.cfg.EtcdCert+" and its key, and restart the coordinator")
		for _, ca := range t.CA {
			expiring("etcd CA", ca.Subject.CommonName, ca.NotAfter, "make a new etcd CA and certificates (`ward etcd certs` in a new directory) and roll them out to etcd and every coordinator")
		}
	}

	// Agents: links, clocks, revocation checks, presence, certificates.
	c.mu.Lock()
	for _, n := range c.cl.Nodes() {
		rec := c.nodes[n.Name]
		if rec == nil || rec.Revoked {
			continue
		}
		if f, ok := c.flappingFinding(n.Name, now); ok {
			out = append(out, f)
		}
		s := c.sessions[n.Name]
		if s == nil {
			if n.Running() > 0 {
				add(api.SeverityWarning, "NODE_DOWN", fmt.Sprintf("agent %s is disconnected with %d task(s) assigned", n.Name, n.Running()), "check the agent's host and log; its tasks are requeued after node_lost_timeout")
			} else {
				add(api.SeverityInfo, "NODE_DOWN", fmt.Sprintf("agent %s is not connected", n.Name), "start it, or revoke it if it is gone: `ward node revoke "+n.Name+"`")
			}
		} else {
			switch s.link {
			case transport.LinkNo:
				add(api.SeverityCritical, "INSECURE_LINK", fmt.Sprintf("agent %s uses a plaintext link (NO)", n.Name), "`ward migrate upgrade "+n.Name+"`, or restart it with --upgrade-tls")
			case transport.LinkPartly:
				add(api.SeverityCritical, "INSECURE_SKIP_VERIFY", fmt.Sprintf("agent %s does not verify the coordinator's certificate (--insecure-skip-verify, link PARTLY)", n.Name), "restart it without --insecure-skip-verify: its trust bundle from the join is all it needs")
			}
			if skew := time.Duration(s.skew.Load()); skew > skewWarn || skew < -skewWarn {
				sev := api.SeverityWarning
				if skew > skewCritical || skew < -skewCritical {
					sev = api.SeverityCritical
				}
				add(sev, "CLOCK_SKEW", fmt.Sprintf("agent %s's clock is %s off the coordinator's", n.Name, skew.Round(time.Second)), "run NTP (chrony or systemd-timesyncd) on both hosts; large skew makes certificates look expired or not yet valid")
			}
			if f, ok := agentVersionFinding(n.Name, rec.Version, buildinfo.Version()); ok {
				out = append(out, f)
			}
			if s.revocation == "unavailable" {
				add(api.SeverityWarning, "REVOCATION_UNAVAILABLE", fmt.Sprintf("agent %s cannot fetch the CRL, so it does not check the coordinator's certificate for revocation", n.Name), "make the public port reachable from the agent; with revocation_policy hard it would refuse to connect")
			}
		}
		if cr, ok := certs[rec.CertSerial]; ok {
			fix := "check the agent's log for \"certificate renewal failed\""
			if s == nil {
				fix = "start the agent: it renews when it returns, within heal_grace (" + c.cfg.HealGrace.D().String() + ") of expiry; after that it needs a new token"
			}
			overdue("agent "+n.Name+"'s certificate", rec.CertSerial, cr.NotBefore, cr.NotAfter, fix)
		}
	}
	c.mu.Unlock()

	// The CRL.
	if cur := c.currentCRL(); cur == nil {
		add(api.SeverityCritical, "CRL_MISSING", "no CRL is published for the issuing CA", "check the coordinator log for \"rebuild CRL\"")
	} else if now.After(cur.nextUpdate) {
		add(api.SeverityCritical, "CRL_STALE", fmt.Sprintf("the CRL passed its next-update time (%s)", cur.nextUpdate.UTC().Format(time.RFC3339)), "check the coordinator log for \"refresh CRL\"")
	} else if age := now.Sub(cur.thisUpdate); age > c.cfg.CRLValidity.D()*3/4 {
		add(api.SeverityWarning, "CRL_STALE", fmt.Sprintf("the CRL is %s old; it should be refreshed at half its %s validity", age.Round(time.Minute), c.cfg.CRLValidity.D()), "check the coordinator log for \"refresh CRL\"")
	}

	// Tokens that reach too far.
	c.tokMu.Lock()
	for _, t := range c.tokens {
		if t.state(now) != "active" {
			continue
		}
		if left := t.Uses - t.Used; left > broadUses {
			add(api.SeverityWarning, "TOKEN_BROAD", fmt.Sprintf("join token %s can still enroll %d agents", t.ID, left), "revoke it when the nodes have joined: `ward token revoke "+t.ID+"`")
		}
		if ttl := t.Expires.Sub(t.Created); ttl > broadTTL {
			add(api.SeverityWarning, "TOKEN_BROAD", fmt.Sprintf("join token %s is valid for %s (until %s)", t.ID, ttl.Round(time.Hour), t.Expires.UTC().Format(time.RFC3339)), "prefer tokens of an hour or less; revoke this one when done: `ward token revoke "+t.ID+"`")
		}
	}
	c.tokMu.Unlock()

	// Key files must stay owner-only, even if changed after start.
	filepath.WalkDir(c.cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".key") || strings.HasSuffix(p, ".context")) {
			return nil
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			add(api.SeverityCritical, "KEY_PERMISSIONS", fmt.Sprintf("%s has permissions %04o: other users can read it", p, fi.Mode().Perm()), "chmod 600 "+p)
		}
		return nil
	})

	rank := map[string]int{api.SeverityCritical: 0, api.SeverityWarning: 1, api.SeverityInfo: 2}
	sort.SliceStable(out, func(a, b int) bool { return rank[out[a].Severity] < rank[out[b].Severity] })
	return out, nil
}

// agentVersionFinding compares a connected agent's Ward version with the
// coordinator's: an older agent is a warning (it may lack fixes and
// protocol features the coordinator expects), a newer one or one that
// cannot be ordered (development builds) is information.
func agentVersionFinding(node, agentVersion, coordVersion string) (api.Finding, bool) {
	if agentVersion == "" {
		return api.Finding{Severity: api.SeverityWarning, Code: "AGENT_OUTDATED",
			Finding: fmt.Sprintf("agent %s does not report its version: it runs a Ward older than this coordinator's %s", node, coordVersion),
			Fix:     "upgrade the agent's package to " + coordVersion + " and restart it (`systemctl restart ward-agent`)"}, true
	}
	if agentVersion == coordVersion {
		return api.Finding{}, false
	}
	switch cmp, ok := buildinfo.Compare(agentVersion, coordVersion); {
	case ok && cmp < 0:
		return api.Finding{Severity: api.SeverityWarning, Code: "AGENT_OUTDATED",
			Finding: fmt.Sprintf("agent %s runs Ward %s, older than the coordinator's %s", node, agentVersion, coordVersion),
			Fix:     "upgrade the agent's package to " + coordVersion + " and restart it (`systemctl restart ward-agent`)"}, true
	case ok && cmp > 0:
		return api.Finding{Severity: api.SeverityInfo, Code: "AGENT_NEWER",
			Finding: fmt.Sprintf("agent %s runs Ward %s, newer than the coordinator's %s", node, agentVersion, coordVersion),
			Fix:     "upgrade the coordinator too: coordinators are upgraded first, then agents"}, true
	case ok:
		return api.Finding{}, false // the same version, spelled differently (a leading v, build metadata)
	}
	return api.Finding{Severity: api.SeverityInfo, Code: "AGENT_VERSION_DIFFERS",
		Finding: fmt.Sprintf("agent %s runs Ward %s and the coordinator %s; development builds cannot be ordered", node, agentVersion, coordVersion),
		Fix:     "run the same build on both, or release builds (packaging/build.sh) whose versions compare"}, true
}

func (c *Coordinator) apiDoctor(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	horizon, err := durationParam(r, "horizon", 7*24*time.Hour)
	if err != nil {
		return err
	}
	return reply[api.DoctorReport](w)(c.Doctor(r.Context(), p, horizon))
}

// Doctor checks the whole cluster: every finding with its severity and fix,
// most severe first, with certificate expiry judged against horizon.
func (c *Coordinator) Doctor(ctx context.Context, p authz.Principal, horizon time.Duration) (api.DoctorReport, error) {
	if err := c.allow(p, authz.DoctorRead); err != nil {
		return api.DoctorReport{}, err
	}
	f, err := c.doctor(ctx, horizon)
	if err != nil {
		return api.DoctorReport{}, err
	}
	if f == nil {
		f = []api.Finding{} // no findings: an empty list, not null
	}
	return api.DoctorReport{Horizon: api.Duration(horizon), Findings: f}, nil
}

// apiAudit returns audit events at or after ?since= (a duration back from
// now, or an RFC 3339 time), optionally of one ?type=.
func (c *Coordinator) apiAudit(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var f api.AuditFilter
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := c.parseSince(s)
		if err != nil {
			return err
		}
		f.Since = t
	}
	f.Type = r.URL.Query().Get("type")
	events, _, err := c.Audit(r.Context(), p, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, events)
}

// parseSince reads a point in time given as a duration back from now or as
// an RFC 3339 time.
func (c *Coordinator) parseSince(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return c.now().Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, api.Errorf(api.CodeInvalidArgument, "use a duration such as 1h, or a time such as 2026-01-02T15:04:05Z", "--since %q is neither a duration nor an RFC 3339 time", s)
}

// Audit reads the audit log: the events f selects, oldest first (or newest
// first), and how many match in all.
func (c *Coordinator) Audit(ctx context.Context, p authz.Principal, f api.AuditFilter) ([]audit.Event, int, error) {
	if err := c.allow(p, authz.AuditRead); err != nil {
		return nil, 0, err
	}
	if f.Type != "" && !audit.ValidFilter(f.Type) {
		return nil, 0, api.Errorf(api.CodeInvalidArgument,
			fmt.Sprintf("use one of the types %s, or a family: %s", strings.Join(audit.Types, ", "), strings.Join(audit.Families(), ", ")),
			"--type %q is not an audit event type", f.Type)
	}
	file, err := os.Open(c.audit.Path())
	if err != nil {
		return nil, 0, err
	}
	defer file.Close()
	events, err := audit.Read(file, f.Since)
	if err != nil {
		return nil, 0, err
	}
	kept := events[:0]
	for _, e := range events {
		if f.Type != "" && !audit.Matches(e.Type, f.Type) {
			continue
		}
		if !f.Until.IsZero() && !e.Time.Before(f.Until) {
			continue
		}
		kept = append(kept, e)
	}
	if kept == nil {
		kept = []audit.Event{}
	}
	if f.Newest {
		slices.Reverse(kept)
	}
	return page(kept, f.Offset, f.Limit), len(kept), nil
}
