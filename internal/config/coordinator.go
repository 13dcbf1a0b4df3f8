package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/logging"
	"github.com/wardcluster/ward/internal/pki"
)

// Coordinator configures `ward coordinator`. Each field's json tag is its
// key in the config file, its flag tag the command-line flag that
// overrides it, and its doc comment its entry in docs/config.md.
type Coordinator struct {
	// Version is the config file format version; this Ward reads 1.
	Version int `json:"version"`
	// DataDir holds the CA, the coordinator's credentials, the store and
	// the audit log. Required.
	DataDir string `json:"data_dir" flag:"data"`
	// Cluster names the trust domain: spiffe://<cluster>/...
	Cluster string `json:"cluster" flag:"cluster"`
	// ClusterAddr is the mTLS listener for agents, the CLI and the API.
	ClusterAddr string `json:"cluster_addr" flag:"cluster-addr"`
	// PublicAddr is the server-auth listener for joins, the CA bundle and CRL.
	PublicAddr string `json:"public_addr" flag:"public-addr"`
	// Advertise lists names and IPs peers use to reach this coordinator.
	// They go into the server certificate, and the first one into join
	// strings and CLI contexts.
	Advertise []string `json:"advertise" flag:"advertise"`
	// PlaintextAddr opens the plaintext migration listener for agents that
	// are not on TLS yet (off when empty). A non-loopback address needs
	// insecure_plaintext.
	PlaintextAddr string `json:"plaintext_addr" flag:"plaintext-addr"`
	// InsecurePlaintext allows the plaintext listener on a non-loopback
	// address: links over it are shown as NO and it is logged at every
	// start.
	InsecurePlaintext bool `json:"insecure_plaintext" flag:"insecure-plaintext"`
	// CAPassphraseFile holds the passphrase CA keys are encrypted with at
	// rest (scrypt and AES-256-GCM), mode 0600. Required when they are
	// encrypted, and with an etcd store, where the cluster CA lives in etcd:
	// give every coordinator the same file. When set, plain CA keys in the
	// data directory are encrypted at start.
	CAPassphraseFile string `json:"ca_passphrase_file" flag:"ca-passphrase-file"`
	// CoordinatorID names this coordinator in its certificate,
	// spiffe://<cluster>/coordinator/<id>. Empty: the id of the certificate
	// it already holds, else one derived from the host name. Coordinators
	// sharing an etcd store need distinct ids (two on one host: set it).
	CoordinatorID string `json:"coordinator_id" flag:"coordinator-id" docdefault:"from the host name (when empty)"`
	// TLSCert is a server certificate from an enterprise CA to serve
	// instead of one Ward issues: PEM (with tls_key), or PKCS#12 holding
	// the key (with tls_password_file).
	TLSCert string `json:"tls_cert" flag:"tls-cert"`
	// TLSKey is the PEM private key of tls_cert (mode 0600).
	TLSKey string `json:"tls_key" flag:"tls-key"`
	// TLSPasswordFile holds the PKCS#12 password of tls_cert (mode 0600).
	TLSPasswordFile string `json:"tls_password_file" flag:"tls-password-file"`
	// TLSCA is the root CA clients verify tls_cert against, when the file
	// does not end with it.
	TLSCA string `json:"tls_ca" flag:"tls-ca"`
	// MinTLS is "1.3" (default) or "1.2" (AEAD ECDHE suites only; insecure,
	// for old clients).
	MinTLS string `json:"min_tls" flag:"min-tls"`
	// AgentCertLifetime is the lifetime of agent certificates; agents renew
	// at about two thirds of it.
	AgentCertLifetime Duration `json:"agent_cert_lifetime" flag:"agent-cert-lifetime"`
	// UserCertLifetime is the lifetime of user (CLI) certificates.
	UserCertLifetime Duration `json:"user_cert_lifetime" flag:"user-cert-lifetime"`
	// CoordinatorCertLifetime is the lifetime of the coordinator's own
	// server certificate.
	CoordinatorCertLifetime Duration `json:"coordinator_cert_lifetime" flag:"coordinator-cert-lifetime"`
	// HealGrace is how long after expiry an agent may still renew by proving
	// its old key.
	HealGrace Duration `json:"heal_grace" flag:"heal-grace"`
	// CRLValidity is how long a published CRL is valid; it is refreshed at
	// half of it, well before its next-update time.
	CRLValidity Duration `json:"crl_validity" flag:"crl-validity"`
	// HeartbeatInterval is the base interval agents report at; the
	// coordinator stretches it for large clusters.
	HeartbeatInterval Duration `json:"heartbeat_interval" flag:"heartbeat-interval"`
	// NodeLostTimeout is how long a disconnected agent's tasks wait for it
	// to come back before they are declared lost and requeued.
	NodeLostTimeout Duration `json:"node_lost_timeout" flag:"node-lost-timeout"`
	// AgingStep raises a waiting job's priority by one level per step (0
	// turns aging off).
	AgingStep Duration `json:"aging_step" flag:"aging-step"`
	// PrefetchBelow lets the scheduler assign tasks ahead to a busy node
	// whose running tasks all belong to jobs averaging less than this per
	// task: up to the node's slot count more, which its agent starts the
	// moment a slot frees instead of one store commit and a round trip
	// later. It adds at most those short run times to a task's wait. 0
	// turns it off.
	PrefetchBelow Duration `json:"prefetch_below" flag:"prefetch-below"`
	// MaxOutputBytes is the stdout+stderr kept per task; beyond it output is
	// dropped and the truncation shown.
	MaxOutputBytes int `json:"max_output_bytes" flag:"max-output-bytes"`
	// StagingMaxFileBytes is the largest single file a job may stage: an
	// input (`ward run --input`) or an output a task leaves
	// (`--output-file`). Larger ones are refused with FILE_TOO_LARGE.
	StagingMaxFileBytes int64 `json:"staging_max_file_bytes" flag:"staging-max-file-bytes"`
	// StagingMaxJobBytes bounds one job's staged files together: its
	// inputs, and separately the outputs of all its tasks' attempts.
	StagingMaxJobBytes int64 `json:"staging_max_job_bytes" flag:"staging-max-job-bytes"`
	// StagingRetention is how long a finished job's staged files (its
	// inputs and its tasks' outputs) are kept on the coordinator after the
	// job ended; then they are deleted (audited as staging.purge), with
	// uploads no job used for as long. 0 keeps them until removed by hand.
	StagingRetention Duration `json:"staging_retention" flag:"staging-retention"`
	// JoinRate is the join attempts per second allowed per source address.
	// An attempt with a valid token is never refused for its address's rate
	// (so a flood from a shared address does not lock out real agents
	// behind it); join_global_rate counts it.
	JoinRate float64 `json:"join_rate" flag:"join-rate"`
	// JoinBurst is the join attempts allowed in a burst per source address.
	JoinBurst int `json:"join_burst" flag:"join-burst"`
	// LogLevel is the least severe level logged: debug, info, warn or
	// error.
	LogLevel string `json:"log_level" flag:"log-level"`
	// LogFormat is how log lines are written to standard error (journald
	// under systemd): text (key=value) or json (one object per line).
	LogFormat string `json:"log_format" flag:"log-format"`
	// ConnectionLogLevel is the level of the lines logged for every
	// accepted or refused connection and agent session. Set it to debug on
	// large clusters so reconnect waves do not flood the journal;
	// refusals are still counted in ward_handshakes_total and written to
	// the audit log.
	ConnectionLogLevel string `json:"connection_log_level" flag:"connection-log-level"`
	// UI serves the web admin console under /ui/ on the public port.
	UI bool `json:"ui" flag:"ui"`
	// UIPasswordFile holds the admin's console password as an argon2id or
	// scrypt hash (`ward ui hash-password`), mode 0600. Empty: sign-in only
	// with one-time links from `ward ui`.
	UIPasswordFile string `json:"ui_password_file" flag:"ui-password-file"`
	// UIIdleTimeout ends a console session unused for this long.
	UIIdleTimeout Duration `json:"ui_idle_timeout" flag:"ui-idle-timeout"`
	// UISessionLifetime ends a console session this long after sign-in,
	// used or not.
	UISessionLifetime Duration `json:"ui_session_lifetime" flag:"ui-session-lifetime"`
	// Limits bounds connections, handshakes, requests and frames; its keys
	// are top-level keys of the file.
	Limits
	// StoreNoSync skips fsync on store commits. Only for benchmarks that
	// say so: a crash can lose acknowledged work.
	StoreNoSync bool `json:"insecure_store_nosync"`
	// Store is where jobs, tasks, nodes, tokens and certificate records
	// live: "bolt" (the default; the file ward.db in data_dir) or
	// etcd://HOST:PORT[,HOST:PORT...][/PREFIX/], an etcd cluster shared by
	// coordinators (keys under PREFIX, default /ward/<cluster>/).
	Store string `json:"store" flag:"store" docdefault:"bolt (when empty)"`
	// EtcdCA is the CA (PEM) etcd's server certificate chains to, for the
	// mutual TLS link to etcd. `ward etcd certs` makes it.
	EtcdCA string `json:"etcd_ca" flag:"etcd-ca"`
	// EtcdCert is this coordinator's client certificate for etcd (PEM).
	EtcdCert string `json:"etcd_cert" flag:"etcd-cert"`
	// EtcdKey is the key of etcd_cert (PEM, mode 0600).
	EtcdKey string `json:"etcd_key" flag:"etcd-key"`
	// InsecureEtcdPlaintext speaks plaintext to etcd: anyone on the path
	// can read and change the whole store. Logged at every start and
	// shown in status and doctor.
	InsecureEtcdPlaintext bool `json:"insecure_etcd_plaintext" flag:"insecure-etcd-plaintext"`
	// LeaderLeaseTTL is the lease of the leader's term and of each
	// coordinator's membership on etcd: a leader that dies without
	// resigning is replaced about this long after its last renewal.
	LeaderLeaseTTL Duration `json:"leader_lease_ttl" flag:"leader-lease-ttl"`
}

