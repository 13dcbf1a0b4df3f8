package diagnose

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"
)

// ChainOptions say what a certificate chain is checked against outside a
// connection, as `ward cert verify` checks a file. They give the same
// verdicts, with the same codes, as Check gives for a server's chain.
type ChainOptions struct {
	// Roots are the trust anchors; nil means the system roots.
	Roots *x509.CertPool
	// KeyUsages are the extended key usages the leaf must allow; nil means
	// any (a file may hold a server, agent or user certificate).
	KeyUsages []x509.ExtKeyUsage
	// Now is the clock used for validity; default time.Now.
	Now func() time.Time
	// Source names the chain in messages, usually the file it came from.
	Source string
}

func (o ChainOptions) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

func (o ChainOptions) target() target {
	if o.Source == "" {
		return target{file: "the given chain"}
	}
	return target{file: o.Source}
}

// CheckValidity reports the first certificate of chain (leaf first) that is
// outside its validity window, with both the certificate's times and this
// machine's clock; nil when every one is valid now.
func CheckValidity(chain []*x509.Certificate, o ChainOptions) *Verdict {
	if len(chain) == 0 {
		return nil
	}
	return validityVerdict(chain, o.now(), o.target())
}

// VerifyChain verifies chain[0] up to o.Roots, with chain[1:] as
// intermediates. It returns the verified chains, or a verdict:
// unknown_authority, certificate_invalid, or expired for a root from
// o.Roots. A presented certificate outside its validity does not fail it
// (CheckValidity reports that): the chain is then verified at a time inside
// the certificates' windows, so an expired chain still says whether it is
// trusted. When no such time exists (the windows do not overlap), it
// returns neither chains nor a verdict: the chain cannot be judged, and
// CheckValidity says why.
func VerifyChain(chain []*x509.Certificate, o ChainOptions) ([][]*x509.Certificate, *Verdict) {
	if len(chain) == 0 {
		return nil, &Verdict{CodeCertificateInvalid, "there is no certificate to verify", "give a file that holds a certificate"}
	}
	now := o.now()
	usages := o.KeyUsages
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	verified, err := verifyAt(chain, o.Roots, usages, now, validityVerdict(chain, now, target{}) != nil)
	if err != nil {
		anchors := rootsSystem
		if o.Roots != nil {
			anchors = rootsCA
		}
		if v, ok := chainVerdict(err, chain, anchors, now, o.target()); ok {
			return nil, &v
		}
	}
	return verified, nil
}

// CheckName reports name_mismatch when leaf does not cover name, a DNS name
// or an IP address; nil when it does.
func CheckName(leaf *x509.Certificate, name string, o ChainOptions) *Verdict {
	if err := leaf.VerifyHostname(name); err != nil {
		v := nameVerdict(leaf, name, o.target())
		return &v
	}
	return nil
}

// CRLResult is the outcome of a revocation check.
type CRLResult struct {
	// Checked is true when a CRL was fetched, verified and consulted.
	Checked bool
	// Sources are the CRL sources tried, in order.
	Sources []string
	// Details say what was skipped, and which CRL was consulted.
	Details []string
	// Verdict is revoked or revocation_unavailable; nil when the leaf is not
	// revoked, or when there was no CRL source at all (Sources is empty).
	Verdict *Verdict
}

// CheckCRL looks chain[0] up in a CRL: the one from src, or else the leaf's
// http(s) CRL distribution points. The CRL must be signed by the leaf's
// issuer, found in verified (from VerifyChain) or else among chain, and be
// current. The fetch of a URL is bounded by ctx and trusts o.Roots for
// https.
func CheckCRL(ctx context.Context, chain []*x509.Certificate, verified [][]*x509.Certificate, src *CRLSource, o ChainOptions) CRLResult {
	if len(chain) == 0 {
		return CRLResult{}
	}
	if src != nil && src.Path == "" && src.URL == "" {
		src = nil
	}
	return revocation(ctx, chain, verified, src, fetchTrust{roots: o.Roots}, o.now(), o.target())
}

// target names what is verified, in messages: the server at addr (Check),
// an unnamed server (Explain), or a certificate file.
type target struct {
	addr string
	file string
}

func (t target) isFile() bool { return t.file != "" }

// leaf is "the server's certificate" or "the certificate in FILE".
func (t target) leaf() string {
	if t.isFile() {
		return "the certificate in " + t.file
	}
	return "the server's certificate"
}

// chain is "the chain ADDR presented" or "the chain in FILE".
func (t target) chain() string {
	if t.isFile() {
		return "the chain in " + t.file
	}
	return fmt.Sprintf("the chain %s presented", t.addr)
}

// certOf is "the certificate of ADDR" or "the certificate in FILE".
func (t target) certOf() string {
	if t.isFile() {
		return "the certificate in " + t.file
	}
	return "the certificate of " + t.addr
}
