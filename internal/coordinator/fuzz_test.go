package coordinator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
)

// fuzzCoordinator is a real coordinator (store without fsync, a plaintext
// listener on loopback) serving for the whole fuzz run, and its admin's
// certificate for requests made as if over the cluster port's mTLS.
func fuzzCoordinator(f *testing.F) (*Coordinator, *x509.Certificate) {
	f.Helper()
	cfg := config.CoordinatorDefaults()
	cfg.DataDir = filepath.Join(f.TempDir(), "coord")
	cfg.ClusterAddr, cfg.PublicAddr, cfg.PlaintextAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Advertise = []string{"127.0.0.1"}
	cfg.StoreNoSync = true
	cfg.JoinRate, cfg.JoinBurst, cfg.JoinGlobalRate, cfg.JoinGlobalBurst = 1e9, 1<<30, 1e9, 1<<30
	c, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	f.Cleanup(func() { cancel(); <-served })
	cx, err := config.LoadContext(c.ContextPath())
	if err != nil {
		f.Fatal(err)
	}
	certs, err := pki.ParseCertsPEM([]byte(cx.CertPEM))
	if err != nil {
		f.Fatal(err)
	}
	return c, certs[0]
}

// fuzzRoutes are the routes that read a JSON body, with the path each is
// called on. Routes whose handling reaches outside the process with what
// the body names (`/v1/check` dials it) or rebuilds the CA (`/v1/ca/rotate`)
// are fuzzed at the decoder only (FuzzAPIBodies' second half).
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/jobs"},
	{"POST", "/v1/tokens"},
	{"POST", "/v1/tokens/0123456789abcdef/revoke"},
	{"POST", "/v1/nodes/fuzz-node/drain"},
	{"POST", "/v1/nodes/fuzz-node/undrain"},
	{"POST", "/v1/nodes/fuzz-node/revoke"},
	{"POST", "/v1/jobs/1/cancel"},
	{"POST", "/v1/certs/0a1b2c/revoke"},
	{"POST", "/v1/migrate/upgrade"},
	{"POST", "/v1/ui/login-link"},
	{"POST", "/v1/certs/renew"},
	{"POST", api.PathJoin},
	{"POST", api.PathHeal},
}

// decodeOnly are the body types of routes fuzzed at the decoder only.
var decodeOnly = []func() any{
	func() any { return new(api.CheckRequest) },
	func() any { return new(api.RotateRequest) },
	func() any { return new(api.MigrateRequest) },
	func() any { return new(api.RenewRequest) },
	func() any { return new(api.HealRequest) },
}

