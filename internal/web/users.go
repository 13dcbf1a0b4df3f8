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

// usersView is the user list, the add form and, right after an add or a
// role change, the one-time login for the person (shown this once).
type usersView struct {
	Users  []api.User
	Roles  []authz.Role
	Form   url.Values
	Invite *invite
}

// users is the users page. It shows the one-time login an add or a role
// change just made (the POST redirected here) once: a reload shows it no
// more and, unlike reloading the POST's own answer, changes nothing.
func (s *Server) users(w http.ResponseWriter, r *http.Request, q *rq) error {
	return s.renderUsers(w, r, q, usersView{Form: url.Values{"role": {string(authz.RoleSubmitter)}, "ttl": {"24h"}}, Invite: s.sessions.takeInvite(q.sess, s.now())}, nil, http.StatusOK)
}

func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, q *rq, v usersView, e *api.Error, status int) error {
	us, err := s.cluster.Users(r.Context(), q.p)
	if err != nil {
		return err
	}
	v.Users, v.Roles = us, authz.Roles
	s.render(w, status, "users", s.view(q, "Users", "users", v, e))
	return nil
}

// showInvite ends an add or a role change: the login is held in the
// session for the users page, and the browser is sent there (POST,
// redirect, GET), so a reload never makes another login that voids the
// one shown.
func (s *Server) showInvite(w http.ResponseWriter, r *http.Request, q *rq, inv api.UserInvite, command string) error {
	s.sessions.setInvite(q.sess, &invite{UserInvite: inv, Command: command, made: s.now()})
	http.Redirect(w, r, Prefix+"users#user-invite", http.StatusSeeOther)
	return nil
}

// loginCommand is what the person runs to log in: the login string is
// pasted on its standard input, never written on a command line, where a
// shell's history would keep it; the key is made on their machine.
func loginCommand(force bool) string {
	if force {
		return "ward login --join-file - --force"
	}
	return "ward login --join-file -"
}

// ttlField reads an optional duration field.
func ttlField(r *http.Request) (api.Duration, error) {
	t := strings.TrimSpace(r.PostFormValue("ttl"))
	if t == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, api.Errorf(api.CodeInvalidArgument, "give a duration such as 24h, or leave it empty for the default", "the login's validity %q is not a duration", t)
	}
	return api.Duration(d), nil
}

// userAdd adds a user, as `ward user add`, and shows the one-time login
// once (not stored, not cached, never shown again).
func (s *Server) userAdd(w http.ResponseWriter, r *http.Request, q *rq) error {
	ttl, err := ttlField(r)
	if err == nil {
		var inv api.UserInvite
		req := api.UserCreate{Name: strings.TrimSpace(r.PostFormValue("name")), Role: r.PostFormValue("role"), TTL: ttl}
		if inv, err = s.cluster.AddUser(r.Context(), q.p, req); err == nil {
			return s.showInvite(w, r, q, inv, loginCommand(false))
		}
	}
	e := api.AsError(err)
	return s.renderUsers(w, r, q, usersView{Form: r.PostForm}, e, api.HTTPStatus(e.Code))
}

// roleFormView is the role change form.
type roleFormView struct {
	Name  string
	Role  string
	Roles []authz.Role
	TTL   string
}

func (s *Server) userRoleForm(w http.ResponseWriter, r *http.Request, q *rq) error {
	return s.renderRoleForm(w, r, q, "", "24h", nil)
}

func (s *Server) renderRoleForm(w http.ResponseWriter, r *http.Request, q *rq, role, ttl string, e *api.Error) error {
	name := r.PathValue("name")
	us, err := s.cluster.Users(r.Context(), q.p)
	if err != nil {
		return err
	}
	v := roleFormView{Name: name, Roles: authz.Roles, TTL: ttl, Role: role}
	found := false
	for _, u := range us {
		if u.Name == name {
			found = true
			if v.Role == "" {
				v.Role = u.Role
			}
		}
	}
	if !found {
		return api.Errorf(api.CodeNotFound, "the users page lists them", "there is no user %q", name)
	}
	status := http.StatusOK
	if e != nil {
		status = api.HTTPStatus(e.Code)
	}
	s.render(w, status, "userrole", s.view(q, "Change the role of "+name, "users", v, e))
	return nil
}

// userRole changes a user's role, as `ward user role`: their certificates
// are revoked at once and a new one-time login is shown this once.
func (s *Server) userRole(w http.ResponseWriter, r *http.Request, q *rq) error {
	name := r.PathValue("name")
	ttl, err := ttlField(r)
	if err == nil {
		var inv api.UserInvite
		if inv, err = s.cluster.ChangeUserRole(r.Context(), q.p, name, api.UserRoleChange{Role: r.PostFormValue("role"), TTL: ttl}); err == nil {
			return s.showInvite(w, r, q, inv, loginCommand(true))
		}
	}
	return s.renderRoleForm(w, r, q, r.PostFormValue("role"), r.PostFormValue("ttl"), api.AsError(err))
}

// userActions: removing a user, as `ward user remove`.
func (s *Server) userActions() []action {
	return []action{{
		pattern: Prefix + "users/{name}/remove", need: authz.UserManage,
		confirm: func(r *http.Request, q *rq) (confirmView, error) {
			name := r.PathValue("name")
			return confirmView{Heading: "Remove user " + name, Button: "Remove " + name, Danger: true, Back: Prefix + "users",
				Lines: []string{"Every certificate of " + name + " is revoked: their live API connections and log streams are cut at once, and a pending login stops working.",
					"Their jobs stay as they are."}}, nil
		},
		do: func(r *http.Request, q *rq) (string, string, error) {
			res, err := s.cluster.RemoveUser(r.Context(), q.p, r.PathValue("name"))
			return fmt.Sprintf("User %s removed: %d certificate(s) revoked, %d connection(s) closed.", res.User.Name, len(res.Revoked.Serials), res.Revoked.Closed), Prefix + "users", err
		},
	}}
}
