package api

import (
	"encoding/json"
	"time"
)

// HTTP paths. The cluster port (mTLS) serves /v1/...; the public port
// (server TLS only) serves the join and trust endpoints.
const (
	PathJoin  = "/v1/join"  // public: POST JoinRequest → JoinResponse
	PathCA    = "/v1/ca"    // public: GET trust bundle (PEM)
	PathCRL   = "/v1/crl"   // public: GET the issuing CA's CRL (DER); /v1/crl/{issuer serial} for another
	PathCRLs  = "/v1/crls"  // public: GET every trusted issuing CA's CRL (PEM)
	PathHeal  = "/v1/heal"  // public: POST HealRequest with the expired client certificate
	PathReady = "/v1/ready" // public: GET 200 when serving
)

// JoinRequest is an agent's first contact: the token and a CSR for a key
// the agent generated and keeps.
type JoinRequest struct {
	TokenID  string            `json:"token_id"`
	Secret   string            `json:"secret"`
	Name     string            `json:"name"`
	CSR      []byte            `json:"csr"` // DER PKCS#10
	Slots    int               `json:"slots"`
	Labels   map[string]string `json:"labels,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
	// Memory is the memory the agent offers tasks, in bytes (0: none).
	Memory int64 `json:"memory,omitempty"`
}

// JoinResponse carries the agent's certificate and what it needs to find
// and trust the cluster from now on.
type JoinResponse struct {
	Node         string   `json:"node"`
	Cluster      string   `json:"cluster"`
	ChainPEM     []byte   `json:"chain_pem"`  // leaf then issuing CA
	BundlePEM    []byte   `json:"bundle_pem"` // trusted roots
	CRLsPEM      []byte   `json:"crls_pem"`   // every trusted issuing CA's CRL, so no extra fetch is needed
	ClusterAddrs []string `json:"cluster_addrs"`
	PublicAddrs  []string `json:"public_addrs"`
}

// HealRequest renews an expired agent certificate within the grace window.
// The agent proves possession of its key at the TLS handshake (its expired
// certificate is presented as the client certificate) and by signing the
// CSR with the same key.
type HealRequest struct {
	CSR []byte `json:"csr"`
}

// HealResponse is a fresh chain for the same identity.
type HealResponse struct {
	ChainPEM  []byte `json:"chain_pem"`
	BundlePEM []byte `json:"bundle_pem"`
}

// TokenCreate asks for a join token.
type TokenCreate struct {
	TTL      Duration          `json:"ttl"`
	Uses     int               `json:"uses"`
	Labels   map[string]string `json:"labels,omitempty"`
	AllowDNS []string          `json:"allow_dns,omitempty"`
	AllowIPs []string          `json:"allow_ips,omitempty"`
}

// Token describes a join token; the secret is never returned after creation.
type Token struct {
	ID        string            `json:"id"`
	Created   time.Time         `json:"created,omitzero"`
	Expires   time.Time         `json:"expires,omitzero"`
	Uses      int               `json:"uses"`
	Used      int               `json:"used"`
	Labels    map[string]string `json:"labels,omitempty"`
	AllowDNS  []string          `json:"allow_dns,omitempty"`
	AllowIPs  []string          `json:"allow_ips,omitempty"`
	Revoked   bool              `json:"revoked"`
	State     string            `json:"state"` // active, expired, used, revoked
	CreatedBy string            `json:"created_by"`
}

// TokenCreated is the answer to TokenCreate: the only time the join string,
// which holds the secret, is shown.
type TokenCreated struct {
	Token Token  `json:"token"`
	Join  string `json:"join"`
}

// Node is one agent as the coordinator sees it.
type Node struct {
	Name      string `json:"name"`
	State     string `json:"state"` // ready, draining (running tasks finish), drained, disconnected, down, revoked
	Slots     int    `json:"slots"`
	UsedSlots int    `json:"used_slots"`
	// Memory is the memory the agent offers tasks, in bytes (0: it
	// reports none, so no task that reserves memory is placed there);
	// UsedMemory is what its running tasks reserve.
	Memory     int64 `json:"memory"`
	UsedMemory int64 `json:"used_memory"`
	// AheadSlots is the slots of tasks assigned ahead: on the agent,
	// waiting to start as soon as a slot frees (prefetch_below).
	AheadSlots int               `json:"ahead_slots"`
	Running    int               `json:"running"`
	Labels     map[string]string `json:"labels,omitempty"`
	CertSerial string            `json:"cert_serial"`
	CertExpiry time.Time         `json:"cert_expiry,omitzero"`
	CertIssuer string            `json:"cert_issuer,omitempty"`
	TLSVersion string            `json:"tls_version"`
	Link       string            `json:"link"`                    // YES, PARTLY, NO
	Revocation string            `json:"revocation,omitempty"`    // the agent's check of the coordinator: checked, unavailable
	UpgradeErr string            `json:"upgrade_error,omitempty"` // why the last move from plaintext to TLS failed
	Addr       string            `json:"addr,omitempty"`
	Connected  bool              `json:"connected"`
	// Reconnects counts the sessions the agent opened in the last 10
	// minutes after an earlier one (`ward doctor` warns from 3).
	Reconnects int       `json:"reconnects"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
	ClockSkew  Duration  `json:"clock_skew"`
	Drain      bool      `json:"drain"`
	Joined     time.Time `json:"joined,omitzero"`
	// Version is the Ward version the agent reported when it last
	// connected ("" before its first session).
	Version string `json:"version,omitempty"`
	// Profile is the agent profile assigned to the node ("" for none);
	// ProfileState says whether the agent applied it, and ProfileError
	// why it refused it.
	Profile         string `json:"profile,omitempty"`
	ProfileRevision int64  `json:"profile_revision,omitempty"`
	ProfileState    string `json:"profile_state,omitempty"`
	ProfileError    string `json:"profile_error,omitempty"`
	// Coordinator is the coordinator the agent's session is connected to
	// (its member ID); a follower relays it to the leader.
	Coordinator string `json:"coordinator,omitempty"`
}

