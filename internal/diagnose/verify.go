package diagnose

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// verifyConnection is the complete, manual verification of the server:
// validity, chain to Roots, host name, pins, then revocation, in the order
// their verdicts take precedence. It records the presented chain first, so a
// failing chain is still shown, and it fails the handshake before any client
// certificate is sent to a server that did not verify.
func (c *check) verifyConnection(cs tls.ConnectionState) error {
	c.mu.Lock()
	c.chain = cs.PeerCertificates
	c.mu.Unlock()
	if len(cs.PeerCertificates) == 0 {
		return c.fail(Verdict{CodeCertificateInvalid, fmt.Sprintf("%s presented no certificate", c.o.Address), "configure a certificate on the server"})
	}
	found, verified := c.verifyChain(cs.PeerCertificates)
	c.mu.Lock()
	c.verified = verified
	c.mu.Unlock()
	if len(found) > 0 {
		for _, other := range found[1:] {
			c.report.addDetail("also %s: %s", other.Code, other.Message)
		}
		return c.fail(found[0])
	}
	if v := c.checkRevocation(cs.PeerCertificates, verified); v != nil {
		return c.fail(*v)
	}
	return nil
}

func (c *check) fail(v Verdict) error {
	c.mu.Lock()
	c.failed = &v
	c.mu.Unlock()
	return errAborted
}

// verifyChain returns every failing check as a verdict, most important
// first, and the verified chains when the chain led to a root.
func (c *check) verifyChain(chain []*x509.Certificate) ([]Verdict, [][]*x509.Certificate) {
	now := c.o.Now()
	leaf := chain[0]
	var found []Verdict

	if c.o.InsecureSkipVerify {
		// Chain and name are not enforced; problems are shown as warnings.
		if v := validityVerdict(chain, now, c.target()); v != nil && len(c.o.Pins) == 0 {
			c.report.addDetail("warning (not enforced, insecure): %s", v.Message)
		}
		if err := leaf.VerifyHostname(c.o.ServerName); err != nil {
			c.report.addDetail("warning (not enforced, insecure): the certificate does not name %q (it names %s)", c.o.ServerName, namesOf(leaf))
		}
		if len(c.o.Pins) > 0 {
			if v := c.pinnedChain(chain, now); v != nil {
				found = append(found, *v)
			}
		}
		return found, nil
	}

	// The trust anchors: the --ca roots; without them, a presented
	// certificate that a pin names (as an agent's join trusts the CA pin
	// in its join string); without either, the system roots.
	roots, anchors := c.o.Roots, rootsCA
	if roots == nil && len(c.o.Pins) > 0 {
		anchor, ok := pki.MatchAny(c.o.Pins, chain)
		if !ok {
			// Nothing presented is pinned, so nothing is trusted: that is
			// the verdict, whatever the system roots would say.
			return []Verdict{c.pinVerdict(chain, nil)}, nil
		}
		roots, anchors = x509.NewCertPool(), rootsPinned
		roots.AddCert(anchor)
		c.report.addDetail("trust anchor: the pinned certificate %q (no --ca given, so the pin alone is trusted)", anchor.Subject)
	} else if roots == nil {
		anchors = rootsSystem
	}
	c.mu.Lock()
	c.trust = roots
	c.mu.Unlock()

	validity := validityVerdict(chain, now, c.target())
	if validity != nil {
		found = append(found, *validity)
	}
	verified, err := verifyAt(chain, roots, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, now, validity != nil)
	if err != nil {
		if v, ok := chainVerdict(err, chain, anchors, now, c.target()); ok {
			found = append(found, v)
		}
	}
	if err := leaf.VerifyHostname(c.o.ServerName); err != nil {
		found = append(found, nameVerdict(leaf, c.o.ServerName, c.target()))
	}
	if len(c.o.Pins) > 0 && anchors != rootsPinned {
		all := append([]*x509.Certificate(nil), chain...)
		for _, vc := range verified {
			all = append(all, vc...)
		}
		if _, ok := pki.MatchAny(c.o.Pins, all); !ok {
			found = append(found, c.pinVerdict(chain, verified))
		}
	}
	return found, verified
}

// rootsKind says where a chain's trust anchors came from, for messages.
type rootsKind int

const (
	rootsSystem rootsKind = iota // this system's trusted roots
	rootsCA                      // --ca
	rootsPinned                  // the pinned certificate, with no --ca
)

func (k rootsKind) String() string {
	switch k {
	case rootsCA:
		return "the roots given with --ca"
	case rootsPinned:
		return "the pinned certificate"
	}
	return "this system's trusted roots"
}

// pinnedChain is the insecure mode's only check: a presented certificate
// matches a pin, and the leaf chains to it by signature and validity.
func (c *check) pinnedChain(chain []*x509.Certificate, now time.Time) *Verdict {
	pinned, ok := pki.MatchAny(c.o.Pins, chain)
	if !ok {
		v := c.pinVerdict(chain, nil)
		return &v
	}
	if v := validityVerdict(chain, now, c.target()); v != nil {
		return v
	}
	if pinned == chain[0] {
		return nil
	}
	roots := x509.NewCertPool()
	roots.AddCert(pinned)
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return &Verdict{CodePinMismatch,
			fmt.Sprintf("the pinned certificate %q is in the chain %s presented, but the server's certificate does not chain to it: %v", pinned.Subject, c.o.Address, err),
			"the server is sending someone else's CA certificate next to its own; check the server's certificate files"}
	}
	return nil
}

