package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
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

// EncodeCRLPEM wraps a DER CRL as an "X509 CRL" PEM block.
func EncodeCRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// ParseCRLsPEM reads every "X509 CRL" block in data.
func ParseCRLsPEM(data []byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out, nil
		}
		if b.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", len(out)+1, err)
		}
		out = append(out, crl)
	}
}
