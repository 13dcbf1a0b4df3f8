// Package etcdcerts issues the certificates of the mutual TLS link between
// coordinators and etcd, for sites with no PKI of their own (`ward etcd
// certs`). They come from a CA of their own that Ward creates, not from the
// cluster CA: etcd admits every client certificate its CA file vouches for,
// so trusting the cluster CA there would let any agent or user certificate
// read and rewrite the whole store.
package etcdcerts

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// Lifetimes of what Issue makes.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	LeafLifetime = 365 * 24 * time.Hour
)

// File names in the output directory.
const (
	FileCA    = "ca.pem"
	FileCAKey = "ca-key.pem"
)

// NewCA creates the etcd CA of cluster: self-signed, P-256, for leaves only.
func NewCA(cluster string, now time.Time) (*pki.CA, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Ward etcd CA " + cluster, Organization: []string{"Ward cluster " + cluster}},
		NotBefore:             now.Add(-pki.Backdate),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	cert, key, err := sign(tmpl, nil)
	if err != nil {
		return nil, fmt.Errorf("create the etcd CA: %w", err)
	}
	return &pki.CA{Cert: cert, Key: key}, nil
}

// sign makes a fresh P-256 key and a serial for tmpl and signs it with ca,
// or with the new key itself when ca is nil.
func sign(tmpl *x509.Certificate, ca *pki.CA) (*x509.Certificate, crypto.Signer, error) {
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = pki.NewSerial(); err != nil {
		return nil, nil, err
	}
	parent, parentKey := tmpl, crypto.Signer(key)
	if ca != nil {
		parent, parentKey = ca.Cert, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// Kind says what a leaf is for.
type Kind int

// The leaves etcd needs.
const (
	// Server is an etcd member's certificate: serverAuth for clients, and
	// clientAuth too, so the same certificate serves on the peer port.
	Server Kind = iota + 1
	// Client is a coordinator's certificate for etcd (clientAuth). With
	// etcd's auth enabled, its common name is the etcd user.
	Client
)

// Issue makes a fresh P-256 key and a certificate for it. hosts (DNS names
// or IPs) go into a server certificate's SANs and must include every name
// clients dial.
func Issue(ca *pki.CA, kind Kind, name string, hosts []string, now time.Time, lifetime time.Duration) (*identity.Credential, error) {
	if name == "" {
		return nil, errors.New("issue an etcd certificate: empty name")
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: ca.Cert.Subject.Organization},
		NotBefore:             now.Add(-min(pki.Backdate, lifetime/10)),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if kind == Server {
		if len(hosts) == 0 {
			return nil, fmt.Errorf("issue etcd server certificate %s: give the names and IPs clients dial (--host)", name)
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	cert, key, err := sign(tmpl, ca)
	if err != nil {
		return nil, fmt.Errorf("issue etcd certificate %s: %w", name, err)
	}
	return &identity.Credential{Chain: []*x509.Certificate{cert, ca.Cert}, Key: key}, nil
}

// LoadOrCreateCA reads the etcd CA from dir, or creates it there (key mode
// 0600) when dir has none. created says which.
func LoadOrCreateCA(dir, cluster string, now time.Time) (ca *pki.CA, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, FileCA), filepath.Join(dir, FileCAKey)
	_, errCert := os.Stat(certPath)
	_, errKey := os.Stat(keyPath)
	switch {
	case errCert == nil && errKey == nil:
		cred, err := identity.LoadCredential(certPath, keyPath)
		if err != nil {
			return nil, false, fmt.Errorf("load the etcd CA: %w", err)
		}
		if !cred.Leaf().IsCA {
			return nil, false, fmt.Errorf("%s is not a CA certificate", certPath)
		}
		return &pki.CA{Cert: cred.Leaf(), Key: cred.Key}, false, nil
	case errors.Is(errCert, fs.ErrNotExist) && errors.Is(errKey, fs.ErrNotExist):
	default:
		return nil, false, fmt.Errorf("%s has only one of %s and %s: restore the other, or move both away to start a new etcd CA (every etcd certificate must then be reissued)", dir, FileCA, FileCAKey)
	}
	if ca, err = NewCA(cluster, now); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	if err := Save(&identity.Credential{Chain: []*x509.Certificate{ca.Cert}, Key: ca.Key}, certPath, keyPath); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// Save writes a chain and its key atomically, both with mode 0600.
func Save(cred *identity.Credential, certPath, keyPath string) error {
	keyPEM, err := pki.MarshalKeyPEM(cred.Key)
	if err != nil {
		return err
	}
	if err := identity.WriteSecret(keyPath, keyPEM); err != nil {
		return err
	}
	return identity.WriteFileAtomic(certPath, pki.EncodeCertsPEM(cred.Chain...), 0o600)
}
