package coordinator

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/telemetry"
)

// issuingCAs lists every issuing CA that is still trusted, the one that
// issues now first.
func (c *Coordinator) issuingCAs() []*pki.CA {
	c.ca.mu.RLock()
	defer c.ca.mu.RUnlock()
	return append([]*pki.CA{c.issuer().CA}, c.ca.others...)
}

// crlURLs are the distribution points written into leaves issued now.
func (c *Coordinator) crlURLs() []string {
	return []string{"https://" + c.advertisedAddr(c.cfg.PublicAddr) + "/v1/crl/" + pki.SerialHex(c.issuer().CA.Cert)}
}

// renewOwnCertificate issues the coordinator a new certificate from the
// current issuing CA and serves it from the next handshake on.
func (c *Coordinator) renewOwnCertificate(now time.Time) error {
	if c.cfg.TLSCert != "" {
		return nil // external: its owner renews it
	}
	key, err := pki.GenerateKey()
	if err != nil {
		return err
	}
	dns, ips := c.serverNames()
	iss := c.issuer()
	cert, err := iss.Issue(pki.LeafSpec{ID: c.ca.id, PublicKey: key.Public(), Lifetime: c.cfg.CoordinatorCertLifetime.D(), DNSNames: dns, IPs: ips, CRLURLs: c.crlURLs()}, now)
	if err != nil {
		return err
	}
	cred := &identity.Credential{Chain: []*x509.Certificate{cert, iss.CA.Cert}, Key: key}
	if err := identity.SaveCredential(cred, c.path(fileServerCert), c.path(fileServerKey)); err != nil {
		return err
	}
	c.ca.own.Store(cred)
	c.ca.src.SetCredential(c.servedChain(cred))
	rec := issuedRecord(cert, iss.CA.Cert)
	c.journal.Commit([]store.Op{putJSON(certKey(rec.Serial), rec)}, nil)
	c.metrics.Renewals.WithLabelValues("coordinator", "self").Inc()
	c.audit.Record(audit.Event{Type: "cert.renew", Actor: c.ca.id.String(), Target: c.ca.id.String(), Detail: map[string]string{"serial": rec.Serial, "not_after": cert.NotAfter.UTC().Format(time.RFC3339)}})
	c.log.Info("coordinator certificate renewed", "serial", rec.Serial, "expires", cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// selfRenewLoop renews the coordinator's own certificate at about two
// thirds of its life; listeners pick it up from their callbacks.
func (c *Coordinator) selfRenewLoop(ctx context.Context) {
	if c.cfg.TLSCert != "" {
		return // an external certificate is renewed by its owner (then SIGHUP)
	}
	for {
		d := identity.ShouldRenew(c.now(), c.ca.src.Leaf(), 0.5)
		wait := d.Wait
		if d.Renew {
			if err := c.renewOwnCertificate(c.now()); err != nil {
				c.log.Error("renew the coordinator certificate; retrying in a minute", "err", err)
				wait = time.Minute
			} else {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(wait, time.Hour)):
		}
	}
}

// expiries lists every local certificate and CA for the expiry gauges.
func (c *Coordinator) expiries() []telemetry.Expiry {
	own := c.ca.src.Leaf()
	out := []telemetry.Expiry{{Kind: "coordinator", Name: c.ca.id.Name, Serial: pki.SerialHex(own), NotAfter: own.NotAfter}}
	for _, root := range c.ca.src.Bundle() {
		out = append(out, telemetry.Expiry{Kind: "root_ca", Name: root.Subject.CommonName, Serial: pki.SerialHex(root), NotAfter: root.NotAfter})
	}
	for _, iss := range c.issuingCAs() {
		out = append(out, telemetry.Expiry{Kind: "issuing_ca", Name: iss.Cert.Subject.CommonName, Serial: pki.SerialHex(iss.Cert), NotAfter: iss.Cert.NotAfter})
	}
	c.mu.Lock()
	for _, n := range c.nodes {
		if !n.Revoked {
			out = append(out, telemetry.Expiry{Kind: "agent", Name: n.Name, Serial: n.CertSerial, NotAfter: n.CertExpiry})
		}
	}
	c.mu.Unlock()
	return out
}

func (c *Coordinator) crlAge() (time.Duration, bool) {
	cur := c.currentCRL()
	if cur == nil {
		return 0, false
	}
	return c.now().Sub(cur.thisUpdate), true
}

// Reload re-reads the coordinator's certificate and key from the data
// directory (after an operator replaced them, or on SIGHUP) and serves
// them from the next handshake. Listeners and sessions stay up; a broken
// file leaves the running certificate in place.
func (c *Coordinator) Reload() error {
	var cred *identity.Credential
	var err error
	if c.cfg.TLSCert != "" {
		cred, _, err = c.externalCredential(c.now())
	} else {
		cred, err = identity.LoadCredential(c.path(fileServerCert), c.path(fileServerKey))
	}
	if err != nil {
		c.log.Error("reload refused; keeping the running certificate", "err", err)
		return err
	}
	if cred.Leaf().NotAfter.Before(c.now()) {
		err := fmt.Errorf("%s expired at %s; keeping the running certificate", c.path(fileServerCert), cred.Leaf().NotAfter.UTC().Format(time.RFC3339))
		c.log.Error("reload refused", "err", err)
		return err
	}
	c.ca.own.Store(cred)
	c.ca.src.SetCredential(c.servedChain(cred))
	c.log.Info("reloaded", "cert_serial", pki.SerialHex(cred.Leaf()), "cert_expires", cred.Leaf().NotAfter.UTC().Format(time.RFC3339))
	c.audit.Record(audit.Event{Type: "reload", Actor: c.ca.id.String(), Detail: map[string]string{"serial": pki.SerialHex(cred.Leaf())}})
	return nil
}
