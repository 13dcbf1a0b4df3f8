package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/agent"
	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/coordinator"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/transport"
)

// inproc is a coordinator running in this process on loopback ports, with
// its data directory (and fsync'd store) in a temp dir.
type inproc struct {
	dir     string
	c       *coordinator.Coordinator
	cfg     config.Coordinator
	cancel  context.CancelFunc
	done    chan error
	logFile *os.File
	admin   *adminAPI
	// proc is set instead of c when the coordinator runs as a `ward
	// coordinator` process (-coord-process).
	proc      *coordProc
	plainAddr string
}

// startCoordinatorFor starts the coordinator a scenario measures: in this
// process, or with -coord-process as a separate `ward coordinator` process,
// so that its Go runtime schedules only its own goroutines, as on a head
// node, and not the simulated agents' and the load generator's too.
// plaintext opens the plaintext migration listener on loopback.
func startCoordinatorFor(ctx context.Context, r *Result, name string, plaintext bool) (*inproc, error) {
	if !opts.coordProcess {
		r.param("coordinator", "in this process (coordinator.New + Serve)")
		return startCoordinator(ctx, name, func(cfg *config.Coordinator) {
			raiseJoinLimit(cfg)
			if plaintext {
				cfg.PlaintextAddr = "127.0.0.1:0"
			}
		})
	}
	r.param("coordinator", "a separate `ward coordinator` process (-coord-process)")
	bin, err := wardBinary(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ward-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	p := &inproc{dir: dir}
	var extra []string
	if plaintext {
		if p.plainAddr, err = freeLoopbackAddr(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		extra = append(extra, "--plaintext-addr", p.plainAddr)
	}
	if p.proc, err = startCoordinatorProcess(ctx, bin, dir, extra...); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	debugf("%s: coordinator pid %d, log %s", name, p.proc.cmd.Process.Pid, p.proc.stderr)
	return p.connectAdmin(ctx, p.proc.contextPath)
}

// connectAdmin opens the admin API client and waits until the coordinator
// answers; on failure it stops the coordinator.
func (p *inproc) connectAdmin(ctx context.Context, contextPath string) (*inproc, error) {
	var err error
	if p.admin, err = newAdminAPI(contextPath); err == nil {
		err = p.admin.waitReady(ctx, 20*time.Second)
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// plaintextAddr is the coordinator's plaintext migration listener.
func (p *inproc) plaintextAddr() string {
	if p.c != nil {
		return p.c.PlaintextAddr()
	}
	return p.plainAddr
}

var (
	wardBinMu   sync.Mutex
	wardBinPath string
)

// wardBinary builds the ward binary once per run, into a temp dir that
// is removed when every scenario has finished.
func wardBinary(ctx context.Context) (string, error) {
	wardBinMu.Lock()
	defer wardBinMu.Unlock()
	if wardBinPath != "" {
		return wardBinPath, nil
	}
	dir, err := os.MkdirTemp("", "ward-bench-bin-")
	if err != nil {
		return "", err
	}
	progress("building ward for the coordinator process")
	bin, err := buildWard(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	wardBinPath = bin
	atExit(func() { os.RemoveAll(dir) })
	return bin, nil
}

// startCoordinator runs coordinator.New and Serve with Ward's defaults on
// 127.0.0.1, after mutate has adjusted the config.
func startCoordinator(ctx context.Context, name string, mutate func(*config.Coordinator)) (*inproc, error) {
	dir, err := os.MkdirTemp("", "ward-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	p := &inproc{dir: dir, done: make(chan error, 1)}
	cfg := config.CoordinatorDefaults()
	cfg.DataDir = filepath.Join(dir, "coordinator")
	cfg.ClusterAddr = "127.0.0.1:0"
	cfg.PublicAddr = "127.0.0.1:0"
	cfg.Advertise = []string{"127.0.0.1"}
	if mutate != nil {
		mutate(&cfg)
	}
	if cfg.StoreNoSync {
		return nil, fmt.Errorf("benchmarks run with a durable store (fsync on); StoreNoSync is refused")
	}
	p.cfg = cfg
	if p.logFile, err = os.Create(filepath.Join(dir, "coordinator.log")); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(p.logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if p.c, err = coordinator.New(cfg, coordinator.Options{Logger: log}); err != nil {
		p.logFile.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	debugf("%s: coordinator log %s", name, p.logFile.Name())
	sctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- p.c.Serve(sctx) }()
	return p.connectAdmin(ctx, p.c.ContextPath())
}

// stop ends Serve, waits for it and removes the temp dir.
func (p *inproc) stop() error {
	var err error
	if p.proc != nil {
		p.proc.stop()
	} else {
		p.cancel()
		select {
		case err = <-p.done:
		case <-time.After(30 * time.Second):
			err = fmt.Errorf("coordinator did not stop within 30s")
		}
		p.logFile.Close()
	}
	if p.admin != nil {
		p.admin.close()
	}
	if !opts.keep {
		os.RemoveAll(p.dir)
	} else {
		progress("kept %s", p.dir)
	}
	return err
}

// joinStrings creates enough join tokens for n joins (each token allows at
// most 10,000 uses) and returns the join string to use for join i.
func (p *inproc) joinStrings(ctx context.Context, n int) (func(i int) string, error) {
	const perToken = 10000
	var js []string
	for left := n; left > 0; left -= perToken {
		req := api.TokenCreate{TTL: api.Duration(2 * time.Hour), Uses: min(left, perToken)}
		var tc api.TokenCreated
		var err error
		if p.c != nil {
			tc, err = p.c.CreateToken(ctx, p.c.LocalAdmin(), req)
		} else {
			err = p.admin.do(ctx, http.MethodPost, "/v1/tokens", req, &tc)
		}
		if err != nil {
			return nil, err
		}
		js = append(js, tc.Join)
	}
	return func(i int) string { return js[i/perToken] }, nil
}

// adminAPI is an HTTP client on the cluster port presenting the admin
// context's certificate, built as the CLI builds it.
type adminAPI struct {
	client  *http.Client
	base    string
	cluster string
}

func newAdminAPI(contextPath string) (*adminAPI, error) {
	ctx, err := config.LoadContext(contextPath)
	if err != nil {
		return nil, err
	}
	cred, bundle, pins, err := ctx.Credential()
	if err != nil {
		return nil, err
	}
	src := identity.NewSource(cred, bundle)
	cfg := transport.ClientConfig(src, transport.ClientOptions{
		Cluster: ctx.Cluster, ServerName: transport.HostOf(ctx.Server), Pins: pins, NextProtos: []string{transport.ALPNHTTP},
	})
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	return &adminAPI{client: &http.Client{Transport: tr}, base: "https://" + ctx.Server, cluster: ctx.Cluster}, nil
}

func (a *adminAPI) close() { a.client.CloseIdleConnections() }

// do sends a JSON request and decodes the JSON answer; a non-2xx answer
// becomes its *api.Error.
func (a *adminAPI) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer closeBody(resp)
	if resp.StatusCode/100 != 2 {
		var eb api.ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
			return eb.Error
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (a *adminAPI) status(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := a.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

func (a *adminAPI) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := a.status(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("coordinator did not answer /v1/status: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitConnected polls /v1/status until n agents have a session.
func (a *adminAPI) waitConnected(ctx context.Context, n int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		st, err := a.status(ctx)
		if err == nil && st.Connected >= n {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("%d of %d agents connected after %s (last error: %v)", st.Connected, n, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// submit posts a job and returns it.
func (a *adminAPI) submit(ctx context.Context, spec api.JobSpec) (api.Job, error) {
	var j api.Job
	err := a.do(ctx, http.MethodPost, "/v1/jobs", spec, &j)
	return j, err
}

// waitJobEnd follows a job's log stream until its last line (End) and
// returns the job's final state. It returns at once for a finished job.
func (a *adminAPI) waitJobEnd(ctx context.Context, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/v1/jobs/"+id+"/logs?follow=1", nil)
	if err != nil {
		return "", err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("follow job %s: %s", id, resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ch api.LogChunk
		if err := dec.Decode(&ch); err != nil {
			return "", fmt.Errorf("follow job %s: %w", id, err)
		}
		if ch.End {
			return ch.JobState, nil
		}
	}
}

func (a *adminAPI) jobDetail(ctx context.Context, id string) (api.JobDetail, error) {
	var d api.JobDetail
	err := a.do(ctx, http.MethodGet, "/v1/jobs/"+id, nil, &d)
	return d, err
}

// noopExec is the load generator's executor: every attempt starts and exits
// with code 0 at once.
type noopExec struct{}

type noopHandle struct{}

func (noopHandle) Kill(string) {}

func (noopExec) Run(a api.Assignment, r agent.Reporter) agent.Handle {
	now := time.Now()
	r.Started(now)
	r.Exited(api.TaskResult{AttemptRef: a.AttemptRef, ExitCode: 0, Reason: api.EndExited, Started: api.NanosOf(now), Ended: api.NanosOf(now)})
	return noopHandle{}
}

// agentFleet is real agent.Agent instances joined to one coordinator and
// running in this process.
type agentFleet struct {
	agents []*agent.Agent
	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    *os.File
	dir    string
	cfgs   []config.Agent
	logger *slog.Logger
}

// joinAgents creates n real agents (each joins with its own key and CSR,
// writing its data dir under a temp dir in -agent-dir) with conc joins at
// once.
func joinAgents(ctx context.Context, p *inproc, prefix string, n, slots, conc int, exec agent.Executor, mutate ...func(*config.Agent)) (*agentFleet, error) {
	js, err := p.joinStrings(ctx, n)
	if err != nil {
		return nil, err
	}
	f := &agentFleet{agents: make([]*agent.Agent, n)}
	if f.dir, err = os.MkdirTemp(opts.agentDir, "ward-bench-agents-"); err != nil {
		return nil, err
	}
	dir := f.dir
	if f.log, err = os.Create(filepath.Join(dir, "agents.log")); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f.logger = log
	f.cfgs = make([]config.Agent, n)
	err = parallel(ctx, n, conc, func(i int) error {
		cfg := config.AgentDefaults()
		cfg.DataDir = filepath.Join(dir, "agents", fmt.Sprintf("%s%05d", prefix, i))
		cfg.Name = fmt.Sprintf("%s%05d", prefix, i)
		if slots > 0 {
			cfg.Slots = slots
		}
		cfg.KillGrace = config.Duration(2 * time.Second)
		for _, m := range mutate {
			m(&cfg)
		}
		a, err := agent.New(ctx, cfg, agent.Options{Executor: exec, JoinString: js(i), Logger: log})
		if err != nil {
			return fmt.Errorf("agent %s: %w", cfg.Name, err)
		}
		f.agents[i], f.cfgs[i] = a, cfg
		return nil
	})
	if err != nil {
		f.log.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return f, nil
}

// run starts every agent's session loop.
func (f *agentFleet) run() {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for _, a := range f.agents {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); a.Run(ctx) }()
	}
}

func (f *agentFleet) stop() { f.stop2(true) }

// stop2 stops every agent; with cleanup it also closes the log and
// removes the data dirs.
func (f *agentFleet) stop2(cleanup bool) {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	if !cleanup {
		return
	}
	f.log.Close()
	if !opts.keep {
		os.RemoveAll(f.dir)
	}
}

// reopen starts new agent.Agent instances from the same data dirs (no
// join: the identity on disk), as a restarted `ward agent` would.
func (f *agentFleet) reopen(ctx context.Context, exec agent.Executor) (*agentFleet, error) {
	g := &agentFleet{agents: make([]*agent.Agent, len(f.agents)), log: f.log, dir: f.dir, cfgs: f.cfgs, logger: f.logger}
	for i, cfg := range f.cfgs {
		a, err := agent.New(ctx, cfg, agent.Options{Executor: exec, Logger: f.logger})
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", cfg.Name, err)
		}
		g.agents[i] = a
	}
	return g, nil
}

// parallel runs fn(0..n-1) with conc workers and returns the first error.
func parallel(ctx context.Context, n, conc int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	conc = max(1, min(conc, n))
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= n || ctx.Err() != nil {
					if first == nil && ctx.Err() != nil {
						first = ctx.Err()
					}
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// closeBody reads what is left of a response and closes it: only a body
// read to EOF lets the Transport reuse the connection, and every new
// connection is a full mTLS handshake that would load the coordinator
// with the harness's own overhead.
func closeBody(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
}

// scenarioDir makes a scenario's temp dir; done removes it (or, with
// -keep, says where it is).
func scenarioDir(name string) (dir string, done func(), err error) {
	dir, err = os.MkdirTemp("", "ward-bench-"+name+"-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() {
		if !opts.keep {
			os.RemoveAll(dir)
		} else {
			progress("kept %s", dir)
		}
	}, nil
}
