// Package cli is the `ward` command tree: the roles (coordinator, agent,
// dev) and the client commands, with table or JSON output and errors
// rendered with their code and fix.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/buildinfo"
	"github.com/wardcluster/ward/internal/logging"
)

// globals are the flags every command has.
type globals struct {
	context string
	pins    []string
	server  string
	output  string
	// taskOutput is "all" or "failed" when -o gave one of them to a
	// command that follows tasks (ward run, ward job status --watch); the
	// format is then table.
	taskOutput string
	logLevel   string
	logFormat  string
	stdout     io.Writer
	stderr     io.Writer
}

func (g *globals) json() bool { return g.output == "json" }

// NewRoot builds the command tree writing to stdout and stderr.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "ward",
		Short: "Ward: a cluster job system whose links are mutually authenticated TLS by default",
		Long: `Ward runs jobs of many tasks on a cluster of agents. Every link between the
coordinator, its agents and its clients is encrypted and mutually
authenticated through a certificate authority that Ward runs itself.

Quick start:  ward dev          (a coordinator and two agents in one process)
              export WARD_CONTEXT=...   (printed by ward dev)
              ward run --count 4 -- echo task-{index}`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if (g.output == taskOutputAll || g.output == taskOutputFailed) && cmd.Annotations[annotationTaskOutput] != "" {
				g.taskOutput, g.output = g.output, "table"
			}
			if g.output != "table" && g.output != "json" {
				return api.Errorf(api.CodeInvalidArgument, "use -o table or -o json (ward run and ward job status --watch also take -o all or -o failed: which tasks' output to print)", "output format %q is not supported", g.output)
			}
			log, err := logging.New(g.stderr, g.logLevel, g.logFormat, nil)
			if err != nil {
				return api.Errorf(api.CodeInvalidArgument, "use --log-level debug, info, warn or error, and --log-format text or json", "%v", err)
			}
			slog.SetDefault(log)
			return nil
		},
	}
	root.Version = buildinfo.Get().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.context, "context", "", "CLI context: a file, or the name of one in ~/.ward/contexts (default: $WARD_CONTEXT, then ~/.ward/context)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf.StringArrayVar(&g.pins, "pin", nil, "require this pin on the coordinator's chain instead of the context's pins (repeatable, to stage a CA rotation); sha256:<hex> of a CA key, or a certificate thumbprint")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log line format on standard error: text or json")
	pf.StringVar(&g.server, "server", "", "talk to the coordinator at this cluster address (HOST:PORT) instead of the context's, for this command only (`ward context set --server` saves it)")
	root.AddCommand(
		newCoordinatorCmd(g), newAgentCmd(g), newDevCmd(g),
		newTokenCmd(g), newRunCmd(g, true), newRunCmd(g, false), newJobCmd(g), newLogsCmd(g), newNodeCmd(g),
		newCACmd(g), newMigrateCmd(g), newDoctorCmd(g), newAuditCmd(g), newVersionCmd(g), newReaperCmd(), newStageHelperCmd(), newDocsCmd(g), newDebugCmd(g),
		newCheckCmd(g), newCertCmd(g), newEtcdCmd(g), newUICmd(g), newStoreCmd(g), newProfileCmd(g), newUserCmd(g), newLoginCmd(g),
	)
	root.AddCommand(newStatusCmd(g), newContextCmd(g), newClusterCmd(g))
	refuseUnknownSubcommands(root)
	explainUsageErrors(root)
	addCompletions(root, g)
	return root
}

// explainUsageErrors makes cobra's own refusals (a wrong number of
// arguments, an unknown or malformed flag) errors with a code and a fix,
// like every other failure, so -o json renders them too.
func explainUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return api.Errorf(api.CodeInvalidArgument, fmt.Sprintf("`%s --help` lists the flags", c.CommandPath()), "%v", err)
	})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Args == nil {
			return
		}
		check := c.Args
		c.Args = func(c *cobra.Command, args []string) error {
			err := check(c, args)
			var ae *api.Error
			if err == nil || errors.As(err, &ae) {
				return err
			}
			return api.Errorf(api.CodeInvalidArgument, fmt.Sprintf("usage: %s (`%s --help` says more)", c.UseLine(), c.CommandPath()), "%s: %v", c.CommandPath(), err)
		}
	}
	walk(root)
}

