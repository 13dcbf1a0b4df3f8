package web

import (
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
)

// rq is a request from a signed-in user: the session and the principal the
// cluster's operations act for.
type rq struct {
	sess *session
	p    authz.Principal
	// maint is the maintenance mode, for the banner every page shows.
	maint api.Maintenance
}

// handler is a console page or action; an error it returns is shown as a
// page with the message and the fix.
type handler func(w http.ResponseWriter, r *http.Request, q *rq) error

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix(Prefix+"static/", http.FileServerFS(static))
	mux.Handle("GET "+Prefix+"static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Asset URLs carry a content hash, so they may be cached for good.
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET "+Prefix+"login", s.loginPage)
	mux.HandleFunc("POST "+Prefix+"login", s.loginSubmit)
	// Each page declares the action it performs (authz's table, as on the
	// API): a role that may not is refused before the page runs, with the
	// role it needs; the operation it calls checks again (and ownership).
	page := func(pattern string, need authz.Action, h handler) { mux.Handle(pattern, s.signedIn(need, h)) }
	page("POST "+Prefix+"logout", authz.UILink, s.logout)
	page("GET "+Prefix+"{$}", authz.StatusRead, s.overview)
	page("GET "+Prefix+"nodes", authz.NodeRead, s.nodes)
	page("GET "+Prefix+"jobs", authz.JobRead, s.jobs)
	page("GET "+Prefix+"jobs/new", authz.JobSubmit, s.submitForm)
	page("POST "+Prefix+"jobs", authz.JobSubmit, s.submit)
	page("GET "+Prefix+"jobs/{id}", authz.JobRead, s.job)
	page("GET "+Prefix+"jobs/{id}/events", authz.JobRead, s.jobEvents)
	page("GET "+Prefix+"jobs/{id}/output", authz.JobRead, s.jobOutput)
	page("GET "+Prefix+"tokens", authz.TokenRead, s.tokens)
	page("POST "+Prefix+"tokens", authz.TokenCreate, s.tokenCreate)
	page("GET "+Prefix+"certs", authz.CertRead, s.certs)
	page("GET "+Prefix+"ca", authz.CARead, s.ca)
	page("GET "+Prefix+"ca/bundle.pem", authz.CARead, s.bundlePEM)
	page("GET "+Prefix+"ca/roots/{serial}", authz.CARead, s.rootDER)
	page("POST "+Prefix+"ca/bundle.p12", authz.CARead, s.bundleP12)
	page("GET "+Prefix+"ca/crl", authz.CRLRead, s.crl)
	page("GET "+Prefix+"check", authz.CheckRun, s.checkForm)
	page("POST "+Prefix+"check", authz.CheckRun, s.check)
	page("GET "+Prefix+"audit", authz.AuditRead, s.auditLog)
	page("GET "+Prefix+"migration", authz.MigrateRead, s.migration)
	page("GET "+Prefix+"maintenance", authz.StatusRead, s.maintenancePage)
	page("GET "+Prefix+"jobs/{id}/files/{task}", authz.JobRead, s.outputFile)
	page("GET "+Prefix+"profiles", authz.ProfileRead, s.profiles)
	page("GET "+Prefix+"users", authz.UserRead, s.users)
	page("POST "+Prefix+"users", authz.UserManage, s.userAdd)
	page("GET "+Prefix+"users/{name}/role", authz.UserManage, s.userRoleForm)
	page("POST "+Prefix+"users/{name}/role", authz.UserManage, s.userRole)
	for _, a := range s.allActions() {
		page("GET "+a.pattern, a.need, s.confirmPage(a))
		page("POST "+a.pattern, a.need, s.doAction(a))
	}
	page(Prefix, authz.StatusRead, func(w http.ResponseWriter, r *http.Request, q *rq) error {
		return api.Errorf(api.CodeNotFound, "use the navigation above", "there is no console page at %s", r.URL.Path)
	})
	return mux
}

// signedIn admits requests with a live session (and, for anything but GET,
// a matching CSRF token from this site); others get the sign-in page,
// never data.
func (s *Server) signedIn(need authz.Action, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := s.now()
		var sess *session
		var id string
		if c, err := r.Cookie(sessionCookie); err == nil {
			id = c.Value
			var ended error
			sess, ended = s.sessions.get(id, now)
			if ended != nil {
				s.cluster.Record(sess.principal.WithSource(r.RemoteAddr), audit.Event{Type: "ui.session_end", Result: "timed_out"})
				sess = nil
			}
		}
		if sess == nil {
			if id != "" {
				setCookie(w, sessionCookie, "", -1)
			}
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/events") {
				http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.renderLogin(w, r, http.StatusUnauthorized, "Your session has ended. Sign in again.", "")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) || !tokenEqual(r.PostFormValue("csrf"), sess.csrf) {
				s.render(w, http.StatusForbidden, "error", &view{Title: "Refused", User: sess.principal.ID.Name, CSRF: sess.csrf,
					Error: api.Errorf(api.CodePermissionDenied, "go back, reload the page and submit the form again",
						"this form was not sent from this console's own page (its CSRF token is missing or wrong, or it came from another site), so nothing was done")})
				return
			}
		}
		q := &rq{sess: sess, p: sess.principal.WithSource(r.RemoteAddr)}
		q.p.Route = "console " + r.Method + " " + r.URL.Path
		if _, err := authz.Decide(q.p, s.cfg.Cluster, need); err != nil {
			s.cluster.Record(q.p, audit.Event{Type: "authz.denied", Target: q.p.Route, Result: string(api.CodeOf(err)),
				Detail: map[string]string{"action": string(need), "role": string(q.p.Role), "message": api.AsError(err).Message}})
			s.renderError(w, r, q, err)
			return
		}
		// Every role that may sign in may read the status; a refusal (a
		// revoked certificate) shows on the page's own call.
		q.maint, _ = s.cluster.Maintenance(r.Context(), q.p)
		if err := h(w, r, q); err != nil {
			s.renderError(w, r, q, err)
		}
	})
}

// renderError shows a failed page or action: what failed and the fix.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, q *rq, err error) {
	e := api.AsError(err)
	if e.Code == api.CodeInternal {
		s.log.Error("web console: internal error", "path", r.URL.Path, "err", err)
	}
	s.render(w, api.HTTPStatus(e.Code), "error", s.view(q, "Error", "", nil, e))
}

// view builds the chrome of a page for q's user.
func (s *Server) view(q *rq, title, section string, data any, e *api.Error) *view {
	return &view{Title: title, Section: section, User: q.p.ID.Name, Role: q.p.Role, Via: string(q.p.Via), CSRF: q.sess.csrf,
		Flash: s.sessions.takeFlash(q.sess), Error: e, Now: s.now(), Data: data, Maintenance: q.maint}
}

// done ends a successful action: a message for the next page, then a
// redirect to it (so a reload never repeats the action).
func (s *Server) done(w http.ResponseWriter, r *http.Request, q *rq, msg, to string) error {
	s.sessions.setFlash(q.sess, msg)
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// safeNext accepts only a path inside the console as a place to return to
// after sign-in, never another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return Prefix
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" || strings.HasPrefix(u.Path, Prefix+"login") {
		return Prefix
	}
	return next
}
