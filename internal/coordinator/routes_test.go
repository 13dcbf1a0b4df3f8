package coordinator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/transport"
)

// startServing runs an in-process coordinator on loopback listeners with
// real TLS, and no agent.
func startServing(t *testing.T) *Coordinator {
	t.Helper()
	cfg := config.CoordinatorDefaults()
	cfg.DataDir = filepath.Join(t.TempDir(), "coord")
	cfg.ClusterAddr, cfg.PublicAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Advertise = []string{"127.0.0.1"}
	c, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })
	// Serve builds both listeners' routes before it accepts.
	waitUntil(t, 20*time.Second, "the listeners' routes", func() bool {
		rs := c.apiRoutes()
		return slices.ContainsFunc(rs, func(r apiRoute) bool { return r.Listener == listenerCluster }) &&
			slices.ContainsFunc(rs, func(r apiRoute) bool { return r.Listener == listenerPublic })
	})
	return c
}

// testIdentity is a client of the route × role test: a certificate (or
// none), and what the coordinator must make of it.
type testIdentity struct {
	name string
	cert *tls.Certificate
	// role is the user role the certificate carries ("" for an agent).
	role    authz.Role
	agent   bool
	refused bool // at the handshake: no certificate, revoked, expired
}

// issueTestCert issues a certificate for id (with a user role, or none)
// valid from issued, records it as the CA does, and returns it as a TLS
// client certificate.
func issueTestCert(t *testing.T, c *Coordinator, id pki.ID, role string, issued time.Time, life time.Duration) *tls.Certificate {
	t.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	iss := c.issuer()
	cert, err := iss.Issue(pki.LeafSpec{ID: id, PublicKey: key.Public(), Lifetime: life, UserRole: role}, issued)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.journal.Wait([]store.Op{putJSON(certKey(pki.SerialHex(cert)), issuedRecord(cert, iss.CA.Cert))}); err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{cert.Raw, iss.CA.Cert.Raw}, PrivateKey: key, Leaf: cert}
}