// FuzzAPIBodies sends arbitrary bodies to every route that reads one, on a
// real coordinator, as its admin (over the cluster port's routes) or
// anonymously (join and heal on the public port). Whatever the body, the
// answer is a success or a JSON error with a stable code, never an
// internal error and never a crash.
func FuzzAPIBodies(f *testing.F) {
	c, admin := fuzzCoordinator(f)
	cluster := c.limitRequests(c.clusterRoutes(), max(c.cfg.Limits.MaxRequestBytes, c.cfg.Limits.MaxJobBytes))
	public := c.limitRequests(c.publicRoutes(), c.cfg.Limits.PublicMaxRequestBytes)
	seeds := []string{
		`{"argv":["echo","{index}"],"count":3}`,
		`{"argv":["sh","-c","x"],"count":2,"wait_for_nodes":true,"env":{"A":"b"},"labels":{"k":"v"},"priority":"high","timeout":"1s","retries":1,"queue":"q","dir":"/tmp","name":"n"}`,
		`{"ttl":"10m","uses":2,"labels":{"rack":"r1"},"allow_dns":["a.example"],"allow_ips":["10.0.0.1"]}`,
		`{"reason":"key-compromise"}`, `{"force":true}`, `{"nodes":["a"]}`, `{"ttl":"1m"}`,
		`{"token_id":"0123456789abcdef","secret":"s","name":"n1","csr":"AAAA","labels":{"a":"b"}}`,
		`{"csr":"MIIB"}`, `{}`, `[]`, `null`, `{"count":1e400}`, "\xff", `{"argv":["a"]} {}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		if int(route) >= len(fuzzRoutes) {
			k := int(route) - len(fuzzRoutes)
			v := decodeOnly[k%len(decodeOnly)]()
			if err := api.DecodeJSON(body, v); err != nil && api.CodeOf(err) == api.CodeInternal {
				t.Fatalf("DecodeJSON(%T) failed without a code: %v", v, err)
			}
			return
		}
		rt := fuzzRoutes[route]
		path := rt.path
		if strings.Contains(path, "fuzz-node") { // a fresh name each time: nothing is left to find
			path = strings.Replace(path, "fuzz-node", fmt.Sprintf("fuzz-%d", n.Add(1)), 1)
		}
		req := httptest.NewRequest(rt.method, "https://127.0.0.1"+path, bytes.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		h := public
		if !strings.HasPrefix(path, api.PathJoin) && !strings.HasPrefix(path, api.PathHeal) {
			h = cluster
			req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true,
				PeerCertificates: []*x509.Certificate{admin}, VerifiedChains: [][]*x509.Certificate{{admin}}}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 400 {
			return
		}
		var eb api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil || eb.Error.Code == "" {
			t.Fatalf("%s %s answered %d with a body that is not a JSON error: %q", rt.method, path, rec.Code, rec.Body.String())
		}
		if eb.Error.Code == api.CodeInternal {
			t.Fatalf("%s %s with body %q: INTERNAL error (bad input must get a clear error): %s", rt.method, path, body, eb.Error.Message)
		}
	})
}

// FuzzJoinCSR sends arbitrary CSRs in a join with a valid token to a real
// coordinator's join handler. A CSR it accepts must give an agent
// certificate for exactly the node named, from the cluster's CA, that is
// no CA and names no host the token does not allow.
func FuzzJoinCSR(f *testing.F) {
	c, _ := fuzzCoordinator(f)
	tok, err := c.CreateToken(context.Background(), c.LocalAdmin(), api.TokenCreate{TTL: api.Duration(time.Hour), Uses: maxTokenUses, AllowDNS: []string{"ok.example"}})
	if err != nil {
		f.Fatal(err)
	}
	js, err := enroll.ParseJoinString(tok.Join)
	if err != nil {
		f.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tmpl := range []*x509.CertificateRequest{
		{},
		{DNSNames: []string{"ok.example"}},
		{DNSNames: []string{"evil.example"}},
		{IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}},
		{EmailAddresses: []string{"a@b"}},
	} {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x00})
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, csr []byte) {
		name := fmt.Sprintf("fuzz-%d", n.Add(1))
		res, err := c.joinChecked(&api.JoinRequest{TokenID: js.TokenID, Secret: js.Secret, Name: name, CSR: csr})
		if err != nil {
			if api.CodeOf(err) == api.CodeInternal {
				t.Fatalf("a bad CSR got an internal error: %v", err)
			}
			return
		}
		certs, err := pki.ParseCertsPEM(res.ChainPEM)
		if err != nil || len(certs) == 0 {
			t.Fatalf("the issued chain does not parse: %v", err)
		}
		cert := certs[0]
		id, err := pki.IDFromCert(cert)
		if err != nil || id.Role != pki.RoleAgent || id.Name != name || id.Cluster != c.cfg.Cluster {
			t.Fatalf("issued %v (%v) for a join as %s", id, err, name)
		}
		if cert.IsCA {
			t.Fatal("a join was issued a CA certificate")
		}
		for _, d := range cert.DNSNames {
			if d != "ok.example" {
				t.Fatalf("issued DNS name %q the token does not allow", d)
			}
		}
		if len(cert.IPAddresses) > 0 || len(cert.EmailAddresses) > 0 || len(cert.URIs) != 1 {
			t.Fatalf("issued SANs the token does not allow: ips %v emails %v uris %v", cert.IPAddresses, cert.EmailAddresses, cert.URIs)
		}
		if err := cert.CheckSignatureFrom(certs[len(certs)-1]); err != nil && len(certs) > 1 {
			t.Fatalf("the issued certificate is not signed by the issuing CA: %v", err)
		}
	})
}

// FuzzPlaintextGreeting sends arbitrary first bytes to a real plaintext
// listener. Before authentication the coordinator must answer with a
// refusal (a line, a Bye frame, or the TLS-to-plaintext alert) and close,
// within its handshake timeout, never crash or authenticate.
func FuzzPlaintextGreeting(f *testing.F) {
	c, _ := fuzzCoordinator(f)
	addr := c.PlaintextAddr()
	f.Add([]byte(api.PlaintextPreface))
	f.Add([]byte(api.PlaintextPreface + "\x00\x00\x00\x10\x01{}"))
	f.Add([]byte("\x16\x03\x01\x00\x05hello"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, greeting []byte) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Skipf("dial: %v", err) // the machine's port range, not the coordinator
		}
		defer conn.Close()
		conn.Write(greeting)
		conn.(*net.TCPConn).CloseWrite()
		conn.SetDeadline(time.Now().Add(c.cfg.Limits.HandshakeTimeout.D() + 10*time.Second))
		got, err := io.ReadAll(conn)
		// A reset is a close: the coordinator closed with part of the
		// greeting unread.
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the plaintext listener neither answered nor closed for greeting %q: %v", greeting, err)
		}
		if bytes.Contains(got, []byte(`"welcome"`)) || bytes.Contains(got, []byte("heartbeat_interval")) {
			t.Fatalf("greeting %q was welcomed without authentication: %q", greeting, got)
		}
	})
}