// DrainRequest asks a node to take no new tasks; Force requeues running ones.
type DrainRequest struct {
	Force bool `json:"force"`
}

// DrainResult says what a drain or undrain did. A forced drain stops the
// node's running attempts (Requeued); a plain one sends back to the queue
// the attempts assigned ahead that have not started (Withdrawn).
type DrainResult struct {
	Node      string `json:"node"`
	Drain     bool   `json:"drain"`
	Requeued  *int   `json:"requeued,omitempty"`
	Withdrawn *int   `json:"withdrawn,omitempty"`
	// Running, after a drain without force, is how many tasks still run
	// there: the node is draining until they finish, then drained.
	Running *int `json:"running,omitempty"`
}

// RevokeResult says what a revocation did.
type RevokeResult struct {
	Serials []string `json:"serials"`
	// Renewed lists the certificates renewed from Serials (at any depth)
	// that the revocation revoked too.
	Renewed  []string `json:"renewed,omitempty"`
	Node     string   `json:"node,omitempty"`
	Closed   int      `json:"sessions_closed"`
	Requeued int      `json:"tasks_requeued"`
}

// Status is the cluster summary at GET /v1/status.
type Status struct {
	Cluster      string    `json:"cluster"`
	Coordinator  string    `json:"coordinator"`
	Version      string    `json:"version"`
	ClusterAddrs []string  `json:"cluster_addrs"`
	PublicAddrs  []string  `json:"public_addrs"`
	Nodes        int       `json:"nodes"`
	Connected    int       `json:"connected"`
	Insecure     []string  `json:"insecure,omitempty"` // insecure settings in effect, by name
	Store        string    `json:"store,omitempty"`    // the store backend and where it is
	CAExpiry     time.Time `json:"ca_expiry,omitzero"`
	CertExpiry   time.Time `json:"cert_expiry,omitzero"`
	// Coordinators lists every coordinator of the cluster with its
	// version and build.
	Coordinators []CoordinatorInfo `json:"coordinators"`
	// AgentVersions counts the connected agents by the Ward version they
	// run ("unknown" for agents too old to say); `ward node ls -o json`
	// gives each agent's.
	AgentVersions map[string]int `json:"agent_versions"`
	// StoreHealth is how the store answered a read made for this status.
	StoreHealth StoreHealth `json:"store_health"`
	// Maintenance says whether the cluster is in maintenance mode.
	Maintenance Maintenance `json:"maintenance"`
	// StoreEndpoints is each etcd endpoint's health (etcd stores only).
	StoreEndpoints []StoreEndpoint `json:"store_endpoints,omitempty"`
	// Partial is set when a follower answered by itself because no
	// coordinator leads right now (an election) or the leader could not be
	// reached. The job system's figures (Nodes, Connected, AgentVersions,
	// Maintenance) are then unknown and left empty.
	Partial *PartialStatus `json:"partial,omitempty"`
}

