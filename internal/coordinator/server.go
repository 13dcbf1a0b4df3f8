// Package coordinator is Ward's head node: the certificate authority, the
// listeners, agent sessions, the scheduler wired to the durable store, and
// the HTTP API.
package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/connlimit"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/leader"
	"github.com/wardcluster/ward/internal/logging"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/ratelimit"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/storehealth"
	"github.com/wardcluster/ward/internal/telemetry"
	"github.com/wardcluster/ward/internal/transport"
	"github.com/wardcluster/ward/internal/web"
)

// Coordinator is one running head node.
type Coordinator struct {
	cfg config.Coordinator
	log *slog.Logger
	// connLevel is the level of per-connection and per-session lines
	// (connection_log_level).
	connLevel slog.Level
	// recentLogs holds the last log lines for support bundles (nil: none).
	recentLogs *logging.Ring
	started    time.Time
	audit      *audit.Log
	st         store.Store
	backend    storeBackend
	journal    *journal
	// health is whether the store writes; while it does not, new work is
	// refused with STORE_UNAVAILABLE (storeavail.go).
	health  *storehealth.Monitor
	ca      *caState
	revoked *transport.RevocationSet
	live    liveConns
	// routes is every registered API route with its action (routes.go).
	routesMu sync.Mutex
	routes   []apiRoute
	metrics  *telemetry.Metrics
	// joinPerSource and joinGlobal limit join and heal attempts per source
	// address and from all addresses together.
	joinPerSource, joinGlobal *ratelimit.Buckets
	console                   *web.Server // the web admin console; nil when turned off

	// tokMu guards tokens, the join tokens: the authority for joins,
	// persisted through the journal. Lock order: tokMu, then mu.
	tokMu  sync.Mutex
	tokens map[string]*tokenRecord
	// userMu guards users (users.go), persisted through the journal.
	userMu sync.Mutex
	users  map[string]*userRecord
	// adminUses is where the admin credential was used from (doctor).
	adminUses adminUse
	now       func() time.Time

	clusterLn, publicLn net.Listener
	clusterTLS          *tls.Config
	publicTLS           *tls.Config
	clusterHTTP         *http.Server
	publicHTTP          *http.Server
	clusterConns        *connQueue
	publicConns         *connQueue
	relay               relayMux // relayed agent sessions, both sides (follower.go)
	// The listeners' caps on unauthenticated peers; publicTracked maps a
	// public connection to its gate entry for the HTTP server's states.
	publicGate, clusterGate, plainGate *connlimit.Gate
	publicTracked                      sync.Map // *tls.Conn → *connlimit.Conn
	limitLog                           rateLog
	plain                              plaintextListener
	serveCtx                           context.Context

	// mu guards the job system's state: everything below it.
	mu         sync.Mutex
	cl         *sched.Cluster
	nodes      map[string]*nodeRecord
	sessions   map[string]*session
	lostTimers map[string]*time.Timer
	histories  map[string]*sessionHistory // recent sessions per node, for doctor
	hbSpacing  time.Duration              // heartbeatSpacing; a test widens it to force a stretch
	jobSeq     uint64
	// maint is the maintenance mode, read without c.mu on every
	// submission; changes are made under c.mu.
	maint    atomic.Pointer[api.Maintenance]
	outputs  map[outputKey]*outputState
	files    *fileStaging
	profiles map[string]*api.Profile
	subs     map[string]map[*logSub]struct{}

	// lineage is held shared by a renewal from its check of the old
	// certificate through the commit of the new one, and exclusively by a
	// revocation, so no renewal slips past the revocation of its parent.
	lineage sync.RWMutex

	crlMu   sync.Mutex    // serializes CRL rebuilds
	crlKick chan struct{} // asks crlLoop for a rebuild now
	crls    atomic.Pointer[map[string]*crlState]

	caPass []byte   // decrypts (and encrypts) CA keys at rest; nil: plain
	keeper caKeeper // where the CA generations live

	// The control plane (ha.go): this coordinator's membership, its term
	// while it leads, and whether the job system is in memory.
	member  *leader.Membership
	term    atomic.Pointer[leader.Term]
	tracker *leader.Tracker // who leads, on etcd (nil on bolt)
	// peers is every live coordinator's addresses (etcd).
	peers atomic.Pointer[peerList]
	// holding: the job system is in memory and this coordinator serves it
	// (it leads, or campaigns to lead on after its lease lapsed); leading:
	// it may place now.
	holding atomic.Bool
	leading atomic.Bool
	// heldCh is closed once holding is set (follower.go: held).
	heldCh              chan struct{}
	heldInit, heldClose sync.Once
	restored            bool

	kick         chan struct{}
	pendingCerts []certRecord
	fatalOnce    sync.Once
	fatal        chan error
	contextPath  string
	wg           sync.WaitGroup
	cancel       context.CancelFunc
}

