package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// jitter is a stable per-node value in [0,1), so a fleet issued at once
// spreads its renewals and each node's moment is reproducible.
func (a *Agent) jitter() float64 {
	h := fnv.New64a()
	h.Write([]byte(a.state.Cluster + "/" + a.state.Node))
	return float64(h.Sum64()%10000) / 10000
}

// renewLoop renews the agent's certificate over the live session at about
// two thirds of its life, or when the coordinator asks (RenewNow).
func (a *Agent) renewLoop(ctx context.Context) {
	for {
		d := identity.ShouldRenew(time.Now(), a.src.Leaf(), a.jitter())
		wait := min(d.Wait, time.Minute)
		if d.Renew && !d.Expired {
			if err := a.renewOnce(ctx); err != nil {
				a.log.Warn("certificate renewal failed; retrying", "err", err)
				wait = 5 * time.Second
			} else {
				continue
			}
		}
		if d.Expired {
			wait = 5 * time.Second // the session loop heals an expired certificate
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case delay := <-a.renewNow:
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			if err := a.renewOnce(ctx); err != nil {
				a.log.Warn("certificate renewal the coordinator asked for failed; retrying", "err", err)
			}
		}
	}
}

// renewOnce sends a CSR over the current session and installs the answer.
func (a *Agent) renewOnce(ctx context.Context) error {
	csr, err := enroll.CreateCSR(a.key, pki.ID{Cluster: a.state.Cluster, Role: pki.RoleAgent, Name: a.state.Node})
	if err != nil {
		return err
	}
	a.mu.Lock()
	if !a.connected {
		a.mu.Unlock()
		return errors.New("no session is open")
	}
	a.out.renew = csr
	done := make(chan error, 1)
	a.renewDone = done
	a.mu.Unlock()
	a.wake()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("the coordinator did not answer the renewal within 30s")
	}
}

// renewed handles the coordinator's answer to a RenewRequest.
func (a *Agent) renewed(body []byte) error {
	var m api.Renewed
	if err := api.DecodeFrame(api.FrameRenewed, body, &m); err != nil {
		return err
	}
	var err error
	switch {
	case m.Error != nil:
		err = m.Error
	case len(m.BundlePEM) > 0:
		if err = a.installBundle(m.BundlePEM); err == nil {
			err = a.installChain(m.ChainPEM, "session")
		}
	default:
		err = a.installChain(m.ChainPEM, "session")
	}
	a.mu.Lock()
	done := a.renewDone
	a.renewDone = nil
	a.mu.Unlock()
	if done != nil {
		done <- err
	}
	return nil
}

// installChain checks a new chain (our key, our identity, chains to the
// trust bundle), stores it atomically and serves it from the next
// handshake; live sessions stay up.
func (a *Agent) installChain(chainPEM []byte, path string) error {
	chain, err := pki.ParseCertsPEM(chainPEM)
	if err != nil {
		return fmt.Errorf("the coordinator sent an unreadable certificate: %w", err)
	}
	if !pki.KeyMatches(chain[0], a.key) {
		return errors.New("the coordinator sent a certificate for another key; refusing it")
	}
	id, err := pki.IDFromCert(chain[0])
	if err != nil || id.Name != a.state.Node || id.Role != pki.RoleAgent {
		return fmt.Errorf("the coordinator sent a certificate for another identity (%v); refusing it", id)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: a.src.Trust(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the new certificate does not chain to the trust bundle: %w", err)
	}
	old := a.src.Leaf()
	if err := identity.WriteFileAtomic(filepath.Join(a.cfg.DataDir, fileCert), chainPEM, 0o644); err != nil {
		return err
	}
	a.src.SetCredential(&identity.Credential{Chain: chain, Key: a.key})
	a.log.Info("certificate renewed", "path", path, "old_serial", pki.SerialHex(old), "serial", pki.SerialHex(chain[0]),
		"expires", chain[0].NotAfter.UTC().Format(time.RFC3339), "issuer", chain[0].Issuer.CommonName)
	return nil
}

// installBundle stores a trust bundle received over a verified channel.
func (a *Agent) installBundle(bundlePEM []byte) error {
	bundle, err := pki.ParseCertsPEM(bundlePEM)
	if err != nil {
		return fmt.Errorf("unreadable trust bundle: %w", err)
	}
	for _, c := range bundle {
		if !c.IsCA {
			return fmt.Errorf("the trust bundle holds %q, which is not a CA", c.Subject.CommonName)
		}
	}
	if bytes.Equal(pki.Bundle(bundle).PEM(), a.src.Bundle().PEM()) {
		return nil
	}
	if err := identity.WriteFileAtomic(filepath.Join(a.cfg.DataDir, fileBundle), bundlePEM, 0o644); err != nil {
		return err
	}
	a.src.SetTrust(bundle)
	var subjects []string
	for _, c := range bundle {
		subjects = append(subjects, c.Subject.CommonName)
	}
	a.log.Info("trust bundle updated", "roots", subjects)
	return nil
}

// heal renews a certificate the cluster port no longer accepts (it
// expired while the agent was away, or its CA was retired meanwhile) over
// the public port, proving the key with the old certificate. Past the
// grace window or after revocation the coordinator refuses, and the agent
// stops with the coordinator's reason.
func (a *Agent) heal(ctx context.Context) error {
	csr, err := enroll.CreateCSR(a.key, pki.ID{Cluster: a.state.Cluster, Role: pki.RoleAgent, Name: a.state.Node})
	if err != nil {
		return err
	}
	body, _ := json.Marshal(api.HealRequest{CSR: csr})
	var lastErr error
	for _, addr := range a.state.PublicAddrs {
		cfg := transport.ClientConfig(a.src, transport.ClientOptions{Cluster: a.state.Cluster, ServerName: transport.HostOf(addr), Pins: a.pins,
			NextProtos: []string{transport.ALPNHTTP}, Revoked: a.checkServer})
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 30 * time.Second}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+api.PathHeal, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var eb api.ErrorBody
			if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
				switch eb.Error.Code {
				case api.CodeGraceWindowExpired, api.CodeCertRevoked, api.CodePermissionDenied, api.CodeUnauthenticated:
					return errFatal{fmt.Errorf("the coordinator refused to renew this node's certificate: %w", eb.Error)}
				}
				return eb.Error
			}
			lastErr = fmt.Errorf("heal at %s: %s", addr, resp.Status)
			continue
		}
		var hr api.HealResponse
		if err := json.Unmarshal(data, &hr); err != nil {
			return err
		}
		if err := a.installBundle(hr.BundlePEM); err != nil {
			return err
		}
		return a.installChain(hr.ChainPEM, "heal")
	}
	return lastErr
}

// Reload re-reads the certificate and trust bundle from the data
// directory (after an operator replaced them, or on SIGHUP). Sessions stay
// up; the next handshake uses what was loaded.
func (a *Agent) Reload() error {
	cred, err := identity.LoadChainForKey(filepath.Join(a.cfg.DataDir, fileCert), a.key)
	if err != nil {
		return err
	}
	bundlePEM, err := os.ReadFile(filepath.Join(a.cfg.DataDir, fileBundle))
	if err != nil {
		return err
	}
	bundle, err := pki.ParseCertsPEM(bundlePEM)
	if err != nil {
		return err
	}
	a.src.SetCredential(cred)
	a.src.SetTrust(bundle)
	a.log.Info("reloaded certificate and trust bundle", "serial", pki.SerialHex(cred.Leaf()), "expires", cred.Leaf().NotAfter.UTC().Format(time.RFC3339), "roots", len(bundle))
	return nil
}
