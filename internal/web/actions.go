package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
)

// action is a state change behind a confirmation page: GET shows what will
// happen with the action's options, POST does it. Both are served at
// pattern.
type action struct {
	pattern string
	// need is what the action performs, checked against the role.
	need authz.Action
	// confirm describes the action for the request's path values.
	confirm func(r *http.Request, q *rq) (confirmView, error)
	// do performs it with the posted form, and says what happened and
	// where to go next.
	do func(r *http.Request, q *rq) (msg, next string, err error)
}

// confirmView is the confirmation page.
type confirmView struct {
	Heading string
	Lines   []string // what the action does
	Button  string
	Danger  bool
	Fields  []field
	Back    string // where Cancel goes
}

// field is one input of a confirmation form.
type field struct {
	Name, Label, Type, Value, Help string // Type: text, select, checkbox
	Options                        []string
	Checked                        bool
}

// revokeReasons are the reasons a revocation may give (RFC 5280 names).
var revokeReasons = []string{"unspecified", "key-compromise", "superseded", "cessation-of-operation", "affiliation-changed", "privilege-withdrawn", "ca-compromise"}

func (s *Server) confirmPage(a action) handler {
	return func(w http.ResponseWriter, r *http.Request, q *rq) error {
		cv, err := a.confirm(r, q)
		if err != nil {
			return err
		}
		s.render(w, http.StatusOK, "confirm", s.view(q, cv.Heading, "", cv, nil))
		return nil
	}
}

func (s *Server) doAction(a action) handler {
	return func(w http.ResponseWriter, r *http.Request, q *rq) error {
		msg, next, err := a.do(r, q)
		if err == nil {
			return s.done(w, r, q, msg, next)
		}
		// Show the confirmation again, with what was entered and why it
		// failed, so nothing typed is lost.
		cv, cerr := a.confirm(r, q)
		if cerr != nil {
			return err
		}
		for i := range cv.Fields {
			f := &cv.Fields[i]
			if f.Type == "checkbox" {
				f.Checked = r.PostFormValue(f.Name) != ""
			} else {
				f.Value = r.PostFormValue(f.Name)
			}
		}
		e := api.AsError(err)
		s.render(w, api.HTTPStatus(e.Code), "confirm", s.view(q, cv.Heading, "", cv, e))
		return nil
	}
}

// allActions lists every confirmed state change of the console.
func (s *Server) allActions() []action {
	out := s.actions()
	out = append(out, s.jobActions()...)
	out = append(out, s.maintenanceActions()...)
	return append(out, s.userActions()...)
}

