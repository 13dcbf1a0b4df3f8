package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
)

// tokensView is the token list and the create form.
type tokensView struct {
	Tokens  []api.Token
	Form    url.Values
	Created *api.TokenCreated // set once, right after creation
	Command string            // the join command for Created
}

func (s *Server) tokens(w http.ResponseWriter, r *http.Request, q *rq) error {
	return s.renderTokens(w, r, q, tokensView{Form: url.Values{"ttl": {"1h"}, "uses": {"1"}}}, nil, http.StatusOK)
}

func (s *Server) renderTokens(w http.ResponseWriter, r *http.Request, q *rq, v tokensView, e *api.Error, status int) error {
	toks, err := s.cluster.Tokens(r.Context(), q.p)
	if err != nil {
		return err
	}
	// Newest first: the one just made is on top.
	for i, j := 0, len(toks)-1; i < j; i, j = i+1, j-1 {
		toks[i], toks[j] = toks[j], toks[i]
	}
	v.Tokens = toks
	s.render(w, status, "tokens", s.view(q, "Join tokens", "tokens", v, e))
	return nil
}

// tokenCreate creates a join token and shows its join command this once:
// the page is answered to the POST itself (not stored, not cached), and
// only a hash of the secret is kept.
func (s *Server) tokenCreate(w http.ResponseWriter, r *http.Request, q *rq) error {
	req, err := tokenFromForm(r)
	if err == nil {
		var tc api.TokenCreated
		if tc, err = s.cluster.CreateToken(r.Context(), q.p, req); err == nil {
			return s.renderTokens(w, r, q, tokensView{Form: url.Values{"ttl": {"1h"}, "uses": {"1"}}, Created: &tc, Command: joinAgentCommand}, nil, http.StatusCreated)
		}
	}
	e := api.AsError(err)
	return s.renderTokens(w, r, q, tokensView{Form: r.PostForm}, e, api.HTTPStatus(e.Code))
}

// joinAgentCommand starts an agent that reads the join string on its
// standard input (pasted, then Enter): the secret is on no command line,
// so neither the process list nor a shell's history holds it.
const joinAgentCommand = "ward agent --data /var/lib/ward-agent --join-file -"

func tokenFromForm(r *http.Request) (api.TokenCreate, error) {
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	var req api.TokenCreate
	if t := f("ttl"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return req, api.Errorf(api.CodeInvalidArgument, "give a duration such as 1h or 30m", "TTL %q is not a duration", t)
		}
		req.TTL = api.Duration(d)
	}
	if u := f("uses"); u != "" {
		n, err := strconv.Atoi(u)
		if err != nil {
			return req, api.Errorf(api.CodeInvalidArgument, "give a whole number of uses", "uses %q is not a whole number", u)
		}
		req.Uses = n
	}
	labels, err := parsePairs("label", r.PostFormValue("labels"), true)
	if err != nil {
		return req, api.Errorf(api.CodeInvalidArgument, "write labels as key=value, one per line or separated by commas", "%v", err)
	}
	req.Labels = labels
	return req, nil
}

// certsView is the list of issued certificates.
type certsView struct {
	Certs       []api.Cert
	State, Role string
	Pager       pager
}

func (s *Server) certs(w http.ResponseWriter, r *http.Request, q *rq) error {
	qs := r.URL.Query()
	v := certsView{State: qs.Get("state"), Role: qs.Get("role")}
	if _, set := qs["state"]; !set {
		v.State = api.CertActive
	}
	page, off := pageOf(r)
	certs, total, err := s.cluster.Certs(r.Context(), q.p, api.CertFilter{State: v.State, Role: v.Role, Newest: true, Offset: off, Limit: pageSize})
	if err != nil {
		return err
	}
	v.Certs = certs
	v.Pager = newPager(r, page, len(certs), total)
	s.render(w, http.StatusOK, "certs", s.view(q, "Certificates", "certs", v, nil))
	return nil
}

// caView is the CA's status, its rotation and the downloads.
type caView struct {
	CA     api.CAStatus
	Agents []count
}

func (s *Server) ca(w http.ResponseWriter, r *http.Request, q *rq) error {
	st, err := s.cluster.CAStatus(r.Context(), q.p)
	if err != nil {
		return err
	}
	v := caView{CA: st}
	for issuer, n := range st.Agents {
		v.Agents = append(v.Agents, count{issuer, n})
	}
	s.render(w, http.StatusOK, "ca", s.view(q, "Certificate authority", "ca", v, nil))
	return nil
}

// download sends a file for the browser to save.
func download(w http.ResponseWriter, name, contentType string, data []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

func (s *Server) bundlePEM(w http.ResponseWriter, r *http.Request, q *rq) error {
	roots, err := s.cluster.TrustBundle(r.Context(), q.p)
	if err != nil {
		return err
	}
	download(w, "ward-ca-bundle.pem", "application/x-pem-file", pki.EncodeCertsPEM(roots...))
	return nil
}

// rootDER sends one trusted root as DER (.cer): a DER file holds one
// certificate.
func (s *Server) rootDER(w http.ResponseWriter, r *http.Request, q *rq) error {
	roots, err := s.cluster.TrustBundle(r.Context(), q.p)
	if err != nil {
		return err
	}
	serial := r.PathValue("serial")
	for _, root := range roots {
		if pki.SerialHex(root) == serial {
			download(w, "ward-root-"+serial+".cer", "application/pkix-cert", pki.EncodeCertDER(root))
			return nil
		}
	}
	return api.Errorf(api.CodeNotFound, "pick a root from the CA page", "no trusted root has serial %s", serial)
}

// bundleP12 sends the trust bundle as a PKCS#12 trust store protected with
// the password typed, for Java's keytool and Windows.
func (s *Server) bundleP12(w http.ResponseWriter, r *http.Request, q *rq) error {
	password := r.PostFormValue("password")
	if password == "" {
		return api.Errorf(api.CodeInvalidArgument, "type a password; keytool then takes the same with -storepass", "a PKCS#12 trust store needs a password")
	}
	roots, err := s.cluster.TrustBundle(r.Context(), q.p)
	if err != nil {
		return err
	}
	p12, err := pki.EncodePKCS12Truststore(roots, password)
	if err != nil {
		return err
	}
	download(w, "ward-ca-bundle.p12", "application/x-pkcs12", p12)
	return nil
}

func (s *Server) crl(w http.ResponseWriter, r *http.Request, q *rq) error {
	der, err := s.cluster.CRL(r.Context(), q.p)
	if err != nil {
		return err
	}
	download(w, "ward.crl", "application/pkix-crl", der)
	return nil
}