// Options are the parts of a coordinator that are not configuration.
type Options struct {
	Logger *slog.Logger
	// RecentLogs, when set, is the ring the logger also writes to; support
	// bundles (GET /v1/debug/info) include its last lines.
	RecentLogs *logging.Ring
}

// New opens the data directory, creates or loads the CA, restores the job
// system from the store and binds both listeners. Serve starts the work.
func New(cfg config.Coordinator, opts Options) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	minTLS, err := transport.ParseMinVersion(cfg.MinTLS)
	if err != nil {
		return nil, err
	}
	connLevel, err := logging.ParseLevel(cfg.ConnectionLogLevel)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:           cfg,
		log:           log,
		connLevel:     connLevel,
		started:       time.Now(),
		recentLogs:    opts.RecentLogs,
		revoked:       transport.NewRevocationSet(),
		joinPerSource: ratelimit.New(cfg.JoinRate, cfg.JoinBurst),
		joinGlobal:    ratelimit.New(cfg.JoinGlobalRate, cfg.JoinGlobalBurst),
		now:           time.Now,
		cl:            sched.NewCluster(cfg.AgingStep.D()),
		nodes:         map[string]*nodeRecord{},
		tokens:        map[string]*tokenRecord{},
		users:         map[string]*userRecord{},
		sessions:      map[string]*session{},
		lostTimers:    map[string]*time.Timer{},
		histories:     map[string]*sessionHistory{},
		hbSpacing:     heartbeatSpacing,
		outputs:       map[outputKey]*outputState{},
		profiles:      map[string]*api.Profile{},
		subs:          map[string]map[*logSub]struct{}{},
		kick:          make(chan struct{}, 1),
		crlKick:       make(chan struct{}, 1),
		fatal:         make(chan error, 1),
	}
	c.cl.PrefetchBelow = cfg.PrefetchBelow.D()
	if err := ensureDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if c.files, err = newFileStaging(c.path("staging")); err != nil {
		return nil, err
	}
	if cfg.CAPassphraseFile != "" {
		data, err := identity.ReadSecret(cfg.CAPassphraseFile)
		if err != nil {
			return nil, err
		}
		if c.caPass, err = pki.PassphraseFromFile(data); err != nil {
			return nil, fmt.Errorf("--ca-passphrase-file %s: %w", cfg.CAPassphraseFile, err)
		}
	}
	// Bind first: with port 0 the real ports go into the context file and
	// join strings, and a busy port fails before anything is written.
	if c.clusterLn, err = net.Listen("tcp", cfg.ClusterAddr); err != nil {
		return nil, fmt.Errorf("cluster listener: %w (fix: free the port or pass --cluster-addr)", err)
	}
	if c.publicLn, err = net.Listen("tcp", cfg.PublicAddr); err != nil {
		c.clusterLn.Close()
		return nil, fmt.Errorf("public listener: %w (fix: free the port or pass --public-addr)", err)
	}
	c.cfg.ClusterAddr, c.cfg.PublicAddr = c.clusterLn.Addr().String(), c.publicLn.Addr().String()
	ok := false
	defer func() {
		if !ok {
			c.clusterLn.Close()
			c.publicLn.Close()
			if c.plain.ln != nil {
				c.plain.ln.Close()
			}
			c.closeStorage()
		}
	}()
	if c.audit, err = audit.Open(c.path("audit.log")); err != nil {
		return nil, err
	}
	if c.st, err = c.openStore(); err != nil {
		return nil, err
	}
	if err := c.checkStoreState(context.Background()); err != nil {
		return nil, err
	}
	c.health = c.newStoreHealth()
	c.journal = newJournal(c.st, c.health, c.fail)
	c.journal.onDown, c.journal.onUp = c.storeDown, c.storeUp
	now := c.now()
	if c.ca, err = c.loadOrCreatePKI(now); err != nil {
		return nil, err
	}
	c.ca.src.SetCredential(c.servedChain(c.ca.own.Load()))
	if c.contextPath, err = c.writeAdminContext(now); err != nil {
		return nil, err
	}
	if err := c.loadMaintenance(context.Background()); err != nil {
		return nil, c.stateError("load maintenance mode", err)
	}
	// On etcd the job system is loaded by whichever coordinator leads,
	// when it takes over; on bolt this one leads, and a store that does
	// not load stops it here.
	if !cfg.EtcdStore() {
		if err := c.restore(context.Background()); err != nil {
			return nil, c.stateError("restore jobs, tasks and nodes", err)
		}
		if err := c.loadTokens(context.Background()); err != nil {
			return nil, c.stateError("load join tokens", err)
		}
		c.restored = true
	}
	if err := c.loadUsers(context.Background()); err != nil {
		return nil, c.stateError("load users", err)
	}
	if err := c.loadRevoked(context.Background()); err != nil {
		return nil, c.stateError("load revocations", err)
	}
	c.metrics = telemetry.New(c.expiries, c.crlAge, func() (int, int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cl.Load()
	})
	c.metrics.WatchStoreWrites(func() telemetry.StoreWrites {
		st := c.health.State()
		return telemetry.StoreWrites{Writable: st.Writable, Outages: st.Outages, Failures: st.Failures}
	})
	c.newGates()
	c.journal.observe = func(d time.Duration, writes int) {
		c.metrics.StoreCommit.Observe(d.Seconds())
		c.metrics.StoreBatch.Observe(float64(writes))
	}
	if err := c.bindPlaintext(context.Background()); err != nil {
		return nil, err
	}
	opt := transport.ServerOptions{Cluster: cfg.Cluster, MinVersion: minTLS, Revoked: c.revoked}
	c.clusterTLS = transport.ClusterServerConfig(c.ca.src, opt)
	c.publicTLS = transport.PublicServerConfig(c.ca.src, opt)
	if c.console, err = c.newConsole(); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// connLog logs a per-connection or per-session line at
