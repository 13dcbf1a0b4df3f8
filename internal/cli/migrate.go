package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
)

func newMigrateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Move a cluster from plaintext to full mutual TLS: status, upgrade, finish",
		Long: `The plaintext-to-TLS migration:

  ward migrate status          every peer still on a plaintext (NO) or half-verified (PARTLY) link
  ward migrate upgrade [NODE]  tell plaintext agents to move to TLS (each proves TLS works first)
  ward migrate finish          rebind the plaintext listener to loopback only, without a restart`,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "List every peer whose link is not YES, and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return migrateCall(cmd, g, "GET", "/v1/migrate/status", nil)
		},
	}
	upgrade := &cobra.Command{
		Use:   "upgrade [NODE...]",
		Short: "Ask plaintext agents (all, or the named ones) to move to the TLS cluster port",
		RunE: func(cmd *cobra.Command, args []string) error {
			return migrateCall(cmd, g, "POST", "/v1/migrate/upgrade", api.MigrateRequest{Nodes: args})
		},
	}
	var force bool
	finish := &cobra.Command{
		Use:   "finish",
		Short: "Bind the plaintext listener to loopback only; refuses while remote peers still use it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return migrateCall(cmd, g, "POST", "/v1/migrate/finish", api.MigrateRequest{Force: force})
		},
	}
	finish.Flags().BoolVar(&force, "force", false, "finish even while remote agents still use plaintext (their sessions are closed)")
	cmd.AddCommand(status, upgrade, finish)
	return cmd
}

func migrateCall(cmd *cobra.Command, g *globals, method, path string, body any) error {
	st, printed, err := call[api.MigrationStatus](cmd, g, method, path, body)
	if err != nil || printed {
		return err
	}
	printMigration(g.stdout, st)
	return nil
}

func printMigration(w io.Writer, st api.MigrationStatus) {
	switch {
	case st.Plaintext == "":
		fmt.Fprintln(w, "Plaintext listener: closed.")
	case st.Finished:
		fmt.Fprintf(w, "Plaintext listener: %s (loopback only: the migration is finished).\n", st.Plaintext)
	default:
		fmt.Fprintf(w, "Plaintext listener: %s.\n", st.Plaintext)
	}
	fmt.Fprintf(w, "Peers on YES links: %d. Peers not on YES links: %d.\n", st.Secure, len(st.Insecure))
	if len(st.Insecure) == 0 {
		return
	}
	t := newTable(w, "NODE", "LINK", "ADDRESS", "WHY", "LAST UPGRADE ERROR")
	for _, p := range st.Insecure {
		t.row(p.Node, p.Link, p.Addr, p.Reason, orDash(p.UpgradeErr))
	}
	t.flush()
}
