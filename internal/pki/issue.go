package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// Issuer signs leaf certificates with an issuing CA. It holds the chain that
// leaves are served with (issuing CA first, then the root).
type Issuer struct {
	CA    *CA
	Chain []*x509.Certificate
}

// LeafSpec says what a leaf certificate names and how long it lives. The
// issuer fills everything else from policy, never from the request.
type LeafSpec struct {
	ID        ID
	PublicKey crypto.PublicKey
	Lifetime  time.Duration
	DNSNames  []string
	IPs       []net.IP
	// CRLURLs are the CRL distribution points written into the certificate.
	CRLURLs []string
	// UserRole, for a user certificate, is the role it carries (see
	// UserRoleURI).
	UserRole string
}

// Issue signs a leaf for spec, valid from now (backdated for clock skew) for
// spec.Lifetime, capped at the issuing CA's own expiry.
func (is *Issuer) Issue(spec LeafSpec, now time.Time) (*x509.Certificate, error) {
	if spec.Lifetime <= 0 {
		return nil, fmt.Errorf("issue %s: lifetime must be positive", spec.ID)
	}
	if desc, ok := KeyStrength(spec.PublicKey); !ok {
		return nil, fmt.Errorf("issue %s: key %s is too weak", spec.ID, desc)
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(spec.Lifetime)
	if notAfter.After(is.CA.Cert.NotAfter) {
		notAfter = is.CA.Cert.NotAfter
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if spec.ID.Role == RoleCoordinator {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	uris := []*url.URL{spec.ID.URI()}
	if spec.UserRole != "" {
		if spec.ID.Role != RoleUser {
			return nil, fmt.Errorf("issue %s: only user certificates carry a user role", spec.ID)
		}
		uris = append(uris, UserRoleURI(spec.UserRole))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.ID.Name, OrganizationalUnit: []string{string(spec.ID.Role)}, Organization: []string{"Ward cluster " + spec.ID.Cluster}},
		NotBefore:             now.Add(-backdate(spec.Lifetime)),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  uris,
		DNSNames:              spec.DNSNames,
		IPAddresses:           spec.IPs,
		CRLDistributionPoints: spec.CRLURLs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.CA.Cert, spec.PublicKey, is.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", spec.ID, err)
	}
	return x509.ParseCertificate(der)
}

// CSRPolicy is what a certificate request may ask for. The identity is
// decided by the coordinator; the CSR may repeat it but not change it.
type CSRPolicy struct {
	ID         ID
	AllowedDNS []string // DNS SANs the join token allows
	AllowedIPs []net.IP // IP SANs the join token allows
}

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
var oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

// CheckCSR parses a DER CSR and enforces policy: a valid self-signature, a
// strong key, no CA request, and no SAN beyond the identity and what the
// token allows. Refusals are *api.Error values with stable codes.
func CheckCSR(der []byte, p CSRPolicy) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, api.Errorf(api.CodeCSRInvalid, "send a PKCS#10 request in DER, as `ward agent` does", "the certificate request could not be parsed: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, api.Errorf(api.CodeCSRInvalid, "sign the request with the key it carries", "the certificate request's signature does not verify: %v", err)
	}
	if desc, ok := KeyStrength(csr.PublicKey); !ok {
		return nil, api.Errorf(api.CodeCSRWeakKey, "use ECDSA P-256 (Ward's default), P-384, Ed25519 or RSA of at least 2048 bits", "the request's key (%s) is too weak", desc)
	}
	for _, ext := range csr.Extensions {
		switch {
		case ext.Id.Equal(oidBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			if _, err := asn1.Unmarshal(ext.Value, &bc); err != nil {
				return nil, api.Errorf(api.CodeCSRInvalid, "remove the basicConstraints extension", "the request's basicConstraints extension is malformed: %v", err)
			}
			if bc.IsCA {
				return nil, api.Errorf(api.CodeCSRCARequested, "request a leaf certificate: remove CA:TRUE from the request", "the request asks for a CA certificate (basicConstraints CA:TRUE); Ward issues only leaf certificates to %s", p.ID.Role)
			}
		case ext.Id.Equal(oidKeyUsage):
			var bits asn1.BitString
			if _, err := asn1.Unmarshal(ext.Value, &bits); err == nil {
				// keyCertSign is bit 5, cRLSign bit 6.
				if bits.At(5) == 1 || bits.At(6) == 1 {
					return nil, api.Errorf(api.CodeCSRCARequested, "remove keyCertSign and cRLSign from the request's key usage", "the request asks for certificate-signing key usage; Ward issues only leaf certificates")
				}
			}
		}
	}
	want := p.ID.URI().String()
	for _, u := range csr.URIs {
		if u.String() != want {
			return nil, api.Errorf(api.CodeCSRSANNotAllowed, "request only your own identity "+want, "the request names URI SAN %q, but this join may only be issued %s", u, want)
		}
	}
	if len(csr.URIs) > 1 {
		return nil, api.Errorf(api.CodeCSRSANNotAllowed, "request one URI SAN", "the request names %d URI SANs; one is allowed", len(csr.URIs))
	}
	for _, d := range csr.DNSNames {
		if !slices.Contains(p.AllowedDNS, d) {
			return nil, api.Errorf(api.CodeCSRSANNotAllowed, "create a token that allows it (`ward token create --allow-dns NAME`) or drop it from the request", "the request names DNS SAN %q, which the join token does not allow", d)
		}
	}
	for _, ip := range csr.IPAddresses {
		if !slices.ContainsFunc(p.AllowedIPs, ip.Equal) {
			return nil, api.Errorf(api.CodeCSRSANNotAllowed, "create a token that allows it (`ward token create --allow-ip IP`) or drop it from the request", "the request names IP SAN %s, which the join token does not allow", ip)
		}
	}
	if len(csr.EmailAddresses) > 0 {
		return nil, api.Errorf(api.CodeCSRSANNotAllowed, "drop e-mail addresses from the request", "the request names e-mail SAN %q; Ward never issues e-mail SANs", csr.EmailAddresses[0])
	}
	return csr, nil
}
