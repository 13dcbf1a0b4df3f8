package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

const fileCRLs = "crls.pem"

// crlRefresh is how often the agent fetches the cluster's CRLs.
const crlRefresh = 5 * time.Minute

// ErrRevocationUnavailable means no current CRL covers a certificate.
var ErrRevocationUnavailable = errors.New("revocation status unavailable")

// crlCache holds the cluster's CRLs as last fetched (and on disk, so a
// restart without the coordinator still has them).
type crlCache struct {
	mu      sync.Mutex
	crls    []*x509.RevocationList
	raw     []byte // the PEM crls came from, as on disk
	fetched time.Time
	lastErr error
	// verified remembers which issuer certificate each CRL's signature was
	// checked against, so a handshake does not verify it again.
	verified map[*x509.RevocationList]*x509.Certificate
}

// load reads the cached CRLs from disk.
func (c *crlCache) load(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, fileCRLs))
	if err != nil {
		return
	}
	crls, err := pki.ParseCRLsPEM(b)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.crls, c.raw = crls, b
	c.mu.Unlock()
}

// same reports whether pemCRLs is exactly the set already cached, and if
// so marks it fetched now: the coordinator re-sent what the agent holds.
func (c *crlCache) same(pemCRLs []byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.crls) == 0 || !bytes.Equal(c.raw, pemCRLs) {
		return false
	}
	c.fetched, c.lastErr = now, nil
	return true
}

// set replaces the cached CRLs; their signatures are checked again on use.
func (c *crlCache) set(crls []*x509.RevocationList, raw []byte, now time.Time) {
	c.mu.Lock()
	c.crls, c.raw, c.fetched, c.lastErr, c.verified = crls, raw, now, nil, nil
	c.mu.Unlock()
}

// refresh fetches every trusted issuing CA's CRL from the public port,
// verifying the server against the trust bundle.
func (a *Agent) refreshCRLs(ctx context.Context) error {
	var lastErr error
	for _, addr := range a.state.PublicAddrs {
		cfg := transport.ClientConfig(a.src, transport.ClientOptions{ServerName: transport.HostOf(addr), Pins: a.pins, NextProtos: []string{transport.ALPNHTTP}})
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+api.PathCRLs, nil)
		resp, err := hc.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			lastErr = fmt.Errorf("GET https://%s%s: %s %v", addr, api.PathCRLs, resp.Status, err)
			continue
		}
		crls, err := pki.ParseCRLsPEM(body)
		if err != nil {
			lastErr = err
			continue
		}
		if a.crl.same(body, time.Now()) {
			return nil
		}
		a.crl.set(crls, body, time.Now())
		if err := identity.WriteFileAtomic(filepath.Join(a.cfg.DataDir, fileCRLs), body, 0o644); err != nil {
			a.log.Warn("cache the CRLs on disk", "err", err)
		}
		return nil
	}
	if lastErr == nil {
		lastErr = errors.New("no public address is known")
	}
	a.crl.mu.Lock()
	a.crl.lastErr = lastErr
	a.crl.mu.Unlock()
	return lastErr
}

// crlLoop keeps the CRLs fresh while no session delivers them: the
// coordinator sends them in the Welcome and pushes every new one, so a
// connected agent never fetches.
func (a *Agent) crlLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(crlRefresh):
		}
		a.mu.Lock()
		connected := a.connected
		a.mu.Unlock()
		if connected && !a.crl.stale(time.Now()) {
			continue
		}
		if err := a.refreshCRLs(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("cannot fetch the cluster CRL", "err", err, "policy", a.revocationPolicy())
		}
	}
}

// stale reports whether the cache is empty or any CRL in it passed half
// its validity.
func (c *crlCache) stale(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.crls) == 0 {
		return true
	}
	for _, crl := range c.crls {
		if now.After(crl.ThisUpdate.Add(crl.NextUpdate.Sub(crl.ThisUpdate) / 2)) {
			return true
		}
	}
	return false
}