// connection_log_level.
func (c *Coordinator) connLog(msg string, args ...any) {
	c.log.Log(context.Background(), c.connLevel, msg, args...)
}

// ContextPath is the admin CLI context the coordinator wrote.
func (c *Coordinator) ContextPath() string { return c.contextPath }

// ClusterAddr is the bound cluster listener address.
func (c *Coordinator) ClusterAddr() string { return c.clusterLn.Addr().String() }

// PublicAddr is the bound public listener address.
func (c *Coordinator) PublicAddr() string { return c.publicLn.Addr().String() }

// CreatedCA reports whether this start created the cluster CA.
func (c *Coordinator) CreatedCA() bool { return c.ca.created }

// Serve runs the coordinator until ctx ends or a fatal error (a failed
// store commit) stops it. Tasks on agents keep running either way.
func (c *Coordinator) Serve(ctx context.Context) error {
	ctx, c.cancel = context.WithCancel(ctx)
	defer c.cancel()
	c.serveCtx = ctx
	jctx, jcancel := context.WithCancel(context.Background())
	jdone := make(chan struct{})
	go func() { c.journal.run(jctx); close(jdone) }()
	// Certificates issued at start (this coordinator's own) are recorded
	// by every coordinator: a record is not leader-only work.
	if err := c.flushIssued(); err != nil {
		jcancel()
		return err
	}
	if err := c.joinMembers(ctx); err != nil {
		jcancel()
		return err
	}
	if !c.cfg.EtcdStore() {
		// bolt: the only coordinator leads before it serves.
		if err := c.campaign(ctx); err != nil {
			c.cancel()
			c.wg.Wait()
			jcancel()
			return err
		}
	}
	c.clusterConns = newConnQueue(c.clusterLn.Addr())
	c.publicConns = newConnQueue(c.publicLn.Addr())
	if err := c.startRelay(); err != nil {
		c.cancel()
		c.wg.Wait()
		jcancel()
		return err
	}
	lim := c.cfg.Limits
	// The servers' own MaxHeaderBytes is a backstop above max_header_bytes,
	// which limitRequests enforces with a JSON error naming the setting.
	c.startTracking(ctx)
	public := c.publicRoutes()
	c.clusterHTTP = &http.Server{Handler: c.limitRequests(c.clusterEntry(c.clusterRoutes(), public), max(lim.MaxRequestBytes, lim.MaxJobBytes)),
		ReadHeaderTimeout: lim.ReadHeaderTimeout.D(), ReadTimeout: lim.ClusterReadTimeout.D(), IdleTimeout: lim.ClusterIdleTimeout.D(),
		MaxHeaderBytes: 2 * lim.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug), ConnState: c.trackHTTPConn,
		ConnContext: withConn}
	c.publicHTTP = &http.Server{Handler: c.limitRequests(c.publicEntry(public), lim.PublicMaxRequestBytes),
		ReadHeaderTimeout: lim.ReadHeaderTimeout.D(), ReadTimeout: lim.PublicReadTimeout.D(), WriteTimeout: lim.PublicWriteTimeout.D(),
		IdleTimeout: lim.PublicIdleTimeout.D(), MaxHeaderBytes: 2 * lim.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug), ConnState: c.trackPublicConn}
	c.logListener("cluster", c.clusterLn, c.clusterTLS, "required and verified at the handshake")
	c.logListener("public", c.publicLn, c.publicTLS, "not required (server authentication only)")
	c.logPlaintextListener()
	if c.plain.ln != nil {
		go c.servePlaintext(ctx, c.plain.ln)
	}
	c.wg.Add(5)
	if c.cfg.EtcdStore() {
		// Other coordinators share the store: follow their revocations,
		// CA rotation phases and users.
		c.wg.Add(3)
		go func() { defer c.wg.Done(); c.followRevocations(ctx) }()
		go func() { defer c.wg.Done(); c.followRotation(ctx) }()
		go func() { defer c.wg.Done(); c.followUsers(ctx) }()
	}
	go func() { defer c.wg.Done(); c.selfRenewLoop(ctx) }()
	go func() {
		defer c.wg.Done()
		c.acceptLoop(ctx, &listener{name: "cluster", ln: c.clusterLn, cfg: c.clusterTLS, gate: c.clusterGate, handle: c.handleCluster})
	}()
	go func() {
		defer c.wg.Done()
		c.acceptLoop(ctx, &listener{name: "public", ln: c.publicLn, cfg: c.publicTLS, gate: c.publicGate, keep: true, handle: c.handlePublic})
	}()
	go func() { defer c.wg.Done(); c.clusterHTTP.Serve(c.clusterConns) }()
	go func() { defer c.wg.Done(); c.publicHTTP.Serve(c.publicConns) }()
	if c.cfg.EtcdStore() {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.campaign(ctx); err != nil && ctx.Err() == nil {
				c.fail(err)
			}
		}()
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-c.fatal:
		c.log.Error("coordinator stopping after a fatal error", "err", err)
	}
	c.cancel()
	c.clusterLn.Close()
	c.publicLn.Close()
	c.plain.mu.Lock()
	if c.plain.ln != nil {
		c.plain.ln.Close()
	}
	c.plain.mu.Unlock()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	c.clusterHTTP.Shutdown(sctx)
	c.publicHTTP.Shutdown(sctx)
	scancel()
	c.closeSessions("coordinator shutting down")
	c.stopRelay()
	c.wg.Wait()
	jcancel()
	<-jdone
	if st := c.health.State(); !st.Writable {
		c.log.Error("stopped while the store could not write: what was accepted since is not stored; agents send their unacknowledged results again after the next start, other requests accepted meanwhile are lost",
			"store", c.backend.desc, "unwritable_since", st.Since.UTC().Format(time.RFC3339), "err", st.Error)
	}
	c.resign()
	if j := c.journal; j.commits > 0 {
		c.log.Info("journal", "commits", j.commits, "writes", j.opsTotal, "writes_per_commit", float64(j.opsTotal)/float64(j.commits),
			"mean_commit", (j.busy / time.Duration(j.commits)).String())
	}
	c.closeStorage()
	return err
}

