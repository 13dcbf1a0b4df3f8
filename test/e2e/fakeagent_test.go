package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// scriptedAgent has a real identity from a real join and speaks the agent
// protocol frame by frame, so a test can deliver results twice or late.
type scriptedAgent struct {
	t       *testing.T
	c       *cluster
	name    string
	src     *identity.Source
	cluster string
	conn    *tls.Conn
	hdr     []byte
}

func newScriptedAgent(t *testing.T, c *cluster, name string) *scriptedAgent {
	t.Helper()
	js, err := enroll.ParseJoinString(c.token())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.GenerateKey()
	csr, err := enroll.CreateCSR(key, pki.ID{Cluster: js.Cluster, Role: pki.RoleAgent, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := enroll.Join(context.Background(), js, api.JoinRequest{Name: name, CSR: csr, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := pki.ParseCertsPEM(resp.ChainPEM)
	bundle, _ := pki.ParseCertsPEM(resp.BundlePEM)
	return &scriptedAgent{t: t, c: c, name: name, cluster: js.Cluster, hdr: make([]byte, 5),
		src: identity.NewSource(&identity.Credential{Chain: chain, Key: key}, bundle)}
}

// connect opens a session with hello and returns the welcome.
func (a *scriptedAgent) connect(h api.Hello) api.Welcome {
	a.t.Helper()
	cfg := transport.ClientConfig(a.src, transport.ClientOptions{Cluster: a.cluster, ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNAgent}})
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", a.c.cluster, cfg)
	if err != nil {
		a.t.Fatal(err)
	}
	a.conn = conn
	h.Version = api.SessionVersion
	if h.Time.IsZero() {
		h.Time = time.Now()
	}
	if h.Slots == 0 {
		h.Slots = 1
	}
	a.send(api.FrameHello, h)
	var w api.Welcome
	a.expect(api.FrameWelcome, &w)
	return w
}

func (a *scriptedAgent) send(t api.FrameType, msg any) {
	a.t.Helper()
	b, err := api.AppendFrame(nil, t, msg)
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.conn.Write(b); err != nil {
		a.t.Fatal(err)
	}
}

// expect reads frames until one of type want arrives (skipping others)
// and decodes it.
func (a *scriptedAgent) expect(want api.FrameType, msg any) {
	a.t.Helper()
	a.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		t, body, err := api.ReadFrame(a.conn, a.hdr)
		if err != nil {
			a.t.Fatalf("%s: waiting for frame %d: %v", a.name, want, err)
		}
		if t == want {
			if err := api.DecodeFrame(t, body, msg); err != nil {
				a.t.Fatal(err)
			}
			return
		}
		if t == api.FrameBye {
			a.t.Fatalf("%s: coordinator said bye: %s", a.name, body)
		}
	}
}

func (a *scriptedAgent) close() {
	if a.conn != nil {
		a.conn.Close()
	}
}

func result(r api.AttemptRef, exit int) api.TaskResult {
	now := time.Now()
	return api.TaskResult{AttemptRef: r, ExitCode: exit, Reason: api.EndExited, Started: api.NanosOf(now.Add(-time.Millisecond)), Ended: api.NanosOf(now)}
}

func (a *scriptedAgent) cert() *x509.Certificate { return a.src.Leaf() }

var _ = fmt.Sprint
