package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/sched"
)

// completionTimeout bounds a completion's call to the coordinator: a shell
// waiting on a Tab must not hang on an unreachable one.
const completionTimeout = 3 * time.Second

// addCompletions gives the shell completion (cobra's `ward completion`
// scripts) the values only the cluster knows: node names, job IDs and
// token IDs, asked from the coordinator when Tab is pressed, and the
// fixed values of flags such as --priority.
func addCompletions(root *cobra.Command, g *globals) {
	args := map[string]cobra.CompletionFunc{
		"ward node drain":   completeNodes(g),
		"ward node undrain": completeNodes(g),
		"ward node revoke":  completeNodes(g),
		"ward job status":   completeJobs(g, false),
		"ward job cancel":   completeJobs(g, true),
		"ward logs":         completeJobs(g, false),
		"ward token revoke": completeTokens(g),
		"ward context use":  completeContexts,
		"ward context show": completeContexts,
		"ward context rm":   completeContexts,
	}
	flags := map[string]map[string][]string{
		"ward run":         {"priority": api.Priorities},
		"ward submit":      {"priority": api.Priorities},
		"ward job ls":      {"state": {api.JobQueued, api.JobRunning, api.JobCompleted, api.JobFailed, api.JobCanceled}},
		"ward audit":       {"type": append(append([]string{}, audit.Types...), audit.Families()...)},
		"ward cert revoke": {"reason": api.RevocationReasons},
		"ward node revoke": {"reason": api.RevocationReasons},
		"ward check":       {"min-tls": {"1.3", "1.2"}},
	}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if fn, ok := args[c.CommandPath()]; ok {
			c.ValidArgsFunction = fn
		}
		for flag, values := range flags[c.CommandPath()] {
			_ = c.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
	}
	walk(root)
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	// --context takes a file too: complete names, and let the shell offer files.
	_ = root.RegisterFlagCompletionFunc("context", func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		names, _ := namedContexts()
		return names, cobra.ShellCompDirectiveDefault
	})
}

// remote completes the first argument with what list returns from the
// coordinator; nothing (and no file names) when it cannot be reached.
func remote(g *globals, list func(ctx context.Context, c *client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := g.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		out, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func completeNodes(g *globals) cobra.CompletionFunc {
	return remote(g, func(ctx context.Context, c *client) ([]string, error) {
		var nodes []api.Node
		if err := c.do(ctx, "GET", "/v1/nodes", nil, &nodes); err != nil {
			return nil, err
		}
		out := make([]string, 0, len(nodes))
		for _, n := range nodes {
			desc := fmt.Sprintf("%s, %d slots", n.State, n.Slots)
			if l := sched.FormatLabels(n.Labels); l != "" {
				desc += ", " + l
			}
			out = append(out, n.Name+"\t"+desc)
		}
		return out, nil
	})
}

// completeJobs completes job IDs, newest first; with unfinished, only jobs
// that have not ended (what a cancel can act on).
func completeJobs(g *globals, unfinished bool) cobra.CompletionFunc {
	return remote(g, func(ctx context.Context, c *client) ([]string, error) {
		var jobs []api.Job
		if err := c.do(ctx, "GET", "/v1/jobs", nil, &jobs); err != nil {
			return nil, err
		}
		out := make([]string, 0, len(jobs))
		for i := len(jobs) - 1; i >= 0; i-- {
			j := jobs[i]
			if unfinished && (j.State == api.JobCompleted || j.State == api.JobFailed || j.State == api.JobCanceled) {
				continue
			}
			desc := j.State
			if j.Spec.Name != "" {
				desc = j.Spec.Name + ", " + desc
			}
			out = append(out, j.ID+"\t"+desc)
		}
		return out, nil
	})
}

func completeTokens(g *globals) cobra.CompletionFunc {
	return remote(g, func(ctx context.Context, c *client) ([]string, error) {
		var toks []api.Token
		if err := c.do(ctx, "GET", "/v1/tokens", nil, &toks); err != nil {
			return nil, err
		}
		out := []string{}
		for _, t := range toks {
			if t.State == "active" {
				out = append(out, t.ID+"\t"+fmt.Sprintf("%d/%d used, expires %s", t.Used, t.Uses, ts(t.Expires)))
			}
		}
		return out, nil
	})
}

// completeContexts completes the names of the saved contexts.
func completeContexts(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	names, err := namedContexts()
	if err != nil || len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
