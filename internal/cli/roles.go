package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/agent"
	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/buildinfo"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/coordinator"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/logging"
	"github.com/wardcluster/ward/internal/tpmkey"
)

// signalContext ends on SIGINT or SIGTERM.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// durationFlag binds a config.Duration to a flag.
type durationFlag struct{ d *config.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.D().String()
}
func (f durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*f.d = config.Duration(v)
	return nil
}
func (f durationFlag) Type() string { return "duration" }

// labelsFlag reads repeated --label k=v.
type labelsFlag struct{ m *map[string]string }

func (f labelsFlag) String() string { return "" }
func (f labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q must be key=value", s)
	}
	if err := config.ValidLabel(k, v); err != nil {
		return err
	}
	if *f.m == nil {
		*f.m = map[string]string{}
	}
	(*f.m)[k] = v
	return nil
}
func (f labelsFlag) Type() string { return "key=value" }

func newCoordinatorCmd(g *globals) *cobra.Command {
	cfg := config.CoordinatorDefaults()
	var file string
	var validate, printCfg bool
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator (head node): CA, scheduler, store and API",
		Long: `Run a coordinator. On its first start it creates the cluster's root and issuing
CA, its own server certificate and an admin CLI context in --data, and prints
the line that points the CLI at it. Later starts reuse everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			final, fileKeys, err := effectiveConfig(cmd.Flags(), file, &cfg, config.LoadCoordinator)
			if err != nil {
				return err
			}
			verr := final.Validate()
			if printCfg {
				if err := printEffective(g, config.Effective(&final, fileKeys, cmd.Flags().Changed)); err != nil {
					return err
				}
			}
			if verr != nil || printCfg {
				return verr
			}
			if validate {
				fmt.Fprintln(g.stdout, "configuration is valid")
				return nil
			}
			recent := logging.NewRing(recentLogLines)
			log, err := roleLogger(g, final.LogLevel, final.LogFormat, recent)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			return runCoordinator(ctx, g, final, coordinator.Options{Logger: log, RecentLogs: recent})
		},
	}
	f := cmd.Flags()
	roleActionFlags(f, &file, &validate, &printCfg)
	f.StringVar(&cfg.DataDir, "data", "", "data directory (CA, keys, store, audit log)")
	f.StringVar(&cfg.Cluster, "cluster", cfg.Cluster, "cluster name (the trust domain in identities)")
	f.StringVar(&cfg.ClusterAddr, "cluster-addr", cfg.ClusterAddr, "mTLS listener for agents, the CLI and the API")
	f.StringVar(&cfg.PublicAddr, "public-addr", cfg.PublicAddr, "server-TLS listener for joins, the CA bundle and the CRL")
	f.StringSliceVar(&cfg.Advertise, "advertise", nil, "names and IPs peers use to reach this coordinator (first one goes into join strings)")
	f.StringVar(&cfg.MinTLS, "min-tls", cfg.MinTLS, "minimum TLS version: 1.3, or 1.2 for old clients (insecure)")
	f.StringVar(&cfg.CAPassphraseFile, "ca-passphrase-file", "", "file (0600) holding the passphrase the CA keys are encrypted with at rest (required with an etcd store: the same file on every coordinator)")
	f.StringVar(&cfg.CoordinatorID, "coordinator-id", "", "this coordinator's id in spiffe://<cluster>/coordinator/<id> (default: from its certificate, else the host name); distinct per coordinator on one etcd")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serve this server certificate from an enterprise CA (PEM, or PKCS#12 with the key) instead of one Ward issues")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "the PEM private key of --tls-cert (0600)")
	f.StringVar(&cfg.TLSPasswordFile, "tls-password-file", "", "file holding the PKCS#12 password of --tls-cert (0600)")
	f.StringVar(&cfg.TLSCA, "tls-ca", "", "the root CA of --tls-cert, when the file does not end with it")
	f.StringVar(&cfg.PlaintextAddr, "plaintext-addr", "", "open the plaintext migration listener for agents not on TLS yet (loopback unless --insecure-plaintext)")
	f.BoolVar(&cfg.InsecurePlaintext, "insecure-plaintext", false, "INSECURE: allow --plaintext-addr on an address other hosts reach (links show NO)")
	f.Var(durationFlag{&cfg.NodeLostTimeout}, "node-lost-timeout", "how long a disconnected agent's tasks wait before being requeued")
	f.Var(durationFlag{&cfg.HeartbeatInterval}, "heartbeat-interval", "base agent heartbeat interval")
	f.Var(durationFlag{&cfg.AgentCertLifetime}, "agent-cert-lifetime", "lifetime of agent certificates")
	f.Var(durationFlag{&cfg.UserCertLifetime}, "user-cert-lifetime", "lifetime of user (CLI) certificates")
	f.Var(durationFlag{&cfg.CoordinatorCertLifetime}, "coordinator-cert-lifetime", "lifetime of the coordinator's own certificate")
	f.Var(durationFlag{&cfg.HealGrace}, "heal-grace", "how long after expiry an agent may still renew with its old key")
	f.Var(durationFlag{&cfg.CRLValidity}, "crl-validity", "validity of each published CRL (refreshed at half of it)")
	f.Var(durationFlag{&cfg.AgingStep}, "aging-step", "raise a waiting job's priority one level per this wait (0: off)")
	f.IntVar(&cfg.MaxOutputBytes, "max-output-bytes", cfg.MaxOutputBytes, "stdout+stderr kept per task")
	f.Int64Var(&cfg.StagingMaxFileBytes, "staging-max-file-bytes", cfg.StagingMaxFileBytes, "largest input or output file a job may stage")
	f.Int64Var(&cfg.StagingMaxJobBytes, "staging-max-job-bytes", cfg.StagingMaxJobBytes, "one job's staged files together: its inputs, and its outputs")
	f.Var(durationFlag{&cfg.StagingRetention}, "staging-retention", "delete a finished job's staged inputs and outputs this long after it ended (0: keep them)")
	f.Float64Var(&cfg.JoinRate, "join-rate", cfg.JoinRate, "join attempts per second allowed per source address")
	f.IntVar(&cfg.JoinBurst, "join-burst", cfg.JoinBurst, "join attempts allowed in a burst per source address")
	f.StringVar(&cfg.Store, "store", "", "where state lives: bolt (default, a file in --data) or etcd://HOST:PORT[,HOST:PORT...][/PREFIX/]")
	f.StringVar(&cfg.EtcdCA, "etcd-ca", "", "CA (PEM) that etcd's server certificate chains to")
	f.Var(durationFlag{&cfg.LeaderLeaseTTL}, "leader-lease-ttl", "lease of the leader and of each coordinator's membership in etcd (failover takes about this long)")
	f.StringVar(&cfg.EtcdCert, "etcd-cert", "", "this coordinator's client certificate for etcd (PEM; `ward etcd certs` makes one)")
	f.StringVar(&cfg.EtcdKey, "etcd-key", "", "the key of --etcd-cert (PEM, 0600)")
	f.BoolVar(&cfg.InsecureEtcdPlaintext, "insecure-etcd-plaintext", false, "INSECURE: talk to etcd in plaintext (no TLS, no authentication)")
	f.Var(durationFlag{&cfg.PrefetchBelow}, "prefetch-below", "assign tasks ahead on busy nodes running only jobs whose tasks average less than this (0: off)")
	f.StringVar(&cfg.ConnectionLogLevel, "connection-log-level", cfg.ConnectionLogLevel, "level of the per-connection and per-session log lines: debug keeps large clusters' journals quiet")
	f.BoolVar(&cfg.UI, "ui", cfg.UI, "serve the web admin console under /ui/ on the public port (--ui=false turns it off)")
	f.StringVar(&cfg.UIPasswordFile, "ui-password-file", "", "file (0600) holding the console admin password's argon2id or scrypt hash (`ward ui hash-password`)")
	f.Var(durationFlag{&cfg.UIIdleTimeout}, "ui-idle-timeout", "end a console session unused for this long")
	f.Var(durationFlag{&cfg.UISessionLifetime}, "ui-session-lifetime", "end a console session this long after sign-in")
	roleLogFlags(f, &cfg.LogLevel, &cfg.LogFormat)
	bindLimitFlags(f, &cfg.Limits)
	return cmd
}

func runCoordinator(ctx context.Context, g *globals, cfg config.Coordinator, opts coordinator.Options) error {
	bi := buildinfo.Get()
	opts.Logger.Info("coordinator starting", "version", bi.Version, "commit", bi.Commit, "go", bi.GoVersion, "config_data_dir", cfg.DataDir)
	// A coordinator that steps down (it led, and another led meanwhile)
	// starts again in this process as a follower: SIGHUP reaches the
	// current one.
	var current atomic.Pointer[coordinator.Coordinator]
	go onSIGHUP(ctx, func() {
		if c := current.Load(); c != nil {
			c.Reload()
		}
	})
	return coordinator.Run(ctx, cfg, opts, func(c *coordinator.Coordinator, first bool) {
		current.Store(c)
		if !first {
			return
		}
		if c.CreatedCA() && cfg.EtcdStore() {
			fmt.Fprintf(g.stderr, "Created a new cluster CA in the etcd store (keys encrypted with %s).\n", cfg.CAPassphraseFile)
		} else if c.CreatedCA() {
			fmt.Fprintf(g.stderr, "Created a new cluster CA in %s.\n", cfg.DataDir)
		}
		fmt.Fprintf(g.stderr, "Coordinator up: cluster %s, public %s.\nPoint the CLI at it with:\n", c.ClusterAddr(), c.PublicAddr())
		fmt.Fprintf(g.stdout, "export %s=%s\n", config.ContextEnv, c.ContextPath())
	})
}

// onSIGHUP calls reload on every SIGHUP until ctx ends.
func onSIGHUP(ctx context.Context, reload func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			reload()
		}
	}
}

func newAgentCmd(g *globals) *cobra.Command {
	cfg := config.AgentDefaults()
	var file, join string
	var validate, printCfg, upgradeTLS bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run an agent (compute node); the first start joins with a token",
		Long: `Run an agent. The first start joins the cluster: it verifies the cluster CA's
pin from the join string before sending anything, creates its key locally,
and sends a certificate request with the token. Later starts need only --data.

Pass the join string with --join-file FILE (or - for standard input) so the
secret never shows in the process list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			final, fileKeys, err := effectiveConfig(cmd.Flags(), file, &cfg, config.LoadAgent)
			if err != nil {
				return err
			}
			verr := final.Validate()
			if printCfg {
				if err := printEffective(g, config.Effective(&final, fileKeys, cmd.Flags().Changed)); err != nil {
					return err
				}
			}
			if verr != nil || printCfg {
				return verr
			}
			if validate {
				fmt.Fprintln(g.stdout, "configuration is valid")
				return nil
			}
			log, err := roleLogger(g, final.LogLevel, final.LogFormat, nil)
			if err != nil {
				return err
			}
			js, err := agentJoinString(final, join, cmd.Flags().Changed("join-file"), cmd.InOrStdin())
			if err != nil {
				return err
			}
			if join != "" {
				log.Warn("the join string was given with --join; it held a secret in the command line, which Ward scrubbed from the process list at start", "fix", "use --join-file FILE or --join-file - (standard input)")
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			reaper, err := agent.StartReaper()
			if err != nil {
				return err
			}
			defer reaper.Close()
			opts := agent.Options{Logger: log, JoinString: js, Reaper: reaper, UpgradeTLS: upgradeTLS}
			if final.Key == "tpm" {
				opts.Keys = tpmkey.Source{Device: final.TPMDevice, Dir: final.DataDir}
			}
			a, err := agent.New(ctx, final, opts)
			if err != nil {
				return err
			}
			go onSIGHUP(ctx, func() { a.Reload() })
			log.Info("agent starting", "node", a.Node(), "version", buildinfo.Version(), "slots", final.Slots, "memory", final.Memory.String(), "data", final.DataDir)
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	roleActionFlags(f, &file, &validate, &printCfg)
	f.StringVar(&cfg.DataDir, "data", "", "data directory (key, certificate, trust bundle)")
	f.StringVar(&join, "join", "", "join string from `ward token create` (prefer --join-file)")
	f.StringVar(&cfg.JoinFile, "join-file", "", "file holding the join string, or - for standard input; read only until the node has joined")
	f.StringVar(&cfg.Name, "name", "", "node name to request at join (default: host name)")
	f.IntVar(&cfg.Slots, "slots", cfg.Slots, "task slots this node offers (default: CPU count)")
	f.Var(sizeFlag{(*int64)(&cfg.Memory)}, "memory", "memory this node offers tasks that reserve it with --memory, such as 64GiB (default: the host's total memory)")
	f.Var(labelsFlag{&cfg.Labels}, "label", "node label key=value (repeatable)")
	f.StringSliceVar(&cfg.Coordinators, "coordinator", nil, "coordinator cluster addresses to fail over between (default: learned at join)")
	f.StringArrayVar(&cfg.Pins, "pin", nil, "require this pin (sha256:... of a CA key) on every coordinator connection (repeatable)")
	f.Var(durationFlag{&cfg.KillGrace}, "kill-grace", "wait between SIGTERM and SIGKILL when stopping a task")
	f.BoolVar(&cfg.InsecureSkipVerify, "insecure-skip-verify", false, "INSECURE: do not verify the coordinator's certificate (link shows PARTLY)")
	f.StringVar(&cfg.InsecurePlaintextCoordinator, "insecure-plaintext-coordinator", "", "INSECURE: run the session without TLS to a coordinator's plaintext migration listener (HOST:PORT); link shows NO")
	f.BoolVar(&upgradeTLS, "upgrade-tls", false, "move an agent that used the plaintext listener to the TLS cluster port for good")
	f.StringVar(&cfg.Key, "key", cfg.Key, "where the agent's private key lives: file, or tpm (created inside a TPM 2.0 and never leaving it)")
	f.StringVar(&cfg.TPMDevice, "tpm-device", cfg.TPMDevice, "TPM character device, or tcp://HOST:PORT for a software TPM (swtpm)")
	f.StringVar(&cfg.RevocationPolicy, "revocation-policy", cfg.RevocationPolicy, "when the coordinator's CRL cannot be fetched: soft (warn) or hard (refuse)")
	f.BoolVar(&cfg.RunAsUser, "run-as-user", false, "run each task as its submitter's local account (agent started as root; uid, gid and groups set before exec)")
	f.StringVar(&cfg.UserMapFile, "user-map", "", "with --run-as-user: file mapping Ward users to local accounts (\"WARD_USER LOCAL_ACCOUNT\" per line)")
	f.BoolVar(&cfg.RunAsAllowRoot, "run-as-allow-root", false, "INSECURE: with --run-as-user, let a Ward user map to root")
	roleLogFlags(f, &cfg.LogLevel, &cfg.LogFormat)
	return cmd
}

// readJoin returns the join string from --join or --join-file.
func readJoin(join, file string, stdin io.Reader) (string, error) {
	if join != "" && file != "" {
		return "", api.Errorf(api.CodeInvalidArgument, "pass only --join-file", "--join and --join-file are both set")
	}
	if file == "" {
		return join, nil
	}
	var b []byte
	var err error
	if file == "-" {
		if f, ok := stdin.(*os.File); ok {
			if fi, serr := f.Stat(); serr == nil && fi.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprintln(os.Stderr, "Paste the join string, then press Enter:")
			}
		}
		b, err = readJoinLines(io.LimitReader(stdin, 64<<10))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("read --join-file %s: %w", file, err)
	}
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[i+1:]) // the output of `ward token create` ends with the join string
	}
	return s, nil
}

// readJoinLines reads standard input up to the first line that is a join
// string, so a person who pastes one at a terminal is done with Enter; a
// pipe (the output of `ward token create`) is read to its end otherwise.
func readJoinLines(r io.Reader) ([]byte, error) {
	var all []byte
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, enroll.Scheme+"://") {
			return []byte(line), nil
		}
		all = append(append(all, sc.Bytes()...), '\n')
	}
	return all, sc.Err()
}

// newStageHelperCmd is the hidden helper an agent with --run-as-user runs
// as a task's account to make and read the job's files; see
// agent.StageCommand.
func newStageHelperCmd() *cobra.Command {
	return &cobra.Command{
		Use:                agent.StageCommand,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return agent.RunStageHelper(args, os.Stdin, cmd.OutOrStdout())
		},
	}
}

// newReaperCmd is the hidden companion process of an agent; see
// agent.Reaper.
func newReaperCmd() *cobra.Command {
	return &cobra.Command{
		Use:    agent.ReaperCommand,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			signal.Ignore(os.Interrupt, syscall.SIGTERM)
			agent.RunReaper(os.Stdin)
			return nil
		},
	}
}
