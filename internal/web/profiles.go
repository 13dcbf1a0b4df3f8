package web

import (
	"net/http"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
)

// profilesView lists the agent profiles, each with the nodes it applies
// to now and whether each node applied it.
type profilesView struct {
	Profiles []profileRow
}

type profileRow struct {
	api.Profile
	Nodes []api.Node // the nodes it applies to, with their profile state
}

// profiles is the profile list. Profiles are changed with `ward profile
// set|assign|rm` (the page shows the commands): the console only reads
// them.
func (s *Server) profiles(w http.ResponseWriter, r *http.Request, q *rq) error {
	ps, err := s.cluster.Profiles(r.Context(), q.p)
	if err != nil {
		return err
	}
	byName := map[string]api.Node{}
	if authz.Can(q.p.Role, authz.NodeRead) {
		nodes, err := s.cluster.Nodes(r.Context(), q.p)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			byName[n.Name] = n
		}
	}
	v := profilesView{}
	for _, p := range ps {
		row := profileRow{Profile: p}
		for _, name := range p.Nodes {
			n, ok := byName[name]
			if !ok {
				n = api.Node{Name: name}
			}
			row.Nodes = append(row.Nodes, n)
		}
		v.Profiles = append(v.Profiles, row)
	}
	s.render(w, http.StatusOK, "profiles", s.view(q, "Agent profiles", "profiles", v, nil))
	return nil
}