// refuseUnknownSubcommands makes every command group (ward, ward job, ward
// node, ...) fail on an unknown subcommand with exit 1 and the closest
// names, instead of printing its help and exiting 0. Without a subcommand a
// group still prints its help.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		return unknownSubcommand(c, args[0])
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// unknownSubcommand is the error for `ward GROUP NAME` when GROUP has no
// subcommand NAME.
func unknownSubcommand(group *cobra.Command, name string) error {
	fix := fmt.Sprintf("`%s --help` lists the commands", group.CommandPath())
	if group.SuggestionsMinimumDistance <= 0 {
		group.SuggestionsMinimumDistance = 2 // as cobra does for the root
	}
	if s := group.SuggestionsFor(name); len(s) > 0 {
		for i := range s {
			s[i] = "`" + group.CommandPath() + " " + s[i] + "`"
		}
		fix = "did you mean " + strings.Join(s, " or ") + "? " + fix
	}
	return api.Errorf(api.CodeInvalidArgument, fix, "unknown command %q for %q", name, group.CommandPath())
}

// Execute runs the command tree with args and returns the exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if wantsJSON(root, args) {
		renderErrorJSON(stderr, err)
	} else {
		renderError(stderr, err)
	}
	return 1
}

// wantsJSON reports whether the command line asked for -o json, also when
// the flags could not be parsed.
func wantsJSON(root *cobra.Command, args []string) bool {
	if f := root.PersistentFlags().Lookup("output"); f != nil && f.Value.String() == "json" {
		return true
	}
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "-ojson" || a == "--output=json" || a == "-o=json":
			return true
		case (a == "-o" || a == "--output") && i+1 < len(args) && args[i+1] == "json":
			return true
		}
	}
	return false
}

// renderErrorJSON prints an error as the API does, on one line:
// {"error":{"code":…,"message":…,"fix":…}}. An error without a code is
// INTERNAL, with its message as it is.
func renderErrorJSON(w io.Writer, err error) {
	var ae *api.Error
	if !errors.As(err, &ae) {
		ae = &api.Error{Code: api.CodeInternal, Message: strings.TrimSpace(err.Error())}
	}
	printJSONLine(w, api.ErrorBody{Error: ae})
}

// exitError ends a command with a code after it printed its own outcome.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// renderError prints an error with its code and fix, the form every
// failure takes at the CLI edge.
func renderError(w io.Writer, err error) {
	var ae *api.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(w, "error: %s\n", ae.Message)
		if ae.Fix != "" {
			fmt.Fprintf(w, "  fix:  %s\n", ae.Fix)
		}
		fmt.Fprintf(w, "  code: %s\n", ae.Code)
		return
	}
	msg := err.Error()
	fmt.Fprintf(w, "error: %s\n", strings.TrimSpace(msg))
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Ward's version, commit, build date and Go version",
		Long: `Print which Ward this binary is. Release packages set the version, commit and
build date when they are built; other builds show what the Go toolchain
recorded (the commit of the work tree, and "modified" when it had
uncommitted changes). ward --version prints the same on one line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in := buildinfo.Get()
			if g.json() {
				return printJSON(g.stdout, in)
			}
			commit := orDash(in.Commit)
			if in.Modified {
				commit += " (modified)"
			}
			fmt.Fprintf(g.stdout, "ward %s\n  commit:    %s\n  built:     %s\n  go:        %s\n  platform:  %s\n",
				in.Version, commit, orDash(in.Date), in.GoVersion, in.Platform)
			return nil
		},
	}
}

func osExit(code int) { os.Exit(code) }
