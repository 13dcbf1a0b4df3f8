package coordinator

import (
	"net/http"
	"slices"

	"github.com/wardcluster/ward/internal/authz"
)

// Listener names for the route table.
const (
	listenerCluster = "cluster"
	listenerPublic  = "public"
)

// apiRoute is one registered route and the action it needs (authz's
// table says which roles may perform it).
type apiRoute struct {
	Listener string
	Pattern  string
	Action   authz.Action
}

// router registers routes on one listener's mux, each with the action it
// needs, and records them: the route × role test walks this list, so a
// route cannot be added without a policy. Routes of users are checked
// here, before the handler reads anything, and again by the operation
// (which the web console calls directly).
type router struct {
	c        *Coordinator
	mux      *http.ServeMux
	listener string
}

func (c *Coordinator) newRouter(listener string) *router {
	c.routesMu.Lock()
	c.routes = slices.DeleteFunc(c.routes, func(r apiRoute) bool { return r.Listener == listener })
	c.routesMu.Unlock()
	return &router{c: c, mux: http.NewServeMux(), listener: listener}
}

func (rt *router) record(pattern string, a authz.Action) {
	if _, ok := authz.RuleOf(a); !ok {
		panic("route " + pattern + ": action " + string(a) + " has no rule in the authorization table")
	}
	rt.c.routesMu.Lock()
	rt.c.routes = append(rt.c.routes, apiRoute{Listener: rt.listener, Pattern: pattern, Action: a})
	rt.c.routesMu.Unlock()
}

// api registers an API handler that acts for the request's verified
// client certificate once it may perform a.
func (rt *router) api(pattern string, a authz.Action, h func(http.ResponseWriter, *http.Request, authz.Principal) error) {
	rt.record(pattern, a)
	c := rt.c
	rt.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := c.certPrincipal(r)
		if err == nil {
			c.noteAdmin(p)
			err = c.allow(p, a)
		}
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			writeError(w, c, err)
		}
	}))
}

// checked registers a plain handler behind the same check as api.
func (rt *router) checked(pattern string, a authz.Action, h http.Handler) {
	rt.api(pattern, a, func(w http.ResponseWriter, r *http.Request, _ authz.Principal) error {
		h.ServeHTTP(w, r)
		return nil
	})
}

// public registers a handler that needs no identity (authz.Public).
func (rt *router) public(pattern string, h http.Handler) {
	rt.record(pattern, authz.Public)
	rt.mux.Handle(pattern, h)
}

// apiRoutes lists every registered route of every listener.
func (c *Coordinator) apiRoutes() []apiRoute {
	c.routesMu.Lock()
	defer c.routesMu.Unlock()
	return append([]apiRoute(nil), c.routes...)
}
