package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/diagnose"
)

// checkView is the Check connection form and, after a run, its report.
type checkView struct {
	Form   url.Values
	Report *diagnose.Report
}

func (s *Server) checkForm(w http.ResponseWriter, r *http.Request, q *rq) error {
	form := url.Values{"min_tls": {"1.3"}, "cluster_ca": {"1"}, "timeout": {"5s"}}
	if a := r.URL.Query().Get("address"); a != "" {
		form.Set("address", a)
	}
	s.render(w, http.StatusOK, "check", s.view(q, "Check connection", "check", checkView{Form: form}, nil))
	return nil
}

// check runs `ward check` from the coordinator with the fields as typed,
// nothing saved, and shows the verdict, the TLS facts and the fix beside
// the form as it was filled in.
func (s *Server) check(w http.ResponseWriter, r *http.Request, q *rq) error {
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	req := api.CheckRequest{Address: f("address"), CAPEM: r.PostFormValue("ca_pem"), ClusterCA: r.PostFormValue("cluster_ca") != "",
		Pins: strings.FieldsFunc(r.PostFormValue("pins"), isListSep), ServerName: f("server_name"), MinTLS: f("min_tls"),
		InsecureSkipVerify: r.PostFormValue("insecure_skip_verify") != ""}
	v := checkView{Form: r.PostForm}
	var e *api.Error
	if t := f("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			e = api.Errorf(api.CodeInvalidArgument, "give a duration such as 5s", "timeout %q is not a duration", t)
		}
		req.Timeout = api.Duration(d)
	}
	if e == nil {
		rep, err := s.cluster.CheckConnection(r.Context(), q.p, req)
		if err != nil {
			e = api.AsError(err)
		}
		v.Report = rep
	}
	status := http.StatusOK
	if e != nil {
		status = api.HTTPStatus(e.Code)
	}
	s.render(w, status, "check", s.view(q, "Check connection", "check", v, e))
	return nil
}