// EtcdStore reports whether Store names an etcd cluster.
func (c *Coordinator) EtcdStore() bool { return strings.HasPrefix(c.Store, "etcd://") }

// ParseEtcdStore reads a store value of the form
// etcd://HOST:PORT[,HOST:PORT...][/PREFIX/]. prefix is empty when the URL
// has no path.
func ParseEtcdStore(s string) (endpoints []string, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return nil, "", fmt.Errorf("%q is neither bolt nor an etcd URL: write etcd://HOST:PORT[,HOST:PORT...]", s)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if path != "" {
		prefix = "/" + strings.TrimSuffix(path, "/") + "/"
		if strings.ContainsAny(prefix, "?#%") || strings.Contains(prefix, "//") {
			return nil, "", fmt.Errorf("%q: the key prefix %q must be a plain path such as /ward/prod/", s, prefix)
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || port == "" {
			return nil, "", fmt.Errorf("%q: endpoint %q must be HOST:PORT (etcd's client port is 2379 by default)", s, h)
		}
		endpoints = append(endpoints, h)
	}
	return endpoints, prefix, nil
}

// CoordinatorDefaults returns the documented defaults.
func CoordinatorDefaults() Coordinator {
	return Coordinator{
		Version:                 FileVersion,
		Cluster:                 "ward",
		ClusterAddr:             ":7443",
		PublicAddr:              ":8443",
		MinTLS:                  "1.3",
		AgentCertLifetime:       Duration(24 * time.Hour),
		UserCertLifetime:        Duration(30 * 24 * time.Hour),
		CoordinatorCertLifetime: Duration(30 * 24 * time.Hour),
		HealGrace:               Duration(7 * 24 * time.Hour),
		CRLValidity:             Duration(24 * time.Hour),
		HeartbeatInterval:       Duration(5 * time.Second),
		LeaderLeaseTTL:          Duration(3 * time.Second),
		NodeLostTimeout:         Duration(30 * time.Second),
		AgingStep:               Duration(10 * time.Minute),
		PrefetchBelow:           Duration(250 * time.Millisecond),
		MaxOutputBytes:          1 << 20,
		StagingMaxFileBytes:     4 << 30,
		StagingMaxJobBytes:      16 << 30,
		JoinRate:                2,
		JoinBurst:               20,
		LogLevel:                "info",
		LogFormat:               "text",
		ConnectionLogLevel:      "info",
		UI:                      true,
		UIIdleTimeout:           Duration(30 * time.Minute),
		UISessionLifetime:       Duration(12 * time.Hour),
		Limits:                  LimitsDefaults(),
	}
}

// LoadCoordinator reads a config file over the defaults.
func LoadCoordinator(path string) (Coordinator, error) {
	c := CoordinatorDefaults()
	c.Version = 0
	if err := loadStrict(path, &c, &c.Version); err != nil {
		return Coordinator{}, err
	}
	return c, nil
}

// Validate reports every problem in c at once.
func (c *Coordinator) Validate() error {
	var p Problems
	if c.DataDir == "" {
		p.Addf("data_dir (--data)", "is required")
	} else if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if err := pki.ValidName("cluster", c.Cluster); err != nil {
		p.Addf("cluster", "%v", err)
	}
	if c.CoordinatorID != "" {
		if err := pki.ValidName("coordinator", c.CoordinatorID); err != nil {
			p.Addf("coordinator_id (--coordinator-id)", "%v", err)
		}
	}
	for key, addr := range map[string]string{"cluster_addr (--cluster-addr)": c.ClusterAddr, "public_addr (--public-addr)": c.PublicAddr} {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			p.Addf(key, "%q must be HOST:PORT or :PORT", addr)
		}
	}
	if (c.TLSKey != "" || c.TLSPasswordFile != "" || c.TLSCA != "") && c.TLSCert == "" {
		p.Addf("tls_cert (--tls-cert)", "is required with tls_key, tls_password_file or tls_ca")
	}
	if c.PlaintextAddr != "" {
		host, port, err := net.SplitHostPort(c.PlaintextAddr)
		if err != nil || port == "" {
			p.Addf("plaintext_addr (--plaintext-addr)", "%q must be HOST:PORT", c.PlaintextAddr)
		} else if !IsLoopback(host) && !c.InsecurePlaintext {
			p.Addf("plaintext_addr (--plaintext-addr)", "%q is not a loopback address; a plaintext listener reachable from other hosts needs --insecure-plaintext", c.PlaintextAddr)
		}
	}
	for _, a := range c.Advertise {
		if a == "" || len(a) > 253 {
			p.Addf("advertise (--advertise)", "%q is not a host name or IP", a)
		}
	}
	if c.MinTLS != "1.3" && c.MinTLS != "1.2" {
		p.Addf("min_tls", "%q must be \"1.3\" or \"1.2\"", c.MinTLS)
	}
	for key, d := range map[string]Duration{
		"agent_cert_lifetime": c.AgentCertLifetime, "user_cert_lifetime": c.UserCertLifetime,
		"coordinator_cert_lifetime": c.CoordinatorCertLifetime,
	} {
		if d.D() < 5*time.Second {
			p.Addf(key, "%s is too short; use at least 5s", d.D())
		}
	}
	if c.HeartbeatInterval.D() < 100*time.Millisecond {
		p.Addf("heartbeat_interval", "%s is too short; use at least 100ms", c.HeartbeatInterval.D())
	}
	if c.NodeLostTimeout.D() < 100*time.Millisecond {
		p.Addf("node_lost_timeout", "%s is too short; use at least 100ms (it counts from the moment an agent's session ends)", c.NodeLostTimeout.D())
	}
	if c.CRLValidity.D() < 2*time.Minute {
		p.Addf("crl_validity", "%s is too short; use at least 2m", c.CRLValidity.D())
	}
	if c.HealGrace.D() < 0 {
		p.Addf("heal_grace", "must not be negative")
	}
	if c.AgingStep.D() < 0 {
		p.Addf("aging_step", "must not be negative (0 disables aging)")
	}
	if d := c.PrefetchBelow.D(); d < 0 || d > time.Minute {
		p.Addf("prefetch_below", "%v is out of range: use 0 (off) up to 1m; it bounds how long a task assigned ahead may wait behind others", d)
	}
	if c.StagingMaxFileBytes < 1 {
		p.Addf("staging_max_file_bytes", "%d is not a size; use at least 1", c.StagingMaxFileBytes)
	}
	if c.StagingMaxJobBytes < c.StagingMaxFileBytes {
		p.Addf("staging_max_job_bytes", "%d is below staging_max_file_bytes (%d); a job must hold at least one file of the largest size", c.StagingMaxJobBytes, c.StagingMaxFileBytes)
	}
	if d := c.StagingRetention.D(); d < 0 || d > 0 && d < time.Second {
		p.Addf("staging_retention", "%v is out of range: use 0 (keep staged files) or a duration of at least 1s, such as 168h", d)
	}
	if c.MaxOutputBytes < 1024 {
		p.Addf("max_output_bytes", "%d is too small; use at least 1024", c.MaxOutputBytes)
	}
	if c.JoinRate <= 0 || c.JoinBurst < 1 {
		p.Addf("join_rate/join_burst", "must be positive")
	}
	c.validateStore(&p)
	checkLogging(&p, c.LogLevel, c.LogFormat)
	if _, err := logging.ParseLevel(c.ConnectionLogLevel); err != nil {
		p.Addf("connection_log_level (--connection-log-level)", "%v", err)
	}
	if d := c.UIIdleTimeout.D(); d < time.Minute || d > 24*time.Hour {
		p.Addf("ui_idle_timeout (--ui-idle-timeout)", "%s is out of range: use 1m to 24h", d)
	}
	if d := c.UISessionLifetime.D(); d < c.UIIdleTimeout.D() || d > 30*24*time.Hour {
		p.Addf("ui_session_lifetime (--ui-session-lifetime)", "%s is out of range: use from ui_idle_timeout (%s) to 720h", d, c.UIIdleTimeout.D())
	}
	if c.UIPasswordFile != "" && !c.UI {
		p.Addf("ui_password_file (--ui-password-file)", "is set while the console is off (ui: false); remove one of them")
	}
	c.Limits.validate(&p)
	return p.Err("coordinator")
}

