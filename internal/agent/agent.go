// Package agent is Ward's compute node: it joins once with a token, then
// holds one long-lived mTLS session to a coordinator, runs the tasks it is
// given, streams their output, and keeps every result until the coordinator
// acknowledges it, so nothing finished is lost across reconnects.
//
// This package must never import the coordinator, the store or the web
// packages; a test enforces it.
package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/profile"
	"github.com/wardcluster/ward/internal/runas"
	"github.com/wardcluster/ward/internal/transport"
)

// maxBufferedOutput bounds the output the agent keeps until the
// coordinator has stored it (while no coordinator is connected, or the
// store is slow). Past it, an attempt's further output is dropped and a
// marker says how much.
const maxBufferedOutput = 16 << 20

// maxOutputFrame bounds the output data in one Output frame, well under
// the coordinator's smallest max_frame_bytes once encoded.
const maxOutputFrame = 1 << 20

// Agent is one running compute node.
type Agent struct {
	cfg   config.Agent
	log   *slog.Logger
	state *stateFile
	src   *identity.Source
	key   crypto.Signer
	pins  []pki.Pin
	exec  Executor
	// runAs maps job users to local accounts (--run-as-user), or nil;
	// account is the agent's own account, which runs tasks otherwise.
	runAs   *runas.Mapper
	account string
	// resultAccounts: the coordinator reads accounts in results (Welcome).
	resultAccounts atomic.Bool

	renewNow chan time.Duration
	// hbInterval is the current heartbeat interval (nanoseconds); the
	// coordinator stretches it with FrameSettings as the fleet grows.
	hbInterval atomic.Int64
	hbChanged  chan struct{}
	renewDone  chan error // set while a renewal awaits its answer (under mu)
	connected  bool       // a session is open (under mu)
	conn       net.Conn   // the current session's connection (under mu)
	// sessionAddr is the coordinator address of the current or last
	// session (under mu): where staged files come from and go to.
	sessionAddr string
	// heard is when the open session last received a frame (monoNow), 0
	// while none is open: work starts only while it is recent
	// (sessionLive, liveness.go). Stored under mu when a session opens.
	heard atomic.Int64

	crl        crlCache
	revocation atomic.Value // string: "checked" or "unavailable"

	// The settings a profile changes (under mu), and the two read without
	// it on their own paths.
	settings    profile.Agent
	profileName string
	profileRev  int64
	killGrace   atomic.Int64 // nanoseconds
	revPolicy   atomic.Value // string

	mu      sync.Mutex
	running map[api.AttemptRef]*attempt // started, starting, or waiting
	waiting []*attempt                  // assigned ahead: start in order as slots free
	held    []launchReq                 // hold slots, start when a session is live again
	used    int                         // slots of the attempts not waiting
	unacked map[api.AttemptRef]api.TaskResult
	// pending is every output chunk the coordinator has not acknowledged,
	// by attempt in order; pendingBytes is their size.
	pending      map[api.AttemptRef][]api.OutputChunk
	pendingBytes int
	out          outbox
	notify       chan struct{}
	drain        bool
	sessions     int // sessions opened, for tests and logs
	// envs are the jobs with a --setup that ran (or runs) here.
	envs map[string]*jobEnv
}

type attempt struct {
	ref   api.AttemptRef
	slots int
	// as is set while the attempt waits for a slot (the coordinator
	// assigned it ahead); nil once it starts.
	as *api.Assignment
	// handle is nil until the executor has it; a kill asked for before
	// then is kept in kill and delivered at once.
	handle Handle
	kill   string
	// held: it holds its slots but waits for a live session to start.
	held bool
}

// outbox holds what the current session's writer must send next.
type outbox struct {
	started    []api.StartedRef
	output     []api.OutputChunk
	dropped    int
	results    []api.TaskResult
	heartbeat  bool
	renew      []byte             // a CSR to send as RenewRequest
	upgradeErr *api.UpgradeResult // why a move to TLS failed
	profile    *api.ProfileResult // the answer to a profile push
}

