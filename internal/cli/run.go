package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
)

// secondInterrupt is how long after the first Ctrl-C a second one cancels
// the job instead of only leaving it.
const secondInterrupt = 2 * time.Second

// exitInterrupted is the exit code after Ctrl-C, as for a shell command
// killed by SIGINT.
const exitInterrupted = 130

func newRunCmd(g *globals, wait bool) *cobra.Command {
	var f jobFlags
	var pf progressFlags
	var outDir string
	use, short := "submit [flags] -- CMD [ARG...]", "Submit a job and print its ID at once"
	if wait {
		use, short = "run [flags] -- CMD [ARG...]", "Run a job, print each task's output prefixed by its index, exit 0 only if every task succeeded"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.build(cmd, args)
			if err != nil {
				return err
			}
			var fo followOptions
			if wait {
				if fo, err = newFollowOptions(g, pf, outDir); err != nil {
					return err
				}
				// All output goes to files only to a live follower: the
				// tasks wait until this one is there.
				spec.HoldForFollower = outDir != ""
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if spec.Inputs, err = uploadInputs(cmd.Context(), g, c, f.inputs); err != nil {
				return err
			}
			var job api.Job
			if err := c.do(cmd.Context(), "POST", "/v1/jobs", spec, &job); err != nil {
				return err
			}
			if !wait {
				if g.json() {
					return printJSON(g.stdout, job)
				}
				fmt.Fprintln(g.stdout, job.ID)
				return nil
			}
			if !g.json() {
				fmt.Fprintf(g.stderr, "job %s: %d task(s) submitted\n", job.ID, spec.Count)
			}
			return followRun(cmd.Context(), g, c, job.ID, spec.Count, fo)
		},
	}
	cmd.Flags().SetInterspersed(false)
	f.bind(cmd)
	if wait {
		cmd.Long = `Submit a job and follow it: each task's output is printed as it comes,
prefixed by the task's index, and the job's end is reported with the first
few failures' reasons. The exit code is 0 only if every task exited 0.

With --output-dir DIR, each task's stdout and stderr are written to files in
DIR instead (task-INDEX.stdout, task-INDEX.stderr; a retried task's later
attempts get task-INDEX.attempt-N.*), all of it: the coordinator's per-task
cap (--max-output-bytes) does not apply to a follower that writes files.
The job's tasks wait until ward follows it, so none of it is written
before.

On a terminal (stderr), ward run draws one live progress line instead:
done, failed, running and queued tasks, the rate and the time left; and it
prints only the output of tasks that failed, once they fail. -o all prints
every task's output as it comes, with the line kept below it; --progress
off|on overrides the terminal check. On a non-terminal, and with -o json,
every task's output is printed as it comes, with no line.

Ctrl-C stops following, not the job: it keeps running, and ward says how to
follow or cancel it. A second Ctrl-C within 2 s cancels the job.`
		pf.bind(cmd)
		cmd.Flags().StringVar(&outDir, "output-dir", "", "write each task's stdout and stderr to files in this directory, without the coordinator's cap, instead of printing them")
	}
	return cmd
}

// followRun follows a submitted job to its end and reports it. Ctrl-C
// leaves the job running; a second one within secondInterrupt cancels it.
func followRun(ctx context.Context, g *globals, c *client, id string, count int, fo followOptions) error {
	g = withProgressWriters(g, fo.line)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	interrupted := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			close(interrupted)
			stop()
		case <-fctx.Done():
		}
	}()
	end, err := fo.follow(fctx, g, c, id)
	select {
	case <-interrupted:
		if fo.line != nil {
			fo.line.done()
		}
		return leaveOrCancel(ctx, g, c, id, sigs)
	default:
	}
	if err != nil {
		return err
	}
	return finish(g, id, count, end, fo.outDir)
}

