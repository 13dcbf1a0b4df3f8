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
	"github.com/wardcluster/ward/internal/transport"
)

// clusterRoutes is the mTLS API. Every route needs a client certificate:
// the identity and its role come from the verified certificate, never from
// a header. Each route declares the action it needs (authz's table); the
// operation checks it again on the same path the web admin uses.
func (c *Coordinator) clusterRoutes() http.Handler {
	rt := c.newRouter(listenerCluster)
	rt.api("GET /v1/status", authz.StatusRead, c.apiStatus)
	rt.api("GET /v1/cluster/maintenance", authz.StatusRead, c.apiMaintenanceGet)
	rt.api("POST /v1/cluster/maintenance", authz.ClusterMaintenance, c.apiMaintenanceSet)
	rt.api("GET /v1/debug/info", authz.DebugInfo, c.apiDebugInfo)
	rt.api("GET /v1/nodes", authz.NodeRead, c.apiNodes)
	rt.api("POST /v1/nodes/{name}/drain", authz.NodeDrain, c.apiDrain)
	rt.api("POST /v1/nodes/{name}/undrain", authz.NodeUndrain, c.apiUndrain)
	rt.api("POST /v1/nodes/{name}/revoke", authz.NodeRevoke, c.apiNodeRevoke)
	rt.api("POST /v1/tokens", authz.TokenCreate, c.apiTokenCreate)
	rt.api("GET /v1/tokens", authz.TokenRead, c.apiTokenList)
	rt.api("POST /v1/tokens/{id}/revoke", authz.TokenRevoke, c.apiTokenRevoke)
	rt.api(patternJobSubmit, authz.JobSubmit, c.apiJobSubmit)
	rt.api("GET /v1/jobs", authz.JobRead, c.apiJobList)
	rt.api("GET /v1/jobs/{id}", authz.JobRead, c.apiJobStatus)
	rt.api("POST /v1/jobs/{id}/cancel", authz.JobCancel, c.apiJobCancel)
	rt.api("POST /v1/jobs/{id}/requeue", authz.JobRequeue, c.apiJobRequeue)
	rt.api(patternJobClone, authz.JobClone, c.apiJobClone)
	rt.api("GET /v1/jobs/{id}/logs", authz.JobRead, c.apiJobLogs)
	rt.api("GET /v1/jobs/{id}/progress", authz.JobRead, c.apiJobProgress)
	rt.api("GET /v1/jobs/{id}/outputs", authz.JobRead, c.apiJobOutputs)
	rt.api("GET /v1/jobs/{id}/outputs/{task}/file", authz.JobRead, c.apiJobOutputFile)
	rt.api("PUT /v1/staging/files/{sum}", authz.JobSubmit, c.apiStagingUpload)
	rt.api("GET /v1/profiles", authz.ProfileRead, c.apiProfiles)
	rt.api("PUT /v1/profiles/{name}", authz.ProfileSet, c.apiProfileSet)
	rt.api("POST /v1/profiles/{name}/assign", authz.ProfileAssign, c.apiProfileAssign)
	rt.api("DELETE /v1/profiles/{name}", authz.ProfileSet, c.apiProfileDelete)
	rt.api("GET /v1/staging/attempts/{job}/{task}/{attempt}/inputs/{n}", authz.StagingAttempt, c.apiStagingInput)
	rt.api("PUT /v1/staging/attempts/{job}/{task}/{attempt}/outputs", authz.StagingAttempt, c.apiStagingOutput)
	rt.api("GET /v1/certs", authz.CertRead, c.apiCertList)
	rt.api("POST /v1/certs/{serial}/revoke", authz.CertRevoke, c.apiCertRevoke)
	rt.api("GET /v1/doctor", authz.DoctorRead, c.apiDoctor)
	rt.api("GET /v1/audit", authz.AuditRead, c.apiAudit)
	rt.api("GET /v1/migrate/status", authz.MigrateRead, c.apiMigrateStatus)
	rt.api("POST /v1/migrate/upgrade", authz.MigrateUpgrade, c.apiMigrateUpgrade)
	rt.api("POST /v1/migrate/finish", authz.MigrateFinish, c.apiMigrateFinish)
	rt.api("GET /v1/ca/status", authz.CARead, c.apiCAStatus)
	rt.api("POST /v1/ca/rotate", authz.CARotate, c.apiCARotate)
	rt.api("POST /v1/check", authz.CheckRun, c.apiCheck)
	rt.api("GET /v1/store/backup", authz.StoreBackup, c.apiStoreBackup)
	rt.api("POST /v1/ui/login-link", authz.UILink, c.apiUILink)
	rt.api("POST /v1/users", authz.UserManage, c.apiUserAdd)
	rt.api("GET /v1/users", authz.UserRead, c.apiUserList)
	rt.api("POST /v1/users/{name}/role", authz.UserManage, c.apiUserRole)
	rt.api("POST /v1/users/{name}/remove", authz.UserManage, c.apiUserRemove)
	rt.checked("GET /v1/ca/crl", authz.CRLRead, http.HandlerFunc(c.serveCRL))
	rt.checked("GET /metrics", authz.MetricsRead, c.metrics.Handler())
	rt.checked("POST /v1/certs/renew", authz.CertRenew, http.HandlerFunc(c.apiRenew))
	rt.public("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, c, api.Errorf(api.CodeNotFound, "see `ward --help` for the commands and the README for the API", "no API route %s %s", r.Method, r.URL.Path))
	}))
	return rt.mux
}

