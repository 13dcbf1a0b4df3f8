package web

import (
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/sched"
)

// overviewView is the security posture at a glance.
type overviewView struct {
	Status   api.Status
	CA       api.CAStatus
	Links    []count // YES, PARTLY, NO among connected nodes
	States   []count // nodes per state
	Nodes    int
	Findings []api.Finding
	Severity []count // findings per severity
	Horizon  time.Duration
	Expiring []expiry // CAs and the coordinator's certificate
	// ShowCA and ShowDoctor: the user's role may read them.
	ShowCA, ShowDoctor bool
}

type count struct {
	Name string
	N    int
}

type expiry struct {
	Kind, Name, Serial string
	NotAfter           time.Time
}

// overview reads the same state the API serves: status, nodes, the CA and
// the doctor's findings.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, q *rq) error {
	horizon := 7 * 24 * time.Hour
	if h := r.URL.Query().Get("horizon"); h != "" {
		d, err := time.ParseDuration(h)
		if err != nil || d <= 0 {
			return api.Errorf(api.CodeInvalidArgument, "use a duration such as 168h", "horizon %q is not a positive duration", h)
		}
		horizon = d
	}
	ctx := r.Context()
	st, err := s.cluster.Status(ctx, q.p)
	if err != nil {
		return err
	}
	nodes, err := s.cluster.Nodes(ctx, q.p)
	if err != nil {
		return err
	}
	// The CA and doctor parts show only to roles that may read them (the
	// same table the operations check).
	var ca api.CAStatus
	if authz.Can(q.p.Role, authz.CARead) {
		if ca, err = s.cluster.CAStatus(ctx, q.p); err != nil {
			return err
		}
	}
	var doc api.DoctorReport
	if authz.Can(q.p.Role, authz.DoctorRead) {
		if doc, err = s.cluster.Doctor(ctx, q.p, horizon); err != nil {
			return err
		}
	}
	v := overviewView{Status: st, CA: ca, Nodes: len(nodes), Findings: doc.Findings, Horizon: horizon,
		ShowCA: authz.Can(q.p.Role, authz.CARead), ShowDoctor: authz.Can(q.p.Role, authz.DoctorRead)}
	links := map[string]int{"YES": 0, "PARTLY": 0, "NO": 0}
	states := map[string]int{}
	for _, n := range nodes {
		if n.Connected {
			links[n.Link]++
		}
		states[n.State]++
	}
	v.Links = []count{{"YES", links["YES"]}, {"PARTLY", links["PARTLY"]}, {"NO", links["NO"]}}
	for _, name := range nodeStates {
		v.States = append(v.States, count{name, states[name]})
	}
	sev := map[string]int{}
	for _, f := range doc.Findings {
		sev[f.Severity]++
	}
	v.Severity = []count{{api.SeverityCritical, sev[api.SeverityCritical]}, {api.SeverityWarning, sev[api.SeverityWarning]}, {api.SeverityInfo, sev[api.SeverityInfo]}}
	for _, root := range ca.Roots {
		v.Expiring = append(v.Expiring, expiry{"root CA", root.Subject, root.Serial, root.NotAfter})
	}
	for _, iss := range ca.Trusted {
		v.Expiring = append(v.Expiring, expiry{"issuing CA", iss.Subject, iss.Serial, iss.NotAfter})
	}
	v.Expiring = append(v.Expiring, expiry{"coordinator certificate", st.Coordinator, "", st.CertExpiry})
	sort.SliceStable(v.Expiring, func(a, b int) bool { return v.Expiring[a].NotAfter.Before(v.Expiring[b].NotAfter) })
	s.render(w, http.StatusOK, "overview", s.view(q, "Overview", "overview", v, nil))
	return nil
}

// nodeStates are the states a node can be in, as the API names them.
var nodeStates = []string{"ready", "draining", "drained", "disconnected", "down", "revoked"}

// nodesView is the node list.
type nodesView struct {
	Nodes  []api.Node
	State  string
	States []string
	Query  string
	Pager  pager
}

func (s *Server) nodes(w http.ResponseWriter, r *http.Request, q *rq) error {
	all, err := s.cluster.Nodes(r.Context(), q.p)
	if err != nil {
		return err
	}
	v := nodesView{States: nodeStates, State: r.URL.Query().Get("state"), Query: strings.TrimSpace(r.URL.Query().Get("q"))}
	kept := all[:0]
	for _, n := range all {
		if v.State != "" && n.State != v.State {
			continue
		}
		if v.Query != "" && !strings.Contains(n.Name, v.Query) && !strings.Contains(sched.FormatLabels(n.Labels), v.Query) {
			continue
		}
		kept = append(kept, n)
	}
	page, off := pageOf(r)
	end := min(off+pageSize, len(kept))
	if off < end {
		v.Nodes = kept[off:end]
	}
	v.Pager = newPager(r, page, len(v.Nodes), len(kept))
	s.render(w, http.StatusOK, "nodes", s.view(q, "Nodes", "nodes", v, nil))
	return nil
}

// auditView is the audit log page.
type auditView struct {
	Events       []audit.Event
	Type         string
	Since, Until string
	Types        []string
	Pager        pager
}

// auditTypes are the event type prefixes offered as filters.
var auditTypes = []string{"auth", "authz", "ca", "cert", "check", "cluster", "file", "job", "join", "migrate", "node", "profile", "reload", "session", "staging", "token", "ui", "user"}

func (s *Server) auditLog(w http.ResponseWriter, r *http.Request, q *rq) error {
	qs := r.URL.Query()
	v := auditView{Type: strings.TrimSpace(qs.Get("type")), Since: strings.TrimSpace(qs.Get("since")), Until: strings.TrimSpace(qs.Get("until")), Types: auditTypes}
	if v.Since == "" && qs.Get("page") == "" && len(qs) == 0 {
		v.Since = "24h"
	}
	f := api.AuditFilter{Type: v.Type, Newest: true, Limit: pageSize}
	var err error
	if f.Since, err = s.pointInTime("since", v.Since); err != nil {
		return err
	}
	if f.Until, err = s.pointInTime("until", v.Until); err != nil {
		return err
	}
	page, off := pageOf(r)
	f.Offset = off
	events, total, err := s.cluster.Audit(r.Context(), q.p, f)
	if err != nil {
		return err
	}
	v.Events = events
	v.Pager = newPager(r, page, len(events), total)
	s.render(w, http.StatusOK, "audit", s.view(q, "Audit log", "audit", v, nil))
	return nil
}

// pointInTime reads a filter time: empty, a duration back from now (1h),
// an RFC 3339 time, or a time as a browser's datetime-local field sends it
// (taken as UTC).
func (s *Server) pointInTime(name, in string) (time.Time, error) {
	if in == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(in); err == nil {
		return s.now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, in); err == nil {
			return t, nil
		}
	}
	return time.Time{}, api.Errorf(api.CodeInvalidArgument, "use a duration back from now such as 1h, or a UTC time such as 2026-01-02T15:04",
		"%s %q is neither a duration nor a time", name, in)
}

func (s *Server) migration(w http.ResponseWriter, r *http.Request, q *rq) error {
	st, err := s.cluster.MigrationStatus(r.Context(), q.p)
	if err != nil {
		return err
	}
	s.render(w, http.StatusOK, "migration", s.view(q, "Migration to TLS", "migration", st, nil))
	return nil
}
