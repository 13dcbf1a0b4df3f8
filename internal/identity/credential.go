package identity

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/wardcluster/ward/internal/pki"
)

// Credential is a leaf certificate with its chain and the key it was issued
// for. The key may live in memory or behind a crypto.Signer such as a TPM.
type Credential struct {
	Chain []*x509.Certificate // leaf first, then intermediates
	Key   crypto.Signer
}

// Leaf returns the credential's own certificate.
func (c *Credential) Leaf() *x509.Certificate { return c.Chain[0] }

// TLS converts the credential for crypto/tls.
func (c *Credential) TLS() *tls.Certificate {
	raw := make([][]byte, len(c.Chain))
	for i, cert := range c.Chain {
		raw[i] = cert.Raw
	}
	return &tls.Certificate{Certificate: raw, PrivateKey: c.Key, Leaf: c.Chain[0]}
}

// LoadCredential reads a PEM chain and a PEM key, refusing a key file with
// loose permissions and a key that does not match the certificate.
func LoadCredential(certPath, keyPath string) (*Credential, error) {
	keyPEM, err := ReadSecret(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", keyPath, err)
	}
	return LoadChainForKey(certPath, key)
}

// LoadChainForKey reads a PEM chain and checks that it belongs to key.
func LoadChainForKey(certPath string, key crypto.Signer) (*Credential, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", certPath, err)
	}
	chain, err := pki.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", certPath, err)
	}
	if !pki.KeyMatches(chain[0], key) {
		return nil, fmt.Errorf("certificate %s does not belong to its key: the key was replaced or the files come from different nodes", certPath)
	}
	return &Credential{Chain: chain, Key: key}, nil
}

// SaveCredential writes the chain (0644) and, when keyPath is not empty, the
// key (0600), each atomically.
func SaveCredential(c *Credential, certPath, keyPath string) error {
	if keyPath != "" {
		keyPEM, err := pki.MarshalKeyPEM(c.Key)
		if err != nil {
			return err
		}
		if err := WriteSecret(keyPath, keyPEM); err != nil {
			return err
		}
	}
	return WriteFileAtomic(certPath, pki.EncodeCertsPEM(c.Chain...), 0o644)
}

// Source is the live credential and trust bundle behind TLS callbacks.
// Swapping either takes effect on the next handshake; existing sessions and
// listeners are untouched.
type Source struct {
	cred  atomic.Pointer[tls.Certificate]
	trust atomic.Pointer[trustState]
}

type trustState struct {
	bundle pki.Bundle
	pool   *x509.CertPool
}

// NewSource returns a source serving cred and trusting bundle.
func NewSource(cred *Credential, bundle pki.Bundle) *Source {
	s := &Source{}
	s.SetCredential(cred)
	s.SetTrust(bundle)
	return s
}

// SetCredential swaps the served certificate.
func (s *Source) SetCredential(c *Credential) { s.cred.Store(c.TLS()) }

// SetTrust swaps the trust bundle.
func (s *Source) SetTrust(b pki.Bundle) {
	s.trust.Store(&trustState{bundle: append(pki.Bundle(nil), b...), pool: b.Pool()})
}

// Certificate returns the current certificate.
func (s *Source) Certificate() *tls.Certificate { return s.cred.Load() }

// Leaf returns the current leaf certificate.
func (s *Source) Leaf() *x509.Certificate { return s.cred.Load().Leaf }

// Trust returns the current trust pool.
func (s *Source) Trust() *x509.CertPool { return s.trust.Load().pool }

// Bundle returns the current trust bundle.
func (s *Source) Bundle() pki.Bundle { return s.trust.Load().bundle }

// GetCertificate serves the current certificate to a TLS server config.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cred.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no certificate loaded")
}

// GetClientCertificate serves the current certificate to a TLS client config.
func (s *Source) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := s.cred.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no certificate loaded")
}
