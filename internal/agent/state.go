package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// Files in the agent's data directory.
const (
	fileKey    = "agent.key"
	fileCert   = "agent.crt"
	fileBundle = "ca.pem"
	fileState  = "agent.json"
)

// stateFile is what the agent learned at join and needs at every start.
type stateFile struct {
	Version      int      `json:"version"`
	Cluster      string   `json:"cluster"`
	Node         string   `json:"node"`
	ClusterAddrs []string `json:"cluster_addrs"`
	PublicAddrs  []string `json:"public_addrs"`
	JoinPin      string   `json:"join_pin"`
	KeyStore     string   `json:"key_store"` // file or tpm
	// PlaintextAddr, when set, is the coordinator's plaintext migration
	// listener this agent still uses (INSECURE: link status NO).
	PlaintextAddr string `json:"insecure_plaintext_addr,omitempty"`
}

// Joined reports whether dir already holds an agent identity.
func Joined(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, fileState))
	return err == nil
}

func loadState(dir string) (*stateFile, error) {
	b, err := os.ReadFile(filepath.Join(dir, fileState))
	if err != nil {
		return nil, fmt.Errorf("read agent state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", filepath.Join(dir, fileState), err)
	}
	if st.Version != config.FileVersion || st.Node == "" || st.Cluster == "" {
		return nil, fmt.Errorf("%s is incomplete or from another version of Ward", filepath.Join(dir, fileState))
	}
	return &st, nil
}

func saveState(dir string, st *stateFile) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return identity.WriteFileAtomic(filepath.Join(dir, fileState), append(b, '\n'), 0o644)
}

// KeySource creates or opens the agent's private key. The file source keeps
// it in DATA/agent.key (0600); a TPM source keeps it inside the TPM.
type KeySource interface {
	// Create makes a new key, replacing any previous one.
	Create() (crypto.Signer, error)
	// Open loads the existing key.
	Open() (crypto.Signer, error)
	// Name says where keys live, for logs and state.
	Name() string
}

// FileKeys keeps the key in a 0600 PEM file.
type FileKeys struct{ Path string }

// Create generates a P-256 key and writes it atomically with mode 0600.
func (f FileKeys) Create() (crypto.Signer, error) {
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	pemKey, err := pki.MarshalKeyPEM(key)
	if err != nil {
		return nil, err
	}
	if err := identity.WriteSecret(f.Path, pemKey); err != nil {
		return nil, err
	}
	return key, nil
}

// Open reads the key, refusing loose permissions.
func (f FileKeys) Open() (crypto.Signer, error) {
	b, err := identity.ReadSecret(f.Path)
	if err != nil {
		return nil, err
	}
	k, err := pki.ParseKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", f.Path, err)
	}
	return k, nil
}

// Name is "file".
func (FileKeys) Name() string { return "file" }

// JoinOptions are the inputs of a first start.
type JoinOptions struct {
	JoinString string
	Keys       KeySource
	// Logger hears about retries (nil: slog.Default()).
	Logger *slog.Logger

	joined *joined // filled by Join, so New need not read it all back
}

// joined is what a join produced, in memory.
type joined struct {
	key    crypto.Signer
	chain  []*x509.Certificate
	bundle []*x509.Certificate
	crls   []byte
}

