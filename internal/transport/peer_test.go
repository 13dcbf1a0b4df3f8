package transport_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
	"github.com/wardcluster/ward/internal/transport"
)

func TestVerifyPeer(t *testing.T) {
	ca := pkitest.New(t)
	other := pkitest.NewCluster(t, "other")
	agent, _ := ca.Leaf(t, pki.RoleAgent, "n1")
	foreign, _ := other.Leaf(t, pki.RoleAgent, "n1")
	revoked := transport.NewRevocationSet()
	revoked.Add(time.Now(), pki.SerialHex(agent.Leaf))
	tests := []struct {
		name    string
		cert    *x509.Certificate
		set     *transport.RevocationSet
		wantErr bool
		revoked bool
	}{
		{"good", agent.Leaf, transport.NewRevocationSet(), false, false},
		{"revoked", agent.Leaf, revoked, true, true},
		{"other cluster", foreign.Leaf, transport.NewRevocationSet(), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transport.VerifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{tt.cert}}, "test", tt.set)
			if (err != nil) != tt.wantErr || errors.Is(err, transport.ErrRevoked) != tt.revoked {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestClusterConfigOverRealTLS: a real handshake on loopback requires a
// client certificate from the bundle, refuses a revoked one during the
// handshake, and enforces pins on the client.
func TestClusterConfigOverRealTLS(t *testing.T) {
	ca := pkitest.New(t)
	srvCert, srvKey := ca.Leaf(t, pki.RoleCoordinator, "c1")
	srcSrv := identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{srvCert.Leaf, ca.Issuing.Cert}, Key: srvKey}, ca.Bundle())
	revoked := transport.NewRevocationSet()
	addr := serveOK(t, transport.ClusterServerConfig(srcSrv, transport.ServerOptions{Cluster: "test", Revoked: revoked}))
	dial := func(cert tls.Certificate, key crypto.Signer, pins []pki.Pin) error {
		src := identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{cert.Leaf, ca.Issuing.Cert}, Key: key}, ca.Bundle())
		cfg := transport.ClientConfig(src, transport.ClientOptions{Cluster: "test", ServerName: "127.0.0.1", Pins: pins})
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, 2)
		_, err = conn.Read(buf) // TLS 1.3: a refusal of the client arrives on the first read
		return err
	}
	agent, agentKey := ca.Leaf(t, pki.RoleAgent, "n1")
	if err := dial(agent, agentKey, []pki.Pin{pki.SPKIPin(ca.Root.Cert)}); err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	var pm *transport.PinMismatchError
	if err := dial(agent, agentKey, []pki.Pin{pki.SPKIPin(pkitest.New(t).Root.Cert)}); !errors.As(err, &pm) {
		t.Fatalf("wrong pin: %v", err)
	}
	revoked.Add(time.Now(), pki.SerialHex(agent.Leaf))
	if err := dial(agent, agentKey, nil); err == nil {
		t.Fatal("revoked client accepted")
	}
}

// serveOK listens on loopback with cfg until the test ends and writes "ok"
// on every connection whose handshake succeeds; it returns the address.
func serveOK(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte("ok"))
					c.Read(make([]byte, 1)) // until the client closes
				}
			}()
		}
	}()
	return ln.Addr().String()
}