// actions lists the confirmed state changes of nodes, jobs, tokens,
// certificates, the CA and the migration.
func (s *Server) actions() []action {
	node := func(r *http.Request) string { return r.PathValue("name") }
	nodes := Prefix + "nodes"
	return []action{
		{
			pattern: Prefix + "nodes/{name}/drain", need: authz.NodeDrain,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				return confirmView{Heading: "Drain node " + node(r), Button: "Drain " + node(r), Back: nodes,
					Lines: []string{"The node takes no new tasks. Its running tasks finish.",
						"Tasks assigned ahead that have not started go back to the queue."},
					Fields: []field{{Name: "force", Label: "Also stop the running tasks now (they are requeued within their retry limits)", Type: "checkbox"}}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				res, err := s.cluster.Drain(r.Context(), q.p, node(r), r.PostFormValue("force") != "")
				if err != nil {
					return "", "", err
				}
				msg := "Node " + res.Node + " is draining."
				if res.Requeued != nil && *res.Requeued > 0 {
					msg += fmt.Sprintf(" %d running task(s) stopped and requeued.", *res.Requeued)
				}
				if res.Withdrawn != nil && *res.Withdrawn > 0 {
					msg += fmt.Sprintf(" %d task(s) assigned ahead went back to the queue.", *res.Withdrawn)
				}
				return msg, nodes, nil
			},
		},
		{
			pattern: Prefix + "nodes/{name}/undrain", need: authz.NodeUndrain,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				return confirmView{Heading: "Undrain node " + node(r), Button: "Undrain " + node(r), Back: nodes,
					Lines: []string{"The node takes tasks again."}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				res, err := s.cluster.Undrain(r.Context(), q.p, node(r))
				return "Node " + res.Node + " takes tasks again.", nodes, err
			},
		},
		{
			pattern: Prefix + "nodes/{name}/revoke", need: authz.NodeRevoke,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				return confirmView{Heading: "Revoke node " + node(r), Button: "Revoke " + node(r), Danger: true, Back: nodes,
					Lines: []string{"Every certificate of the node is revoked: its sessions close at once and it can never connect again.",
						"Its tasks are requeued. To bring the host back, it must join again with a new token."},
					Fields: []field{{Name: "reason", Label: "Reason", Type: "select", Options: revokeReasons, Value: "unspecified"}}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				res, err := s.cluster.RevokeNode(r.Context(), q.p, node(r), r.PostFormValue("reason"))
				return fmt.Sprintf("Node %s revoked (%d certificate(s)): %d session(s) closed, %d task(s) requeued.", node(r), len(res.Serials), res.Closed, res.Requeued), nodes, err
			},
		},
		{
			pattern: Prefix + "jobs/{id}/cancel", need: authz.JobCancel,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				id := r.PathValue("id")
				return confirmView{Heading: "Cancel job " + id, Button: "Cancel job " + id, Danger: true, Back: Prefix + "jobs/" + url.PathEscape(id),
					Lines:  []string{"Waiting tasks never start; running tasks are stopped, with their process groups."},
					Fields: []field{{Name: "reason", Label: "Reason (recorded with the job and in the audit log)", Type: "text"}}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				j, err := s.cluster.CancelJob(r.Context(), q.p, r.PathValue("id"), strings.TrimSpace(r.PostFormValue("reason")))
				return "Job " + j.ID + " canceled.", Prefix + "jobs/" + url.PathEscape(r.PathValue("id")), err
			},
		},
		{
			pattern: Prefix + "tokens/{id}/revoke", need: authz.TokenRevoke,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				id := r.PathValue("id")
				return confirmView{Heading: "Revoke join token " + id, Button: "Revoke token", Danger: true, Back: Prefix + "tokens",
					Lines: []string{"No agent can join with this token any more. Agents that joined with it are not affected."}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				t, err := s.cluster.RevokeToken(r.Context(), q.p, r.PathValue("id"))
				return "Join token " + t.ID + " revoked.", Prefix + "tokens", err
			},
		},
		{
			pattern: Prefix + "certs/{serial}/revoke", need: authz.CertRevoke,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				serial := r.PathValue("serial")
				return confirmView{Heading: "Revoke certificate " + serial, Button: "Revoke certificate", Danger: true, Back: Prefix + "certs",
					Lines: []string{"The certificate joins the CRL and every connection that presented it closes at once.",
						"If it is a node's current certificate, the node is revoked with it and its tasks are requeued."},
					Fields: []field{{Name: "reason", Label: "Reason", Type: "select", Options: revokeReasons, Value: "unspecified"}}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				res, err := s.cluster.RevokeCert(r.Context(), q.p, r.PathValue("serial"), r.PostFormValue("reason"))
				msg := fmt.Sprintf("Certificate %s revoked: %d session(s) closed.", r.PathValue("serial"), res.Closed)
				if res.Node != "" {
					msg += fmt.Sprintf(" It was node %s's certificate: the node is revoked and %d task(s) requeued.", res.Node, res.Requeued)
				}
				return msg, Prefix + "certs", err
			},
		},
		{
			pattern: Prefix + "ca/rotate", need: authz.CARotate,
			confirm: s.rotateConfirm,
			do: func(r *http.Request, q *rq) (string, string, error) {
				req := api.RotateRequest{Rollback: r.URL.Query().Get("rollback") == "1", Force: r.PostFormValue("force") != ""}
				if sp := strings.TrimSpace(r.PostFormValue("spread")); sp != "" {
					d, err := time.ParseDuration(sp)
					if err != nil || d <= 0 {
						return "", "", api.Errorf(api.CodeInvalidArgument, "give a duration such as 5m", "spread %q is not a positive duration", sp)
					}
					req.Spread = api.Duration(d)
				}
				st, err := s.cluster.RotateCA(r.Context(), q.p, req)
				return "CA rotation: now in phase " + st.PhaseName + ".", Prefix + "ca", err
			},
		},
		{
			pattern: Prefix + "migration/upgrade", need: authz.MigrateUpgrade,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				return confirmView{Heading: "Move plaintext agents to TLS", Button: "Tell them to upgrade", Back: Prefix + "migration",
					Lines:  []string{"The named agents (all plaintext agents when none are named) are told to reconnect over the TLS cluster port, now and whenever they reconnect. Their tasks keep running."},
					Fields: []field{{Name: "nodes", Label: "Nodes (separated by spaces or commas; empty: all)", Type: "text", Value: r.URL.Query().Get("nodes")}}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				st, err := s.cluster.MigrateUpgrade(r.Context(), q.p, api.MigrateRequest{Nodes: strings.FieldsFunc(r.PostFormValue("nodes"), isListSep)})
				return fmt.Sprintf("Asked plaintext agents to move to TLS; %d peer(s) are not on YES yet.", len(st.Insecure)), Prefix + "migration", err
			},
		},
		{
			pattern: Prefix + "migration/finish", need: authz.MigrateFinish,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				return confirmView{Heading: "Finish the move to TLS", Button: "Finish", Danger: true, Back: Prefix + "migration",
					Lines: []string{"The plaintext listener is rebound to loopback only, for good, without a restart.",
						"It is refused while agents on other hosts still use plaintext, unless forced: then their sessions are cut."},
					Fields: []field{{Name: "force", Label: "Cut off agents still on plaintext", Type: "checkbox"}}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				_, err := s.cluster.MigrateFinish(r.Context(), q.p, api.MigrateRequest{Force: r.PostFormValue("force") != ""})
				return "The migration is finished: plaintext is loopback only.", Prefix + "migration", err
			},
		},
	}
}

func isListSep(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r' }

// rotateConfirm describes the CA rotation's next step (or the step back).
func (s *Server) rotateConfirm(r *http.Request, q *rq) (confirmView, error) {
	st, err := s.cluster.CAStatus(r.Context(), q.p)
	if err != nil {
		return confirmView{}, err
	}
	cv := confirmView{Back: Prefix + "ca", Lines: []string{"Current phase: " + st.PhaseName + " (generation " + fmt.Sprint(st.Generation) + ")."}}
	if r.URL.Query().Get("rollback") == "1" {
		cv.Heading, cv.Button, cv.Danger = "Roll the CA rotation back", "Roll back one phase", true
		cv.Lines = append(cv.Lines, "The rotation steps back one phase.")
		return cv, nil
	}
	cv.Heading, cv.Button = "CA rotation: next step", "Run the next step"
	cv.Lines = append(cv.Lines, "Next: "+st.Next)
	switch st.PhaseName {
	case "issue":
		cv.Fields = append(cv.Fields, field{Name: "spread", Label: "Spread agent renewals over", Type: "text", Value: "5m"})
	case "renew":
		cv.Danger = true
		cv.Fields = append(cv.Fields, field{Name: "force", Label: "Retire the old CA even if some agents still hold its certificates (they heal when they return)", Type: "checkbox"})
	}
	return cv, nil
}
