package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// ceilings are the crypto-bound rates every other figure is compared with.
// All are measured with client and server in this process on this
// machine's cores, as the load generator and in-process coordinator are.
type ceilings struct {
	MTLS     float64 // full mTLS 1.3 handshakes/s, cluster-port settings
	Public   float64 // server-auth handshakes/s, public-port settings (the join path)
	CSR      float64 // CSR checks + certificate issues/s
	TCP      float64 // plaintext twin: TCP connect+accept+close/s
	Curve    string
	Measured time.Duration
	// CPU time per operation, client and server together.
	MTLSCPU, PublicCPU, TCPCPU time.Duration
}

// join is the ceiling on joins/s: one public handshake and one CSR per join.
func (c *ceilings) join() float64 { return 1 / (1/c.Public + 1/c.CSR) }

// enroll is the ceiling on agents joined and connected per second: a
// public handshake, a CSR, then a full mTLS handshake.
func (c *ceilings) enroll() float64 { return 1 / (1/c.Public + 1/c.CSR + 1/c.MTLS) }

var (
	ceilMu    sync.Mutex
	ceilCache *ceilings
)

// getCeilings returns the crypto-limit figures, measuring them (briefly)
// when crypto-limit has not run in this invocation.
func getCeilings(ctx context.Context, r *Result) (*ceilings, error) {
	ceilMu.Lock()
	defer ceilMu.Unlock()
	if ceilCache != nil {
		return ceilCache, nil
	}
	progress("measuring the crypto ceiling first (crypto-limit did not run in this invocation)")
	c, err := measureCeilings(ctx, time.Second)
	if err != nil {
		return nil, err
	}
	if r != nil {
		r.note("the crypto ceiling was measured for 1s per figure because crypto-limit did not run first")
	}
	ceilCache = c
	return c, nil
}

func runCryptoLimit(ctx context.Context, r *Result) error {
	c, err := measureCeilings(ctx, opts.cryptoDur)
	if err != nil {
		return err
	}
	ceilMu.Lock()
	ceilCache = c
	ceilMu.Unlock()
	r.param("time_per_figure", opts.cryptoDur.String())
	r.param("client_workers", handshakeWorkers())
	r.param("tls", "1.3, transport.ClusterServerConfig / ClientConfig (cluster port), PublicServerConfig / enroll.PinnedConfig (public port)")
	r.param("key_exchange", c.Curve)
	r.param("ca", "pki.NewRootCA + NewIssuingCA (ECDSA P-256)")
	r.fig("mtls_handshakes_per_s", round(c.MTLS, 0), "/s").ratio(c.TCP, "tcp_connects_per_s").
		withNote("full handshakes, client and server in this process")
	r.fig("public_handshakes_per_s", round(c.Public, 0), "/s").ratio(c.TCP, "tcp_connects_per_s").
		withNote("server-auth only: the join path")
	r.fig("mtls_cpu_us_per_handshake", round(float64(c.MTLSCPU)/1e3, 0), "µs").withNote("client + server CPU")
	r.fig("public_cpu_us_per_handshake", round(float64(c.PublicCPU)/1e3, 0), "µs").withNote("client + server CPU")
	r.fig("csr_signatures_per_s", round(c.CSR, 0), "/s").withNote("pki.CheckCSR + Issuer.Issue")
	r.fig("tcp_connects_per_s", round(c.TCP, 0), "/s").withNote("plaintext twin: connect, accept, close")
	r.fig("join_ceiling_per_s", round(c.join(), 0), "/s").withNote("1 / (1/public + 1/csr)")
	r.fig("enroll_ceiling_per_s", round(c.enroll(), 0), "/s").withNote("1 / (1/public + 1/csr + 1/mtls)")
	fs, err := measureFsync(os.TempDir(), 500)
	if err != nil {
		return fmt.Errorf("fsync latency in %s: %w", os.TempDir(), err)
	}
	us := func(d time.Duration) float64 { return round(float64(d)/1e3, 0) }
	r.fig("fsync_p50_us", us(fs.IdleP50), "µs").withNote("fdatasync of a 4 KiB page where the store lives, idle")
	r.fig("fsync_p99_us", us(fs.IdleP99), "µs")
	r.fig("fsync_busy_p50_us", us(fs.BusyP50), "µs").withNote("the same while one thread per core spins: the wake-up after I/O waits for a core")
	r.fig("fsync_busy_p99_us", us(fs.BusyP99), "µs").withNote("a store commit has two; a task crosses up to three commits")
	return nil
}

