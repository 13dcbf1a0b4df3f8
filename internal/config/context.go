package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// ContextEnv names the environment variable that points the CLI at a
// context file.
const ContextEnv = "WARD_CONTEXT"

// Context is what the CLI needs to reach a cluster as one identity: where,
// whom to trust (bundle and pins) and its own certificate and key. It holds
// a private key, so it is written 0600 and refused when looser.
type Context struct {
	Version   int      `json:"version"`
	Cluster   string   `json:"cluster"`
	Server    string   `json:"server"` // cluster port, HOST:PORT
	Public    string   `json:"public"` // public port, HOST:PORT
	BundlePEM string   `json:"bundle_pem"`
	Pins      []string `json:"pins"`
	CertPEM   string   `json:"cert_pem"`
	KeyPEM    string   `json:"key_pem"`
}

// DefaultContextPath is ~/.ward/context.
func DefaultContextPath() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".ward/context"
	}
	return filepath.Join(home, ".ward", "context")
}

// ResolveContextPath applies the lookup order: the --context flag, then
// $WARD_CONTEXT, then ~/.ward/context. It says which one it used.
func ResolveContextPath(flag string) (path, source string) {
	if flag != "" {
		return flag, "--context"
	}
	if env := os.Getenv(ContextEnv); env != "" {
		return env, "$" + ContextEnv
	}
	return DefaultContextPath(), "the default location"
}

// LoadContext reads a context file after checking its permissions.
func LoadContext(path string) (*Context, error) {
	data, err := identity.ReadSecret(path)
	if err != nil {
		return nil, err
	}
	var c Context
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("context file %s is not valid JSON: %w", path, err)
	}
	if c.Version != FileVersion {
		return nil, fmt.Errorf("context file %s has version %d; this Ward reads version %d", path, c.Version, FileVersion)
	}
	if c.Server == "" || c.CertPEM == "" || c.KeyPEM == "" || c.BundlePEM == "" {
		return nil, fmt.Errorf("context file %s is incomplete: it needs server, bundle_pem, cert_pem and key_pem", path)
	}
	return &c, nil
}

// Save writes the context atomically with mode 0600.
func (c *Context) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return identity.WriteSecret(path, append(b, '\n'))
}

// Credential returns the context's certificate, key, trust bundle and pins.
func (c *Context) Credential() (*identity.Credential, pki.Bundle, []pki.Pin, error) {
	key, err := pki.ParseKeyPEM([]byte(c.KeyPEM))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("context key: %w", err)
	}
	chain, err := pki.ParseCertsPEM([]byte(c.CertPEM))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("context certificate: %w", err)
	}
	if !pki.KeyMatches(chain[0], key) {
		return nil, nil, nil, fmt.Errorf("context certificate does not match its key")
	}
	bundle, err := pki.ParseCertsPEM([]byte(c.BundlePEM))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("context trust bundle: %w", err)
	}
	pins, err := pki.ParsePins(c.Pins)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("context pins: %w", err)
	}
	return &identity.Credential{Chain: chain, Key: key}, bundle, pins, nil
}