func (c *Coordinator) closeStorage() {
	if c.st != nil {
		c.st.Close()
	}
	if c.audit != nil {
		c.audit.Close()
	}
}

// fail stops the coordinator: memory is ahead of the store, so the only
// safe state is the store's, reloaded at the next start.
func (c *Coordinator) fail(err error) {
	c.leading.Store(false)
	if errors.Is(err, ErrSteppedDown) {
		c.fatalOnce.Do(func() { c.fatal <- err })
		return
	}
	if lost, ok := c.leaderLost(err); ok {
		c.fatalOnce.Do(func() { c.fatal <- lost })
		return
	}
	c.fatalOnce.Do(func() {
		c.fatal <- fmt.Errorf("store commit failed, so in-memory state is ahead of the store; stopping so the next start reloads the last durable state: %w", err)
	})
}

func (c *Coordinator) logListener(name string, ln net.Listener, cfg *tls.Config, clientCerts string) {
	leaf := c.ca.src.Leaf()
	minV := cfg.MinVersion
	versions := transport.VersionName(minV)
	if minV < tls.VersionTLS13 {
		versions += " to TLS 1.3"
	} else {
		versions += " only"
	}
	c.log.Info("listening", "listener", name, "addr", ln.Addr().String(), "tls", versions,
		"cert_subject", leaf.Subject.CommonName, "cert_serial", fmt.Sprintf("%x", leaf.SerialNumber),
		"cert_expires", leaf.NotAfter.UTC().Format(time.RFC3339), "client_certs", clientCerts)
	if minV < tls.VersionTLS13 {
		c.log.Warn("INSECURE setting in effect: TLS 1.2 is allowed", "listener", name, "setting", "min_tls=1.2", "fix", "remove min_tls or set it to 1.3 once old clients are upgraded")
	}
}

