package api

import "time"

// PathLogin is the public route a person's `ward login --join-file` posts
// to: the user join string's secret and a CSR for a key made on their
// machine.
const PathLogin = "/v1/login"

// UserCreate is POST /v1/users: a user and the role their certificate
// will carry.
type UserCreate struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// TTL is how long the one-time login stays usable (default 24h).
	TTL Duration `json:"ttl,omitempty"`
}

// UserRoleChange is POST /v1/users/{name}/role.
type UserRoleChange struct {
	Role string   `json:"role"`
	TTL  Duration `json:"ttl,omitempty"`
}

// User describes a user; the login secret is never returned after it was
// made.
type User struct {
	Name      string    `json:"name"`
	Identity  string    `json:"identity"`
	Role      string    `json:"role"`
	State     string    `json:"state"` // invited, active, invite_expired, removed
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	// LoginExpires is when the pending one-time login stops working.
	LoginExpires time.Time `json:"login_expires,omitzero"`
	LastLogin    time.Time `json:"last_login,omitzero"`
	// Certs counts the user's valid (unexpired, unrevoked) certificates;
	// CertExpiry is the latest expiry among them.
	Certs      int       `json:"certs"`
	CertExpiry time.Time `json:"cert_expiry,omitzero"`
	Removed    time.Time `json:"removed,omitzero"`
}

// UserInvite is the answer to adding a user or changing their role: the
// only time the user join string, which holds the secret, is shown.
type UserInvite struct {
	User User   `json:"user"`
	Join string `json:"join"`
	// Revoked lists the certificates a role change revoked.
	Revoked RevokeResult `json:"revoked"`
}

// UserRemoved is the answer to POST /v1/users/{name}/remove.
type UserRemoved struct {
	User    User         `json:"user"`
	Revoked RevokeResult `json:"revoked"`
}

// LoginRequest is a person's first contact with the user join string.
type LoginRequest struct {
	User    string `json:"user"`
	TokenID string `json:"token_id"`
	Secret  string `json:"secret"`
	CSR     []byte `json:"csr"` // DER PKCS#10 for a key made on the user's machine
}

// LoginResponse carries the user's certificate and what the CLI context
// needs.
type LoginResponse struct {
	User         string   `json:"user"`
	Role         string   `json:"role"`
	Cluster      string   `json:"cluster"`
	ChainPEM     []byte   `json:"chain_pem"`
	BundlePEM    []byte   `json:"bundle_pem"`
	ClusterAddrs []string `json:"cluster_addrs"`
	PublicAddrs  []string `json:"public_addrs"`
}
