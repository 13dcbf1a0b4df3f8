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
	leaf := chain[0]
	var sources []CRLSource
	if c.o.CRL != nil {
		sources = []CRLSource{*c.o.CRL}
	} else {
		for _, u := range leaf.CRLDistributionPoints {
			if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
				sources = append(sources, CRLSource{URL: u})
			} else {
				c.report.addDetail("CRL distribution point %s skipped: only http:// and https:// are fetched", u)
			}
		}
	}
	if len(sources) == 0 {
		c.report.addDetail("revocation not checked: no CRL was given and the certificate names no http(s) CRL distribution point")
		return nil
	}
	issuer := issuerOf(leaf, chain, verified)
	if issuer == nil {
		return &Verdict{CodeRevocationUnavailable,
			fmt.Sprintf("the CRL cannot be checked: the issuer of the server's certificate (%q) is not in the chain, so the CRL's signature cannot be verified", leaf.Issuer),
			"pass --ca with the issuing CA, or have the server send its full chain"}
	}
	var why []string
	fix := ""
	for _, src := range sources {
		crl, err := c.fetchCRL(src)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", src, err))
			fix = cmp.Or(fix, fixRevocationUnavailable)
			continue
		}
		if err := crl.CheckSignatureFrom(issuer); err != nil {
			why = append(why, fmt.Sprintf("%s: the CRL (issued by %q) is not signed by the certificate's issuer %q: %v", src, crl.Issuer, issuer.Subject, err))
			fix = cmp.Or(fix, "this CRL belongs to another CA: use the CRL of the CA that issued the server's certificate (the coordinator serves it on its public port)")
			continue
		}
		now := c.o.Now()
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
		c.report.RevocationChecked = true
		c.report.addDetail("revocation checked against %s (CRL number %v, issued %s, next update %s, %d revoked)", src, crl.Number, stamp(crl.ThisUpdate), stamp(crl.NextUpdate), len(crl.RevokedCertificateEntries))
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
				reason, ok := crlReasons[e.ReasonCode]
				if !ok {
					reason = fmt.Sprintf("reason code %d", e.ReasonCode)
				}
				return &Verdict{CodeRevoked,
					fmt.Sprintf("the certificate of %s (serial %s, %q) was revoked at %s, reason %s, per the CRL at %s",
						c.o.Address, pki.SerialHex(leaf), leaf.Subject, stamp(e.RevocationTime), reason, src),
					"the server must get a new certificate from the cluster CA; if nobody revoked it on purpose (`ward cert revoke`), check the audit log before trusting this server"}
			}
		}
		return nil
	}
	return &Verdict{CodeRevocationUnavailable,
		fmt.Sprintf("the revocation status of the certificate of %s (serial %s) is unknown: %s", c.o.Address, pki.SerialHex(leaf), strings.Join(why, "; ")),
		fix}
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

func (c *check) fetchCRL(src CRLSource) (*x509.RevocationList, error) {
	var data []byte
	var err error
	if src.URL != "" {
		data, err = c.httpGet(src.URL)
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

// httpGet fetches a CRL, trusting the check's roots for https, within three
// quarters of the time the check has left.
func (c *check) httpGet(url string) ([]byte, error) {
	ctx := c.ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Until(dl)*3/4)
		defer cancel()
	}
	tr := &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{RootCAs: c.o.Roots, MinVersion: tls.VersionTLS12},
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
