package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/forward"
	"github.com/wardcluster/ward/internal/transport"
)

// A follower passes `ward status` to the leader like every request. While
// no coordinator leads (an election) or the leader cannot be reached, it
// answers by itself instead of UNAVAILABLE: itself, the coordinators and
// the store as the store says, and the election as it sees it, marked
// partial. The job system's figures are the leader's alone and are left
// out rather than guessed.

// statusAttempt is a status request's attempt to reach the leader, kept in
// its context: the address tried and why it failed.
type statusAttempt struct {
	addr    string
	err     error
	retried bool
}

type statusAttemptKey struct{}

// isStatusRequest reports whether r is GET /v1/status.
func isStatusRequest(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL.Path == "/v1/status"
}

// newStatusProxy forwards a status request to the leader seen now, without
// waiting for one; when there is none, or it cannot be reached, routes
// (this follower's own) answer a partial status.
func (c *Coordinator) newStatusProxy(routes http.Handler) http.Handler {
	var proxy *forward.Proxy
	proxy = forward.NewProxy(forward.ListenerCluster, c.memberID(), c.leaderNow,
		func(host string) *tls.Config { return c.leaderTLS(host, transport.ALPNHTTP) },
		func(w http.ResponseWriter, r *http.Request, err error) {
			at := r.Context().Value(statusAttemptKey{}).(*statusAttempt)
			at.err = err
			if in, ok, _ := c.tracker.Leader(); ok && !at.retried && at.addr != "" && in.ClusterAddr != at.addr && in.ID != c.memberID() {
				at.retried = true // a new leader recorded itself meanwhile: ask it
				proxy.ServeHTTP(w, r)
				return
			}
			routes.ServeHTTP(w, r)
		})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), statusAttemptKey{}, &statusAttempt{})))
	})
}

// leaderNow is the cluster address of the leader last seen, without
// waiting for one; a status request's attempt records it.
func (c *Coordinator) leaderNow(ctx context.Context) (string, error) {
	in, ok, _ := c.tracker.Leader()
	switch {
	case !ok:
		return "", errNoLeader
	case in.ID == c.memberID():
		return "", errTakingOver
	}
	if at, _ := ctx.Value(statusAttemptKey{}).(*statusAttempt); at != nil {
		at.addr = in.ClusterAddr
	}
	return in.ClusterAddr, nil
}

// partialStatus marks st as this follower's own answer: why, and the
// election as this coordinator sees it; it clears what only the leader
// knows.
func (c *Coordinator) partialStatus(ctx context.Context, st *api.Status) {
	in, ok, readErr := c.tracker.Leader()
	ps := &api.PartialStatus{Since: c.tracker.Since(), LeaseTTL: api.Duration(c.leaseTTL())}
	if in.ID != "" {
		ps.LastLeader, ps.LastLeaderSince = in.ID, in.Since
	}
	switch {
	case ok && in.ID == c.memberID():
		ps.Election = api.ElectionTakingOver
		ps.Reason = "this coordinator won the election and is loading the job system from the store; retry in a moment"
	case ok:
		ps.Election = api.ElectionLeaderUnreachable
		who, why := in.ID, error(errNoLeader)
		if at, _ := ctx.Value(statusAttemptKey{}).(*statusAttempt); at != nil && at.addr != "" {
			who, why = "at "+at.addr, at.err
		}
		ps.Reason = fmt.Sprintf("the leader %s could not be reached (%v): if it died, another coordinator is elected within the leader lease TTL (%s) once its term ends",
			who, why, c.leaseTTL())
	default:
		ps.Election = api.ElectionUnderWay
		ps.Reason = fmt.Sprintf("no coordinator leads the cluster right now: an election is under way, and a new leader is elected within the leader lease TTL (%s) of the last term's end", c.leaseTTL())
	}
	if readErr != nil {
		ps.Reason += fmt.Sprintf("; this coordinator cannot read the leader record from the %s: %v", c.backend.desc, readErr)
	}
	st.Partial = ps
	st.Nodes, st.Connected, st.AgentVersions, st.Maintenance = 0, 0, nil, api.Maintenance{}
}