// target names the server this check connects to, in messages.
func (c *check) target() target { return target{addr: c.o.Address} }

// verifyAt verifies chain[0] to roots with chain[1:] as intermediates. When
// a presented certificate is out of date, it verifies at a time inside the
// certificates' windows, so an expired chain still says whether it is
// trusted.
func verifyAt(chain []*x509.Certificate, roots *x509.CertPool, usages []x509.ExtKeyUsage, now time.Time, outOfDate bool) ([][]*x509.Certificate, error) {
	at := now
	if outOfDate {
		at = insideWindows(chain, now)
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	return chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     usages,
	})
}

// Fixes for certificates outside their validity, for a server and for a file.
const (
	fixExpiredServer     = "renew the certificate on the server (Ward renews leaves by itself at two thirds of their life: check that the coordinator can reach its issuing CA); if the certificate is fine, this machine's clock is wrong: check it (`timedatectl`)"
	fixExpiredFile       = "renew or reissue the certificate (Ward renews the leaves it issued by itself at two thirds of their life; a CLI user needs a renewed context: the coordinator renews its admin context at start); if its dates are fine, this machine's clock is wrong: check it (`timedatectl`)"
	fixNotYetValidServer = "one of the two clocks is wrong: compare this machine's clock with the server's (`timedatectl`; both should use NTP); Ward backdates certificates by 5 minutes, so a larger skew shows up here"
	fixNotYetValidFile   = "this machine's clock is behind, or the issuer's clock was ahead when it signed: compare both with NTP (`timedatectl`); Ward backdates certificates by 5 minutes, so a larger skew shows up here"
)

// validityVerdict reports the first presented certificate outside its
// validity window, leaf first, naming both clocks.
func validityVerdict(chain []*x509.Certificate, now time.Time, t target) *Verdict {
	fixExpired, fixNotYet := fixExpiredServer, fixNotYetValidServer
	if t.isFile() {
		fixExpired, fixNotYet = fixExpiredFile, fixNotYetValidFile
	}
	for i, cert := range chain {
		which := t.leaf()
		if i > 0 {
			which = fmt.Sprintf("chain certificate [%d] (%s)", i, cert.Subject)
		}
		switch {
		case now.After(cert.NotAfter):
			return &Verdict{CodeExpired,
				fmt.Sprintf("%s expired at %s, %s ago; this machine's clock says %s (valid from %s)",
					which, stamp(cert.NotAfter), roundDur(now.Sub(cert.NotAfter)), stamp(now), stamp(cert.NotBefore)),
				fixExpired}
		case now.Before(cert.NotBefore):
			return &Verdict{CodeNotYetValid,
				fmt.Sprintf("%s is not valid until %s, %s from now; this machine's clock says %s (valid to %s)",
					which, stamp(cert.NotBefore), roundDur(cert.NotBefore.Sub(now)), stamp(now), stamp(cert.NotAfter)),
				fixNotYet}
		}
	}
	return nil
}

// insideWindows picks a time at which every presented certificate is valid,
// or now if their windows do not overlap.
func insideWindows(chain []*x509.Certificate, now time.Time) time.Time {
	lo, hi := chain[0].NotBefore, chain[0].NotAfter
	for _, cert := range chain[1:] {
		if cert.NotBefore.After(lo) {
			lo = cert.NotBefore
		}
		if cert.NotAfter.Before(hi) {
			hi = cert.NotAfter
		}
	}
	if lo.After(hi) {
		return now
	}
	return lo.Add(hi.Sub(lo) / 2)
}