// Election states of a partial status.
const (
	ElectionUnderWay          = "under_way"          // no term holds: the coordinators campaign
	ElectionLeaderUnreachable = "leader_unreachable" // a term holds, but its leader did not answer
	ElectionTakingOver        = "taking_over"        // the answering coordinator won and is loading the job system
)

// PartialStatus says why a status is partial and how the election looks
// from the coordinator that answered.
type PartialStatus struct {
	Reason   string `json:"reason"`
	Election string `json:"election"`
	// LastLeader is the last leader the answering coordinator saw (its
	// member ID) and when its term began; empty when none was ever seen.
	LastLeader      string    `json:"last_leader,omitempty"`
	LastLeaderSince time.Time `json:"last_leader_since,omitzero"`
	// Since is when the answering coordinator saw the leadership change
	// last (the last term end, for an election under way).
	Since time.Time `json:"since,omitzero"`
	// LeaseTTL is the leader lease: a new leader is elected within about
	// this long after the last one's term ended.
	LeaseTTL Duration `json:"lease_ttl"`
}

// DebugInfo is what a support bundle needs from a coordinator that no
// other route serves (GET /v1/debug/info?lines=N). It never holds a key,
// a token secret or a passphrase: the config holds paths to secrets, and
// the data directory is listed, not read.
type DebugInfo struct {
	Coordinator string          `json:"coordinator"`
	Config      json.RawMessage `json:"config"`
	// LogLines are the coordinator's most recent log lines (JSON), oldest
	// first.
	LogLines []string      `json:"log_lines"`
	DataDir  []DataDirFile `json:"data_dir"`
	Runtime  RuntimeInfo   `json:"runtime"`
}

// DataDirFile is one entry of the coordinator's data directory.
type DataDirFile struct {
	Path     string    `json:"path"`
	Mode     string    `json:"mode"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified,omitzero"`
}

// RuntimeInfo is the coordinator process's state.
type RuntimeInfo struct {
	Started      time.Time `json:"started,omitzero"`
	Goroutines   int       `json:"goroutines"`
	HeapBytes    uint64    `json:"heap_bytes"`
	SysBytes     uint64    `json:"sys_bytes"`
	NumGC        uint32    `json:"num_gc"`
	OpenFiles    int       `json:"open_files"`
	MaxOpenFiles uint64    `json:"max_open_files"`
}