func handshakeWorkers() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_HS_WORKERS")); err == nil {
		return v
	}
	return 4 * runtime.GOMAXPROCS(0)
}

func measureCeilings(ctx context.Context, d time.Duration) (*ceilings, error) {
	cl, err := newTestPKI("bench")
	if err != nil {
		return nil, err
	}
	out := &ceilings{Measured: d}

	serverSrc, err := cl.source(pki.RoleCoordinator, "coordinator")
	if err != nil {
		return nil, err
	}
	clientSrc, err := cl.source(pki.RoleAgent, "agent-0")
	if err != nil {
		return nil, err
	}
	sopt := transport.ServerOptions{Cluster: cl.cluster, MinVersion: tls.VersionTLS13, Revoked: transport.NewRevocationSet()}

	// Full mTLS: the cluster port's config against an agent's.
	var curve atomic.Value
	mtlsClient := func() *tls.Config {
		return transport.ClientConfig(clientSrc, transport.ClientOptions{
			Cluster: cl.cluster, ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNAgent},
		})
	}
	out.MTLS, out.MTLSCPU, err = handshakeRate(ctx, d, transport.ClusterServerConfig(serverSrc, sopt), mtlsClient, &curve)
	if err != nil {
		return nil, fmt.Errorf("mTLS handshakes: %w", err)
	}
	if v, ok := curve.Load().(tls.CurveID); ok {
		out.Curve = v.String()
	}
	// Public port: server auth only, the agent pinning the CA as a join does.
	pins := []pki.Pin{pki.SPKIPin(cl.root.Cert)}
	out.Public, out.PublicCPU, err = handshakeRate(ctx, d, transport.PublicServerConfig(serverSrc, sopt), func() *tls.Config {
		return enroll.PinnedConfig(pins, "127.0.0.1")
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("public handshakes: %w", err)
	}
	out.TCP, out.TCPCPU, err = handshakeRate(ctx, d, nil, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("tcp connects: %w", err)
	}
	out.CSR, err = csrRate(ctx, d, cl)
	if err != nil {
		return nil, fmt.Errorf("CSR signatures: %w", err)
	}
	return out, nil
}

// testPKI is a real two-level Ward CA made in memory.
type testPKI struct {
	cluster string
	root    *pki.CA
	issuer  *pki.Issuer
}

func newTestPKI(cluster string) (*testPKI, error) {
	now := time.Now()
	root, err := pki.NewRootCA(cluster, now, pki.RootLifetime)
	if err != nil {
		return nil, err
	}
	iss, err := pki.NewIssuingCA(root, cluster, 1, now, pki.IssuingLifetime)
	if err != nil {
		return nil, err
	}
	return &testPKI{cluster: cluster, root: root, issuer: &pki.Issuer{CA: iss, Chain: []*x509.Certificate{iss.Cert, root.Cert}}}, nil
}

