package pki

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"
)

// CreateCRL signs a DER certificate revocation list with ca, valid from now
// until now+validity. number must increase with every CRL the CA publishes.
func CreateCRL(ca *CA, revoked []x509.RevocationListEntry, number int64, now time.Time, validity time.Duration) ([]byte, error) {
	tmpl := &x509.RevocationList{
		RevokedCertificateEntries: revoked,
		Number:                    big.NewInt(number),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(validity),
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL with %q: %w", ca.Cert.Subject.CommonName, err)
	}
	return der, nil
}
