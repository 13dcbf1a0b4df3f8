package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
)

func newCertLsCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the certificates the cluster CA issued: serial, identity, role, issuer, expiry, revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			certs, printed, err := call[[]api.Cert](cmd, g, "GET", "/v1/certs", nil)
			if err != nil || printed {
				return err
			}
			t := newTable(g.stdout, "SERIAL", "ROLE", "NAME", "ISSUER", "EXPIRES", "REVOKED")
			hidden := 0
			for _, ce := range certs {
				expired := !ce.NotAfter.After(time.Now())
				if !all && expired && !ce.Revoked {
					hidden++
					continue
				}
				rev := "no"
				if ce.Revoked {
					rev = "yes (" + ce.Reason + ")"
				}
				t.row(ce.Serial, ce.Role, ce.Name, ce.Issuer, until(ce.NotAfter), rev)
			}
			t.flush()
			if hidden > 0 {
				fmt.Fprintf(g.stdout, "(%d expired certificate(s) not listed; --all lists them)\n", hidden)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also list expired certificates")
	return cmd
}

func newCertRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Revoke a certificate: its live sessions close at once and its handshakes are refused",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, printed, err := call[map[string]any](cmd, g, "POST", "/v1/certs/"+args[0]+"/revoke", api.RevokeRequest{Reason: reason})
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stdout, "Certificate %s revoked; %v session(s) closed.", args[0], out["sessions_closed"])
			if n, _ := out["node"].(string); n != "" {
				fmt.Fprintf(g.stdout, " It was node %s's certificate: the node is revoked and %v task(s) requeued.", n, out["tasks_requeued"])
			}
			fmt.Fprintln(g.stdout)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "key-compromise, superseded, cessation-of-operation, affiliation-changed, ca-compromise, privilege-withdrawn (default unspecified)")
	return cmd
}