// Options are the parts of an agent that are not configuration.
type Options struct {
	Logger *slog.Logger
	// Executor runs tasks; nil means real processes.
	Executor Executor
	// Reaper, when set, kills task process groups if the agent dies.
	Reaper *Reaper
	// Keys opens the agent key; nil means the key file in the data dir.
	Keys KeySource
	// JoinString enrolls a data directory that has no identity yet.
	JoinString string
	// UpgradeTLS moves an agent that used the plaintext migration listener
	// to the TLS cluster port for good.
	UpgradeTLS bool
}

// New prepares an agent: it joins first when the data directory has no
// identity, then loads the key (refusing loose permissions), certificate,
// trust bundle and state.
func New(ctx context.Context, cfg config.Agent, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := identity.EnsureDir(cfg.DataDir); err != nil {
		return nil, err
	}
	keys := opts.Keys
	if keys == nil {
		keys = FileKeys{Path: filepath.Join(cfg.DataDir, fileKey)}
	}
	a := &Agent{
		cfg: cfg, log: log, exec: opts.Executor,
		running: map[api.AttemptRef]*attempt{}, unacked: map[api.AttemptRef]api.TaskResult{},
		pending: map[api.AttemptRef][]api.OutputChunk{}, envs: map[string]*jobEnv{},
		notify: make(chan struct{}, 1), renewNow: make(chan time.Duration, 1), hbChanged: make(chan struct{}, 1),
	}
	a.settings = profile.Agent{Slots: cfg.Slots, Labels: cfg.Labels, KillGrace: cfg.KillGrace.D(), RevocationPolicy: cfg.RevocationPolicy}
	a.killGrace.Store(int64(cfg.KillGrace.D()))
	var runAs *runas.Mapper
	if cfg.RunAsUser {
		// Checked before a join, so a misconfigured agent never joins.
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("run_as_user (--run-as-user) needs the agent to run as root: it switches to each task's account before exec (fix: start the agent as root, or drop --run-as-user to run tasks as %s)", runas.Self())
		}
		var err error
		if runAs, err = runas.New(cfg.Name, cfg.UserMapFile, cfg.RunAsAllowRoot); err != nil {
			return nil, err
		}
		if err := CheckStageHelper(); err != nil {
			return nil, err
		}
		if cfg.RunAsAllowRoot {
			log.Warn("INSECURE setting in effect: a Ward user may map to root and run tasks as root", "setting", "run_as_allow_root (--run-as-allow-root)",
				"fix", "map every user to an unprivileged account and drop --run-as-allow-root")
		}
	}
	a.runAs = runAs
	if a.exec == nil {
		a.exec = ProcessExecutor{KillGrace: cfg.KillGrace.D(), Grace: a.killGraceNow, Reaper: opts.Reaper, RunAs: runAs}
	}
	a.account = runas.Self()
	var err error
	var fresh *joined
	switch {
	case Joined(cfg.DataDir):
		if opts.JoinString != "" {
			log.Warn("this data directory already holds a node identity; ignoring the join string", "data", cfg.DataDir)
		}
	case opts.JoinString == "":
		return nil, fmt.Errorf("%s holds no node identity yet: start the agent once with --join-file FILE (the join string from `ward token create`)", cfg.DataDir)
	default:
		jo := &JoinOptions{JoinString: opts.JoinString, Keys: keys, Logger: log}
		if _, err := Join(ctx, cfg, jo); err != nil {
			return nil, explainJoin(err)
		}
		fresh = jo.joined
	}
	if a.state, err = loadState(cfg.DataDir); err != nil {
		return nil, err
	}
	// Scratch directories of staged tasks left by an agent that died: its
	// tasks died with it (they are killed with the agent).
	os.RemoveAll(filepath.Join(cfg.DataDir, "work"))
	os.RemoveAll(filepath.Join(cfg.DataDir, "staging"))
	switch {
	case opts.UpgradeTLS && cfg.InsecurePlaintextCoordinator != "":
		return nil, fmt.Errorf("--upgrade-tls and --insecure-plaintext-coordinator contradict each other: pass one")
	case opts.UpgradeTLS:
		if a.state.PlaintextAddr != "" {
			log.Info("moving this agent from plaintext to TLS for good (--upgrade-tls)", "was", a.state.PlaintextAddr)
		}
		a.state.PlaintextAddr = ""
		if err := saveState(cfg.DataDir, a.state); err != nil {
			return nil, err
		}
	case cfg.InsecurePlaintextCoordinator != "" && cfg.InsecurePlaintextCoordinator != a.state.PlaintextAddr:
		a.state.PlaintextAddr = cfg.InsecurePlaintextCoordinator
		if err := saveState(cfg.DataDir, a.state); err != nil {
			return nil, err
		}
	}
	if a.state.PlaintextAddr != "" {
		log.Warn("INSECURE: this agent's session runs in PLAINTEXT to "+a.state.PlaintextAddr+": it is authenticated by its key but not encrypted (link status NO)",
			"fix", "restart with --upgrade-tls, or have an admin run `ward migrate upgrade`")
	}
	if a.state.KeyStore != "" && a.state.KeyStore != keys.Name() {
		return nil, fmt.Errorf("this node's key is in %q storage (it joined with --key %s); start the agent with --key %s", a.state.KeyStore, a.state.KeyStore, a.state.KeyStore)
	}
	var cred *identity.Credential
	var bundle pki.Bundle
	if fresh != nil {
		// Just joined: use what the join produced instead of reading it back.
		a.key = fresh.key
		cred, bundle = &identity.Credential{Chain: fresh.chain, Key: fresh.key}, fresh.bundle
	} else {
		if a.key, err = keys.Open(); err != nil {
			return nil, err
		}
		if cred, err = identity.LoadChainForKey(filepath.Join(cfg.DataDir, fileCert), a.key); err != nil {
			return nil, err
		}
		bundlePEM, err := os.ReadFile(filepath.Join(cfg.DataDir, fileBundle))
		if err != nil {
			return nil, fmt.Errorf("read trust bundle: %w", err)
		}
		if bundle, err = pki.ParseCertsPEM(bundlePEM); err != nil {
			return nil, fmt.Errorf("read trust bundle %s: %w", filepath.Join(cfg.DataDir, fileBundle), err)
		}
	}
	if a.pins, err = pki.ParsePins(cfg.Pins); err != nil {
		return nil, err
	}
	for _, p := range a.pins {
		if p.Legacy() {
			log.Warn("a SHA-1 pin is in use; SHA-1 is a legacy form", "pin", p.String(), "fix", "pin the CA key instead: `ward ca pin` prints sha256:...")
		}
	}
	if runAs != nil {
		runAs.SetNode(a.state.Node)
		log.Info("tasks run as their submitter's local account", "setting", "run_as_user", "user_map_file", cfg.UserMapFile)
	}
	a.src = identity.NewSource(cred, bundle)
	if fresh != nil && len(fresh.crls) > 0 {
		if crls, err := pki.ParseCRLsPEM(fresh.crls); err == nil {
			a.crl.crls, a.crl.raw = crls, fresh.crls
		}
	} else {
		a.crl.load(cfg.DataDir)
	}
	a.revocation.Store("unknown")
	if cfg.InsecureSkipVerify {
		log.Warn("INSECURE: --insecure-skip-verify is set: the coordinator's certificate is not verified, so the link is encrypted but the coordinator is unauthenticated (link status PARTLY)",
			"fix", "remove --insecure-skip-verify (the trust bundle from the join is all the agent needs)")
	}
	return a, nil
}