// installCRLs takes CRLs the coordinator delivered over a verified
// channel (join answer, Welcome, push) and caches them, also on disk.
// Signatures are checked when a CRL is used. The same set sent again (every
// Welcome carries it) is neither parsed, written nor verified again.
func (a *Agent) installCRLs(pemCRLs []byte) {
	if len(pemCRLs) == 0 || a.crl.same(pemCRLs, time.Now()) {
		return
	}
	crls, err := pki.ParseCRLsPEM(pemCRLs)
	if err != nil || len(crls) == 0 {
		a.log.Warn("the coordinator sent unreadable CRLs", "err", err)
		return
	}
	a.crl.set(crls, pemCRLs, time.Now())
	if err := identity.WriteFileAtomic(filepath.Join(a.cfg.DataDir, fileCRLs), pemCRLs, 0o644); err != nil {
		a.log.Warn("cache the CRLs on disk", "err", err)
	}
}

// status checks cert against the CRL of its issuer (taken from chain):
// nil when not revoked, an error naming the serial when revoked, and
// ErrRevocationUnavailable when no current, correctly signed CRL covers it.
func (c *crlCache) status(cert *x509.Certificate, chain []*x509.Certificate, now time.Time) error {
	return c.statusOf(cert, chain, now, false)
}

// statusOf is status; chainVerified says chain is a verified chain (from
// the TLS handshake), so its issuer needs no second signature check.
func (c *crlCache) statusOf(cert *x509.Certificate, chain []*x509.Certificate, now time.Time, chainVerified bool) error {
	var issuer *x509.Certificate
	for _, ca := range chain {
		if ca.IsCA && string(ca.RawSubject) == string(cert.RawIssuer) && (chainVerified || cert.CheckSignatureFrom(ca) == nil) {
			issuer = ca
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	crls, lastErr := c.crls, c.lastErr
	if issuer == nil {
		return fmt.Errorf("%w: the issuer of %q is not in the chain", ErrRevocationUnavailable, cert.Subject.CommonName)
	}
	for _, crl := range crls {
		if string(crl.RawIssuer) != string(issuer.RawSubject) {
			continue
		}
		if v := c.verified[crl]; v == nil || !v.Equal(issuer) {
			if crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			if c.verified == nil {
				c.verified = map[*x509.RevocationList]*x509.Certificate{}
			}
			c.verified[crl] = issuer
		}
		if now.After(crl.NextUpdate) {
			return fmt.Errorf("%w: the cached CRL of %q expired at %s (last fetch error: %v)", ErrRevocationUnavailable, issuer.Subject.CommonName, crl.NextUpdate.UTC().Format(time.RFC3339), lastErr)
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return fmt.Errorf("certificate %q (serial %s) is revoked since %s", cert.Subject.CommonName, pki.SerialHex(cert), e.RevocationTime.UTC().Format(time.RFC3339))
			}
		}
		return nil
	}
	why := "none was fetched yet"
	if lastErr != nil {
		why = "the last fetch failed: " + lastErr.Error()
	}
	return fmt.Errorf("%w: no CRL of %q is cached (%s)", ErrRevocationUnavailable, issuer.Subject.CommonName, why)
}

// checkServer applies the revocation policy to a coordinator's chain.
func (a *Agent) checkServer(chain []*x509.Certificate) error {
	err := a.crl.statusOf(chain[0], chain, time.Now(), true)
	switch {
	case err == nil:
		a.revocation.Store("checked")
		return nil
	case errors.Is(err, ErrRevocationUnavailable):
		if a.revocationPolicy() == "hard" {
			return fmt.Errorf("%w (revocation_policy is hard, so the agent refuses to connect; fix: make the coordinator's public port reachable, or set revocation_policy soft)", err)
		}
		if a.revocation.Swap("unavailable") != "unavailable" {
			a.log.Warn("revocation status unavailable: connecting anyway because revocation_policy is soft", "err", err)
		}
		return nil
	}
	return fmt.Errorf("the coordinator's certificate failed the revocation check: %w", err)
}

// ownCertRevoked reports whether the cached CRL lists this agent's own
// certificate.
func (a *Agent) ownCertRevoked() error {
	cert := a.src.Certificate()
	chain := []*x509.Certificate{cert.Leaf}
	for _, raw := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(raw); err == nil {
			chain = append(chain, c)
		}
	}
	err := a.crl.status(cert.Leaf, chain, time.Now())
	if err != nil && !errors.Is(err, ErrRevocationUnavailable) {
		return err
	}
	return nil
}
