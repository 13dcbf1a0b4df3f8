package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// Default lifetimes from the design; every one is configurable by callers.
const (
	RootLifetime    = 10 * 365 * 24 * time.Hour
	IssuingLifetime = 365 * 24 * time.Hour
	// Backdate absorbs small clock skew between nodes: a certificate issued
	// now is already valid on a node whose clock is a few minutes behind.
	Backdate = 5 * time.Minute
)

// backdate is how far before now a certificate of this lifetime starts:
// Backdate, but never more than a tenth of the lifetime, so the renewal
// point (two thirds of NotBefore..NotAfter) stays well after issuance even
// for short-lived certificates.
func backdate(lifetime time.Duration) time.Duration {
	return min(Backdate, lifetime/10)
}

// CA is a certificate authority: its certificate and signing key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewSerial returns a random 128-bit positive serial number.
func NewSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// NewRootCA creates a self-signed root CA for cluster with a fresh P-256 key.
func NewRootCA(cluster string, now time.Time, lifetime time.Duration) (*CA, error) {
	return NewRootCAGeneration(cluster, 1, now, lifetime)
}

// NewRootCAGeneration creates the root of a given generation: each CA
// rotation makes the next one, with a subject of its own so that clients
// never confuse two roots.
func NewRootCAGeneration(cluster string, generation int, now time.Time, lifetime time.Duration) (*CA, error) {
	if err := ValidName("cluster", cluster); err != nil {
		return nil, err
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: rootName(cluster, generation), Organization: []string{"Ward cluster " + cluster}},
		NotBefore:             now.Add(-backdate(lifetime)),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create root CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// NewIssuingCA creates an online issuing CA signed by parent. generation
// distinguishes successive issuing CAs in their subject.
func NewIssuingCA(parent *CA, cluster string, generation int, now time.Time, lifetime time.Duration) (*CA, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(parent.Cert.NotAfter) {
		notAfter = parent.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("Ward Issuing CA %s %d", cluster, generation), Organization: []string{"Ward cluster " + cluster}},
		NotBefore:             now.Add(-backdate(lifetime)),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		return nil, fmt.Errorf("create issuing CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Bundle is a set of trusted root certificates. It may hold several roots so
// that a CA rotation can overlap old and new.
type Bundle []*x509.Certificate

// Pool returns the bundle as an x509.CertPool.
func (b Bundle) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range b {
		p.AddCert(c)
	}
	return p
}

// PEM encodes the bundle.
func (b Bundle) PEM() []byte { return EncodeCertsPEM(b...) }

// Pins returns the SPKI pin of every root in the bundle.
func (b Bundle) Pins() []Pin {
	out := make([]Pin, 0, len(b))
	for _, c := range b {
		out = append(out, SPKIPin(c))
	}
	return out
}

// CrossSign certifies ca's subject and key under old, so clients that trust
// only old can still build a path to certificates ca issued during a
// rotation. Cross-signing the new issuing CA (not the new root) keeps that
// path within the old root's path length limit. The cross certificate keeps
// ca's own path length and lives no longer than old.
func CrossSign(ca *x509.Certificate, old *CA, now time.Time) (*x509.Certificate, error) {
	newRoot := ca
	if old.Key == nil {
		return nil, fmt.Errorf("the root CA %q key is offline, so it cannot cross-sign the new root", old.Cert.Subject.CommonName)
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	notAfter := newRoot.NotAfter
	if notAfter.After(old.Cert.NotAfter) {
		notAfter = old.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               newRoot.Subject,
		SubjectKeyId:          newRoot.SubjectKeyId,
		NotBefore:             now.Add(-backdate(notAfter.Sub(now))),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            newRoot.MaxPathLen,
		MaxPathLenZero:        newRoot.MaxPathLen == 0,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, old.Cert, newRoot.PublicKey, old.Key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign %q with %q: %w", newRoot.Subject.CommonName, old.Cert.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func rootName(cluster string, generation int) string {
	if generation <= 1 {
		return "Ward Root CA " + cluster
	}
	return fmt.Sprintf("Ward Root CA %s %d", cluster, generation)
}