// explainJoin turns a join failure into a message with its verdict and fix.
func explainJoin(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return fmt.Errorf("join refused: %w", err)
	}
	var pm *transport.PinMismatchError
	if errors.As(err, &pm) {
		return fmt.Errorf("join stopped before sending anything: %w (fix: check that the join string is for this cluster; get a fresh one with `ward token create`)", pm)
	}
	v := diagnose.Explain(err)
	return fmt.Errorf("join failed: %s: %s (fix: %s): %w", v.Code, v.Message, v.Fix, err)
}

// Node returns the node name.
func (a *Agent) Node() string { return a.state.Node }

// Certificate returns the current leaf certificate.
func (a *Agent) Certificate() *tls.Certificate { return a.src.Certificate() }

func (a *Agent) coordinators() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state.PlaintextAddr != "" {
		return []string{a.state.PlaintextAddr}
	}
	if len(a.cfg.Coordinators) > 0 {
		return a.cfg.Coordinators
	}
	return a.state.ClusterAddrs
}

// learnCoordinators keeps the cluster's coordinator list that every Welcome
// carries (all coordinators of an HA cluster), so the next failover can
// reach any of them, and saves it for the next start. A list given with
// --coordinator wins; a plaintext session keeps its own address.
func (a *Agent) learnCoordinators(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	a.mu.Lock()
	if a.state.PlaintextAddr != "" || slices.Equal(a.state.ClusterAddrs, addrs) {
		a.mu.Unlock()
		return
	}
	a.state.ClusterAddrs = slices.Clone(addrs)
	st := *a.state
	a.mu.Unlock()
	if err := saveState(a.cfg.DataDir, &st); err != nil {
		a.log.Error("record the cluster's coordinators", "err", err)
		return
	}
	a.log.Info("the cluster's coordinators", "addrs", strings.Join(addrs, ","))
}

