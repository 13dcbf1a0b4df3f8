package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/agent"
	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/coordinator"
	"github.com/wardcluster/ward/internal/sched"
)

func newDevCmd(g *globals) *cobra.Command {
	var data, clusterAddr, publicAddr string
	var agents, slots int
	var labels map[string]string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a development cluster in one process: a coordinator and local agents",
		Long: `Run a coordinator and local agents in one process, on the embedded store, with
the same mutual TLS as production. Data lives in --data (kept across runs).
Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if agents < 0 || agents > 16 {
				return api.Errorf(api.CodeInvalidArgument, "use --agents between 0 and 16", "--agents %d is out of range", agents)
			}
			abs, err := filepath.Abs(data)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			if slots < 1 {
				return api.Errorf(api.CodeInvalidArgument, "use --slots 1 or more", "--slots %d: an agent needs at least one slot", slots)
			}
			return runDev(ctx, g, abs, clusterAddr, publicAddr, agents, slots, labels)
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "ward-dev-data", "data directory for the coordinator and its agents")
	f.StringVar(&clusterAddr, "cluster-addr", "127.0.0.1:7443", "cluster listener")
	f.StringVar(&publicAddr, "public-addr", "127.0.0.1:8443", "public listener")
	f.IntVar(&agents, "agents", 2, "local agents to run")
	f.IntVar(&slots, "slots", runtime.NumCPU(), "slots per agent")
	f.Var(labelsFlag{&labels}, "label", "label key=value on every local agent, for jobs' --label (repeatable)")
	return cmd
}

func runDev(ctx context.Context, g *globals, data, clusterAddr, publicAddr string, agents, slots int, labels map[string]string) error {
	cfg := config.CoordinatorDefaults()
	cfg.DataDir = filepath.Join(data, "coordinator")
	cfg.ClusterAddr, cfg.PublicAddr = clusterAddr, publicAddr
	cfg.Advertise = []string{"127.0.0.1"}
	cfg.NodeLostTimeout = config.Duration(10 * time.Second)
	c, err := coordinator.New(cfg, coordinator.Options{Logger: slog.Default().With("role", "coordinator")})
	if err != nil {
		return err
	}
	cctx, ccancel := context.WithCancel(context.Background())
	cdone := make(chan error, 1)
	go func() { cdone <- c.Serve(cctx) }()
	defer func() { ccancel(); <-cdone }()

	reaper, err := agent.StartReaper()
	if err != nil {
		return err
	}
	defer reaper.Close()
	actx, acancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { acancel(); wg.Wait() }()
	for i := 1; i <= agents; i++ {
		name := fmt.Sprintf("dev-agent-%d", i)
		acfg := config.AgentDefaults()
		acfg.DataDir = filepath.Join(data, "agents", name)
		acfg.Name, acfg.Slots, acfg.Labels = name, slots, labels
		acfg.KillGrace = config.Duration(3 * time.Second)
		var join string
		if !agent.Joined(acfg.DataDir) {
			tok, err := c.CreateToken(ctx, c.LocalAdmin(), api.TokenCreate{TTL: api.Duration(10 * time.Minute), Uses: 1})
			if err != nil {
				return fmt.Errorf("create a join token for %s: %w", name, err)
			}
			join = tok.Join
		}
		a, err := agent.New(ctx, acfg, agent.Options{Logger: slog.Default().With("role", "agent"), JoinString: join, Reaper: reaper})
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(actx) }()
	}
	described := fmt.Sprintf("%d agents with %d slots each", agents, slots)
	if len(labels) > 0 {
		described += " and labels " + sched.FormatLabels(labels)
	}
	fmt.Fprintf(g.stderr, "\nWard dev cluster: coordinator on %s (public %s), %s, data in %s.\n", c.ClusterAddr(), c.PublicAddr(), described, data)
	fmt.Fprintf(g.stderr, "Point the CLI at it (in another shell), then try `ward node ls` and `ward run --count 4 -- echo task-{index}`:\n\n")
	fmt.Fprintf(g.stdout, "export %s=%s\n", config.ContextEnv, c.ContextPath())
	if link, err := c.UILoginLink(ctx, c.LocalAdmin(), 15*time.Minute); err == nil {
		fmt.Fprintf(g.stderr, "\nWeb console (this link signs in once, within 15 minutes; `ward ui` prints another; the browser must trust %s):\n  %s\n",
			filepath.Join(data, "coordinator", "pki", "root-ca.crt"), link.URL)
	}
	fmt.Fprintf(g.stderr, "\nCtrl-C stops the cluster.\n")
	select {
	case <-ctx.Done():
		fmt.Fprintln(g.stderr, "stopping the dev cluster")
	case err := <-cdone:
		cdone <- err
		return err
	}
	return nil
}