// CoordinatorInfo is one coordinator's identity and build.
type CoordinatorInfo struct {
	ID        string `json:"id"`
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go_version,omitempty"`
	// Member is the coordinator's ID among the cluster's coordinators
	// (name@cluster address).
	Member      string `json:"member,omitempty"`
	ClusterAddr string `json:"cluster_addr,omitempty"`
	PublicAddr  string `json:"public_addr,omitempty"`
	// Leader says it runs the scheduler and the leader-only work; Alive
	// that its membership lease in the store holds.
	Leader bool `json:"leader"`
	Alive  bool `json:"alive"`
	// LeaderSince is when the leader's term began.
	LeaderSince time.Time `json:"leader_since,omitzero"`
	// Its own view of the store at its last report: the read latency and
	// error, and how long ago it reported (Lag: a coordinator that cannot
	// reach the store stops reporting).
	StoreLatency Duration  `json:"store_latency,omitempty"`
	StoreError   string    `json:"store_error,omitempty"`
	Reported     time.Time `json:"reported,omitzero"`
	Lag          Duration  `json:"lag,omitempty"`
}

// StoreEndpoint is one etcd endpoint's health as the leader sees it.
type StoreEndpoint struct {
	Endpoint string   `json:"endpoint"`
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
	Latency  Duration `json:"latency"`
	Version  string   `json:"version,omitempty"`
	Leader   bool     `json:"etcd_leader"`
	// Lag is how many raft entries the member has yet to apply.
	Lag uint64 `json:"lag"`
}

// StoreHealth is how the coordinator's store answered a read made for the
// status, and how long it took.
type StoreHealth struct {
	OK      bool     `json:"ok"`
	Latency Duration `json:"read_latency"`
	Error   string   `json:"error,omitempty"`
	// Writable is false while the store's writes fail (a full disk, an
	// etcd outage): new work is refused with STORE_UNAVAILABLE and the
	// coordinator resumes on its own once a write succeeds.
	Writable bool `json:"writable"`
	// UnwritableSince, WriteError and Fix describe the outage.
	UnwritableSince *time.Time `json:"unwritable_since,omitempty"`
	WriteError      string     `json:"write_error,omitempty"`
	Fix             string     `json:"fix,omitempty"`
	// Outages counts the times writes started failing since the start.
	Outages uint64 `json:"outages"`
}

// UILinkRequest asks for a one-time sign-in link to the web console.
type UILinkRequest struct {
	TTL Duration `json:"ttl,omitempty"` // default 5m, at most 1h
}

// UILink is a one-time sign-in link: it works once, until Expires.
type UILink struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires,omitzero"`
}

// RevocationReasons are the reasons a revocation may give, as --reason
// takes them.
var RevocationReasons = []string{"unspecified", "key-compromise", "ca-compromise", "affiliation-changed", "superseded", "cessation-of-operation", "privilege-withdrawn"}

// RevokeRequest gives the reason recorded with a revocation: one of
// unspecified, key-compromise, ca-compromise, affiliation-changed,
// superseded, cessation-of-operation, privilege-withdrawn.
type RevokeRequest struct {
	Reason string `json:"reason,omitempty"`
}

