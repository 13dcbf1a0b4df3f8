package cli

import (
	"fmt"
	"maps"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
)

func newJobRequeueCmd(g *globals) *cobra.Command {
	var failed bool
	cmd := &cobra.Command{
		Use:   "requeue ID",
		Short: "Run a finished job's tasks (or, with --failed, those that did not complete) again under the same ID",
		Long: `Put the tasks of a job that ended (completed, failed or canceled) back in the
queue: every task, or with --failed only those that did not complete. Every
earlier attempt stays in the job's history; the new attempts carry the
job's requeue number (REQUEUE in ` + "`ward job status`" + `, "requeue" in -o json), and
--retries counts afresh for them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, printed, err := call[api.RequeueResult](cmd, g, "POST", "/v1/jobs/"+url.PathEscape(args[0])+"/requeue", api.RequeueRequest{Failed: failed})
			if err != nil || printed {
				return err
			}
			fmt.Fprintf(g.stdout, "Job %s: %d task(s) back in the queue (requeue %d). Follow it with `ward logs %s -f`.\n", res.ID, res.Requeued, res.Requeues, res.ID)
			return nil
		},
	}
	cmd.Flags().BoolVar(&failed, "failed", false, "requeue only the tasks that did not complete")
	return cmd
}

func newJobCloneCmd(g *globals) *cobra.Command {
	var f jobFlags
	cmd := &cobra.Command{
		Use:   "clone ID [flags] [-- CMD [ARG...]]",
		Short: "Submit a copy of a job, with the flags given overriding its options (and a new command after --)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, argv := args[0], args[1:]
			if cmd.ArgsLenAtDash() > 1 {
				return api.Errorf(api.CodeInvalidArgument, "give the job ID before --, and the new command after it", "unexpected arguments %q before --", args[1:cmd.ArgsLenAtDash()])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var src api.JobDetail // the spec alone: not a million tasks' attempts
			if err := c.do(cmd.Context(), "GET", "/v1/jobs/"+url.PathEscape(id)+"?tasks=none", nil, &src); err != nil {
				return err
			}
			spec, err := f.override(cmd, src.Spec, argv)
			if err != nil {
				return err
			}
			var job api.Job
			if err := c.do(cmd.Context(), "POST", "/v1/jobs/"+url.PathEscape(id)+"/clone", spec, &job); err != nil {
				return err
			}
			if g.json() {
				return printJSON(g.stdout, job)
			}
			fmt.Fprintln(g.stdout, job.ID)
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}

// override applies the job flags given on the command line to base, a
// job's spec, and replaces its command when argv is not empty. --env adds
// to (or replaces single variables of) the job's environment; --label
// replaces its label constraints.
func (f *jobFlags) override(cmd *cobra.Command, base api.JobSpec, argv []string) (api.JobSpec, error) {
	given, err := f.build(cmd, argv)
	if err != nil {
		return base, err
	}
	s := base
	if len(argv) > 0 {
		s.Argv = argv
	}
	changed := cmd.Flags().Changed
	set := map[string]func(){
		"count": func() { s.Count = given.Count }, "slots": func() { s.Slots = given.Slots }, "memory": func() { s.Memory = given.Memory },
		"label": func() { s.Labels = given.Labels }, "priority": func() { s.Priority = given.Priority }, "timeout": func() { s.Timeout = given.Timeout },
		"retries": func() { s.Retries = given.Retries }, "queue": func() { s.Queue = given.Queue }, "wait-for-nodes": func() { s.WaitForNodes = given.WaitForNodes },
		"dir": func() { s.Dir = given.Dir }, "name": func() { s.Name = given.Name }, "exclusive": func() { s.Exclusive = given.Exclusive },
		"max-running": func() { s.MaxRunning = given.MaxRunning }, "cancel-on-failure": func() { s.CancelOnFailure = given.CancelOnFailure },
		"setup": func() { s.Setup = given.Setup }, "teardown": func() { s.Teardown = given.Teardown },
		"env": func() {
			env := maps.Clone(base.Env)
			if env == nil {
				env = map[string]string{}
			}
			maps.Copy(env, given.Env)
			s.Env = env
		},
	}
	for name, apply := range set {
		if changed(name) {
			apply()
		}
	}
	return s, nil
}
