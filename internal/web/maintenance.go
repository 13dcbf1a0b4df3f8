package web

import (
	"net/http"
	"strings"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
)

// maintenancePage shows the maintenance mode (every role may read it) and,
// to admins, the buttons that turn it on or off.
func (s *Server) maintenancePage(w http.ResponseWriter, r *http.Request, q *rq) error {
	m, err := s.cluster.Maintenance(r.Context(), q.p)
	if err != nil {
		return err
	}
	q.maint = m
	s.render(w, http.StatusOK, "maintenance", s.view(q, "Maintenance mode", "maintenance", m, nil))
	return nil
}

// maintenanceActions turn maintenance mode on (with the message users are
// refused with) and off: admins only, as `ward cluster maintenance`.
func (s *Server) maintenanceActions() []action {
	back := Prefix + "maintenance"
	return []action{
		{
			pattern: Prefix + "maintenance/on", need: authz.ClusterMaintenance,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				return confirmView{Heading: "Turn maintenance mode on", Button: "Turn maintenance mode on", Danger: true, Back: back,
					Lines: []string{"Users who are not admins cannot submit, requeue or clone jobs; they are refused with the code MAINTENANCE and the message below.",
						"Queued and running jobs go on. Every console page shows a banner with the message."},
					Fields: []field{{Name: "message", Label: "Message (one line, shown to users)", Type: "text", Help: "For example: storage upgrade until 14:00 UTC."}}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				m, err := s.cluster.SetMaintenance(r.Context(), q.p, api.MaintenanceRequest{On: true, Message: strings.TrimSpace(r.PostFormValue("message"))})
				return "Maintenance mode is on" + withMessage(m.Message) + ".", back, err
			},
		},
		{
			pattern: Prefix + "maintenance/off", need: authz.ClusterMaintenance,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				return confirmView{Heading: "Turn maintenance mode off", Button: "Turn maintenance mode off", Back: back,
					Lines: []string{"Every user may submit again, as their role allows."}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				_, err := s.cluster.SetMaintenance(r.Context(), q.p, api.MaintenanceRequest{On: false})
				return "Maintenance mode is off.", back, err
			},
		},
	}
}

func withMessage(m string) string {
	if m == "" {
		return ""
	}
	return ": " + m
}
