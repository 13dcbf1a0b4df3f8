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

// ContextDir is where named contexts live: ~/.ward/contexts, one
// NAME.context file each (`ward context add`, `ward context use`).
func ContextDir() string {
	return filepath.Join(filepath.Dir(DefaultContextPath()), "contexts")
}

// NamedContextPath is the file of the named context name.
func NamedContextPath(name string) string {
	return filepath.Join(ContextDir(), name+".context")
}

// ValidContextName checks a context name: 1 to 64 letters, digits, '.',
// '_' or '-', not starting with '.'.
func ValidContextName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return fmt.Errorf("context name %q must be 1 to 64 characters and not start with '.'", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("context name %q may hold only letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// ResolveContextPath applies the lookup order: the --context flag, then
// $WARD_CONTEXT, then ~/.ward/context (which `ward context use` points at
// a named context). The flag and the variable take a file or the name of
// a context in ContextDir. It says which one it used.
func ResolveContextPath(flag string) (path, source string) {
	if flag != "" {
		return fileOrName(flag), "--context"
	}
	if env := os.Getenv(ContextEnv); env != "" {
		return fileOrName(env), "$" + ContextEnv
	}
	return DefaultContextPath(), "the default location"
}

// fileOrName reads a --context value: the named context when v is a valid
// name that is not a file here but is one in ContextDir, else the file v.
func fileOrName(v string) string {
	if ValidContextName(v) != nil {
		return v
	}
	if _, err := os.Stat(v); err == nil {
		return v
	}
	if named := NamedContextPath(v); fileExists(named) {
		return named
	}
	return v
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
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

// Save writes the context atomically with mode 0600. When path is a
// symbolic link (~/.ward/context after `ward context use`), the file it
// points to is written and the link stays.
func (c *Context) Save(path string) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
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
