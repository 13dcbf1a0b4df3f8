package forward

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
	"github.com/wardcluster/ward/internal/transport"
)

func chainOf(t *testing.T, c tls.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

// TestAccept: a forwarded request carries its caller's identity only when
// the carried chain verifies as the cluster listener would; the public
// listener's chain is passed on unverified, as that port does.
func TestAccept(t *testing.T) {
	ca := pkitest.NewCluster(t, "test")
	other := pkitest.NewCluster(t, "test")
	revoked := transport.NewRevocationSet()
	v := Verifier{Cluster: "test", Trust: func() *x509.CertPool { return ca.Bundle().Pool() }, Revoked: revoked}
	user, _ := ca.Leaf(t, pki.RoleUser, "alice")
	gone, _ := ca.Leaf(t, pki.RoleUser, "mallory")
	revoked.Add(time.Now(), pki.SerialHex(gone.Leaf))
	stranger, _ := other.Leaf(t, pki.RoleUser, "eve")
	expired, _ := ca.LeafAt(t, pki.RoleUser, "old", time.Now().Add(-48*time.Hour), time.Hour)
	coord, _ := ca.Leaf(t, pki.RoleCoordinator, "c2")

	tests := []struct {
		name     string
		listener string
		chain    []*x509.Certificate
		wantID   string
		wantErr  string
	}{
		{"ClusterUser", ListenerCluster, chainOf(t, user), "spiffe://test/user/alice", ""},
		{"ClusterRevoked", ListenerCluster, chainOf(t, gone), "", "revoked"},
		{"ClusterOtherCA", ListenerCluster, chainOf(t, stranger), "", "does not verify"},
		{"ClusterExpired", ListenerCluster, chainOf(t, expired), "", "does not verify"},
		{"ClusterNoCert", ListenerCluster, nil, "", "no certificate"},
		{"PublicUnverified", ListenerPublic, chainOf(t, stranger), "spiffe://test/user/eve", ""},
		{"PublicAnonymous", ListenerPublic, nil, "", ""},
		{"UnknownListener", "plaintext", chainOf(t, user), "", "unknown listener"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://leader/v1/status", nil)
			r.TLS = &tls.ConnectionState{PeerCertificates: chainOf(t, coord), Version: tls.VersionTLS13}
			r.RemoteAddr = "10.0.0.2:5000"
			r.Header.Set(HeaderListener, tc.listener)
			r.Header.Set(HeaderFor, "192.0.2.7:4711")
			r.Header.Set(HeaderBy, "c2@10.0.0.2:7443")
			if tc.chain != nil {
				r.Header.Set(HeaderCert, encodeChain(tc.chain))
			}
			out, listener, err := Accept(r, v)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if listener != tc.listener || out.RemoteAddr != "192.0.2.7:4711" {
				t.Errorf("listener %q remote %q", listener, out.RemoteAddr)
			}
			for _, h := range []string{HeaderListener, HeaderCert, HeaderFor, HeaderBy} {
				if out.Header.Get(h) != "" {
					t.Errorf("header %s left on the accepted request", h)
				}
			}
			if tc.wantID == "" {
				if len(out.TLS.PeerCertificates) != 0 {
					t.Errorf("anonymous caller got certificates")
				}
				return
			}
			id, err := pki.IDFromCert(out.TLS.PeerCertificates[0])
			if err != nil || id.String() != tc.wantID {
				t.Errorf("caller = %v (%v), want %s", id, err, tc.wantID)
			}
			if tc.listener == ListenerCluster && len(out.TLS.VerifiedChains) == 0 {
				t.Error("no verified chain on a cluster request")
			}
		})
	}
}

// TestOnlyCoordinatorsForward: a user or agent certificate cannot claim to
// forward for someone else.
func TestOnlyCoordinatorsForward(t *testing.T) {
	ca := pkitest.NewCluster(t, "test")
	for _, role := range []pki.Role{pki.RoleUser, pki.RoleAgent} {
		c, _ := ca.Leaf(t, role, "x")
		if _, err := FromCoordinator(&tls.ConnectionState{PeerCertificates: chainOf(t, c)}, "test"); err == nil || !strings.Contains(err.Error(), "only coordinators") {
			t.Errorf("%s: err = %v, want a refusal", role, err)
		}
	}
	c, _ := ca.Leaf(t, pki.RoleCoordinator, "c1")
	if id, err := FromCoordinator(&tls.ConnectionState{PeerCertificates: chainOf(t, c)}, "test"); err != nil || id.Name != "c1" {
		t.Errorf("coordinator: %v %v", id, err)
	}
	if _, err := FromCoordinator(&tls.ConnectionState{PeerCertificates: chainOf(t, c)}, "prod"); err == nil {
		t.Error("a coordinator of another cluster may forward")
	}
}

// TestPreamble: a preamble round-trips, the bytes after it are the
// session's, and a bad one is refused with a reason.
func TestPreamble(t *testing.T) {
	ca := pkitest.NewCluster(t, "test")
	agent, _ := ca.Leaf(t, pki.RoleAgent, "n1")
	p := NewPreamble(tls.ConnectionState{PeerCertificates: chainOf(t, agent), Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}, "192.0.2.1:3", "c2")
	var buf bytes.Buffer
	if err := WritePreamble(&buf, p); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("hello frame")
	got, err := ReadPreamble(&buf)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := got.Certificates()
	if err != nil || len(certs) != 2 || !certs[0].Equal(agent.Leaf) || got.By != "c2" || got.Source != "192.0.2.1:3" || got.TLSVersion != tls.VersionTLS13 {
		t.Errorf("preamble = %+v (%v)", got, err)
	}
	if rest := buf.String(); rest != "hello frame" {
		t.Errorf("bytes after the preamble = %q", rest)
	}
	for name, raw := range map[string][]byte{
		"TooLarge": {0xff, 0xff, 0xff, 0xff},
		"Short":    {0, 0, 0, 9, '{'},
		"NoChain":  append([]byte{0, 0, 0, 2}, "{}"...),
	} {
		if _, err := ReadPreamble(bytes.NewReader(raw)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestPipe: bytes flow both ways, and one side closing ends both.
func TestPipe(t *testing.T) {
	a1, a2 := net.Pipe()
	b1, b2 := net.Pipe()
	done := make(chan struct{})
	go func() { pipe(a2, b1); close(done) }()
	go a1.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := b2.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q %v", buf, err)
	}
	go b2.Write([]byte("pong"))
	if _, err := a1.Read(buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q %v", buf, err)
	}
	a1.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pipe did not end when one side closed")
	}
	if _, err := b2.Read(buf); err == nil {
		t.Error("the other side is still open")
	}
}
