package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
)

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster-wide settings: maintenance mode"}
	maint := &cobra.Command{
		Use:   "maintenance",
		Short: "Show maintenance mode; `on` refuses new jobs from users who are not admins, `off` ends it",
		Long: `Maintenance mode refuses new submissions from users who are not admins, with
the message given and the stable code MAINTENANCE, while queued and running
jobs go on. Admins may still submit (to test the cluster). It shows in
` + "`ward status`" + `, GET /v1/status and ` + "`ward doctor`" + `, and survives a coordinator restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, printed, err := call[api.Maintenance](cmd, g, "GET", "/v1/cluster/maintenance", nil)
			if err != nil || printed {
				return err
			}
			fmt.Fprintln(g.stdout, describeMaintenance(m))
			return nil
		},
	}
	var message string
	set := func(use, short string, on bool) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				m, printed, err := call[api.Maintenance](cmd, g, "POST", "/v1/cluster/maintenance", api.MaintenanceRequest{On: on, Message: message})
				if err != nil || printed {
					return err
				}
				fmt.Fprintln(g.stdout, describeMaintenance(m))
				return nil
			},
		}
	}
	on := set("on", "Refuse new jobs from users who are not admins, with a message; queued and running jobs go on", true)
	on.Flags().StringVar(&message, "message", "", "what users are told when their submission is refused (one line)")
	off := set("off", "End maintenance mode: everyone may submit again", false)
	maint.AddCommand(on, off)
	cmd.AddCommand(maint)
	return cmd
}

// describeMaintenance says in one line whether maintenance mode is on.
func describeMaintenance(m api.Maintenance) string {
	if !m.On {
		return "off: every user may submit"
	}
	s := fmt.Sprintf("ON since %s (by %s): submissions from users who are not admins are refused", ts(m.Since), m.By)
	if m.Message != "" {
		s += "; message: " + m.Message
	}
	return s
}