// Join enrolls this node: it verifies the cluster CA pin during the TLS
// handshake (before sending anything), generates its key locally, sends a
// CSR with the token, and stores its certificate, the trust bundle and what
// it learned about the cluster.
func Join(ctx context.Context, cfg config.Agent, opts *JoinOptions) (*stateFile, error) {
	js, err := enroll.ParseJoinString(opts.JoinString)
	if err != nil {
		return nil, err
	}
	if js.User != "" {
		return nil, api.Errorf(api.CodeJoinStringMalformed, "a person logs in with it: `ward login --join-file FILE`; an agent joins with a string from `ward token create`",
			"this join string is user %s's one-time login, not an agent join token", js.User)
	}
	name := cfg.Name
	if name == "" {
		name = defaultNodeName()
	}
	if err := pki.ValidName("node", name); err != nil {
		return nil, fmt.Errorf("%v (fix: pass --name)", err)
	}
	key, err := opts.Keys.Create()
	if err != nil {
		return nil, fmt.Errorf("create the agent key (%s): %w", opts.Keys.Name(), err)
	}
	id := pki.ID{Cluster: js.Cluster, Role: pki.RoleAgent, Name: name}
	csr, err := enroll.CreateCSR(key, id)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	resp, err := joinWithRetry(ctx, opts.Logger, js, api.JoinRequest{Name: name, CSR: csr, Slots: cfg.Slots, Memory: int64(cfg.Memory), Labels: cfg.Labels, Hostname: host})
	if err != nil {
		return nil, err
	}
	chain, err := pki.ParseCertsPEM(resp.ChainPEM)
	if err != nil {
		return nil, fmt.Errorf("the coordinator sent an unreadable certificate: %w", err)
	}
	if !pki.KeyMatches(chain[0], key) {
		return nil, errors.New("the coordinator sent a certificate for another key; refusing it")
	}
	bundle, err := pki.ParseCertsPEM(resp.BundlePEM)
	if err != nil {
		return nil, fmt.Errorf("the coordinator sent an unreadable trust bundle: %w", err)
	}
	if _, ok := pki.MatchAny([]pki.Pin{js.Pin}, bundle); !ok {
		return nil, fmt.Errorf("the trust bundle the coordinator sent does not contain the pinned CA %s; refusing it", js.Pin)
	}
	st := &stateFile{
		Version: config.FileVersion, Cluster: resp.Cluster, Node: resp.Node, ClusterAddrs: resp.ClusterAddrs,
		PublicAddrs: resp.PublicAddrs, JoinPin: js.Pin.String(), KeyStore: opts.Keys.Name(),
	}
	stateJSON, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	files := []identity.File{
		{Path: fileCert, Data: resp.ChainPEM, Perm: 0o644},
		{Path: fileBundle, Data: resp.BundlePEM, Perm: 0o644},
	}
	if len(resp.CRLsPEM) > 0 {
		files = append(files, identity.File{Path: fileCRLs, Data: resp.CRLsPEM, Perm: 0o644})
	}
	// The state file goes last: its presence says the join finished.
	files = append(files, identity.File{Path: fileState, Data: append(stateJSON, '\n'), Perm: 0o644})
	if err := identity.WriteFilesAtomic(cfg.DataDir, files...); err != nil {
		return nil, err
	}
	opts.joined = &joined{key: key, chain: chain, bundle: bundle, crls: resp.CRLsPEM}
	return st, nil
}

// Join retries back off from joinBackoffMin, doubling up to joinBackoffMax.
const (
	joinBackoffMin = time.Second
	joinBackoffMax = time.Minute
)

// joinWithRetry sends the join, and sends it again while the coordinator
// answers RATE_LIMITED (too many joins right now) or UNAVAILABLE (the token
// was contended) or STORE_UNAVAILABLE (its store cannot write for now):
// after the time the coordinator gives, or an exponential
// backoff if that is longer, plus jitter so a fleet started together does
// not come back together. Any other answer is final.
func joinWithRetry(ctx context.Context, log *slog.Logger, js enroll.JoinString, req api.JoinRequest) (*api.JoinResponse, error) {
	if log == nil {
		log = slog.Default()
	}
	backoff := joinBackoffMin
	for attempt := 1; ; attempt++ {
		resp, err := enroll.Join(ctx, js, req)
		var ae *api.Error
		if err == nil || !errors.As(err, &ae) || (ae.Code != api.CodeRateLimited && ae.Code != api.CodeUnavailable && ae.Code != api.CodeStoreUnavailable) {
			return resp, err
		}
		wait := max(ae.RetryAfter.D(), backoff)
		wait += rand.N(wait/2 + 1)
		log.Warn("join refused for now; retrying", "code", string(ae.Code), "reason", ae.Message, "attempt", attempt,
			"retry_in", wait.Round(time.Millisecond).String(), "coordinator", js.Addr)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped while waiting to retry the join: %w", ae)
		case <-time.After(wait):
		}
		backoff = min(2*backoff, joinBackoffMax)
	}
}

// defaultNodeName is the host name, lower-cased, up to its first dot.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil {
		return "agent"
	}
	return strings.ToLower(strings.Split(h, ".")[0])
}
