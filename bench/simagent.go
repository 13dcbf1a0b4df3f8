package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// simFleet is many lightweight simulated agents. Each does a real join (its
// own P-256 key, a CSR from enroll.CreateCSR, the pinned bootstrap to the
// public port) and opens its own mTLS session on the cluster port with
// ALPN ward-agent/1, built from transport.ClientConfig, then speaks the
// frame protocol: Hello → Welcome, then Heartbeat frames at the interval
// the Welcome gives. One goroutine per agent both reads (a 5-byte header
// and small bodies, no buffered reader) and sends heartbeats when its read
// deadline passes, so an idle agent costs one goroutine and its TLS state.
type simFleet struct {
	cluster     string
	clusterAddr string
	publicAddr  string
	pins        []pki.Pin
	src         *srcPool
	joinHTTP    *http.Client

	cfgOnce sync.Once
	cfg     *tls.Config

	mu       sync.Mutex
	agents   []*simAgent
	helloLat []time.Duration

	joinRetries atomic.Int64
	heartbeats  atomic.Int64
	ended       atomic.Int64
	live        atomic.Int64
	stopping    atomic.Bool
	wg          sync.WaitGroup
}

// simAgent is one simulated agent.
type simAgent struct {
	name     string
	cert     *tls.Certificate // leaf and issuing CA DER, and the key
	conn     *tls.Conn
	interval time.Duration
	endedAt  atomic.Int64 // unix nanos when its session ended
	endErr   atomic.Value // errBox
	done     chan struct{}
}

type simKey struct{}

func newSimFleet(cluster, clusterAddr, publicAddr string, pin pki.Pin, src *srcPool) *simFleet {
	f := &simFleet{cluster: cluster, clusterAddr: clusterAddr, publicAddr: publicAddr, pins: []pki.Pin{pin}, src: src}
	tr := &http.Transport{
		TLSClientConfig: enroll.PinnedConfig(f.pins, transport.HostOf(publicAddr)),
		// One connection per join, as an agent's first start makes.
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return src.dialer(10*time.Second).DialContext(ctx, network, addr)
		},
	}
	f.joinHTTP = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	return f
}

// join enrolls one agent. A refusal with code UNAVAILABLE ("the join token
// is contended": concurrent joins on one multi-use token lost the token
// record's compare-and-set 20 times) is retried after a jittered pause, as
// its fix says; the retries are counted.
func (f *simFleet) join(ctx context.Context, name string, js enroll.JoinString) (*simAgent, error) {
	wait := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		a, err := f.joinOnce(ctx, name, js)
		var ae *api.Error
		if err == nil || !errors.As(err, &ae) || ae.Code != api.CodeUnavailable || attempt >= 50 {
			return a, err
		}
		f.joinRetries.Add(1)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait/2 + rand.N(wait)):
		}
		wait = min(2*wait, time.Second)
	}
}

// joinOnce is one join: key, CSR, POST /v1/join on a pinned connection.
func (f *simFleet) joinOnce(ctx context.Context, name string, js enroll.JoinString) (*simAgent, error) {
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	id := pki.ID{Cluster: f.cluster, Role: pki.RoleAgent, Name: name}
	csr, err := enroll.CreateCSR(key, id)
	if err != nil {
		return nil, err
	}
	req := api.JoinRequest{TokenID: js.TokenID, Secret: js.Secret, Name: name, CSR: csr, Slots: 1, Hostname: "sim-" + name}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+f.publicAddr+api.PathJoin, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := f.joinHTTP.Do(hreq)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			return nil, eb.Error
		}
		return nil, fmt.Errorf("join %s: %s", name, resp.Status)
	}
	var jr api.JoinResponse
	if err := json.Unmarshal(data, &jr); err != nil {
		return nil, err
	}
	var ders [][]byte
	for rest := jr.ChainPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		ders = append(ders, b.Bytes)
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("join %s: no certificate in the answer", name)
	}
	a := &simAgent{name: name, cert: &tls.Certificate{Certificate: ders, PrivateKey: key}, done: make(chan struct{})}
	f.cfgOnce.Do(func() { f.cfg, err = f.clientConfig(a, jr.BundlePEM) })
	if err != nil {
		return nil, err
	}
	return a, nil
}

// clientConfig is transport.ClientConfig (Ward's agent settings: TLS 1.3,
// the trust bundle, a coordinator of this cluster, ALPN ward-agent/1),
// shared by every simulated agent; each presents its own certificate,
// found from the handshake's context.
func (f *simFleet) clientConfig(first *simAgent, bundlePEM []byte) (*tls.Config, error) {
	bundle, err := pki.ParseCertsPEM(bundlePEM)
	if err != nil {
		return nil, err
	}
	leaf, err := pki.ParseCertsPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: first.cert.Certificate[0]}))
	if err != nil {
		return nil, err
	}
	src := identity.NewSource(&identity.Credential{Chain: leaf, Key: first.cert.PrivateKey.(crypto.Signer)}, bundle)
	cfg := transport.ClientConfig(src, transport.ClientOptions{
		Cluster: f.cluster, ServerName: transport.HostOf(f.clusterAddr), NextProtos: []string{transport.ALPNAgent},
	})
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		a, ok := cri.Context().Value(simKey{}).(*simAgent)
		if !ok {
			return nil, errors.New("no simulated agent in the handshake context")
		}
		return a.cert, nil
	}
	return cfg, nil
}

