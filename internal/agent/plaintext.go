package agent

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"net"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

// dialPlaintext opens a session connection on a coordinator's plaintext
// migration listener and proves this node's identity by signing the
// coordinator's nonce. Nothing on this link is encrypted (link status NO).
func (a *Agent) dialPlaintext(ctx context.Context, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(helloTimeout))
	if _, err := conn.Write([]byte(api.PlaintextPreface)); err != nil {
		conn.Close()
		return nil, err
	}
	t, body, err := api.ReadFrame(conn, make([]byte, 5))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s did not answer as a Ward plaintext listener: %w", addr, err)
	}
	if t == api.FrameBye {
		conn.Close()
		return nil, a.bye(body)
	}
	var ch api.Challenge
	if t != api.FrameChallenge || api.DecodeFrame(t, body, &ch) != nil || len(ch.Nonce) < 16 {
		conn.Close()
		return nil, fmt.Errorf("%s sent no challenge", addr)
	}
	msg := api.PlaintextAuthMessage(ch.Nonce, pki.ID{Cluster: a.state.Cluster, Role: pki.RoleAgent, Name: a.state.Node}.String())
	var sig []byte
	if _, ok := a.key.Public().(ed25519.PublicKey); ok {
		sig, err = a.key.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		sum := sha256.Sum256(msg)
		sig, err = a.key.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("sign the plaintext challenge: %w", err)
	}
	cert := a.src.Certificate()
	var chainPEM []byte
	for _, raw := range cert.Certificate {
		chainPEM = append(chainPEM, pemCert(raw)...)
	}
	b, _ := api.AppendFrame(nil, api.FrameAuth, api.Auth{ChainPEM: chainPEM, Signature: sig})
	if _, err := conn.Write(b); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// upgradeToTLS answers a coordinator's request to move to TLS: it first
// proves a TLS session can be opened (so it never drops to nothing), then
// records the move and ends the plaintext session; the session loop
// reconnects over TLS and reports its running tasks in the hello, so none
// is lost. If TLS fails it stays on plaintext and tells the coordinator why.
func (a *Agent) upgradeToTLS(ctx context.Context, m api.UpgradeTLS) {
	addrs := m.ClusterAddrs
	if len(a.cfg.Coordinators) > 0 {
		addrs = a.cfg.Coordinators
	}
	var lastErr error
	for _, addr := range addrs {
		conn, err := a.dial(ctx, addr)
		if err != nil {
			lastErr = err
			continue
		}
		conn.Close() // the probe only; the session follows through the loop
		a.mu.Lock()
		a.state.PlaintextAddr = ""
		a.state.ClusterAddrs = addrs
		plain := a.conn
		a.mu.Unlock()
		if err := saveState(a.cfg.DataDir, a.state); err != nil {
			a.log.Error("record the move to TLS", "err", err)
		}
		a.log.Info("moving the session from plaintext to TLS, as the coordinator asked", "cluster", addr)
		if plain != nil {
			plain.Close()
		}
		return
	}
	v := diagnose.Explain(lastErr)
	a.log.Error("cannot move to TLS; staying on plaintext", "verdict", string(v.Code), "reason", v.Message, "fix", v.Fix, "err", lastErr)
	a.mu.Lock()
	a.out.upgradeErr = &api.UpgradeResult{Error: fmt.Sprintf("%s: %v", v.Message, lastErr), Verdict: string(v.Code)}
	a.mu.Unlock()
	a.wake()
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
