package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/buildinfo"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// clusterRoutes is the mTLS API. Every route needs a client certificate:
// the identity comes from the verified certificate, never from a header,
// and each operation authorizes it (allow) on the same path the web admin
// uses.
func (c *Coordinator) clusterRoutes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request, authz.Principal) error) {
		mux.Handle(pattern, c.authenticated(h))
	}
	handle("GET /v1/status", c.apiStatus)
	handle("GET /v1/cluster/maintenance", c.apiMaintenanceGet)
	handle("POST /v1/cluster/maintenance", c.apiMaintenanceSet)
	handle("GET /v1/debug/info", c.apiDebugInfo)
	handle("GET /v1/nodes", c.apiNodes)
	handle("POST /v1/nodes/{name}/drain", c.apiDrain)
	handle("POST /v1/nodes/{name}/undrain", c.apiUndrain)
	handle("POST /v1/tokens", c.apiTokenCreate)
	handle("GET /v1/tokens", c.apiTokenList)
	handle("POST /v1/tokens/{id}/revoke", c.apiTokenRevoke)
	handle(patternJobSubmit, c.apiJobSubmit)
	handle("GET /v1/jobs", c.apiJobList)
	handle("GET /v1/jobs/{id}", c.apiJobStatus)
	handle("POST /v1/jobs/{id}/cancel", c.apiJobCancel)
	handle("GET /v1/jobs/{id}/logs", c.apiJobLogs)
	handle("GET /v1/jobs/{id}/progress", c.apiJobProgress)
	handle("GET /v1/jobs/{id}/outputs", c.apiJobOutputs)
	handle("GET /v1/jobs/{id}/outputs/{task}/file", c.apiJobOutputFile)
	handle("PUT /v1/staging/files/{sum}", c.apiStagingUpload)
	handle("GET /v1/profiles", c.apiProfiles)
	handle("PUT /v1/profiles/{name}", c.apiProfileSet)
	handle("POST /v1/profiles/{name}/assign", c.apiProfileAssign)
	handle("DELETE /v1/profiles/{name}", c.apiProfileDelete)
	handle("GET /v1/staging/attempts/{job}/{task}/{attempt}/inputs/{n}", c.apiStagingInput)
	handle("PUT /v1/staging/attempts/{job}/{task}/{attempt}/outputs", c.apiStagingOutput)
	handle("POST /v1/nodes/{name}/revoke", c.apiNodeRevoke)
	handle("GET /v1/certs", c.apiCertList)
	handle("POST /v1/certs/{serial}/revoke", c.apiCertRevoke)
	handle("GET /v1/doctor", c.apiDoctor)
	handle("GET /v1/audit", c.apiAudit)
	handle("GET /v1/migrate/status", c.apiMigrateStatus)
	handle("POST /v1/migrate/upgrade", c.apiMigrateUpgrade)
	handle("POST /v1/migrate/finish", c.apiMigrateFinish)
	handle("GET /v1/ca/status", c.apiCAStatus)
	handle("POST /v1/ca/rotate", c.apiCARotate)
	handle("POST /v1/check", c.apiCheck)
	handle("GET /v1/store/backup", c.apiStoreBackup)
	handle("POST /v1/ui/login-link", c.apiUILink)
	handle("GET /v1/ca/crl", func(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
		if err := c.allow(p, authz.Read); err != nil {
			return err
		}
		c.serveCRL(w, r)
		return nil
	})
	mux.Handle("GET /metrics", c.metricsAuth(c.metrics.Handler()))
	mux.HandleFunc("POST /v1/certs/renew", c.apiRenew)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, c, api.Errorf(api.CodeNotFound, "see `ward --help` for the commands and the README for the API", "no API route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// wrongPort answers an API request that reached the public port with the
// cluster port to use.
func (c *Coordinator) wrongPort(w http.ResponseWriter, r *http.Request) {
	for _, p := range []string{api.PathJoin, api.PathHeal, api.PathCA, api.PathCRL, api.PathCRLs, api.PathReady} {
		if r.URL.Path == p || strings.HasPrefix(r.URL.Path, p+"/") {
			w.Header().Set("Allow", "GET, POST")
			writeError(w, c, api.Errorf(api.CodeInvalidArgument, "see the README's list of public routes", "%s %s: this route does not take %s", r.Method, r.URL.Path, r.Method))
			return
		}
	}
	cluster := c.advertisedAddr(c.cfg.ClusterAddr)
	writeError(w, c, api.Errorf(api.CodeWrongPort,
		fmt.Sprintf("point the CLI at the cluster port: `ward context set --server %s` (or --server %s for one command)", cluster, cluster),
		"%s is the coordinator's public port, which serves only joins, the CA bundle and the CRL; the CLI and the API use its cluster port, %s, with a client certificate", r.Host, cluster))
}

// publicRoutes is the server-auth-only port: joining, trust and readiness.
func (c *Coordinator) publicRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(patternJoin, c.apiJoin)
	mux.HandleFunc("GET "+api.PathCA, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(c.clientBundle().PEM())
	})
	mux.HandleFunc(patternHeal, c.apiHeal)
	mux.HandleFunc("GET "+api.PathCRL, c.serveCRL)
	mux.HandleFunc("GET "+api.PathCRL+"/{issuer}", c.serveCRL)
	mux.HandleFunc("GET "+api.PathCRLs, c.serveCRLs)
	// The API lives on the cluster port: a CLI or script pointed here is
	// told where to go instead of "not found".
	mux.HandleFunc("/v1/", c.wrongPort)
	mux.HandleFunc("GET "+api.PathReady, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	c.mountConsole(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, c, api.Errorf(api.CodeNotFound, "the public port serves joins, the CA bundle, the CRL and the web console under /ui/; use the cluster port with a client certificate for the API", "no public route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// authenticated turns the request's verified client certificate into the
// principal the handler acts for; the operation itself authorizes it.
func (c *Coordinator) authenticated(h func(http.ResponseWriter, *http.Request, authz.Principal) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := c.certPrincipal(r)
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			writeError(w, c, err)
		}
	})
}