func (a *Agent) plaintext() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.PlaintextAddr != ""
}

// errFatal marks session errors that retrying cannot fix.
type errFatal struct{ err error }

func (e errFatal) Error() string { return e.err.Error() }
func (e errFatal) Unwrap() error { return e.err }

// Run keeps a session to one of the coordinators until ctx ends, failing
// over between them with jittered exponential backoff. Tasks keep running
// while no coordinator is reachable.
func (a *Agent) Run(ctx context.Context) error {
	if len(a.coordinators()) == 0 {
		return errors.New("no coordinator address is known: pass --coordinator HOST:PORT")
	}
	if a.crl.stale(time.Now()) {
		if err := a.refreshCRLs(ctx); err != nil {
			a.log.Warn("cannot fetch the cluster CRL", "err", err, "policy", a.revocationPolicy())
		}
	}
	go a.crlLoop(ctx)
	go a.renewLoop(ctx)
	if closer, ok := a.key.(interface{ Close() error }); ok {
		defer closer.Close()
	}
	backoff := 250 * time.Millisecond
	for i := 0; ctx.Err() == nil; i++ {
		addrs := a.coordinators()
		addr := addrs[i%len(addrs)]
		start := time.Now()
		if !time.Now().Before(a.src.Leaf().NotAfter) {
			a.log.Warn("this node's certificate expired while it was away; renewing it through the grace window", "expired", a.src.Leaf().NotAfter.UTC().Format(time.RFC3339))
			if err := a.heal(ctx); err != nil {
				var fe errFatal
				if errors.As(err, &fe) {
					a.log.Error("agent stopping", "err", err)
					return err
				}
				a.log.Warn("heal failed; retrying", "err", err)
			}
		}
		err := a.session(ctx, addr)
		if ctx.Err() != nil {
			break
		}
		var fe errFatal
		if errors.As(err, &fe) {
			a.log.Error("agent stopping", "err", err)
			return err
		}
		if err != nil && !isSessionError(err) {
			// The handshake failed: was this node revoked?
			a.refreshCRLs(ctx)
			if rerr := a.ownCertRevoked(); rerr != nil {
				err := errFatal{fmt.Errorf("this node's certificate is revoked, so the cluster refuses it: %v (fix: join again with a new token after an admin allows it)", rerr)}
				a.log.Error("agent stopping", "err", err)
				return err
			}
			if v := diagnose.Explain(err); v.Code == diagnose.CodeClientCertRejected {
				// The cluster no longer accepts our certificate although it
				// is not revoked: its CA was retired while we were away.
				a.log.Warn("the coordinator rejected this node's certificate; trying to renew it through the public port", "verdict", string(v.Code))
				if herr := a.heal(ctx); herr != nil {
					var fe errFatal
					if errors.As(herr, &fe) {
						a.log.Error("agent stopping", "err", herr)
						return herr
					}
				} else {
					continue
				}
			}
		}
		if time.Since(start) > 30*time.Second {
			backoff = 250 * time.Millisecond
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		var silent silentError
		var stalled stalledError
		switch {
		case errors.As(err, &stalled):
			a.log.Warn("session given up after a stall; reconnecting", "addr", addr, "gap", stalled.gap.Round(time.Millisecond).String(), "liveness_timeout", stalled.timeout.String(),
				"reason", err.Error(), "fix", "if this repeats without anyone stopping the agent, its host is starved of CPU or memory: check the host's load", "retry_in", wait.Round(time.Millisecond).String())
		case errors.As(err, &silent):
			a.log.Warn("coordinator went silent; reconnecting", "addr", addr, "silent_for", silent.silent.String(), "heartbeat", silent.interval.String(),
				"fix", "if this repeats, something between this host and the coordinator drops the connection, or the coordinator is overloaded: `ward doctor` lists agents that reconnect repeatedly, and the coordinator's log says how their sessions ended",
				"retry_in", wait.Round(time.Millisecond).String())
		case err != nil:
			v := diagnose.Explain(err)
			a.log.Warn("cannot reach coordinator", "addr", addr, "verdict", string(v.Code), "reason", v.Message, "fix", v.Fix, "err", err.Error(), "retry_in", wait.Round(time.Millisecond).String())
		default:
			a.log.Info("session ended; reconnecting", "addr", addr, "retry_in", wait.Round(time.Millisecond).String())
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
	a.killAll(api.EndCanceled)
	return nil
}

// killAll stops every running attempt and drops the waiting ones (at
// shutdown).
func (a *Agent) killAll(reason string) {
	a.mu.Lock()
	refs := make([]api.AttemptRef, 0, len(a.running))
	for r := range a.running {
		refs = append(refs, r)
	}
	a.mu.Unlock()
	a.cancel(refs, reason, false)
}

// Running returns the attempts running now, in a stable order.
func (a *Agent) Running() []api.AttemptRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runningLocked()
}

func (a *Agent) runningLocked() []api.AttemptRef {
	out := make([]api.AttemptRef, 0, len(a.running))
	for r := range a.running {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Job != out[j].Job {
			return out[i].Job < out[j].Job
		}
		return out[i].Task < out[j].Task
	})
	return out
}

func (a *Agent) wake() {
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// clientTLS is the agent's mTLS client configuration for addr, speaking
// the protocol proto.
func (a *Agent) clientTLS(addr, proto string) *tls.Config {
	cfg := transport.ClientConfig(a.src, transport.ClientOptions{
		Cluster: a.state.Cluster, ServerName: transport.HostOf(addr), Pins: a.pins, NextProtos: []string{proto},
		Revoked: a.checkServer,
	})
	if a.cfg.InsecureSkipVerify {
		// Encrypted, not authenticated: shown as PARTLY on both sides.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = nil
		if len(a.pins) > 0 {
			pins := a.pins
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if _, ok := pki.MatchAny(pins, cs.PeerCertificates); !ok {
					return &transport.PinMismatchError{Expected: pins, Chain: cs.PeerCertificates}
				}
				return nil
			}
		}
	}
	return cfg
}

// dial opens an mTLS connection to addr for the agent protocol.
func (a *Agent) dial(ctx context.Context, addr string) (*tls.Conn, error) {
	cfg := a.clientTLS(addr, transport.ALPNAgent)
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}, Config: cfg}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := conn.(*tls.Conn)
	if tc.ConnectionState().NegotiatedProtocol != transport.ALPNAgent {
		tc.Close()
		return nil, fmt.Errorf("%s does not speak the Ward agent protocol (ALPN %q): is it a Ward coordinator's cluster port?", addr, tc.ConnectionState().NegotiatedProtocol)
	}
	return tc, nil
}

// isSessionError reports whether err came after a session was open (so the
// handshake succeeded).
func isSessionError(err error) bool {
	var se sessionErr
	return errors.As(err, &se)
}

// sessionErr wraps errors from an open session.
type sessionErr struct{ err error }

func (e sessionErr) Error() string { return e.err.Error() }
func (e sessionErr) Unwrap() error { return e.err }