// IsLoopback reports whether host is a loopback name or address.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Coordinator) validateStore(p *Problems) {
	tlsSet := c.EtcdCA != "" || c.EtcdCert != "" || c.EtcdKey != ""
	switch {
	case c.Store == "" || c.Store == "bolt":
		if tlsSet || c.InsecureEtcdPlaintext {
			p.Addf("etcd_ca/etcd_cert/etcd_key/insecure_etcd_plaintext", "apply only to an etcd store; set store (--store) to etcd://HOST:PORT, or remove them")
		}
		return
	case !c.EtcdStore():
		p.Addf("store (--store)", "%q must be bolt or etcd://HOST:PORT[,HOST:PORT...]", c.Store)
		return
	}
	if _, _, err := ParseEtcdStore(c.Store); err != nil {
		p.Addf("store (--store)", "%v", err)
	}
	if c.StoreNoSync {
		p.Addf("insecure_store_nosync", "applies to the bolt store only; etcd makes its own commits durable")
	}
	if c.CAPassphraseFile == "" {
		p.Addf("ca_passphrase_file (--ca-passphrase-file)", "is required with an etcd store: the cluster CA's keys are kept in etcd, encrypted with this passphrase; give every coordinator the same file (make one with `openssl rand -base64 32 > FILE && chmod 600 FILE`)")
	}
	if d := c.LeaderLeaseTTL.D(); d != 0 && (d < 2*time.Second || d > time.Minute) {
		p.Addf("leader_lease_ttl (--leader-lease-ttl)", "%s is out of range: use 2s to 1m (etcd's shortest lease is about 1.5s; a longer one delays failover)", d)
	}
	switch {
	case c.InsecureEtcdPlaintext && tlsSet:
		p.Addf("insecure_etcd_plaintext (--insecure-etcd-plaintext)", "contradicts etcd_ca, etcd_cert and etcd_key: choose TLS or plaintext")
	case !c.InsecureEtcdPlaintext:
		for _, kv := range [][2]string{{"etcd_ca (--etcd-ca)", c.EtcdCA}, {"etcd_cert (--etcd-cert)", c.EtcdCert}, {"etcd_key (--etcd-key)", c.EtcdKey}} {
			if kv[1] == "" {
				p.Addf(kv[0], "is required: the link to etcd is mutual TLS (`ward etcd certs` makes the files); --insecure-etcd-plaintext accepts a plaintext link instead")
			}
		}
	}
}