// chainVerdict explains a chain-verification error. It reports false when
// the error only repeats a presented certificate's validity problem, which
// validityVerdict has already reported. anchors says where the roots came
// from.
func chainVerdict(err error, chain []*x509.Certificate, anchors rootsKind, now time.Time, t target) (Verdict, bool) {
	top := chain[len(chain)-1]
	roots := anchors.String()
	reissue := "reissue the server's certificate from the cluster CA"
	if t.isFile() {
		reissue = "reissue the certificate from the cluster CA"
	}
	var uae x509.UnknownAuthorityError
	var sre x509.SystemRootsError
	var cie x509.CertificateInvalidError
	switch {
	case errors.As(err, &uae), errors.As(err, &sre):
		msg := fmt.Sprintf("%s (%d certificate(s)) does not lead to %s; its top certificate %q was issued by %q (top certificate SHA-256 %s, SPKI pin %s)",
			t.chain(), len(chain), roots, top.Subject, top.Issuer, pki.Fingerprint(top), pki.SPKIPin(top))
		if errors.As(err, &sre) {
			msg += "; " + err.Error()
		}
		fix := fmt.Sprintf(fixUnknownAuthority, pki.SPKIPin(top))
		if t.isFile() {
			fix = fmt.Sprintf("pass --ca with the root CA that issued it (`ward ca export` prints the cluster's); compare the pins first: the top certificate's is %s, the cluster's is what `ward ca pin` prints", pki.SPKIPin(top))
		}
		return Verdict{CodeUnknownAuthority, msg, fix}, true
	case errors.As(err, &cie):
		switch cie.Reason {
		case x509.Expired:
			for _, presented := range chain {
				if presented.Equal(cie.Cert) {
					return Verdict{}, false
				}
			}
			// Not presented: a root from the trust bundle.
			return Verdict{CodeExpired, fmt.Sprintf("the trusted root %q that the chain leads to is outside its validity (%s to %s); this machine's clock says %s", cie.Cert.Subject, stamp(cie.Cert.NotBefore), stamp(cie.Cert.NotAfter), stamp(now)),
				"replace the expired root in the trust bundle passed with --ca (`ward ca export` prints the current one)"}, true
		case x509.IncompatibleUsage:
			if t.isFile() {
				return Verdict{CodeCertificateInvalid, fmt.Sprintf("the certificate %q does not allow the extended key usage required here: %v", cie.Cert.Subject, err),
					"use a certificate issued for this purpose: Ward issues coordinators serverAuth and clientAuth, agents and users clientAuth"}, true
			}
			return Verdict{CodeCertificateInvalid, fmt.Sprintf("the certificate %q is not for TLS servers: it lacks the serverAuth extended key usage (a client or agent certificate?)", cie.Cert.Subject),
				"serve a server certificate: Ward issues coordinators theirs; for your own CA, include extendedKeyUsage=serverAuth"}, true
		}
		return Verdict{CodeCertificateInvalid, fmt.Sprintf("%s leads to a trusted root but is invalid: %v", t.chain(), err),
			reissue + " (`ward ca status` shows it)"}, true
	}
	return Verdict{CodeCertificateInvalid, fmt.Sprintf("%s does not verify: %v", t.chain(), err),
		reissue}, true
}

func nameVerdict(leaf *x509.Certificate, name string, t target) Verdict {
	fix := fmt.Sprintf("connect with a name the certificate has (or pass --server-name with one of them); or reissue the server certificate with %q in its SANs", name)
	if t.isFile() {
		fix = fmt.Sprintf("use a name the certificate has; or reissue it with %q in its SANs (a coordinator puts its host name and its --advertise names in its certificate)", name)
	}
	return Verdict{CodeNameMismatch,
		fmt.Sprintf("%s does not name %q; it names %s", t.certOf(), name, namesOf(leaf)),
		fix}
}

func namesOf(cert *x509.Certificate) string {
	names := sanStrings(cert)
	if len(names) == 0 {
		if cert.Subject.CommonName != "" {
			return fmt.Sprintf("no SANs at all (only the common name %q, which TLS clients ignore)", cert.Subject.CommonName)
		}
		return "no names at all"
	}
	return strings.Join(names, ", ")
}

func (c *check) pinVerdict(chain []*x509.Certificate, verified [][]*x509.Certificate) Verdict {
	var exp []string
	for _, p := range c.o.Pins {
		exp = append(exp, p.String())
	}
	c.report.addDetail("expected pins: %s", strings.Join(exp, ", "))
	seen := map[string]bool{}
	add := func(label string, cert *x509.Certificate) {
		fp := pki.Fingerprint(cert)
		if seen[fp] {
			return
		}
		seen[fp] = true
		c.report.addDetail("%s %q: %s, cert-sha256:%s", label, cert.Subject, pki.SPKIPin(cert), fp)
	}
	for i, cert := range chain {
		add(fmt.Sprintf("presented [%d]", i), cert)
	}
	for _, vc := range verified {
		for _, cert := range vc {
			add("verified root", cert)
		}
	}
	if top := chain[len(chain)-1]; len(verified) == 0 && !bytes.Equal(top.RawIssuer, top.RawSubject) {
		c.report.addDetail("the server does not send its root (%q): a pin on that root matches only when the root comes with --ca", top.Issuer)
	}
	var has []string
	for i, cert := range chain {
		has = append(has, fmt.Sprintf("[%d] %q %s, cert-sha256:%s", i, cert.Subject.CommonName, pki.SPKIPin(cert), pki.Fingerprint(cert)))
	}
	return Verdict{CodePinMismatch,
		fmt.Sprintf("no certificate in the chain of %s matches the pin(s) given (expected %s; the chain it presented has %s)", c.o.Address, strings.Join(exp, " or "), strings.Join(has, "; ")),
		"compare the pin with `ward ca pin` run on the coordinator; if the cluster CA was rotated, get the new pin or join string; if it does not match, you may be talking to another server"}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func roundDur(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return d.Round(time.Second).String()
}

func rdnString(der []byte) string {
	var seq pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &seq); err != nil {
		return fmt.Sprintf("(unreadable name, %d bytes)", len(der))
	}
	var n pkix.Name
	n.FillFromRDNSequence(&seq)
	return n.String()
}