// Cert is one certificate the cluster CA issued.
type Cert struct {
	Serial    string    `json:"serial"`
	Identity  string    `json:"identity"`
	Role      string    `json:"role"`
	Name      string    `json:"name"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	// Parent is the serial of the certificate this one renewed; revoking
	// the parent revokes it too.
	Parent string `json:"parent,omitempty"`
}

// Certificate states a CertFilter selects by.
const (
	CertActive  = "active"  // neither revoked nor expired
	CertRevoked = "revoked" // revoked, expired or not
	CertExpired = "expired" // past its end date, not revoked
)

// CertFilter selects issued certificates for a listing; empty fields match
// every certificate. Newest lists the most recently issued first; Offset
// and Limit page through what matches (Limit 0: all of it).
type CertFilter struct {
	State  string // CertActive, CertRevoked, CertExpired
	Role   string
	Newest bool
	Offset int
	Limit  int
}

// RotateRequest moves the CA rotation one phase forward, or back.
type RotateRequest struct {
	Rollback bool     `json:"rollback,omitempty"`
	Force    bool     `json:"force,omitempty"`  // retire even if some agents still hold old-CA certificates
	Spread   Duration `json:"spread,omitempty"` // the renew phase spreads agent renewals over this window
}

// CAInfo describes one CA certificate.
type CAInfo struct {
	Subject  string    `json:"subject"`
	Serial   string    `json:"serial"`
	Pin      string    `json:"pin"`
	NotAfter time.Time `json:"not_after,omitzero"`
}

// CAStatus is the CA and rotation state at GET /v1/ca/status.
type CAStatus struct {
	Phase      int            `json:"phase"` // 0 idle, 1 trust, 2 issue, 3 renew
	PhaseName  string         `json:"phase_name"`
	Generation int            `json:"generation"`
	Roots      []CAInfo       `json:"roots"`
	Issuing    CAInfo         `json:"issuing"`
	Trusted    []CAInfo       `json:"trusted_issuing"`
	Agents     map[string]int `json:"agents_by_issuer"`
	OnOldCA    []string       `json:"agents_on_old_ca,omitempty"`
	Next       string         `json:"next"`
	Changed    time.Time      `json:"changed,omitzero"`
	CRL        *CRLInfo       `json:"crl,omitempty"` // the issuing CA's current CRL
}

// CRLInfo describes a published CRL.
type CRLInfo struct {
	Number     int64     `json:"number"`
	ThisUpdate time.Time `json:"this_update,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	Revoked    int       `json:"revoked"` // entries
}

// MigrationStatus lists the links that are not yet fully secure.
type MigrationStatus struct {
	Plaintext string     `json:"plaintext_addr,omitempty"` // where the plaintext listener is bound, if open
	Finished  bool       `json:"finished"`                 // plaintext is loopback only
	Insecure  []PeerLink `json:"insecure_peers"`
	Secure    int        `json:"secure_peers"`
}

// PeerLink is one peer whose link is not YES.
type PeerLink struct {
	Node       string `json:"node"`
	Addr       string `json:"addr"`
	Link       string `json:"link"`
	Reason     string `json:"reason"`
	UpgradeErr string `json:"upgrade_error,omitempty"`
}

// MigrateRequest asks plaintext agents to upgrade, or finishes the
// migration.
type MigrateRequest struct {
	Nodes []string `json:"nodes,omitempty"` // upgrade: only these (default all)
	Force bool     `json:"force,omitempty"` // finish: even while peers are still plaintext
}

// CheckRequest asks the coordinator to try a TLS connection from its own
// host, as `ward check` does, with exactly these fields and nothing from
// its saved configuration.
type CheckRequest struct {
	Address string `json:"address"` // host:port
	// CAPEM holds trusted roots (PEM); with neither it nor ClusterCA the
	// system roots are used.
	CAPEM string `json:"ca_pem,omitempty"`
	// ClusterCA adds this cluster's trust bundle to the roots.
	ClusterCA          bool     `json:"cluster_ca,omitempty"`
	Pins               []string `json:"pins,omitempty"`
	ServerName         string   `json:"server_name,omitempty"`
	MinTLS             string   `json:"min_tls,omitempty"` // 1.3 (default) or 1.2
	InsecureSkipVerify bool     `json:"insecure_skip_verify,omitempty"`
	Timeout            Duration `json:"timeout,omitempty"` // default 5s, at most 30s
}

// Finding severities, most severe first.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Finding is one problem `ward doctor` found, with a stable code.
type Finding struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Finding  string `json:"finding"`
	Fix      string `json:"fix"`
}

// AuditFilter selects audit events: at or after Since (zero: from the
// start), before Until (zero: up to now), and of Type or its subtypes
// ("cert" matches cert.revoke). Newest lists the latest first; Offset and
// Limit page through what matches (Limit 0: all of it).
type AuditFilter struct {
	Since  time.Time
	Until  time.Time
	Type   string
	Newest bool
	Offset int
	Limit  int
}

// DoctorReport is the answer of GET /v1/doctor.
type DoctorReport struct {
	Horizon  Duration  `json:"horizon"`
	Findings []Finding `json:"findings"`
}