// connect opens the agent's session: mTLS handshake, Hello, Welcome; then
// its loop runs until the session ends or the fleet stops.
func (f *simFleet) connect(ctx context.Context, a *simAgent) error {
	d := tls.Dialer{NetDialer: f.src.dialer(15 * time.Second), Config: f.cfg}
	hctx, cancel := context.WithTimeout(context.WithValue(ctx, simKey{}, a), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	c, err := d.DialContext(hctx, "tcp", f.clusterAddr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", a.name, err)
	}
	tc := c.(*tls.Conn)
	if tc.ConnectionState().NegotiatedProtocol != transport.ALPNAgent {
		tc.Close()
		return fmt.Errorf("%s: ALPN %q, not %s", a.name, tc.ConnectionState().NegotiatedProtocol, transport.ALPNAgent)
	}
	hello, _ := api.AppendFrame(nil, api.FrameHello, api.Hello{Version: api.SessionVersion, Slots: 1, Hostname: "sim-" + a.name, Time: time.Now()})
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := tc.Write(hello); err != nil {
		tc.Close()
		return fmt.Errorf("%s: send hello: %w", a.name, err)
	}
	var fr frameReader
	t, body, err := fr.read(tc)
	if err != nil {
		tc.Close()
		return fmt.Errorf("%s: wait for welcome: %w", a.name, err)
	}
	if t != api.FrameWelcome {
		tc.Close()
		if t == api.FrameBye {
			var b api.Bye
			json.Unmarshal(body, &b)
			return fmt.Errorf("%s: refused: %s %v", a.name, b.Reason, b.Error)
		}
		return fmt.Errorf("%s: hello answered with frame %d", a.name, t)
	}
	var w api.Welcome
	if err := json.Unmarshal(body, &w); err != nil {
		tc.Close()
		return err
	}
	lat := time.Since(t0)
	tc.SetDeadline(time.Time{})
	a.conn, a.interval = tc, max(w.HeartbeatInterval.D(), 100*time.Millisecond)
	a.endedAt.Store(0)
	a.done = make(chan struct{})
	f.mu.Lock()
	f.helloLat = append(f.helloLat, lat)
	f.mu.Unlock()
	f.live.Add(1)
	f.wg.Add(1)
	go f.loop(a)
	return nil
}

// loop reads what the coordinator sends and heartbeats at the agent's
// interval, the first one at a random point in it so the fleet spreads out.
func (f *simFleet) loop(a *simAgent) {
	defer f.wg.Done()
	defer close(a.done)
	var fr frameReader
	next := time.Now().Add(rand.N(a.interval) + time.Millisecond)
	end := func(err error) {
		a.endedAt.Store(time.Now().UnixNano())
		a.endErr.Store(errBox{err})
		a.conn.Close()
		f.live.Add(-1)
		f.ended.Add(1)
	}
	for {
		a.conn.SetReadDeadline(next)
		t, body, err := fr.read(a.conn)
		switch {
		case err == nil && t == api.FrameBye:
			end(errors.New("bye"))
			return
		case err == nil && t == api.FrameSettings:
			// The coordinator stretches intervals as the fleet grows.
			var m api.Settings
			if api.DecodeFrame(t, body, &m) == nil && m.HeartbeatInterval.D() >= 100*time.Millisecond {
				a.interval = m.HeartbeatInterval.D()
			}
			continue
		case err == nil:
			continue // Ack, Cancel, Trust...: an idle agent has nothing to do
		case errors.Is(err, os.ErrDeadlineExceeded):
			now := time.Now()
			b, _ := api.AppendFrame(nil, api.FrameHeartbeat, api.Heartbeat{Time: now})
			a.conn.SetWriteDeadline(now.Add(10 * time.Second))
			if _, err := a.conn.Write(b); err != nil {
				end(err)
				return
			}
			f.heartbeats.Add(1)
			next = now.Add(a.interval)
		default:
			end(err)
			return
		}
	}
}

// close ends one agent's session from the agent side and waits for its loop.
func (a *simAgent) close() {
	if a.conn != nil {
		a.conn.Close()
		<-a.done
	}
}

// stop closes every session and waits for the loops.
func (f *simFleet) stop() {
	f.stopping.Store(true)
	f.mu.Lock()
	agents := slices.Clone(f.agents)
	f.mu.Unlock()
	for _, a := range agents {
		if a.conn != nil {
			a.conn.Close()
		}
	}
	f.wg.Wait()
}

func (f *simFleet) add(a *simAgent) {
	f.mu.Lock()
	f.agents = append(f.agents, a)
	f.mu.Unlock()
}

// takeHelloLat returns and clears the Hello→Welcome latencies (handshake
// included) recorded since the last call, sorted.
func (f *simFleet) takeHelloLat() []time.Duration {
	f.mu.Lock()
	l := f.helloLat
	f.helloLat = nil
	f.mu.Unlock()
	slices.Sort(l)
	return l
}

// frameReader reads Ward frames without a buffered reader: it keeps only
// the 5-byte header and the body being read, and keeps its place across a
// read deadline, so a timeout between or inside frames loses nothing.
type frameReader struct {
	hdr  [5]byte
	hn   int
	body []byte
	bn   int
}

func (r *frameReader) read(c net.Conn) (api.FrameType, []byte, error) {
	for r.hn < 5 {
		n, err := c.Read(r.hdr[r.hn:])
		r.hn += n
		if err != nil {
			return 0, nil, err
		}
	}
	if r.body == nil {
		n := binary.BigEndian.Uint32(r.hdr[:4])
		if n < 1 || n > api.MaxFrame {
			return 0, nil, fmt.Errorf("frame length %d out of range", n)
		}
		r.body = make([]byte, n-1)
		r.bn = 0
	}
	for r.bn < len(r.body) {
		n, err := c.Read(r.body[r.bn:])
		r.bn += n
		if err != nil {
			return 0, nil, err
		}
	}
	t, body := api.FrameType(r.hdr[4]), r.body
	r.hn, r.body, r.bn = 0, nil, 0
	return t, body, nil
}
