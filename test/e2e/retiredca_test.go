package e2e

import (
	"bufio"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/transport"
)

// The certificates of a retired CA must be refused everywhere: at every
// coordinator's handshake (not only when a follower forwards them to the
// leader), and on connections they opened before the retirement.

// keepContext copies c's admin context as it is now: its certificate comes
// from the CA of this moment and, unlike the context the CLI keeps using,
// is never renewed by a later call.
func keepContext(t *testing.T, c *cluster) *config.Context {
	t.Helper()
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.Save(filepath.Join(t.TempDir(), "kept.context")); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// apiConn is one mTLS connection to a coordinator's cluster port made
// with a context's certificate, kept open between requests.
type apiConn struct {
	t    *testing.T
	conn *tls.Conn
	rd   *bufio.Reader
}

// dialAPI connects to addr (a cluster port) with ctx's certificate and
// trust, verifying the coordinator as the CLI does.
func dialAPI(t *testing.T, ctx *config.Context, addr string) (*apiConn, error) {
	t.Helper()
	cred, bundle, pins, err := ctx.Credential()
	if err != nil {
		t.Fatal(err)
	}
	cfg := transport.ClientConfig(identity.NewSource(cred, bundle), transport.ClientOptions{
		Cluster: ctx.Cluster, ServerName: transport.HostOf(addr), Pins: pins, NextProtos: []string{transport.ALPNHTTP}})
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return &apiConn{t: t, conn: conn, rd: bufio.NewReader(conn)}, nil
}

// get sends GET path on the connection and returns the status code.
func (a *apiConn) get(path string) (int, error) {
	a.conn.SetDeadline(time.Now().Add(20 * time.Second))
	defer a.conn.SetDeadline(time.Time{})
	if _, err := a.conn.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: ward\r\n\r\n")); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(a.rd, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = bufio.NewReader(resp.Body).WriteTo(discard{})
	return resp.StatusCode, err
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// closedWithin reports whether the coordinator closes the connection
// within d, with no request in flight.
func (a *apiConn) closedWithin(d time.Duration) bool {
	a.conn.SetReadDeadline(time.Now().Add(d))
	_, err := a.rd.ReadByte()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	te, ok := err.(timeout)
	return ok && te.Timeout()
}

// refusedAtHandshake checks that a new connection with ctx's certificate
// is refused by addr's TLS handshake: the request never reaches HTTP, and
// the coordinator logs the rejection with the unknown-authority reason.
func refusedAtHandshake(t *testing.T, ctx *config.Context, c *cluster, who string) {
	t.Helper()
	before := len(c.coord.stderrText())
	a, err := dialAPI(t, ctx, c.cluster)
	if err == nil {
		defer a.conn.Close()
		var code int
		code, err = a.get("/v1/status")
		if err == nil {
			t.Fatalf("%s: a certificate of the retired CA passed the handshake (GET /v1/status answered %d)", who, code)
		}
	}
	if !strings.Contains(err.Error(), "remote error: tls:") {
		t.Fatalf("%s: want a TLS alert from the handshake, got %v", who, err)
	}
	waitFor(t, 5*time.Second, who+" to log the rejection", func() bool {
		log := c.coord.stderrText()[before:]
		return strings.Contains(log, `msg="connection rejected" listener=cluster`) && strings.Contains(log, "unknown authority")
	})
}

// rotateAll runs the four steps of `ward ca rotate` on c, retiring the
// CA that issued every certificate so far.
func rotateAll(t *testing.T, c *cluster) {
	t.Helper()
	c.mustWard("ca", "rotate")
	c.mustWard("ca", "rotate")
	c.mustWard("ca", "rotate", "--spread", "1s")
	if out := c.mustWard("ca", "rotate", "--force"); !strings.Contains(out, "generation 2") {
		t.Fatalf("retire: %s", out)
	}
}

// TestRetiredCARefusedDirectly, one coordinator on bolt: after the
// retirement an admin certificate of the old CA is refused at the
// handshake, and a connection it opened before is closed.
func TestRetiredCARefusedDirectly(t *testing.T) {
	c := newCluster(t)
	old := keepContext(t, c)
	held, err := dialAPI(t, old, c.cluster)
	if err != nil {
		t.Fatal(err)
	}
	defer held.conn.Close()
	if code, err := held.get("/v1/status"); err != nil || code != 200 {
		t.Fatalf("before the rotation: %d %v", code, err)
	}
	rotateAll(t, c)
	if !held.closedWithin(5 * time.Second) {
		t.Error("a connection opened with a certificate of the retired CA is still open after the retirement")
	}
	refusedAtHandshake(t, old, c, "the coordinator")
	// The CLI's own context renewed itself during the rotation: it works.
	c.mustWard("ca", "status")
}

// TestRetiredCARefusedDirectlyAcrossCoordinators, three coordinators on
// etcd: the rotation runs on the leader; afterwards an admin certificate
// of the old CA is refused at the handshake of every coordinator, the
// followers included, and connections it opened to a follower before the
// retirement are closed.
func TestRetiredCARefusedDirectlyAcrossCoordinators(t *testing.T) {
	a, b, c := threeCoordinators(t)
	oldA, oldB := keepContext(t, a), keepContext(t, b)
	var held []*apiConn
	for _, at := range []*cluster{a, b, c} {
		h, err := dialAPI(t, oldA, at.cluster)
		if err != nil {
			t.Fatal(err)
		}
		defer h.conn.Close()
		if code, err := h.get("/v1/status"); err != nil || code != 200 {
			t.Fatalf("before the rotation, at %s: %d %v", at.cluster, code, err)
		}
		held = append(held, h)
	}
	b.mustWard("ca", "rotate")
	b.mustWard("ca", "rotate")
	// A issues from the new CA: the CLI talking to A sees a coordinator
	// certificate of another issuing CA and renews its own through A,
	// which forwards the renewal to the leader.
	waitFor(t, 20*time.Second, "A to re-certify itself from the new issuing CA", func() bool {
		return strings.Contains(a.coord.stderrText(), `msg="coordinator certificate renewed"`)
	})
	a.mustWard("ca", "status")
	b.mustWard("ca", "rotate", "--spread", "1s")
	if out := b.mustWard("ca", "rotate", "--force"); !strings.Contains(out, "generation 2") {
		t.Fatalf("retire: %s", out)
	}
	for i, at := range []*cluster{a, b, c} {
		if at != b {
			// A call through a follower is answered by the leader: read
			// the follower's own log.
			waitFor(t, 20*time.Second, "the retirement to reach "+at.cluster, func() bool {
				return regexp.MustCompile(`msg="CA rotation followed from the store" from=\w+ to=idle generation=2`).MatchString(at.coord.stderrText())
			})
		}
		if !held[i].closedWithin(5 * time.Second) {
			t.Errorf("%s: a connection opened with a certificate of the retired CA is still open after the retirement", at.cluster)
		}
	}
	refusedAtHandshake(t, oldA, a, "follower A")
	refusedAtHandshake(t, oldB, a, "follower A")
	refusedAtHandshake(t, oldA, c, "follower C")
	refusedAtHandshake(t, oldA, b, "leader B")
	refusedAtHandshake(t, oldB, b, "leader B")
	// The CLI that renewed through the follower works on.
	a.mustWard("ca", "status")
}
