// Package web is Ward's admin console: server-rendered pages (html/template)
// with embedded assets, served by the coordinator on its public port under
// /ui/. It reads and acts on the cluster only through Cluster, the same
// operations the HTTP API calls, so the console never holds a second copy of
// the cluster's state and every action is authorized and audited on the API's
// path, on behalf of the signed-in user.
//
// Sign-in is by a one-time link (`ward ui`) or an admin password hash.
// Sessions live on the server; the cookie only names one. Every response
// carries a strict Content-Security-Policy (no inline script), and every
// state-changing request needs the session's CSRF token.
package web

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

// Prefix is where the console lives on the public port.
const Prefix = "/ui/"

// Cluster is what the console needs from the coordinator: reads and actions,
// each on behalf of a principal, each authorized and audited by the
// coordinator exactly as the HTTP API's are.
type Cluster interface {
	Status(ctx context.Context, p authz.Principal) (api.Status, error)
	Nodes(ctx context.Context, p authz.Principal) ([]api.Node, error)
	Jobs(ctx context.Context, p authz.Principal, f api.JobFilter) ([]api.Job, int, error)
	Job(ctx context.Context, p authz.Principal, id string, tf api.TaskFilter) (api.JobDetail, int, error)
	FollowLogs(ctx context.Context, p authz.Principal, id string, task int, follow bool, emit func(api.LogChunk) error, flush func()) error
	JobProgress(ctx context.Context, p authz.Principal, id string, known int) (api.JobProgress, error)
	Tokens(ctx context.Context, p authz.Principal) ([]api.Token, error)
	Certs(ctx context.Context, p authz.Principal, f api.CertFilter) ([]api.Cert, int, error)
	CAStatus(ctx context.Context, p authz.Principal) (api.CAStatus, error)
	TrustBundle(ctx context.Context, p authz.Principal) ([]*x509.Certificate, error)
	CRL(ctx context.Context, p authz.Principal) ([]byte, error)
	Doctor(ctx context.Context, p authz.Principal, horizon time.Duration) (api.DoctorReport, error)
	Audit(ctx context.Context, p authz.Principal, f api.AuditFilter) ([]audit.Event, int, error)
	MigrationStatus(ctx context.Context, p authz.Principal) (api.MigrationStatus, error)

	Drain(ctx context.Context, p authz.Principal, node string, force bool) (api.DrainResult, error)
	Undrain(ctx context.Context, p authz.Principal, node string) (api.DrainResult, error)
	RevokeNode(ctx context.Context, p authz.Principal, node, reason string) (api.RevokeResult, error)
	SubmitJob(ctx context.Context, p authz.Principal, spec api.JobSpec) (api.Job, error)
	CancelJob(ctx context.Context, p authz.Principal, id, reason string) (api.Job, error)
	CreateToken(ctx context.Context, p authz.Principal, req api.TokenCreate) (api.TokenCreated, error)
	RevokeToken(ctx context.Context, p authz.Principal, id string) (api.Token, error)
	RevokeCert(ctx context.Context, p authz.Principal, serial, reason string) (api.RevokeResult, error)
	RotateCA(ctx context.Context, p authz.Principal, req api.RotateRequest) (api.CAStatus, error)
	MigrateUpgrade(ctx context.Context, p authz.Principal, req api.MigrateRequest) (api.MigrationStatus, error)
	MigrateFinish(ctx context.Context, p authz.Principal, req api.MigrateRequest) (api.MigrationStatus, error)
	CheckConnection(ctx context.Context, p authz.Principal, req api.CheckRequest) (*diagnose.Report, error)

	// Issue 16's job and node features and issue 15's users.
	Maintenance(ctx context.Context, p authz.Principal) (api.Maintenance, error)
	SetMaintenance(ctx context.Context, p authz.Principal, req api.MaintenanceRequest) (api.Maintenance, error)
	RequeueJob(ctx context.Context, p authz.Principal, id string, failedOnly bool) (api.RequeueResult, error)
	CloneJob(ctx context.Context, p authz.Principal, id string, spec api.JobSpec) (api.Job, error)
	Outputs(ctx context.Context, p authz.Principal, id string, task int) ([]api.OutputFile, error)
	OpenOutput(ctx context.Context, p authz.Principal, id string, task int, path string) (api.OutputFile, io.ReadCloser, error)
	Profiles(ctx context.Context, p authz.Principal) ([]api.Profile, error)
	Users(ctx context.Context, p authz.Principal) ([]api.User, error)
	AddUser(ctx context.Context, p authz.Principal, req api.UserCreate) (api.UserInvite, error)
	ChangeUserRole(ctx context.Context, p authz.Principal, name string, req api.UserRoleChange) (api.UserInvite, error)
	RemoveUser(ctx context.Context, p authz.Principal, name string) (api.UserRemoved, error)

	// Record writes a console event (sign-in, sign-out) to the audit log
	// on behalf of p.
	Record(p authz.Principal, ev audit.Event)
}