// restore loads jobs, tasks and nodes from the store into the scheduler.
func (c *Coordinator) restore(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rec, err := c.st.Get(ctx, keyJobSeq); err == nil {
		n, err := strconv.ParseUint(string(rec.Value), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", keyJobSeq, err)
		}
		c.jobSeq = n
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := c.restoreProfiles(ctx); err != nil {
		return err
	}
	if err := c.st.Scan(ctx, prefixNodes, func(r store.Record) error {
		var n nodeRecord
		if err := jsonUnmarshal(r.Value, &n); err != nil {
			return fmt.Errorf("%s: %w", r.Key, err)
		}
		c.nodes[n.Name] = &n
		sn := c.cl.UpsertNode(n.Name, n.Slots, effectiveLabels(&n))
		sn.Drain, sn.Revoked, sn.Memory = n.Drain, n.Revoked, n.Memory
		return nil
	}); err != nil {
		return err
	}
	jobs := map[string]*sched.Job{}
	if err := c.st.Scan(ctx, prefixJobs, func(r store.Record) error {
		j, err := decodeJob(r.Value)
		if err != nil {
			return fmt.Errorf("%s: %w", r.Key, err)
		}
		jobs[j.ID] = j
		return nil
	}); err != nil {
		return err
	}
	if err := c.st.Scan(ctx, prefixTasks, func(r store.Record) error {
		id, chunk, ok := parseChunkKey(r.Key)
		j := jobs[id]
		if !ok || j == nil {
			return fmt.Errorf("task record %s has no job (or is from a development build before task chunks: start with a fresh data directory)", r.Key)
		}
		first, tasks, err := decodeChunk(r.Value)
		if err != nil {
			return fmt.Errorf("%s: %w", r.Key, err)
		}
		if first != chunk*chunkSize || first+len(tasks) > len(j.Tasks) {
			return fmt.Errorf("%s holds tasks %d..%d, which job %s (%d tasks) cannot have", r.Key, first, first+len(tasks)-1, id, len(j.Tasks))
		}
		copy(j.Tasks[first:], tasks)
		return nil
	}); err != nil {
		return err
	}
	for _, j := range jobs {
		c.cl.Restore(j)
		c.holdAgainLocked(j)
	}
	if err := c.restoreOutputCounters(ctx, jobs); err != nil {
		return err
	}
	c.log.Info("state restored", "jobs", len(jobs), "nodes", len(c.nodes), "next_job", c.jobSeq+1)
	return nil
}

// startLostTimersAfterRestore gives every node that holds tasks the usual
// time to reconnect before those tasks are declared lost.
func (c *Coordinator) startLostTimersAfterRestore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.cl.Nodes() {
		if n.Running() > 0 && c.sessions[n.Name] == nil {
			c.startLostTimerLocked(n.Name)
		}
	}
}
