package cli

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
)

func newDoctorCmd(g *globals) *cobra.Command {
	var horizon time.Duration
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the whole cluster: expiring certificates, insecure settings, key permissions, clock skew, CRL, tokens",
		Long: `ward doctor asks the coordinator to check the cluster and prints every finding
with its severity and fix. It exits 1 when there is a critical or warning
finding, so it can gate scripts and monitoring.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var rep api.DoctorReport
			if err := c.do(cmd.Context(), "GET", "/v1/doctor?horizon="+url.QueryEscape(horizon.String()), nil, &rep); err != nil {
				return err
			}
			serious := 0
			for _, f := range rep.Findings {
				if f.Severity != api.SeverityInfo {
					serious++
				}
			}
			if g.json() {
				printJSON(g.stdout, rep)
			} else if len(rep.Findings) == 0 {
				fmt.Fprintf(g.stdout, "No problems found (certificates checked against a %s horizon).\n", horizon)
			} else {
				for _, f := range rep.Findings {
					fmt.Fprintf(g.stdout, "%-8s %s: %s\n         fix: %s\n", strings.ToUpper(f.Severity), f.Code, f.Finding, f.Fix)
				}
				fmt.Fprintf(g.stdout, "%d finding(s), %d critical or warning.\n", len(rep.Findings), serious)
			}
			if serious > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&horizon, "horizon", 7*24*time.Hour, "report certificates that expire within this window")
	return cmd
}

func newAuditCmd(g *globals) *cobra.Command {
	var since, typ string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the audit log: joins, issuances, renewals, revocations, rotations, refusals, admin actions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if since != "" {
				q.Set("since", since)
			}
			if typ != "" {
				q.Set("type", typ)
			}
			events, printed, err := call[[]audit.Event](cmd, g, "GET", "/v1/audit?"+q.Encode(), nil)
			if err != nil || printed {
				return err
			}
			t := newTable(g.stdout, "TIME", "EVENT", "RESULT", "ACTOR", "TARGET", "DETAIL")
			for _, e := range events {
				var d []string
				for k, v := range e.Detail {
					d = append(d, k+"="+v)
				}
				t.row(ts(e.Time), e.Type, e.Result, orDash(e.Actor), orDash(e.Target), orDash(strings.Join(sorted(d), " ")))
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only events after this: a duration back from now (1h) or an RFC 3339 time")
	cmd.Flags().StringVar(&typ, "type", "", "only events of this type or family (join, cert, cert.revoke, token, job, migrate, ...)")
	return cmd
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}