// Config is the console's own configuration.
type Config struct {
	// Cluster names the trust domain; the password user is
	// spiffe://<Cluster>/user/admin.
	Cluster string
	// Password is the admin password's hash; nil turns password sign-in off.
	Password *PasswordHash
	// IdleTimeout ends a session not used for this long.
	IdleTimeout time.Duration
	// Lifetime ends a session this long after sign-in, used or not.
	Lifetime time.Duration
	// Logger receives the console's log lines; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults for Config's timeouts.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultLifetime    = 12 * time.Hour
	// MaxLinkTTL bounds how long a one-time sign-in link stays valid.
	MaxLinkTTL = time.Hour
	// DefaultLinkTTL is a sign-in link's life when none is asked for.
	DefaultLinkTTL = 5 * time.Minute
)

// Server serves the console. It is an http.Handler for the Prefix tree.
type Server struct {
	cfg      Config
	cluster  Cluster
	log      *slog.Logger
	now      func() time.Time
	sessions *sessionStore
	links    *linkStore
	throttle *throttle
	pages    *pages
	handler  http.Handler
}

// New builds the console over cluster.
func New(cfg Config, cluster Cluster) (*Server, error) {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.IdleTimeout > cfg.Lifetime {
		return nil, fmt.Errorf("web console: the idle timeout (%s) is longer than the session lifetime (%s)", cfg.IdleTimeout, cfg.Lifetime)
	}
	if err := pki.ValidName("cluster", cfg.Cluster); err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	s := &Server{cfg: cfg, cluster: cluster, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.sessions = newSessionStore(cfg.IdleTimeout, cfg.Lifetime)
	s.links = newLinkStore()
	s.throttle = newThrottle()
	var err error
	if s.pages, err = loadPages(); err != nil {
		return nil, err
	}
	s.handler = securityHeaders(s.routes())
	return s, nil
}

// ServeHTTP serves every path under Prefix.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// NewLoginLink makes a one-time sign-in link for p, valid for ttl (default
// DefaultLinkTTL, at most MaxLinkTTL). It returns the path and query to
// open on the public port; the secret in it is stored only as a hash.
func (s *Server) NewLoginLink(p authz.Principal, ttl time.Duration) (string, time.Time, error) {
	if ttl == 0 {
		ttl = DefaultLinkTTL
	}
	if ttl < time.Second || ttl > MaxLinkTTL {
		return "", time.Time{}, api.Errorf(api.CodeInvalidArgument, "use a --ttl between 1s and 1h", "sign-in link TTL %s is outside 1s..1h", ttl)
	}
	if p.ID.Cluster != s.cfg.Cluster {
		return "", time.Time{}, errors.New("web console: a sign-in link for another cluster")
	}
	secret, expires, err := s.links.add(p, s.now(), ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	return Prefix + "login?token=" + secret, expires, nil
}

// securityHeaders sets the headers every console response carries: a
// strict CSP (scripts and styles only from the console's own files, no
// inline code, no framing), no referrer, no caching of pages.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// SecurityHeaders wraps h with the console's security headers, for the
// coordinator's redirect from the public port's root to the console.
func SecurityHeaders(h http.Handler) http.Handler { return securityHeaders(h) }
