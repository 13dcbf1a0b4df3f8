package diagnose

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// maxCRLSize bounds a fetched CRL; Ward's own CRLs are far smaller.
const maxCRLSize = 32 << 20

// crlReasons names RFC 5280 revocation reason codes.
var crlReasons = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL",
	9: "privilegeWithdrawn", 10: "aACompromise",
}

const fixRevocationUnavailable = "make the CRL reachable from this machine (the coordinator serves it on its public port) or pass --crl with a current copy; agents then act on their revocation setting (soft: warn and connect, hard: refuse)"

// checkRevocation looks the leaf up in a CRL: the one given in Options, or
// the leaf's http(s) distribution points. It returns nil when the leaf is
// not revoked or when there is no CRL to consult at all.
func (c *check) checkRevocation(chain []*x509.Certificate, verified [][]*x509.Certificate) *Verdict {
	// The CRL is fetched with the trust the server was checked with: the
	// --ca roots, the pinned certificate, or (insecure) none.
	c.mu.Lock()
	trust := fetchTrust{roots: c.trust, insecure: c.o.InsecureSkipVerify}
	c.mu.Unlock()
	res := revocation(c.ctx, chain, verified, c.o.CRL, trust, c.o.Now(), c.target())
	c.report.Details = append(c.report.Details, res.Details...)
	if res.Checked {
		c.report.RevocationChecked = true
	}
	return res.Verdict
}

// fetchTrust is whom an https CRL fetch trusts: roots (nil: the system's),
// or, with insecure, any server. A CRL's own signature is verified either
// way; this only decides which servers may hand it over.
type fetchTrust struct {
	roots    *x509.CertPool
	insecure bool
}

// revocation is CheckCRL for a server (Check) or a file: src, or else the
// leaf's http(s) distribution points, each tried until one CRL verifies.
func revocation(ctx context.Context, chain []*x509.Certificate, verified [][]*x509.Certificate, src *CRLSource, trust fetchTrust, now time.Time, t target) CRLResult {
	var res CRLResult
	detail := func(format string, args ...any) { res.Details = append(res.Details, fmt.Sprintf(format, args...)) }
	leaf := chain[0]
	var sources []CRLSource
	if src != nil {
		sources = []CRLSource{*src}
	} else {
		for _, u := range leaf.CRLDistributionPoints {
			if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
				sources = append(sources, CRLSource{URL: u})
			} else {
				detail("CRL distribution point %s skipped: only http:// and https:// are fetched", u)
			}
		}
	}
	if len(sources) == 0 {
		detail("revocation not checked: no CRL was given and the certificate names no http(s) CRL distribution point")
		return res
	}
	for _, s := range sources {
		res.Sources = append(res.Sources, s.String())
	}
	issuer := issuerOf(leaf, chain, verified)
	if issuer == nil {
		fix := "pass --ca with the issuing CA, or have the server send its full chain"
		if t.isFile() {
			fix = "pass --ca with the issuing CA, or put the issuing CA in the file after the certificate"
		}
		res.Verdict = &Verdict{CodeRevocationUnavailable,
			fmt.Sprintf("the CRL cannot be checked: the issuer of %s (%q) is not in the chain, so the CRL's signature cannot be verified", t.leaf(), leaf.Issuer),
			fix}
		return res
	}
	var why []string
	fix := ""
	for _, src := range sources {
		crl, err := fetchCRL(ctx, src, trust)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", src, err))
			fix = cmp.Or(fix, fixRevocationUnavailable)
			continue
		}
		if err := crl.CheckSignatureFrom(issuer); err != nil {
			why = append(why, fmt.Sprintf("%s: the CRL (issued by %q) is not signed by the certificate's issuer %q: %v", src, crl.Issuer, issuer.Subject, err))
			fix = cmp.Or(fix, fmt.Sprintf("this CRL belongs to another CA: use the CRL of the CA that issued %s (the coordinator serves it on its public port)", t.leaf()))
			continue
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			why = append(why, fmt.Sprintf("%s: the CRL is stale: its next update was due at %s, %s ago (this machine's clock says %s)", src, stamp(crl.NextUpdate), roundDur(now.Sub(crl.NextUpdate)), stamp(now)))
			fix = cmp.Or(fix, "the coordinator renews its CRL before the next-update time, so a stale one means publishing stopped (check the coordinator's log) or this machine's clock is ahead; a --crl file must be refreshed")
			continue
		}
		if now.Before(crl.ThisUpdate) {
			why = append(why, fmt.Sprintf("%s: the CRL was issued at %s, in the future of this machine's clock (%s); one clock is wrong", src, stamp(crl.ThisUpdate), stamp(now)))
			fix = cmp.Or(fix, "compare this machine's clock with the coordinator's (both should use NTP)")
			continue
		}
		res.Checked = true
		if trust.insecure && strings.HasPrefix(src.URL, "https://") {
			detail("the CRL was fetched from %s without verifying that server (--insecure-skip-verify); its signature was verified against the issuer %q", src, issuer.Subject)
		}
		detail("revocation checked against %s (CRL number %v, issued %s, next update %s, %d revoked)", src, crl.Number, stamp(crl.ThisUpdate), stamp(crl.NextUpdate), len(crl.RevokedCertificateEntries))
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
				reason, ok := crlReasons[e.ReasonCode]
				if !ok {
					reason = fmt.Sprintf("reason code %d", e.ReasonCode)
				}
				fix := "the server must get a new certificate from the cluster CA; if nobody revoked it on purpose (`ward cert revoke`), check the audit log before trusting this server"
				if t.isFile() {
					fix = "its holder must get a new certificate (an agent rejoins with a new token, a CLI user needs a renewed context: the coordinator renews its admin context at start); if nobody revoked it on purpose (`ward cert revoke`), check the audit log"
				}
				res.Verdict = &Verdict{CodeRevoked,
					fmt.Sprintf("%s (serial %s, %q) was revoked at %s, reason %s, per the CRL at %s",
						t.certOf(), pki.SerialHex(leaf), leaf.Subject, stamp(e.RevocationTime), reason, src),
					fix}
				return res
			}
		}
		return res
	}
	res.Verdict = &Verdict{CodeRevocationUnavailable,
		fmt.Sprintf("the revocation status of %s (serial %s) is unknown: %s", t.certOf(), pki.SerialHex(leaf), strings.Join(why, "; ")),
		fix}
	return res
}