// wrongPort answers an API request that reached the public port with the
// cluster port to use.
func (c *Coordinator) wrongPort(w http.ResponseWriter, r *http.Request) {
	for _, p := range []string{api.PathJoin, api.PathHeal, api.PathLogin, api.PathCA, api.PathCRL, api.PathCRLs, api.PathReady} {
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
	rt := c.newRouter(listenerPublic)
	rt.public(patternJoin, http.HandlerFunc(c.apiJoin))
	rt.public("GET "+api.PathCA, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(c.clientBundle().PEM())
	}))
	rt.public(patternHeal, http.HandlerFunc(c.apiHeal))
	rt.public(patternLogin, http.HandlerFunc(c.apiLogin))
	rt.public("GET "+api.PathCRL, http.HandlerFunc(c.serveCRL))
	rt.public("GET "+api.PathCRL+"/{issuer}", http.HandlerFunc(c.serveCRL))
	rt.public("GET "+api.PathCRLs, http.HandlerFunc(c.serveCRLs))
	// The API lives on the cluster port: a CLI or script pointed here is
	// told where to go instead of "not found".
	rt.public("/v1/", http.HandlerFunc(c.wrongPort))
	rt.public("GET "+api.PathReady, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	}))
	c.mountConsole(rt)
	rt.public("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, c, api.Errorf(api.CodeNotFound, "the public port serves joins, the CA bundle, the CRL and the web console under /ui/; use the cluster port with a client certificate for the API", "no public route %s %s", r.Method, r.URL.Path))
	}))
	return rt.mux
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

// created serves a POST that makes something: the body is decoded into a
// Req (refused as readJSON refuses it), create makes it, and its answer
// goes back with 201 Created.
func created[Req, Resp any](c *Coordinator, w http.ResponseWriter, r *http.Request, create func(Req) (Resp, error)) error {
	var req Req
	if err := c.readJSON(w, r, &req); err != nil {
		return err
	}
	out, err := create(req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, out)
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
	patternJobClone  = "POST /v1/jobs/{id}/clone"
	patternJoin      = "POST " + api.PathJoin
	patternHeal      = "POST " + api.PathHeal
)

// bodyLimit is the largest body r's route accepts, and the error for one
// over it, naming the setting that raises it.
func (c *Coordinator) bodyLimit(r *http.Request) (int, error) {
	l := c.cfg.Limits
	switch r.Pattern {
	case patternJobSubmit, patternJobClone:
		return l.MaxJobBytes, api.Errorf(api.CodeJobTooLarge, "split the job or pass long inputs in a file; an admin can raise max_job_bytes",
			"the job submission is over max_job_bytes (%d bytes)", l.MaxJobBytes)
	case patternJoin, patternHeal, patternLogin:
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
	if err := c.allow(p, authz.StatusRead); err != nil {
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
	c.controlPlaneStatus(ctx, &st)
	if c.tracker != nil && c.follower() {
		c.partialStatus(ctx, &st) // only reached when no leader answered (clusterEntry)
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
