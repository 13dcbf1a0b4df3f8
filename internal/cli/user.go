package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Add, list, change the role of and remove users (admin)",
		Long: `Each person gets a credential of their own with one role:

  admin      everything
  operator   nodes, drain, tokens, everyone's jobs; no CA or user management
  submitter  submit jobs, see and cancel their own, read nodes
  viewer     read-only

The role lives in the user's certificate. ward user add prints a one-time
user join string; the person runs ward login --join-file FILE on their own
machine, where their key is made.`,
	}
	var role string
	var ttl time.Duration
	var out string
	invite := func(inv api.UserInvite, what string) error {
		if out != "" {
			if err := identity.WriteSecret(out, []byte(inv.Join+"\n")); err != nil {
				return err
			}
		}
		u := inv.User
		fmt.Fprintf(g.stdout, "User %s %s with role %s. Their one-time login expires %s (%s).\n", u.Name, what, u.Role, ts(u.LoginExpires), until(u.LoginExpires))
		if n := len(inv.Revoked.Serials) + len(inv.Revoked.Renewed); n > 0 {
			fmt.Fprintf(g.stdout, "Revoked %d certificate(s) with the old role; %d live connection(s) closed.\n", n, inv.Revoked.Closed)
		}
		fmt.Fprintf(g.stdout, "Give them the join string, which holds a secret and works once; on their own machine they run:\n  ward login --join-file FILE\n")
		if out != "" {
			fmt.Fprintf(g.stdout, "It is in %s (mode 0600).\n", out)
			return nil
		}
		fmt.Fprintln(g.stdout, inv.Join)
		return nil
	}
	add := &cobra.Command{
		Use:   "add NAME --role ROLE",
		Short: "Add a user; prints their one-time user join string",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, printed, err := call[api.UserInvite](cmd, g, "POST", "/v1/users", api.UserCreate{Name: args[0], Role: role, TTL: api.Duration(ttl)})
			if err != nil || printed {
				return err
			}
			return invite(res, "added")
		},
	}
	add.Flags().StringVar(&role, "role", "", "admin, operator, submitter or viewer")
	add.MarkFlagRequired("role")
	add.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the one-time login stays usable (1m to 720h)")
	add.Flags().StringVar(&out, "out", "", "write the join string to this file (0600) instead of printing it")

	var roleTTL time.Duration
	roleCmd := &cobra.Command{
		Use:   "role NAME ROLE",
		Short: "Change a user's role: their certificates are revoked and a new one-time login is printed",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, printed, err := call[api.UserInvite](cmd, g, "POST", "/v1/users/"+args[0]+"/role", api.UserRoleChange{Role: args[1], TTL: api.Duration(roleTTL)})
			if err != nil || printed {
				return err
			}
			return invite(res, "now has a new login")
		},
	}
	roleCmd.Flags().DurationVar(&roleTTL, "ttl", 24*time.Hour, "how long the new one-time login stays usable (1m to 720h)")
	roleCmd.Flags().StringVar(&out, "out", "", "write the join string to this file (0600) instead of printing it")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List users, their roles and certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			users, printed, err := call[[]api.User](cmd, g, "GET", "/v1/users", nil)
			if err != nil || printed {
				return err
			}
			t := newTable(g.stdout, "NAME", "ROLE", "STATE", "CERTS", "CERT EXPIRES", "LAST LOGIN", "CREATED BY")
			for _, u := range users {
				exp, last := "-", "-"
				if !u.CertExpiry.IsZero() {
					exp = until(u.CertExpiry)
				}
				if !u.LastLogin.IsZero() {
					last = ts(u.LastLogin)
				}
				t.row(u.Name, u.Role, u.State, u.Certs, exp, last, u.CreatedBy)
			}
			t.flush()
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a user: every certificate of theirs is revoked and their live connections close",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, printed, err := call[api.UserRemoved](cmd, g, "POST", "/v1/users/"+args[0]+"/remove", nil)
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stdout, "User %s removed: %d certificate(s) revoked, %d live connection(s) closed.\n",
				res.User.Name, len(res.Revoked.Serials)+len(res.Revoked.Renewed), res.Revoked.Closed)
			return nil
		},
	}
	cmd.AddCommand(add, ls, roleCmd, remove)
	return cmd
}

func newLoginCmd(g *globals) *cobra.Command {
	var joinFile string
	var force bool
	cmd := &cobra.Command{
		Use:   "login --join-file FILE",
		Short: "Log in with the one-time user join string an admin gave you; writes your CLI context",
		Long: `ward login reads the user join string (from ward user add) from a file,
verifies the coordinator against the CA pin it carries before sending
anything, makes your key on this machine, sends a certificate request with
the one-time secret, and writes your CLI context (mode 0600) to --context,
$WARD_CONTEXT or ~/.ward/context. It refuses to replace an existing
context unless --force is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if joinFile == "" {
				return api.Errorf(api.CodeInvalidArgument, "pass --join-file FILE (the file holding the string from `ward user add`, or - for standard input)", "ward login needs --join-file")
			}
			s, err := readJoin("", joinFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			js, err := enroll.ParseJoinString(s)
			if err != nil {
				return err
			}
			if js.User == "" {
				return api.Errorf(api.CodeJoinStringMalformed, "an agent joins with it: `ward agent --join-file FILE`; a person logs in with a string from `ward user add`",
					"this join string is an agent join token, not a user's login")
			}
			path, source := config.ResolveContextPath(g.context)
			if _, err := os.Stat(path); err == nil && !force {
				return api.Errorf(api.CodeAlreadyExists, "pass --context NEWFILE (or a name), or --force to replace it",
					"a CLI context already exists at %s (from %s)", path, source)
			} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			key, err := pki.GenerateKey()
			if err != nil {
				return err
			}
			id := pki.ID{Cluster: js.Cluster, Role: pki.RoleUser, Name: js.User}
			csr, err := enroll.CreateCSR(key, id)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			defer cancel()
			var resp api.LoginResponse
			req := api.LoginRequest{User: js.User, TokenID: js.TokenID, Secret: js.Secret, CSR: csr}
			public, err := enroll.PostAny(ctx, js.Addrs(), []pki.Pin{js.Pin}, api.PathLogin, req, &resp, nil)
			if err != nil {
				return err
			}
			keyPEM, err := pki.MarshalKeyPEM(key)
			if err != nil {
				return err
			}
			wctx := &config.Context{
				Version: config.FileVersion, Cluster: resp.Cluster, Public: public,
				BundlePEM: string(resp.BundlePEM), Pins: []string{js.Pin.String()},
				CertPEM: string(resp.ChainPEM), KeyPEM: string(keyPEM),
			}
			if len(resp.ClusterAddrs) > 0 {
				wctx.Server = resp.ClusterAddrs[0]
			}
			if _, _, _, err := wctx.Credential(); err != nil {
				return fmt.Errorf("the coordinator's answer does not make a usable context: %w", err)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if err := wctx.Save(path); err != nil {
				return err
			}
			if g.json() {
				return printJSON(g.stdout, map[string]string{"user": resp.User, "role": resp.Role, "cluster": resp.Cluster, "context": path, "server": wctx.Server})
			}
			fmt.Fprintf(g.stdout, "Logged in to cluster %s as %s (role %s). Your key was made here and never left this machine.\nCLI context written to %s (mode 0600); server %s.\n",
				resp.Cluster, resp.User, resp.Role, path, wctx.Server)
			return nil
		},
	}
	cmd.Flags().StringVar(&joinFile, "join-file", "", "file holding the user join string from `ward user add`, or - for standard input")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing CLI context at the target path")
	return cmd
}
