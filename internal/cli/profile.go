package cli

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/profile"
	"github.com/wardcluster/ward/internal/sched"
)

// profileCell is a node's profile as `ward node ls` shows it.
func profileCell(n api.Node) string {
	switch {
	case n.Profile == "":
		return "-"
	case n.ProfileState == api.ProfileFailed:
		return n.Profile + " (failed)"
	case n.ProfileState != "":
		return n.Profile + " (" + n.ProfileState + ")"
	}
	return n.Profile
}

func newProfileCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Agent profiles: settings the coordinator pushes to the nodes assigned to them, applied without a restart",
		Long: `An agent profile is a named set of agent settings (slots, labels, kill
grace, revocation policy) that the coordinator pushes over each assigned
node's live session. The agent applies it without a restart and answers;
` + "`ward node ls`" + ` shows each node's profile as applied, pending (pushed, or
waiting for the node to connect) or failed (refused, with the reason). A
profile may make an agent's revocation policy stricter, never weaker.`,
	}
	set := &cobra.Command{
		Use:   "set NAME KEY=VALUE...",
		Short: "Create a profile or change its settings: " + strings.Join(profile.Keys, "=, ") + "= (KEY= removes one)",
		Example: `  ward profile set gpu slots=8 labels=gpu=1,tier=fast kill-grace=30s revocation-policy=hard
  ward profile set gpu kill-grace=`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := profile.CheckName(args[0]); err != nil {
				return api.Errorf(api.CodeInvalidArgument, "", "%v", err)
			}
			req, err := profile.ParseSet(args[1:])
			if err != nil {
				return api.Errorf(api.CodeInvalidArgument, "see `ward profile set --help`", "%v", err)
			}
			p, printed, err := call[api.Profile](cmd, g, "PUT", "/v1/profiles/"+url.PathEscape(args[0]), req)
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stdout, "Profile %s revision %d: %s; pushed to %d node(s)%s.\n", p.Name, p.Revision, describeSettings(p.Settings), len(p.Nodes), listed(p.Nodes))
			return nil
		},
	}
	var labels map[string]string
	assign := &cobra.Command{
		Use:   "assign NAME (--label K=V... | NODE...)",
		Short: "Apply a profile to the nodes with these labels (their own and their token's), or to the nodes named; replaces its earlier assignment",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a := api.ProfileAssignment{Labels: labels, Nodes: args[1:]}
			if len(a.Labels) == 0 && len(a.Nodes) == 0 {
				return api.Errorf(api.CodeInvalidArgument, "give --label K=V or node names", "ward profile assign %s: no nodes chosen", args[0])
			}
			p, printed, err := call[api.Profile](cmd, g, "POST", "/v1/profiles/"+url.PathEscape(args[0])+"/assign", a)
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stdout, "Profile %s applies to %d node(s)%s; `ward node ls` shows whether each applied it.\n", p.Name, len(p.Nodes), listed(p.Nodes))
			return nil
		},
	}
	assign.Flags().Var(labelsFlag{&labels}, "label", "nodes with this label K=V (repeatable: all of them)")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List profiles, their settings and the nodes they apply to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, printed, err := call[[]api.Profile](cmd, g, "GET", "/v1/profiles", nil)
			if err != nil || printed {
				return err
			}
			t := newTable(g.stdout, "NAME", "REVISION", "SETTINGS", "ASSIGNED TO", "NODES")
			for _, p := range out {
				t.row(p.Name, p.Revision, describeSettings(p.Settings), describeAssign(p.Assign), orDash(strings.Join(p.Nodes, ",")))
			}
			t.flush()
			return nil
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a profile: its nodes go back to their own settings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", "/v1/profiles/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			if g.json() {
				return printJSON(g.stdout, map[string]any{"deleted": args[0]})
			}
			fmt.Fprintf(g.stdout, "Profile %s deleted; its nodes go back to their own settings.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(set, assign, ls, rm)
	return cmd
}

func describeSettings(s api.ProfileSettings) string {
	var parts []string
	if s.Slots != nil {
		parts = append(parts, fmt.Sprintf("slots=%d", *s.Slots))
	}
	if s.Labels != nil {
		parts = append(parts, "labels="+sched.FormatLabels(s.Labels))
	}
	if s.KillGrace != nil {
		parts = append(parts, "kill-grace="+s.KillGrace.D().String())
	}
	if s.RevocationPolicy != "" {
		parts = append(parts, "revocation-policy="+s.RevocationPolicy)
	}
	if len(parts) == 0 {
		return "(no settings)"
	}
	return strings.Join(parts, " ")
}

func describeAssign(a api.ProfileAssignment) string {
	var parts []string
	if len(a.Labels) > 0 {
		parts = append(parts, "labels "+sched.FormatLabels(a.Labels))
	}
	if len(a.Nodes) > 0 {
		n := append([]string(nil), a.Nodes...)
		sort.Strings(n)
		parts = append(parts, "nodes "+strings.Join(n, ","))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func listed(nodes []string) string {
	if len(nodes) == 0 {
		return ""
	}
	return " (" + strings.Join(nodes, ", ") + ")"
}
