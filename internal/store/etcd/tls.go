package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// The coordinator settings that configure the etcd store, as flag and
// config key, so that every error names the one to change.
const (
	SettingStore     = "--store (store)"
	SettingCA        = "--etcd-ca (etcd_ca)"
	SettingCert      = "--etcd-cert (etcd_cert)"
	SettingKey       = "--etcd-key (etcd_key)"
	SettingPlaintext = "--insecure-etcd-plaintext (insecure_etcd_plaintext)"
)

// TLS is the client side of the mutual TLS link to etcd, loaded from files.
type TLS struct {
	CAFile, CertFile, KeyFile string
	Roots                     *x509.CertPool
	CA                        []*x509.Certificate
	Cert                      *tls.Certificate // Leaf set
}

// LoadTLS reads the CA bundle etcd's server certificate must chain to, and
// the client certificate (PEM chain) and key (PEM, mode 0600) that etcd
// verifies. Errors name the setting and the fix.
func LoadTLS(caFile, certFile, keyFile string) (*TLS, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("etcd store: TLS needs all of %s, %s and %s (`ward etcd certs` makes them)", SettingCA, SettingCert, SettingKey)
	}
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SettingCA, err)
	}
	cas, err := pki.ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (it must be the PEM CA certificate that signed etcd's server certificate)", SettingCA, caFile, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	if _, err := os.Stat(keyFile); err != nil {
		return nil, fmt.Errorf("%s: %w", SettingKey, err)
	}
	cred, err := identity.LoadCredential(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", SettingCert, SettingKey, err)
	}
	leaf := cred.Leaf()
	if !hasEKU(leaf, x509.ExtKeyUsageClientAuth) {
		return nil, fmt.Errorf("%s %s is not a client certificate (no clientAuth extended key usage), so etcd would refuse it; issue one with `ward etcd certs`", SettingCert, certFile)
	}
	return &TLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile, Roots: pool, CA: cas, Cert: cred.TLS()}, nil
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 {
		return true // no EKU extension: any use
	}
	for _, u := range c.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// Config is the client tls.Config: TLS 1.3, etcd's server verified against
// the CA, the client certificate sent.
func (t *TLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      t.Roots,
		Certificates: []tls.Certificate{*t.Cert},
	}
}
