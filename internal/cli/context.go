package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
)

func newContextCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "List, show, switch and edit CLI contexts (which coordinator, whom to trust, as whom)",
		Long: `A CLI context is one file: a coordinator's cluster address, the trust bundle
and pins to verify it, and the CLI's certificate and key. The CLI uses
--context (a file or a name), then $WARD_CONTEXT, then ~/.ward/context.

Named contexts live in ~/.ward/contexts. ward context add saves one under a
name, and ward context use NAME makes ~/.ward/context point at it.`,
	}
	cmd.AddCommand(newContextLsCmd(g), newContextShowCmd(g), newContextUseCmd(g), newContextAddCmd(g), newContextRmCmd(g), newContextSetCmd(g))
	return cmd
}

// contextInfo describes a context without its secrets.
type contextInfo struct {
	Name       string       `json:"name,omitempty"`
	Path       string       `json:"path"`
	Source     string       `json:"source,omitempty"` // how the CLI found it, for the one in effect
	Current    bool         `json:"current"`
	Cluster    string       `json:"cluster"`
	Server     string       `json:"server"`
	Public     string       `json:"public,omitempty"`
	Identity   string       `json:"identity,omitempty"`
	CertSerial string       `json:"cert_serial,omitempty"`
	CertExpiry time.Time    `json:"cert_expiry,omitzero"`
	Trusts     []api.CAInfo `json:"trusts"`
	Pins       []string     `json:"pins"`
	Problems   []string     `json:"problems"`
	loadErr    error        `json:"-"`
}

// describeContext reads the context at path; a context that does not load
// is described by its problem.
func describeContext(path string) contextInfo {
	info := contextInfo{Path: path, Trusts: []api.CAInfo{}, Pins: []string{}, Problems: []string{}}
	ctx, err := config.LoadContext(path)
	if err != nil {
		info.loadErr = err
		info.Problems = append(info.Problems, err.Error())
		return info
	}
	info.Cluster, info.Server, info.Public = ctx.Cluster, ctx.Server, ctx.Public
	info.Pins = append(info.Pins, ctx.Pins...)
	cred, bundle, _, err := ctx.Credential()
	if err != nil {
		info.Problems = append(info.Problems, err.Error())
		return info
	}
	if id, err := pki.IDFromCert(cred.Leaf()); err == nil {
		info.Identity = id.String()
	}
	info.CertSerial, info.CertExpiry = pki.SerialHex(cred.Leaf()), cred.Leaf().NotAfter.UTC()
	for _, r := range bundle {
		info.Trusts = append(info.Trusts, api.CAInfo{Subject: r.Subject.String(), Serial: pki.SerialHex(r), Pin: pki.SPKIPin(r).String(), NotAfter: r.NotAfter.UTC()})
	}
	if ctx.Public != "" && ctx.Server == ctx.Public {
		info.Problems = append(info.Problems, fmt.Sprintf("server %s is the coordinator's public port (joins, the CA bundle, the CRL); the CLI needs its cluster port: `ward context set --server HOST:PORT` (`ward status` run against the coordinator, or its start log, names it; 7443 by default)", ctx.Server))
	}
	if time.Now().After(cred.Leaf().NotAfter) {
		info.Problems = append(info.Problems, fmt.Sprintf("the CLI certificate expired at %s: restart the coordinator (it renews its admin context) or get a new context", cred.Leaf().NotAfter.UTC().Format(time.RFC3339)))
	}
	return info
}

// namedContexts lists the contexts in ~/.ward/contexts by name.
func namedContexts() ([]string, error) {
	entries, err := os.ReadDir(config.ContextDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".context"); ok && !e.IsDir() && config.ValidContextName(name) == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// samePath reports whether a and b are the same file once links are
// followed.
func samePath(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}

func newContextLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the named contexts and mark the one in effect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := namedContexts()
			if err != nil {
				return err
			}
			current, source := config.ResolveContextPath(g.context)
			out := []contextInfo{}
			found := false
			for _, n := range names {
				info := describeContext(config.NamedContextPath(n))
				info.Name = n
				if samePath(info.Path, current) {
					info.Current, info.Source, found = true, source, true
				}
				out = append(out, info)
			}
			if !found {
				if _, err := os.Stat(current); err == nil {
					info := describeContext(current)
					info.Current, info.Source = true, source
					out = append(out, info)
				}
			}
			if g.json() {
				return printJSON(g.stdout, out)
			}
			if len(out) == 0 {
				fmt.Fprintf(g.stdout, "No contexts: none in %s, and none at %s (from %s).\nA coordinator (or `ward dev`) prints the export line of its admin context; `ward context add NAME FILE` keeps one under a name.\n", config.ContextDir(), current, source)
				return nil
			}
			t := newTable(g.stdout, "CURRENT", "NAME", "CLUSTER", "SERVER", "IDENTITY", "CERT EXPIRES", "PROBLEMS")
			for _, c := range out {
				mark, name := "", c.Name
				if c.Current {
					mark = "*"
				}
				if name == "" {
					name = c.Path
				}
				problems := "-"
				if len(c.Problems) > 0 {
					problems = fmt.Sprintf("%d (`ward context show`)", len(c.Problems))
				}
				t.row(mark, name, orDash(c.Cluster), orDash(c.Server), orDash(c.Identity), until(c.CertExpiry), problems)
			}
			t.flush()
			if source != "the default location" {
				fmt.Fprintf(g.stdout, "In effect: %s (from %s; `ward context use` changes only ~/.ward/context, which %s overrides).\n", current, source, source)
			}
			return nil
		},
	}
}

func newContextShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show [NAME]",
		Short: "Show a context (default: the one in effect): coordinator, identity, trust, and any problem",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, source := config.ResolveContextPath(g.context)
			if len(args) == 1 {
				var err error
				if path, err = savedContext(args[0]); err != nil {
					return err
				}
				source = "its name"
			}
			if _, err := os.Stat(path); err != nil {
				return noContextError(path, source)
			}
			info := describeContext(path)
			info.Source, info.Current = source, len(args) == 0
			if len(args) == 1 {
				info.Name = args[0]
			}
			if g.json() {
				return printJSON(g.stdout, info)
			}
			printContext(g, info)
			if len(info.Problems) > 0 {
				return exitError{1}
			}
			return nil
		},
	}
}

func printContext(g *globals, c contextInfo) {
	w := g.stdout
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%-13s %s\n", k+":", fmt.Sprintf(format, args...)) }
	where := c.Path
	if c.Source != "" {
		where += " (from " + c.Source + ")"
	}
	row("context", "%s", where)
	if c.loadErr == nil {
		row("cluster", "%s", c.Cluster)
		row("server", "%s  (the cluster port the CLI talks to)", c.Server)
		if c.Public != "" {
			row("public", "%s", c.Public)
		}
		row("identity", "%s", orDash(c.Identity))
		row("certificate", "serial %s, expires %s (%s); the CLI renews it when used", c.CertSerial, ts(c.CertExpiry), until(c.CertExpiry))
		for i, r := range c.Trusts {
			label := ""
			if i == 0 {
				label = "trusts:"
			}
			fmt.Fprintf(w, "%-13s %s  %s\n", label, r.Subject, r.Pin)
		}
		if len(c.Pins) == 0 {
			row("pins", "none (the trust bundle alone decides)")
		} else {
			row("pins", "%s", strings.Join(c.Pins, ", "))
		}
	}
	for _, p := range c.Problems {
		fmt.Fprintf(w, "problem:      %s\n", p)
	}
}

// noContextError says that path holds no context.
func noContextError(path, source string) error {
	return api.Errorf(api.CodeFailedPrecondition,
		"start a coordinator (or `ward dev`) and run the `export WARD_CONTEXT=...` line it prints, or pass --context FILE; `ward context ls` lists the named contexts",
		"there is no CLI context at %s (the path came from %s)", path, source)
}

// savedContext is the file of the saved context name, or why there is
// none.
func savedContext(name string) (string, error) {
	if err := config.ValidContextName(name); err != nil {
		return "", api.Errorf(api.CodeInvalidArgument, "`ward context ls` lists the names", "%v", err)
	}
	path := config.NamedContextPath(name)
	if _, err := os.Stat(path); err != nil {
		return "", api.Errorf(api.CodeNotFound, "`ward context ls` lists the names; `ward context add NAME FILE` saves one", "there is no context named %q (no %s)", name, path)
	}
	return path, nil
}

func newContextUseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "use NAME",
		Short: "Make ~/.ward/context point at the named context",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			target, err := savedContext(name)
			if err != nil {
				return err
			}
			if info := describeContext(target); info.loadErr != nil {
				return api.Errorf(api.CodeFailedPrecondition, "fix or replace the file (`ward context add NAME FILE --force`)", "context %q does not load: %v", name, info.loadErr)
			}
			def := config.DefaultContextPath()
			fi, err := os.Lstat(def)
			switch {
			case err == nil && fi.Mode()&os.ModeSymlink == 0:
				// A context of its own: keep it under a name first.
				keep := config.NamedContextPath("default")
				if _, err := os.Stat(keep); err == nil {
					return api.Errorf(api.CodeFailedPrecondition, fmt.Sprintf("keep it under another name with `ward context add NAME %s`, then remove it", def),
						"%s is a context of its own, and the name \"default\" is taken", def)
				}
				if err := os.MkdirAll(config.ContextDir(), 0o700); err != nil {
					return err
				}
				if err := os.Rename(def, keep); err != nil {
					return fmt.Errorf("keep %s as the context \"default\": %w", def, err)
				}
				fmt.Fprintf(g.stderr, "ward: kept the previous %s as the context \"default\" (%s)\n", def, keep)
			case err == nil:
				if err := os.Remove(def); err != nil {
					return err
				}
			case !errors.Is(err, fs.ErrNotExist):
				return err
			}
			if err := os.MkdirAll(filepath.Dir(def), 0o700); err != nil {
				return err
			}
			rel, err := filepath.Rel(filepath.Dir(def), target)
			if err != nil {
				rel = target
			}
			if err := os.Symlink(rel, def); err != nil {
				return fmt.Errorf("point %s at %s: %w", def, target, err)
			}
			fmt.Fprintf(g.stdout, "Using context %q: %s now points at %s.\n", name, def, target)
			if env := os.Getenv(config.ContextEnv); env != "" {
				fmt.Fprintf(g.stdout, "Note: $%s=%s is set and takes precedence in this shell; unset it to use %q.\n", config.ContextEnv, env, name)
			}
			return nil
		},
	}
}

func newContextAddCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "add NAME [FILE]",
		Short: "Save a context (FILE, default the one in effect) under NAME in ~/.ward/contexts",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := config.ValidContextName(name); err != nil {
				return api.Errorf(api.CodeInvalidArgument, "use letters, digits, '.', '_' and '-'", "%v", err)
			}
			src, source := config.ResolveContextPath(g.context)
			if len(args) == 2 {
				src, source = args[1], "the command line"
			}
			if _, err := os.Stat(src); err != nil {
				return noContextError(src, source)
			}
			ctx, err := config.LoadContext(src)
			if err != nil {
				return api.Errorf(api.CodeInvalidArgument, "give a context file a coordinator wrote (its admin.context) or one the CLI saved", "%s is not a usable context: %v", src, err)
			}
			dst := config.NamedContextPath(name)
			if _, err := os.Stat(dst); err == nil && !force {
				return api.Errorf(api.CodeAlreadyExists, "pick another name, or pass --force to replace it", "a context named %q exists (%s)", name, dst)
			}
			if samePath(src, dst) {
				return nil
			}
			if err := os.MkdirAll(config.ContextDir(), 0o700); err != nil {
				return err
			}
			if err := ctx.Save(dst); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Saved %s as the context %q (%s); `ward context use %s` makes it the default.\n", src, name, dst, name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace a context of the same name")
	return cmd
}

func newContextRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a named context (its certificate and key go with it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			path, err := savedContext(name)
			if err != nil {
				return err
			}
			def := config.DefaultContextPath()
			if samePath(def, path) {
				return api.Errorf(api.CodeFailedPrecondition, "switch first: `ward context use OTHER`", "context %q is the default (%s points at it)", name, def)
			}
			if err := os.Remove(path); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Removed the context %q.\n", name)
			return nil
		},
	}
}

func newContextSetCmd(g *globals) *cobra.Command {
	var server, public string
	cmd := &cobra.Command{
		Use:   "set --server HOST:PORT [--public HOST:PORT]",
		Short: "Point the context in effect (or --context) at another coordinator address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if server == "" && public == "" {
				return api.Errorf(api.CodeInvalidArgument, "pass --server HOST:PORT (the cluster port), --public HOST:PORT, or both", "nothing to set")
			}
			for flag, v := range map[string]string{"--server": server, "--public": public} {
				if v == "" {
					continue
				}
				if host, port, err := net.SplitHostPort(v); err != nil || host == "" || port == "" {
					return api.Errorf(api.CodeInvalidArgument, "give HOST:PORT, e.g. head.example.com:7443; write IPv6 as [::1]:7443", "%s %q is not HOST:PORT", flag, v)
				}
			}
			path, source := config.ResolveContextPath(g.context)
			if _, err := os.Stat(path); err != nil {
				return noContextError(path, source)
			}
			ctx, err := config.LoadContext(path)
			if err != nil {
				return err
			}
			if server != "" {
				ctx.Server = server
			}
			if public != "" {
				ctx.Public = public
			}
			if ctx.Public != "" && ctx.Server == ctx.Public {
				return api.Errorf(api.CodeInvalidArgument, "give --server the cluster port (7443 by default) and --public the public port (8443)", "--server and --public are both %s; the CLI talks to the cluster port", ctx.Server)
			}
			if err := ctx.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Context %s now points at %s (public %s); `ward status` checks it.\n", path, ctx.Server, orDash(ctx.Public))
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "the coordinator's cluster address, HOST:PORT")
	cmd.Flags().StringVar(&public, "public", "", "the coordinator's public address, HOST:PORT")
	return cmd
}