// issuerOf finds the certificate that signed leaf: from the verified chain
// when there is one, else among the presented certificates.
func issuerOf(leaf *x509.Certificate, chain []*x509.Certificate, verified [][]*x509.Certificate) *x509.Certificate {
	for _, vc := range verified {
		if len(vc) > 1 {
			return vc[1]
		}
		if len(vc) == 1 {
			return vc[0] // a self-signed leaf
		}
	}
	for _, cand := range chain {
		if bytes.Equal(cand.RawSubject, leaf.RawIssuer) && leaf.CheckSignatureFrom(cand) == nil {
			return cand
		}
	}
	return nil
}

func fetchCRL(ctx context.Context, src CRLSource, trust fetchTrust) (*x509.RevocationList, error) {
	var data []byte
	var err error
	if src.URL != "" {
		data, err = httpGetCRL(ctx, src.URL, trust)
	} else {
		data, err = readLimited(src.Path)
	}
	if err != nil {
		return nil, err
	}
	der := data
	if t := bytes.TrimSpace(data); bytes.HasPrefix(t, []byte("-----BEGIN")) {
		b, _ := pem.Decode(t)
		if b == nil || b.Type != "X509 CRL" {
			return nil, errors.New("the PEM data holds no complete X509 CRL block")
		}
		der = b.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%d bytes that are not a CRL: %w", len(data), err)
	}
	return crl, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCRLSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCRLSize {
		return nil, fmt.Errorf("the file is larger than %d MiB", maxCRLSize>>20)
	}
	return data, nil
}

// httpGetCRL fetches a CRL, trusting trust for https, within three
// quarters of the time ctx has left.
func httpGetCRL(ctx context.Context, url string, trust fetchTrust) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Until(dl)*3/4)
		defer cancel()
	}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		//nolint:gosec // insecure only with --insecure-skip-verify; the CRL's signature is still verified
		TLSClientConfig: &tls.Config{RootCAs: trust.roots, InsecureSkipVerify: trust.insecure, MinVersion: tls.VersionTLS12},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if v := Explain(err); v.Code != CodeUnclassified {
			return nil, fmt.Errorf("fetch failed (%s): %v", v.Code, err)
		}
		return nil, fmt.Errorf("fetch failed: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the server answered HTTP %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCRLSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the CRL: %v", err)
	}
	if len(data) > maxCRLSize {
		return nil, fmt.Errorf("the CRL is larger than %d MiB", maxCRLSize>>20)
	}
	return data, nil
}