// leaveOrCancel runs after Ctrl-C: it says the job keeps running and how to
// follow or cancel it, and cancels it if a second Ctrl-C comes soon.
func leaveOrCancel(ctx context.Context, g *globals, c *client, id string, sigs <-chan os.Signal) error {
	fmt.Fprintf(g.stderr, "\nward: stopped following job %s; it keeps running on the cluster.\n  follow it:  ward logs %s -f\n  cancel it:  ward job cancel %s\nPress Ctrl-C again within %s to cancel it now.\n",
		id, id, id, secondInterrupt)
	sum := runSummary{Summary: true, Job: id, State: "running", Interrupted: true}
	select {
	case <-sigs:
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		var res api.CancelResult
		if err := c.do(cctx, "POST", "/v1/jobs/"+id+"/cancel", api.CancelRequest{Reason: "interrupted twice at ward run"}, &res); err != nil {
			fmt.Fprintf(g.stderr, "ward: could not cancel job %s: %v\n", id, err)
			return err
		}
		sum.State, sum.Canceled = res.State, !res.AlreadyEnded
		if res.AlreadyEnded {
			fmt.Fprintf(g.stderr, "ward: job %s had already ended (%s).\n", id, res.State)
		} else {
			fmt.Fprintf(g.stderr, "ward: job %s canceled: its running tasks are being stopped.\n", id)
		}
	case <-time.After(secondInterrupt):
	}
	if g.json() {
		if err := printJSONLine(g.stdout, sum); err != nil {
			return err
		}
	}
	return exitError{exitInterrupted}
}

// runSummary is the last line of `ward run -o json`: how the job ended.
type runSummary struct {
	// Summary is always true: it tells this line from the output lines.
	Summary     bool              `json:"summary"`
	Job         string            `json:"job"`
	State       string            `json:"state"`
	Tasks       int               `json:"tasks"`
	Succeeded   int               `json:"succeeded"`
	Failed      int               `json:"failed"`
	Counts      map[string]int    `json:"counts"`
	Failures    []api.TaskFailure `json:"failures"`
	OutputDir   string            `json:"output_dir,omitempty"`
	Interrupted bool              `json:"interrupted,omitempty"` // Ctrl-C: the job was left running
	Canceled    bool              `json:"canceled,omitempty"`    // a second Ctrl-C canceled it
}

// finish reports how a followed job ended and picks the exit code: the
// counts, and why the first tasks that did not succeed failed.
func finish(g *globals, id string, count int, end api.LogChunk, outDir string) error {
	counts := end.Counts
	if counts == nil {
		counts = map[string]int{}
	}
	sum := runSummary{Summary: true, Job: id, State: end.JobState, Tasks: count, Succeeded: counts[api.TaskCompleted], Failed: end.Failed,
		Counts: counts, Failures: end.Failures, OutputDir: outDir}
	if sum.Failures == nil {
		sum.Failures = []api.TaskFailure{}
	}
	if g.json() {
		if err := printJSONLine(g.stdout, sum); err != nil {
			return err
		}
	} else {
		if outDir != "" {
			fmt.Fprintf(g.stderr, "output of job %s is in %s (task-INDEX.stdout, task-INDEX.stderr)\n", id, outDir)
		}
		switch end.JobState {
		case api.JobCompleted:
			fmt.Fprintf(g.stderr, "job %s completed: %d/%d tasks succeeded\n", id, count, count)
		default:
			fmt.Fprintf(g.stderr, "job %s %s: %d of %d task(s) did not succeed (%s)\n", id, end.JobState, end.Failed, count, formatCounts(counts))
			for _, f := range end.Failures {
				fmt.Fprintf(g.stderr, "  %s\n", describeFailure(f))
			}
			more := ""
			if n := end.Failed - len(end.Failures); n > 0 {
				more = fmt.Sprintf(" (%d more not shown)", n)
			}
			fmt.Fprintf(g.stderr, "`ward job status %s` lists every failed attempt%s\n", id, more)
		}
	}
	if end.JobState != api.JobCompleted {
		return exitError{1}
	}
	return nil
}

// describeFailure says in one line why a task did not succeed.
func describeFailure(f api.TaskFailure) string {
	where := fmt.Sprintf("task %d", f.Task)
	if f.Attempt > 0 {
		where += fmt.Sprintf(" (attempt %d on %s)", f.Attempt, f.Node)
	}
	why := f.Reason
	if why == "" {
		why = f.State
		if f.Attempt == 0 {
			why += " before it ever started"
		}
	}
	return where + ": " + why
}
