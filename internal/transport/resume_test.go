package transport_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
	"github.com/wardcluster/ward/internal/transport"
)

// TestResumptionAfterTrustSwap: a client that holds a session ticket from
// a handshake under the old trust bundle cannot resume it once its CA has
// left the bundle (a CA rotation retired it). The config served per
// handshake shares the listener's ticket keys, so the ticket itself still
// decrypts; the refusal must come from re-checking the ticket's client
// chain against the current roots. The control dials show that resumption
// does happen while the CA is trusted, so the last dial's refusal is the
// trust check and not a ticket that was never usable.
func TestResumptionAfterTrustSwap(t *testing.T) {
	oldCA, newCA := pkitest.New(t), pkitest.New(t)
	srvCert, srvKey := oldCA.Leaf(t, pki.RoleCoordinator, "c1")
	srcSrv := identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{srvCert.Leaf, oldCA.Issuing.Cert}, Key: srvKey}, oldCA.Bundle())
	addr := serveOK(t, transport.ClusterServerConfig(srcSrv, transport.ServerOptions{Cluster: "test", Revoked: transport.NewRevocationSet()}))

	agent, agentKey := oldCA.Leaf(t, pki.RoleAgent, "n1")
	cache := tls.NewLRUClientSessionCache(8)
	dial := func() (resumed bool, err error) {
		src := identity.NewSource(&identity.Credential{Chain: []*x509.Certificate{agent.Leaf, oldCA.Issuing.Cert}, Key: agentKey}, oldCA.Bundle())
		cfg := transport.ClientConfig(src, transport.ClientOptions{Cluster: "test", ServerName: "127.0.0.1"})
		cfg.ClientSessionCache = cache
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return false, err
		}
		defer conn.Close()
		// TLS 1.3: the server's refusal and its session ticket both arrive
		// after the client's handshake returns, on the first read.
		if _, err := conn.Read(make([]byte, 2)); err != nil {
			return false, err
		}
		return conn.ConnectionState().DidResume, nil
	}
	if resumed, err := dial(); err != nil || resumed {
		t.Fatalf("first dial: resumed %v, err %v; want a full handshake", resumed, err)
	}
	if resumed, err := dial(); err != nil || !resumed {
		t.Fatalf("second dial under the same trust: resumed %v, err %v; want a resumed session", resumed, err)
	}

	srcSrv.SetTrust(newCA.Bundle()) // the old CA is retired
	resumed, err := dial()
	if err == nil {
		t.Fatalf("a client of the retired CA was accepted (resumed: %v)", resumed)
	}
	t.Logf("refused after the trust swap: %v", err)
}