// writeError sends an *api.Error as JSON. Internal causes go to the log,
// not to the client.
func writeError(w http.ResponseWriter, c *Coordinator, err error) {
	e := api.AsError(c.storeError(err))
	if e.Code == api.CodeInternal {
		c.log.Error("internal error", "err", err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.D().Seconds()))))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(api.HTTPStatus(e.Code))
	json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// readJSON reads a request body within its route's limit and decodes it
// with the API's one strict decoder (api.DecodeJSON).
func (c *Coordinator) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	limit, tooLarge := c.bodyLimit(r)
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge
		}
		return api.Errorf(api.CodeInvalidArgument, "send the whole request body", "reading the request body failed: %v", err)
	}
	return api.DecodeJSON(data, v)
}

// Routes whose bodies have limits of their own.
const (
	patternJobSubmit = "POST /v1/jobs"
	patternJoin      = "POST " + api.PathJoin
	patternHeal      = "POST " + api.PathHeal
)

// bodyLimit is the largest body r's route accepts, and the error for one
// over it, naming the setting that raises it.
func (c *Coordinator) bodyLimit(r *http.Request) (int, error) {
	l := c.cfg.Limits
	switch r.Pattern {
	case patternJobSubmit:
		return l.MaxJobBytes, api.Errorf(api.CodeJobTooLarge, "split the job or pass long inputs in a file; an admin can raise max_job_bytes",
			"the job submission is over max_job_bytes (%d bytes)", l.MaxJobBytes)
	case patternJoin, patternHeal:
		return l.PublicMaxRequestBytes, api.Errorf(api.CodeRequestTooLarge, "send a join or heal request as `ward agent` does (a CSR and a few labels); an admin can raise public_max_request_bytes",
			"the request body is over public_max_request_bytes (%d bytes)", l.PublicMaxRequestBytes)
	}
	return l.MaxRequestBytes, api.Errorf(api.CodeRequestTooLarge, "send less; an admin can raise max_request_bytes",
		"the request body is over max_request_bytes (%d bytes)", l.MaxRequestBytes)
}

// limitRequests refuses a request whose line and headers are over
// max_header_bytes with a JSON error (the server's own MaxHeaderBytes, set
// higher, is a backstop that answers in plain text), and bounds every body
// to bodyCap, also on routes that never read one.
func (c *Coordinator) limitRequests(h http.Handler, bodyCap int) http.Handler {
	maxHeader := c.cfg.Limits.MaxHeaderBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := headerBytes(r); n > maxHeader {
			writeError(w, c, api.Errorf(api.CodeHeadersTooLarge, "send shorter headers (cookies, tokens); an admin can raise max_header_bytes",
				"the request line and headers are %d bytes, over max_header_bytes (%d bytes)", n, maxHeader))
			return
		}
		if r.Body != nil && r.Body != http.NoBody && !stagingBody(r) {
			r.Body = http.MaxBytesReader(w, r.Body, int64(bodyCap))
		}
		h.ServeHTTP(w, r)
	})
}

