package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
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
		Short: "Revoke a certificate and every certificate renewed from it: their live sessions close at once and their handshakes are refused",
		Long: `Revoke a certificate. Every certificate renewed from it, however many
renewals deep, is revoked too, so a stolen certificate cannot be renewed out
of reach. SERIAL may be given as ` + "`ward cert ls`" + ` shows it or as openssl prints it
(leading zeros, colons, either case, serial=...). Revoking a certificate
that is already revoked (for example one superseded by a renewal) still
revokes what was renewed from it, and --reason key-compromise updates its
reason.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := pki.ParseSerial(args[0])
			if err != nil {
				return api.Errorf(api.CodeInvalidArgument, "give the serial as `ward cert ls` or `openssl x509 -serial` prints it", "%v", err)
			}
			serial := pki.SerialString(n)
			out, printed, err := call[map[string]any](cmd, g, "POST", "/v1/certs/"+serial+"/revoke", api.RevokeRequest{Reason: reason})
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stdout, "Certificate %s revoked; %v session(s) closed.", serial, out["sessions_closed"])
			if renewed, _ := out["renewed"].([]any); len(renewed) > 0 {
				fmt.Fprintf(g.stdout, " %d certificate(s) renewed from it revoked too: %v.", len(renewed), renewed)
			}
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
