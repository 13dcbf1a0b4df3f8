package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/sched"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke join tokens"}
	var req api.TokenCreate
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token; the join string is the last line of output",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.TTL = api.Duration(ttl)
			out, printed, err := call[api.TokenCreated](cmd, g, "POST", "/v1/tokens", req)
			if err != nil || printed {
				return err
			}
			t := out.Token
			fmt.Fprintf(g.stdout, "Token %s: %d use(s), expires %s (%s).\n", t.ID, t.Uses, ts(t.Expires), until(t.Expires))
			if len(t.Labels) > 0 {
				fmt.Fprintf(g.stdout, "Nodes joining with it get labels %s.\n", sched.FormatLabels(t.Labels))
			}
			fmt.Fprintf(g.stdout, "Save the join string below to a file and start an agent with:\n  ward agent --data DIR --join-file FILE\nIt holds a secret: it is shown only now.\n")
			fmt.Fprintln(g.stdout, out.Join)
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token stays valid (1s to 720h)")
	create.Flags().IntVar(&req.Uses, "uses", 1, "how many agents may join with it")
	create.Flags().Var(labelsFlag{&req.Labels}, "label", "label key=value given to nodes that join with it (repeatable)")
	create.Flags().StringSliceVar(&req.AllowDNS, "allow-dns", nil, "DNS names a joining agent may put in its certificate request")
	create.Flags().StringSliceVar(&req.AllowIPs, "allow-ip", nil, "IPs a joining agent may put in its certificate request")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List join tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, printed, err := call[[]api.Token](cmd, g, "GET", "/v1/tokens", nil)
			if err != nil || printed {
				return err
			}
			t := newTable(g.stdout, "ID", "STATE", "USED", "EXPIRES", "LABELS", "CREATED BY")
			for _, tk := range out {
				t.row(tk.ID, tk.State, fmt.Sprintf("%d/%d", tk.Used, tk.Uses), until(tk.Expires), orDash(sched.FormatLabels(tk.Labels)), tk.CreatedBy)
			}
			t.flush()
			return nil
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token so no more agents can join with it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, printed, err := call[api.Token](cmd, g, "POST", "/v1/tokens/"+args[0]+"/revoke", nil)
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stdout, "Token %s revoked.\n", out.ID)
			return nil
		},
	}
	cmd.AddCommand(create, ls, revoke)
	return cmd
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