// headerBytes is the size of r's request line and headers as sent.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len("Host: \r\n") + len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // "K: V\r\n"
		}
	}
	return n
}

// reply writes an operation's result as JSON with 200 OK, or passes its
// error on: reply(w)(c.Op(...)) is a whole handler body.
func reply[T any](w http.ResponseWriter) func(T, error) error {
	return func(v T, err error) error {
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, v)
	}
}

// readOptionalJSON decodes a body when there is one: the body of many
// actions is optional.
func (c *Coordinator) readOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return c.readJSON(w, r, v)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func (c *Coordinator) apiStatus(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[api.Status](w)(c.Status(r.Context(), p))
}

// Status is the cluster summary: addresses, counts, the insecure settings
// in effect and the nearest expiries.
func (c *Coordinator) Status(ctx context.Context, p authz.Principal) (api.Status, error) {
	if err := c.allow(p, authz.Read); err != nil {
		return api.Status{}, err
	}
	c.mu.Lock()
	nodes, connected := len(c.nodes), len(c.sessions)
	agentVersions := map[string]int{}
	for name := range c.sessions {
		v := "unknown"
		if rec := c.nodes[name]; rec != nil && rec.Version != "" {
			v = rec.Version
		}
		agentVersions[v]++
	}
	c.mu.Unlock()
	bi := buildinfo.Get()
	st := api.Status{
		Cluster:       c.cfg.Cluster,
		Coordinator:   c.ca.id.String(),
		Version:       bi.Version,
		Coordinators:  []api.CoordinatorInfo{{ID: c.ca.id.String(), Version: bi.Version, Commit: bi.Commit, GoVersion: bi.GoVersion}},
		AgentVersions: agentVersions,
		ClusterAddrs:  []string{c.advertisedAddr(c.cfg.ClusterAddr)},
		PublicAddrs:   []string{c.advertisedAddr(c.cfg.PublicAddr)},
		Nodes:         nodes,
		Connected:     connected,
		Insecure:      c.insecureSettings(),
		Store:         c.backend.desc,
		CAExpiry:      c.issuer().CA.Cert.NotAfter,
		CertExpiry:    c.ca.src.Leaf().NotAfter,
		StoreHealth:   c.storeHealth(ctx),
		Maintenance:   c.maintenance(),
	}
	return st, nil
}

// insecureSettings names every insecure setting in effect.
func (c *Coordinator) insecureSettings() []string {
	var out []string
	if c.cfg.MinTLS == "1.2" {
		out = append(out, "min_tls=1.2")
	}
	if c.cfg.StoreNoSync {
		out = append(out, "insecure_store_nosync")
	}
	if c.cfg.InsecureEtcdPlaintext {
		out = append(out, "insecure_etcd_plaintext: the link to the etcd store is plaintext ("+c.cfg.Store+")")
	}
	if addr, remote := c.plaintextInsecure(); remote {
		out = append(out, "plaintext listener reachable from other hosts on "+addr+" (--insecure-plaintext)")
	}
	c.mu.Lock()
	for name, s := range c.sessions {
		switch s.link {
		case transport.LinkNo:
			out = append(out, "agent "+name+": plaintext link (NO)")
		case transport.LinkPartly:
			out = append(out, "agent "+name+": does not verify the coordinator, --insecure-skip-verify (PARTLY)")
		}
	}
	c.mu.Unlock()
	sort.Strings(out)
	return out
}

func durationParam(r *http.Request, name string, def time.Duration) (time.Duration, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, api.Errorf(api.CodeInvalidArgument, "use a duration such as 30s", "query parameter %s=%q: %v", name, s, err)
	}
	return d, nil
}

// metricsAuth admits user and coordinator certificates to /metrics (a
// Prometheus server scrapes with a user certificate); agents may not.
func (c *Coordinator) metricsAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := transport.PeerFromState(r.TLS, c.cfg.Cluster)
		if err != nil || peer.ID.Role == pki.RoleAgent {
			writeError(w, c, api.Errorf(api.CodePermissionDenied, "scrape with a user certificate", "/metrics needs a user or coordinator certificate"))
			return
		}
		h.ServeHTTP(w, r)
	})
}