// source issues a leaf for role/name and wraps it as the TLS callbacks'
// source, trusting the root.
func (t *testPKI) source(role pki.Role, name string) (*identity.Source, error) {
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	spec := pki.LeafSpec{ID: pki.ID{Cluster: t.cluster, Role: role, Name: name}, PublicKey: key.Public(), Lifetime: 24 * time.Hour}
	if role == pki.RoleCoordinator {
		spec.DNSNames = []string{"localhost"}
		spec.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	cert, err := t.issuer.Issue(spec, time.Now())
	if err != nil {
		return nil, err
	}
	chain := []*x509.Certificate{cert, t.issuer.CA.Cert}
	if role == pki.RoleCoordinator {
		// The coordinator serves the root too, so a joining agent can
		// match its pin (as coordinator.servedChainWith does).
		chain = append(chain, t.root.Cert)
	}
	cred := &identity.Credential{Chain: chain, Key: key}
	return identity.NewSource(cred, pki.Bundle{t.root.Cert}), nil
}

// handshakeRate counts complete handshakes per second, each on a fresh TCP
// connection over loopback with no session resumption, with the client
// workers and the server in this process. With server == nil it counts
// plain TCP connections instead (the plaintext twin).
func handshakeRate(ctx context.Context, d time.Duration, server *tls.Config, client func() *tls.Config, curve *atomic.Value) (float64, time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	var done atomic.Int64
	var failures atomic.Int64
	var lastErr atomic.Value
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				if server == nil {
					done.Add(1)
					return
				}
				tc := tls.Server(raw, server)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					failures.Add(1)
					lastErr.Store(errBox{err})
					return
				}
				done.Add(1)
				tc.Close()
			}()
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	addr := ln.Addr().String()
	src := newSrcPool(0, 2, 250)
	for range handshakeWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cfg *tls.Config
			if client != nil {
				cfg = client()
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				raw, err := src.dialer(5*time.Second).Dial("tcp", addr)
				if err != nil {
					failures.Add(1)
					lastErr.Store(errBox{err})
					time.Sleep(time.Millisecond)
					continue
				}
				if cfg == nil {
					raw.Close()
					continue
				}
				tc := tls.Client(raw, cfg)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					failures.Add(1)
					lastErr.Store(errBox{err})
				} else if curve != nil {
					curve.Store(tc.ConnectionState().CurveID)
				}
				tc.Close()
			}
		}()
	}
	// Warm up, then count over d.
	select {
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
	}
	n0, t0, cpu0 := done.Load(), time.Now(), processCPU()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	n1, el, cpu1 := done.Load(), time.Since(t0), processCPU()
	close(stop)
	wg.Wait()
	if f := failures.Load(); f > 0 && n1 == 0 {
		return 0, 0, fmt.Errorf("%d handshakes failed: %v", f, lastErr.Load())
	}
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	if n1 == n0 {
		return 0, 0, fmt.Errorf("no handshake completed in %s", d)
	}
	return float64(n1-n0) / el.Seconds(), (cpu1 - cpu0) / time.Duration(n1-n0), nil
}

// csrRate counts CSR checks + issues per second with one worker per core.
func csrRate(ctx context.Context, d time.Duration, t *testPKI) (float64, error) {
	type req struct {
		der []byte
		id  pki.ID
	}
	reqs := make([]req, 64)
	for i := range reqs {
		key, err := pki.GenerateKey()
		if err != nil {
			return 0, err
		}
		id := pki.ID{Cluster: t.cluster, Role: pki.RoleAgent, Name: fmt.Sprintf("n%03d", i)}
		der, err := enroll.CreateCSR(key, id)
		if err != nil {
			return 0, err
		}
		reqs[i] = req{der, id}
	}
	var done atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rq := reqs[i%len(reqs)]
				csr, err := pki.CheckCSR(rq.der, pki.CSRPolicy{ID: rq.id})
				if err == nil {
					_, err = t.issuer.Issue(pki.LeafSpec{ID: rq.id, PublicKey: csr.PublicKey, Lifetime: 24 * time.Hour}, time.Now())
				}
				if err != nil {
					firstErr.Store(errBox{err})
					return
				}
				done.Add(1)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	n0, t0 := done.Load(), time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	n1, el := done.Load(), time.Since(t0)
	close(stop)
	wg.Wait()
	if e, ok := firstErr.Load().(errBox); ok {
		return 0, e.err
	}
	return float64(n1-n0) / el.Seconds(), nil
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// errBox lets errors of different types share an atomic.Value.
type errBox struct{ err error }

func (e errBox) String() string { return fmt.Sprint(e.err) }
