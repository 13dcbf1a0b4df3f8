package web

import (
	"errors"
	"net/http"

	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
)

// loginView is the sign-in page's data.
type loginView struct {
	Token    string // a sign-in link's secret, to post back
	Auto     bool   // post it back at once (only for the link as opened)
	Next     string
	Message  string // why the page is shown (a refusal, a signed-out session)
	Password bool   // password sign-in is configured
	FormCSRF string
}

// passwordSlots bounds concurrent password checks: each argon2id check
// takes tens of megabytes and a good part of a core.
var passwordSlots = make(chan struct{}, 2)

// loginPage shows the sign-in form, or, for a link from `ward ui`, a page
// that posts the link's secret back (by script, or by its button). The
// secret is checked only on that post, so a link preview or scanner that
// fetches the URL cannot use it up.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	msg := ""
	if r.URL.Query().Get("signed_out") == "1" {
		msg = "You have signed out."
	}
	s.renderLogin(w, r, http.StatusOK, msg, r.URL.Query().Get("token"))
}

// renderLogin shows the sign-in page with a fresh CSRF token for its form
// (a cookie and a hidden field that must match).
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg, token string) {
	csrf, err := randomToken()
	if err != nil {
		http.Error(w, "no randomness for the sign-in form", http.StatusInternalServerError)
		return
	}
	setCookie(w, loginCookie, csrf, 600)
	next := safeNext(r.URL.Query().Get("next"))
	if r.Method == http.MethodPost {
		next = safeNext(r.PostFormValue("next"))
	}
	// A link's page posts itself back only when first opened: a refused
	// post shows a button instead, so a browser that drops the form's
	// cookie cannot loop.
	auto := token != "" && r.Method == http.MethodGet
	s.render(w, status, "login", &view{Title: "Sign in", Data: loginView{Token: token, Auto: auto, Next: next, Message: msg, Password: s.cfg.Password != nil, FormCSRF: csrf}})
}

// loginSubmit signs in with a link's secret or the admin password, and
// audits the outcome with the source address either way.
func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || !tokenEqual(r.PostFormValue("csrf"), c.Value) {
		s.renderLogin(w, r, http.StatusForbidden, "The sign-in form expired or did not come from this page. Try again.", r.PostFormValue("token"))
		return
	}
	token, password := r.PostFormValue("token"), r.PostFormValue("password")
	via := authz.ViaUIPassword
	if token != "" {
		via = authz.ViaUILink
	}
	anon := authz.Principal{Via: via, Source: r.RemoteAddr}
	src := hostOf(r.RemoteAddr)
	refuse := func(e *signInError) {
		s.throttle.fail(src, now)
		s.cluster.Record(anon, audit.Event{Type: "ui.login", Actor: r.RemoteAddr, Result: e.code})
		s.log.Info("web console: sign-in refused", "source", r.RemoteAddr, "via", string(via), "code", e.code)
		s.renderLogin(w, r, http.StatusUnauthorized, e.message, "")
	}
	if until, blocked := s.throttle.blocked(src, now); blocked {
		s.cluster.Record(anon, audit.Event{Type: "ui.login", Actor: r.RemoteAddr, Result: codeThrottled})
		s.renderLogin(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from "+src+". Try again after "+until.UTC().Format("15:04 MST")+".", "")
		return
	}
	var p authz.Principal
	switch {
	case token != "":
		if p, err = s.links.consume(token, now); err != nil {
			var se *signInError
			errors.As(err, &se)
			refuse(se)
			return
		}
		p.Via = authz.ViaUILink // the link's maker and its way in are in the ui.link event
	case s.cfg.Password == nil:
		refuse(&signInError{codeNoPassword, "Password sign-in is not set up on this coordinator. Run `ward ui` for a sign-in link."})
		return
	default:
		passwordSlots <- struct{}{}
		ok := s.cfg.Password.Verify(password)
		<-passwordSlots
		if !ok {
			refuse(&signInError{codeWrongPassword, "That password is not right."})
			return
		}
		p = authz.Principal{ID: pki.ID{Cluster: s.cfg.Cluster, Role: pki.RoleUser, Name: authz.AdminName}, Role: authz.RoleAdmin, Via: authz.ViaUIPassword}
	}
	id, _, err := s.sessions.create(p, now)
	if err != nil {
		s.renderLogin(w, r, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	s.cluster.Record(p.WithSource(r.RemoteAddr), audit.Event{Type: "ui.login"})
	s.log.Info("web console: signed in", "identity", p.ID.String(), "via", string(p.Via), "source", r.RemoteAddr)
	setCookie(w, loginCookie, "", -1)
	setCookie(w, sessionCookie, id, 0)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

// logout ends the session on the server, so its cookie is worthless from
// now on, even if a copy of it survives.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, q *rq) error {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.delete(c.Value)
	}
	s.cluster.Record(q.p, audit.Event{Type: "ui.logout"})
	setCookie(w, sessionCookie, "", -1)
	w.Header().Set("Clear-Site-Data", `"cookies", "storage"`)
	http.Redirect(w, r, Prefix+"login?signed_out=1", http.StatusSeeOther)
	return nil
}
