package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/web"
)

func newUICmd(g *globals) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Print a one-time link that signs into the web admin console",
		Long: `Asks the coordinator for a link that signs into its web console (served on
the public port under /ui/) as the user of this CLI context. The link works
once, within --ttl. The session it opens ends when the browser signs out,
after the coordinator's idle timeout or session lifetime, or when this
context's certificate is revoked.

The browser must trust the cluster CA for the public port: import the bundle
from ` + "`ward ca export`" + ` into it (or serve an enterprise certificate with
` + "`ward coordinator --tls-cert`" + `), and check the fingerprint it shows.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, printed, err := call[api.UILink](cmd, g, "POST", "/v1/ui/login-link", api.UILinkRequest{TTL: api.Duration(ttl)})
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stderr, "This link signs into the web console once, until %s (%s). It holds a secret: do not share it.\n", ts(out.Expires), until(out.Expires))
			if pins := contextPins(g); pins != "" {
				fmt.Fprintf(g.stderr, "The browser must trust the cluster CA (`ward ca export`); its pin: %s\n", pins)
			}
			fmt.Fprintln(g.stdout, out.URL)
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", web.DefaultLinkTTL, "how long the link stays valid (1s to 1h)")
	cmd.AddCommand(newHashPasswordCmd(g))
	return cmd
}

// contextPins are the CA pins of the CLI context, for the trust hint.
func contextPins(g *globals) string {
	path, _ := config.ResolveContextPath(g.context)
	ctx, err := config.LoadContext(path)
	if err != nil {
		return ""
	}
	_, bundle, _, err := ctx.Credential()
	if err != nil {
		return ""
	}
	var out []string
	for _, p := range bundle.Pins() {
		out = append(out, p.String())
	}
	return strings.Join(out, ", ")
}

func newHashPasswordCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "hash-password",
		Short: "Hash a console admin password (argon2id) for --ui-password-file",
		Long: `Reads a password from --password-file, or the first line of standard input,
and prints its argon2id hash. Save the hash in a file of mode 0600 and start
the coordinator with --ui-password-file FILE. Only the hash is stored.`,
		Example: `  ward ui hash-password --password-file pw.txt > ui-password && chmod 600 ui-password`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var password string
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return api.Errorf(api.CodeInvalidArgument, "check the path", "--password-file: %v", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			} else {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && err != io.EOF {
					return err
				}
				password = strings.TrimRight(line, "\r\n")
			}
			h, err := web.HashPassword(password)
			if err != nil {
				return api.Errorf(api.CodeInvalidArgument, "choose a longer password (a passphrase of several words is easiest)", "%v", err)
			}
			if g.json() {
				return printJSON(g.stdout, map[string]string{"hash": h})
			}
			fmt.Fprintln(g.stdout, h)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "password-file", "", "read the password from this file instead of standard input")
	return cmd
}
