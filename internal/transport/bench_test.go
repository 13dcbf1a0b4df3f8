package transport_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
	"github.com/wardcluster/ward/internal/transport"
)

// BenchmarkVerifyPeer is the per-handshake identity and revocation check
// the cluster port runs (resumed handshakes too), with 100,000 serials
// revoked: an in-memory lookup, no I/O.
func BenchmarkVerifyPeer(b *testing.B) {
	ca := pkitest.New(b)
	agent, _ := ca.Leaf(b, pki.RoleAgent, "n1")
	set := transport.NewRevocationSet()
	serials := make([]string, 100000)
	for i := range serials {
		serials[i] = fmt.Sprintf("%x", new(big.Int).SetInt64(int64(i)+1<<40))
	}
	set.Add(time.Now(), serials...)
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{agent.Leaf}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := transport.VerifyPeer(cs, "test", set); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClusterHandshake is a full mTLS 1.3 handshake over loopback with
// the cluster port's configuration, revocation check included.
func BenchmarkClusterHandshake(b *testing.B) {
	ca := pkitest.New(b)
	srvCert, srvKey := ca.Leaf(b, pki.RoleCoordinator, "c1")
	srv := identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{srvCert.Leaf, ca.Issuing.Cert}, Key: srvKey}, ca.Bundle())
	agent, agentKey := ca.Leaf(b, pki.RoleAgent, "n1")
	cli := identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{agent.Leaf, ca.Issuing.Cert}, Key: agentKey}, ca.Bundle())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	scfg := transport.ClusterServerConfig(srv, transport.ServerOptions{Cluster: "test", Revoked: transport.NewRevocationSet()})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, scfg)
				if tc.Handshake() == nil {
					tc.Write([]byte{1})
				}
				tc.Close()
			}()
		}
	}()
	ccfg := transport.ClientConfig(cli, transport.ClientOptions{Cluster: "test", ServerName: "127.0.0.1"})
	ccfg.ClientSessionCache = nil
	buf := make([]byte, 1)
	for b.Loop() {
		conn, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}
