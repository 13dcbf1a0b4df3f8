// Package pki is Ward's certificate authority core, with no network and no
// disk: key generation, CA creation, leaf issuance under a CSR policy,
// SPIFFE-style identities, pins, trust bundles and CRLs.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// GenerateKey creates Ward's default key: ECDSA P-256.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// MarshalKeyPEM encodes a private key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM reads the first private key PEM block (PKCS#8, PKCS#1 or SEC1).
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PRIVATE KEY PEM block found")
		}
		switch b.Type {
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			return ParseKeyDER(b.Bytes)
		}
	}
}

// ParseKeyDER reads a DER private key in PKCS#8, SEC1 or PKCS#1 form.
func ParseKeyDER(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("private key is not PKCS#8, SEC1 (EC) or PKCS#1 (RSA) DER")
}

// EncodeCertsPEM encodes certificates as concatenated CERTIFICATE blocks.
func EncodeCertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// ParseCertsPEM reads every CERTIFICATE block in data, skipping other blocks.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block found")
	}
	return out, nil
}

// KeyMatches reports whether the private key belongs to cert.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	return PublicKeyMatches(cert, key.Public())
}

// PublicKeyMatches reports whether pub is cert's public key.
func PublicKeyMatches(cert *x509.Certificate, pub crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	k, ok := pub.(equaler)
	return ok && k.Equal(cert.PublicKey)
}

// KeyStrength describes a public key and reports whether Ward accepts it:
// ECDSA P-256/P-384/P-521, Ed25519, or RSA of at least 2048 bits.
func KeyStrength(pub crypto.PublicKey) (desc string, ok bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		name := k.Curve.Params().Name
		switch name {
		case "P-256", "P-384", "P-521":
			return "ECDSA " + name, true
		}
		return "ECDSA " + name, false
	case ed25519.PublicKey:
		return "Ed25519", true
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		return fmt.Sprintf("RSA %d", bits), bits >= 2048
	}
	return fmt.Sprintf("%T", pub), false
}
