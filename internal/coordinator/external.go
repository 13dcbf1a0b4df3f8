package coordinator

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// externalCredential loads a server certificate issued by an enterprise CA
// (--tls-cert, PEM or PKCS#12; --tls-key for a separate PEM key), checks it
// and returns it with the roots clients must trust to verify it. Ward does
// not renew such a certificate: replace the files and send SIGHUP.
func (c *Coordinator) externalCredential(now time.Time) (*identity.Credential, pki.Bundle, error) {
	fail := func(format string, args ...any) error {
		return api.Errorf(api.CodeInvalidArgument, "fix --tls-cert/--tls-key, or remove them to let Ward issue its own server certificate", "--tls-cert %s: "+format, append([]any{c.cfg.TLSCert}, args...)...)
	}
	password := ""
	if c.cfg.TLSPasswordFile != "" {
		b, err := identity.ReadSecret(c.cfg.TLSPasswordFile)
		if err != nil {
			return nil, nil, err
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	cf, err := pki.ReadCertFile(c.cfg.TLSCert, password)
	if err != nil {
		return nil, nil, fail("%v", err)
	}
	key := cf.Key
	if c.cfg.TLSKey != "" {
		keyPEM, err := identity.ReadSecret(c.cfg.TLSKey)
		if err != nil {
			return nil, nil, err
		}
		if key, err = pki.ParseKeyPEM(keyPEM); err != nil {
			return nil, nil, fail("the key in %s cannot be read: %v", c.cfg.TLSKey, err)
		}
	}
	if cf.Key != nil {
		// The certificate file holds a key: it is a secret file.
		if err := identity.CheckSecretPerms(c.cfg.TLSCert); err != nil {
			return nil, nil, err
		}
	}
	if key == nil {
		return nil, nil, fail("no private key: pass --tls-key, or a PKCS#12 file that holds the key")
	}
	leaf := cf.Certs[0]
	if !pki.KeyMatches(leaf, key) {
		return nil, nil, fail("the private key does not belong to the certificate %q", leaf.Subject.CommonName)
	}
	if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
		return nil, nil, fail("the certificate %q is valid from %s to %s; the clock says %s", leaf.Subject.CommonName,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if len(leaf.ExtKeyUsage) > 0 && !hasEKU(leaf, x509.ExtKeyUsageServerAuth) {
		return nil, nil, fail("the certificate %q is not for TLS servers (no serverAuth extended key usage)", leaf.Subject.CommonName)
	}
	var missing []string
	names := append([]string{}, c.cfg.Advertise...)
	if len(names) == 0 {
		names = []string{externalHost(c.cfg.ClusterAddr)}
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		if err := leaf.VerifyHostname(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fail("its SANs (DNS %v, IP %v) do not cover the advertised name(s) %v; agents and the CLI would refuse it", leaf.DNSNames, leaf.IPAddresses, missing)
	}
	// The roots clients need: --tls-ca, else the self-signed top of the file.
	var roots pki.Bundle
	if c.cfg.TLSCA != "" {
		data, err := os.ReadFile(c.cfg.TLSCA)
		if err != nil {
			return nil, nil, fmt.Errorf("read --tls-ca: %w", err)
		}
		if roots, err = pki.ParseCertsPEM(data); err != nil {
			return nil, nil, fmt.Errorf("--tls-ca %s: %w", c.cfg.TLSCA, err)
		}
	} else if top := cf.Certs[len(cf.Certs)-1]; len(cf.Certs) > 1 && top.IsCA && string(top.RawIssuer) == string(top.RawSubject) {
		roots = pki.Bundle{top}
	} else {
		return nil, nil, fail("the file does not end with its root CA: pass the root with --tls-ca so agents and the CLI can verify the coordinator")
	}
	inter := x509.NewCertPool()
	for _, ca := range cf.Certs[1:] {
		inter.AddCert(ca)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CurrentTime: now}); err != nil {
		return nil, nil, fail("the certificate does not chain to its root: %v", err)
	}
	chain := []*x509.Certificate{leaf}
	for _, ca := range cf.Certs[1:] {
		if !(ca.IsCA && string(ca.RawIssuer) == string(ca.RawSubject)) {
			chain = append(chain, ca)
		}
	}
	c.log.Info("using an externally issued server certificate", "file", c.cfg.TLSCert, "subject", leaf.Subject.CommonName,
		"issuer", leaf.Issuer.CommonName, "serial", pki.SerialHex(leaf), "expires", leaf.NotAfter.UTC().Format(time.RFC3339),
		"note", "Ward does not renew it: replace the files and send SIGHUP")
	return &identity.Credential{Chain: chain, Key: key}, roots, nil
}

func hasEKU(cert *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range cert.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func externalHost(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil || h == "" || h == "0.0.0.0" || h == "::" {
		h, _ = os.Hostname()
	}
	return h
}
