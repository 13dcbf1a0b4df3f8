package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster summary: addresses, nodes, store, insecure settings, CA and certificate expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, printed, err := call[api.Status](cmd, g, "GET", "/v1/status", nil)
			if err != nil || printed {
				return err
			}
			printStatus(g, st)
			return nil
		},
	}
}

func printStatus(g *globals, st api.Status) {
	w := g.stdout
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%-14s %s\n", k+":", fmt.Sprintf(format, args...)) }
	row("cluster", "%s (coordinator %s, version %s)", st.Cluster, st.Coordinator, st.Version)
	if ps := st.Partial; ps != nil {
		row("PARTIAL", "answered by this coordinator itself: %s", ps.Reason)
		last := "none seen"
		if ps.LastLeader != "" {
			last = fmt.Sprintf("%s (term began %s)", ps.LastLeader, ts(ps.LastLeaderSince))
		}
		state := strings.ReplaceAll(ps.Election, "_", " ")
		if ps.Election == api.ElectionUnderWay {
			state += fmt.Sprintf(" since %s (%s ago)", ts(ps.Since), time.Since(ps.Since).Round(100*time.Millisecond))
		}
		row("election", "%s; last leader %s", state, last)
	}
	row("cluster port", "%s  (agents, the CLI and the API; client certificate required)", strings.Join(st.ClusterAddrs, ", "))
	row("public port", "%s  (joins, the CA bundle, the CRL)", strings.Join(st.PublicAddrs, ", "))
	if st.Store != "" {
		row("store", "%s", st.Store)
	}
	if h := st.StoreHealth; !h.Writable && h.UnwritableSince != nil {
		row("store writes", "FAILING since %s (%s ago): %s; new work is refused (STORE_UNAVAILABLE) and resumes on its own. Fix: %s",
			ts(*h.UnwritableSince), time.Since(*h.UnwritableSince).Round(time.Second), h.WriteError, h.Fix)
	}
	for _, e := range st.StoreEndpoints {
		if e.OK {
			lead := ""
			if e.Leader {
				lead = ", etcd leader"
			}
			row("etcd", "%s healthy (%s, etcd %s%s, %d entries to apply)", e.Endpoint, e.Latency.D().Round(time.Millisecond/10), e.Version, lead, e.Lag)
		} else {
			row("etcd", "%s UNHEALTHY: %s", e.Endpoint, e.Error)
		}
	}
	for _, co := range st.Coordinators {
		if co.Member == "" {
			continue
		}
		role := "follower"
		if co.Leader {
			role = "LEADER"
		}
		if !co.Alive {
			role = "down"
		}
		health := "store ok"
		if co.StoreError != "" {
			health = "store error: " + co.StoreError
		}
		if co.Lag > 0 {
			health += fmt.Sprintf(", store read %s, reported %s ago", co.StoreLatency.D().Round(time.Millisecond/10), co.Lag.D().Round(time.Millisecond))
		}
		row("coordinator", "%s  %s  (%s)", co.Member, role, health)
	}
	if st.Partial != nil {
		row("nodes", "unknown until a leader answers (the leader holds the job system)")
		row("maintenance", "unknown until a leader answers")
	} else {
		row("nodes", "%d, %d connected (`ward node ls`)", st.Nodes, st.Connected)
		row("maintenance", "%s", describeMaintenance(st.Maintenance))
	}
	if len(st.Insecure) == 0 {
		row("insecure", "none")
	} else {
		row("insecure", "%s  (`ward doctor` gives the fixes)", strings.Join(st.Insecure, ", "))
	}
	row("issuing CA", "expires %s (%s)", ts(st.CAExpiry), until(st.CAExpiry))
	row("server cert", "expires %s (%s); renewed on its own", ts(st.CertExpiry), until(st.CertExpiry))
}
