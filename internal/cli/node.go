package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/sched"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "List, drain and undrain nodes"}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List nodes with their state, capacity, certificate expiry and link status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, printed, err := call[[]api.Node](cmd, g, "GET", "/v1/nodes", nil)
			if err != nil || printed {
				return err
			}
			t := newTable(g.stdout, "NAME", "STATE", "SLOTS", "USED", "MEMORY", "LABELS", "PROFILE", "CERT EXPIRES", "TLS", "LINK", "COORDINATOR")
			var failed []api.Node
			for _, n := range out {
				t.row(n.Name, n.State, n.Slots, n.UsedSlots, nodeMemory(n), orDash(sched.FormatLabels(n.Labels)), profileCell(n), until(n.CertExpiry), n.TLSVersion, n.Link, orDash(n.Coordinator))
				if n.ProfileState == api.ProfileFailed {
					failed = append(failed, n)
				}
			}
			t.flush()
			for _, n := range failed {
				fmt.Fprintf(g.stdout, "%s refused profile %s (revision %d): %s\n", n.Name, n.Profile, n.ProfileRevision, n.ProfileError)
			}
			return nil
		},
	}
	var force bool
	drain := &cobra.Command{
		Use:   "drain NODE",
		Short: "Take no new tasks on NODE; running ones finish (or, with --force, are requeued)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nodeAction(cmd, g, args[0], "drain", api.DrainRequest{Force: force})
		},
	}
	drain.Flags().BoolVar(&force, "force", false, "kill running tasks now and requeue them (counts against their --retries)")
	undrain := &cobra.Command{
		Use:   "undrain NODE",
		Short: "Let NODE take tasks again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nodeAction(cmd, g, args[0], "undrain", nil)
		},
	}
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke NODE",
		Short: "Revoke NODE: its sessions close at once, its tasks are requeued, it can never connect again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, printed, err := call[map[string]any](cmd, g, "POST", "/v1/nodes/"+args[0]+"/revoke", api.RevokeRequest{Reason: reason})
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stdout, "Node %s revoked (%v certificate(s)); %v session(s) closed, %v task(s) requeued.\n", args[0], len(asSlice(out["serials"])), out["sessions_closed"], out["tasks_requeued"])
			fmt.Fprintf(g.stdout, "To bring the machine back, join it again with a new token.\n")
			return nil
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "key-compromise, superseded, cessation-of-operation, ... (default unspecified)")
	cmd.AddCommand(ls, drain, undrain, revoke)
	return cmd
}

func nodeAction(cmd *cobra.Command, g *globals, node, action string, body any) error {
	out, printed, err := call[map[string]any](cmd, g, "POST", "/v1/nodes/"+node+"/"+action, body)
	if err != nil || printed {
		return err
	}
	running, _ := out["running"].(float64)
	switch {
	case action == "drain" && running > 0:
		fmt.Fprintf(g.stdout, "Node %s: draining: it takes no new tasks, and its %d running task(s) finish first (`ward node ls` shows it drained once they have; --force requeues them now).", node, int(running))
	case action == "drain":
		fmt.Fprintf(g.stdout, "Node %s: drained: it takes no new tasks.", node)
	default:
		fmt.Fprintf(g.stdout, "Node %s: undrained: it takes tasks again.", node)
	}
	if n, ok := out["requeued"].(float64); ok && n > 0 {
		fmt.Fprintf(g.stdout, " %d running task(s) stopped and requeued.", int(n))
	}
	if n, ok := out["withdrawn"].(float64); ok && n > 0 {
		fmt.Fprintf(g.stdout, " %d task(s) waiting there to start go back to the queue unless they have started.", int(n))
	}
	fmt.Fprintln(g.stdout)
	return nil
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// nodeMemory shows the memory a node's tasks reserve of what it offers.
func nodeMemory(n api.Node) string {
	if n.Memory == 0 {
		return "-"
	}
	return sched.FormatBytes(n.UsedMemory) + "/" + sched.FormatBytes(n.Memory)
}
