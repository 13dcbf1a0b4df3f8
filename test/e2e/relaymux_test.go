package e2e

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/transport"
)

// TestRelayOnlyFromCoordinators: the cluster port's relay protocols (a
// follower carrying agent sessions to the leader) are refused to any
// certificate but a coordinator's: HTTP/2 (the multiplexed relay) is
// closed after the handshake, ward-relay/1 gets a Bye naming the rule.
func TestRelayOnlyFromCoordinators(t *testing.T) {
	c := newCluster(t)
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		t.Fatal(err)
	}
	cred, bundle, _, err := ctx.Credential()
	if err != nil {
		t.Fatal(err)
	}
	src := identity.NewSource(cred, bundle) // the admin's user certificate
	cfg := func(alpn string) *tls.Config {
		return transport.ClientConfig(src, transport.ClientOptions{ServerName: "127.0.0.1", NextProtos: []string{alpn}})
	}

	// HTTP/2 with a user certificate: negotiated, then closed unserved.
	var p http.Protocols
	p.SetHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg(transport.ALPNRelayMux), Protocols: &p}, Timeout: 10 * time.Second}
	resp, err := hc.Post("https://"+c.cluster+"/ward.relay/v2/session", "application/octet-stream", strings.NewReader("x"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a user certificate opened a relay stream: %s", resp.Status)
	}
	waitFor(t, 5*time.Second, "the refusal in the coordinator's log", func() bool {
		return strings.Contains(c.coord.stderrText(), "only coordinators open multiplexed relay connections")
	})

	// A client offering h2 beside http/1.1 (a browser, curl) gets http/1.1.
	conn, err := tls.Dial("tcp", c.cluster, transport.ClientConfig(src, transport.ClientOptions{ServerName: "127.0.0.1",
		NextProtos: []string{transport.ALPNRelayMux, transport.ALPNHTTP}}))
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ConnectionState().NegotiatedProtocol; got != transport.ALPNHTTP {
		t.Fatalf("h2 and http/1.1 offered: negotiated %q, want http/1.1", got)
	}
	conn.Close()

	// ward-relay/1 with a user certificate: a Bye.
	conn, err = tls.Dial("tcp", c.cluster, cfg(transport.ALPNRelay))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	ft, body, err := api.ReadFrame(conn, make([]byte, 5))
	if err != nil || ft != api.FrameBye {
		t.Fatalf("ward-relay/1 with a user certificate: frame %v, %v; want a Bye", ft, err)
	}
	var bye api.Bye
	if err := api.DecodeFrame(ft, body, &bye); err != nil || bye.Error == nil || bye.Error.Code != api.CodePermissionDenied {
		t.Fatalf("Bye %+v (%v), want PERMISSION_DENIED", bye, err)
	}
}