// routeRequest builds a request for a registered pattern: path values are
// filled with names of things that do not exist, and every body is one no
// route accepts (an unknown field), so an admitted request is answered
// with NOT_FOUND or INVALID_ARGUMENT and changes nothing, while a refused
// one is refused before its body is read.
func routeRequest(t *testing.T, base, pattern string) *http.Request {
	t.Helper()
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "GET", pattern
	}
	path = strings.NewReplacer("{name}", "no-such-node", "{id}", "999999", "{serial}", "0a0b0c", "{issuer}", "no-such-issuer", "{$}", "", "{job}", "999999", "{task}", "0", "{attempt}", "1", "{n}", "0", "{sum}", strings.Repeat("0", 64)).Replace(path)
	if strings.HasSuffix(path, "/") && path != "/" {
		path += "no-such-page"
	} else if path == "/" {
		path = "/no-such-route"
	}
	if strings.Contains(path, "/v1/tokens/999999") {
		path = strings.Replace(path, "999999", "0123456789abcdef", 1)
	}
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader([]byte(`{"route_test_unknown_field":1}`))
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestRouteRoleTable walks every route registered on every listener, from
// the router itself, with every kind of client over real mTLS: no
// certificate, an agent's, each role's, the admin credential from before
// roles, a revoked and an expired one. Each answer must be what the
// authorization table says; a refusal must be explained with the role
// needed and audited with the user and route; a route without a policy
// fails the test.
func TestRouteRoleTable(t *testing.T) {
	c := startServing(t)
	routes := c.apiRoutes()
	for _, must := range []string{"GET /v1/store/backup", "GET /v1/debug/info", "POST /v1/check", "GET /metrics", "POST /v1/certs/renew", "POST /v1/users", "GET /v1/users", "POST /v1/login"} {
		if !slices.ContainsFunc(routes, func(r apiRoute) bool { return r.Pattern == must }) {
			t.Errorf("route %s is not registered (or not through the router)", must)
		}
	}
	for _, r := range routes {
		if _, ok := authz.RuleOf(r.Action); !ok {
			t.Errorf("%s route %s: action %q has no policy in authz's table", r.Listener, r.Pattern, r.Action)
		}
		if r.Listener == listenerCluster && r.Action == authz.Public && r.Pattern != "/" {
			t.Errorf("cluster route %s is public: every API route needs a role", r.Pattern)
		}
	}

	now := time.Now()
	user := func(name string) pki.ID { return pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleUser, Name: name} }
	ids := []testIdentity{
		{name: "no certificate", refused: true},
		{name: "agent", agent: true, cert: issueTestCert(t, c, pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleAgent, Name: "n1"}, "", now, time.Hour)},
		{name: "admin before roles", role: authz.RoleAdmin, cert: issueTestCert(t, c, user("admin"), "", now, time.Hour)},
	}
	for _, role := range authz.Roles {
		ids = append(ids, testIdentity{name: string(role), role: role, cert: issueTestCert(t, c, user("u-"+string(role)), string(role), now, time.Hour)})
	}
	revoked := issueTestCert(t, c, user("gone"), "admin", now, time.Hour)
	if _, err := c.RevokeCert(context.Background(), c.LocalAdmin(), pki.SerialHex(revoked.Leaf), ""); err != nil {
		t.Fatal(err)
	}
	ids = append(ids,
		testIdentity{name: "revoked admin", refused: true, cert: revoked},
		testIdentity{name: "expired admin", refused: true, cert: issueTestCert(t, c, user("old"), "admin", now.Add(-3*time.Hour), time.Hour)},
	)

	roots := x509.NewCertPool()
	for _, r := range c.clientBundle() {
		roots.AddCert(r)
	}
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13, ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNHTTP}}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	clusterBase := "https://" + c.cfg.ClusterAddr
	publicBase := "https://" + c.cfg.PublicAddr

	type denial struct{ actor, route string }
	wantDenied := map[denial]bool{}
	checked := 0
	for _, id := range ids {
		hc := client(id.cert)
		for _, r := range routes {
			base := clusterBase
			if r.Listener == listenerPublic {
				base = publicBase
			}
			resp, err := hc.Do(routeRequest(t, base, r.Pattern))
			checked++
			what := fmt.Sprintf("%s on %s route %s", id.name, r.Listener, r.Pattern)
			if r.Listener == listenerPublic {
				// The public port asks for no client certificate: every
				// route there is public, whoever calls.
				if err != nil {
					t.Errorf("%s: %v", what, err)
					continue
				}
				// Heal is public to route, then proves an expired agent
				// certificate itself: it refuses everyone else.
				if (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && r.Pattern != patternHeal {
					t.Errorf("%s: %d, want a public answer", what, resp.StatusCode)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				continue
			}
			if id.refused {
				if err == nil {
					resp.Body.Close()
					t.Errorf("%s: answered %d, want the handshake refused", what, resp.StatusCode)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", what, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var eb api.ErrorBody
			json.Unmarshal(body, &eb)
			rule, _ := authz.RuleOf(r.Action)
			allowed := rule.Public || (id.agent && rule.Agents) || (!id.agent && authz.Can(id.role, r.Action))
			if allowed {
				if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
					t.Errorf("%s: refused (%d %s), but %s may perform %s", what, resp.StatusCode, body, id.name, r.Action)
				}
				continue
			}
			if resp.StatusCode != http.StatusForbidden || eb.Error == nil || eb.Error.Code != api.CodePermissionDenied {
				t.Errorf("%s: %d %.300s, want 403 PERMISSION_DENIED", what, resp.StatusCode, body)
				continue
			}
			if needed := "role " + strings.Join(rolesOf(rule), " or "); len(rule.Roles()) > 0 && !strings.Contains(strings.ReplaceAll(eb.Error.Message, ", ", " or "), needed) {
				t.Errorf("%s: %q does not say the role needed (%s)", what, eb.Error.Message, needed)
			}
			wantDenied[denial{id.cert.Leaf.URIs[0].String(), r.Pattern}] = true
		}
	}
	if checked < 9*30 {
		t.Fatalf("only %d requests: the walk is broken", checked)
	}
	events, _, err := c.Audit(context.Background(), c.LocalAdmin(), api.AuditFilter{Type: "authz.denied"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[denial]bool{}
	for _, ev := range events {
		seen[denial{ev.Actor, ev.Target}] = true
	}
	for d := range wantDenied {
		if !seen[d] {
			t.Errorf("refusal of %s on %s was not audited", d.actor, d.route)
		}
	}
	if len(wantDenied) == 0 {
		t.Fatal("nothing was refused: the walk is broken")
	}
}

func rolesOf(r authz.Rule) []string {
	var out []string
	for _, role := range r.Roles() {
		out = append(out, string(role))
	}
	return out
}
