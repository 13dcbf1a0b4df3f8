package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/staging"
)

// jobFlags are the job options shared by run and submit.
type jobFlags struct {
	spec    api.JobSpec
	timeout time.Duration
	retries int
	env     []string
	inputs  []string // --input LOCAL[:REMOTE], uploaded before the job is submitted
}

func (f *jobFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&f.spec.Count, "count", 1, "number of tasks; {index} in the arguments becomes 0..count-1")
	fl.IntVar(&f.spec.Slots, "slots", 1, "slots each task uses on its agent")
	fl.Var(sizeFlag{&f.spec.Memory}, "memory", "memory each task reserves on its agent, such as 512MiB or 4GiB (default: none); never placed beyond what the agent offers")
	fl.Var(labelsFlag{&f.spec.Labels}, "label", "run only on agents with this label key=value (repeatable)")
	fl.StringVar(&f.spec.Priority, "priority", "normal", "low, below-normal, normal, above-normal or high")
	fl.DurationVar(&f.timeout, "timeout", 0, "kill a task that runs longer than this (0: no limit)")
	fl.IntVar(&f.retries, "retries", 3, "requeues after infrastructure failures (agent lost, forced drain); a non-zero exit is not retried")
	fl.StringVar(&f.spec.Queue, "queue", "default", "queue name")
	fl.BoolVar(&f.spec.WaitForNodes, "wait-for-nodes", false, "queue the job even if no agent can run it now")
	fl.StringArrayVar(&f.env, "env", nil, "environment variable NAME=value for the tasks (repeatable)")
	fl.StringVar(&f.spec.Dir, "dir", "", "working directory on the agent (absolute)")
	fl.StringVar(&f.spec.Name, "name", "", "job name")
	fl.BoolVar(&f.spec.Exclusive, "exclusive", false, "give each task a whole node: nothing else runs beside it")
	fl.IntVar(&f.spec.MaxRunning, "max-running", 0, "run at most this many of the job's tasks at once (0: no cap)")
	fl.StringArrayVar(&f.inputs, "input", nil, "send the file LOCAL to each task's working directory, as REMOTE (default: its base name); LOCAL[:REMOTE], repeatable; SHA-256 verified at both ends")
	fl.StringArrayVar(&f.spec.Outputs, "output-file", nil, "bring back the files matching this pattern in the task's working directory when it ends (repeatable); `ward job output ID --to DIR` fetches them")
	fl.StringVar(&f.spec.Setup, "setup", "", "shell command run once on each node before the job's first task there; if it fails, that node's tasks go elsewhere (environment_error, within --retries)")
	fl.StringVar(&f.spec.Teardown, "teardown", "", "shell command run once on each node whose --setup succeeded, after the job ended")
	fl.BoolVar(&f.spec.CancelOnFailure, "cancel-on-failure", false, "cancel the rest of the job when a task fails; the tasks stopped give the reason \"consequential\"")
}

func (f *jobFlags) build(cmd *cobra.Command, argv []string) (api.JobSpec, error) {
	s := f.spec
	s.Argv = argv
	s.Timeout = api.Duration(f.timeout)
	if cmd.Flags().Changed("retries") {
		r := f.retries
		s.Retries = &r
	}
	for _, g := range s.Outputs {
		if err := staging.CheckGlob(g); err != nil {
			return s, api.Errorf(api.CodeInvalidArgument, "use a relative pattern such as --output-file 'out/*.csv'", "%v", err)
		}
	}
	for _, in := range f.inputs {
		if _, _, err := staging.ParseInput(in); err != nil {
			return s, api.Errorf(api.CodeInvalidArgument, "use --input LOCAL[:REMOTE], REMOTE relative to the task's working directory", "%v", err)
		}
	}
	for _, e := range f.env {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return s, api.Errorf(api.CodeInvalidArgument, "use --env NAME=value", "--env %q has no '='", e)
		}
		if s.Env == nil {
			s.Env = map[string]string{}
		}
		s.Env[k] = v
	}
	return s, nil
}

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "List jobs, show their status, cancel them"}
	var state, queue string
	var allJobs bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List your jobs (--all: every user's)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if state != "" {
				q.Set("state", state)
			}
			if queue != "" {
				q.Set("queue", queue)
			}
			if allJobs {
				q.Set("all", "1")
			} else {
				q.Set("mine", "1")
			}
			out, printed, err := call[[]api.Job](cmd, g, "GET", "/v1/jobs?"+q.Encode(), nil)
			if err != nil || printed {
				return err
			}
			t := newTable(g.stdout, "ID", "NAME", "STATE", "TASKS", "DONE", "FAILED", "PRIORITY", "QUEUE", "SUBMITTED")
			for _, j := range out {
				failed := j.Counts[api.TaskFailed] + j.Counts[api.TaskTimedOut] + j.Counts[api.TaskLost] + j.Counts[api.TaskCanceled]
				t.row(j.ID, orDash(j.Spec.Name), j.State, j.Spec.Count, j.Counts[api.TaskCompleted], failed, j.Spec.Priority, j.Spec.Queue, ts(j.Submitted))
			}
			t.flush()
			return nil
		},
	}
	ls.Flags().StringVar(&state, "state", "", "only jobs in this state")
	ls.Flags().StringVar(&queue, "queue", "", "only jobs in this queue")
	ls.Flags().BoolVar(&allJobs, "all", false, "every user's jobs, not only yours (operator, admin and viewer roles)")
	var all, watch bool
	var pf progressFlags
	status := &cobra.Command{
		Use:   "status ID",
		Short: "Show a job's state, its tasks and every attempt",
		Long: `Show a job's state, its tasks and every attempt.

With --watch, follow the job to its end first, as ward run does: on a
terminal one live progress line (done, failed, running, queued, rate, ETA)
and the output of tasks that fail (-o all: every task's output); elsewhere
every task's output as it comes. Then the status is printed, and the exit
code is 0 only if every task completed. With -o json, --watch prints the
job's progress as JSON lines, one per change, the last once it ended.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if watch {
				return watchJob(cmd.Context(), g, pf, args[0], all)
			}
			if g.taskOutput != "" {
				return api.Errorf(api.CodeInvalidArgument, "use -o all or -o failed with --watch, or -o table or -o json", "-o %s chooses which tasks' output a follower prints; ward job status prints none without --watch", g.taskOutput)
			}
			d, printed, err := call[api.JobDetail](cmd, g, "GET", "/v1/jobs/"+url.PathEscape(args[0]), nil)
			if err != nil || printed {
				return err
			}
			printJobStatus(g.stdout, &d, all)
			return nil
		},
	}
	status.Flags().BoolVar(&all, "all", false, "list every task, not only those that did not simply succeed once")
	status.Flags().BoolVar(&watch, "watch", false, "follow the job to its end with a progress line, then print its status")
	pf.bind(status)
	var reason string
	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job: queued tasks end, running ones are killed with their process group",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, printed, err := call[api.CancelResult](cmd, g, "POST", "/v1/jobs/"+url.PathEscape(args[0])+"/cancel", api.CancelRequest{Reason: reason})
			if err != nil || printed {
				return err
			}
			if j.AlreadyEnded {
				fmt.Fprintf(g.stdout, "Job %s already ended (%s at %s): nothing to cancel.\n", j.ID, j.State, ts(j.Finished))
				return nil
			}
			fmt.Fprintf(g.stdout, "Job %s: cancel requested (%s).\n", j.ID, j.CancelReason)
			return nil
		},
	}
	cancel.Flags().StringVar(&reason, "reason", "", "reason recorded with the cancellation")
	cmd.AddCommand(ls, status, cancel, newJobOutputCmd(g), newJobRequeueCmd(g), newJobCloneCmd(g))
	return cmd
}

func printJobStatus(w io.Writer, d *api.JobDetail, all bool) {
	fmt.Fprintf(w, "Job %s  %s\n", d.ID, strings.ToUpper(d.State))
	fmt.Fprintf(w, "  command:   %s\n", strings.Join(d.Spec.Argv, " "))
	fmt.Fprintf(w, "  tasks:     %d (%s)\n", d.Spec.Count, formatCounts(d.Counts))
	fmt.Fprintf(w, "  priority:  %s   queue: %s   slots/task: %d   retries: %d\n", d.Spec.Priority, d.Spec.Queue, d.Spec.Slots, derefInt(d.Spec.Retries))
	if limits := jobLimits(d.Spec); limits != "" {
		fmt.Fprintf(w, "  limits:    %s\n", limits)
	}
	fmt.Fprintf(w, "  submitted: %s by %s\n", ts(d.Submitted), d.SubmittedBy)
	if !d.Finished.IsZero() {
		fmt.Fprintf(w, "  finished:  %s\n", ts(d.Finished))
	}
	if d.CancelReason != "" {
		fmt.Fprintf(w, "  canceled:  %s\n", d.CancelReason)
	}
	if d.Requeues > 0 {
		fmt.Fprintf(w, "  requeued:  %d time(s); REQUEUE says in which round each attempt ran\n", d.Requeues)
	}
	if d.CloneOf != "" {
		fmt.Fprintf(w, "  clone of:  job %s\n", d.CloneOf)
	}
	t := newTable(w, "TASK", "STATE", "ATTEMPT", "REQUEUE", "NODE", "ACCOUNT", "EXIT", "ENDED", "REASON")
	shown := 0
	var truncated []string
	for _, task := range d.Tasks {
		if task.OutputTruncated {
			truncated = append(truncated, strconv.Itoa(task.Index))
		}
		if !all && task.State == api.TaskCompleted && len(task.Attempts) == 1 && !task.OutputTruncated {
			continue
		}
		if len(task.Attempts) == 0 {
			t.row(task.Index, task.State, "-", "-", "-", "-", "-", orDash(task.Reason))
		}
		for _, a := range task.Attempts {
			exit := "-"
			if a.ExitCode != nil {
				exit = strconv.Itoa(*a.ExitCode)
			}
			t.row(task.Index, task.State, a.N, a.Requeue, a.Node, orDash(a.Account), exit, ts(a.Ended), orDash(a.Reason))
		}
		shown++
	}
	fmt.Fprintln(w)
	if shown > 0 {
		t.flush()
	}
	if hidden := len(d.Tasks) - shown; hidden > 0 {
		fmt.Fprintf(w, "(%d task(s) that succeeded on their first attempt are not listed; --all lists them)\n", hidden)
	}
	if len(truncated) > 0 {
		fmt.Fprintf(w, "Output truncated: task(s) %s wrote more than the %d bytes per task the coordinator keeps (--max-output-bytes); `ward run --output-dir DIR` writes all of it to files.\n",
			strings.Join(truncated, ", "), d.MaxOutputBytes)
	}
}

// jobLimits describes the placement options a job was given beyond slots.
func jobLimits(s api.JobSpec) string {
	var parts []string
	if s.Exclusive {
		parts = append(parts, "exclusive (a whole node per task)")
	}
	if s.MaxRunning > 0 {
		parts = append(parts, fmt.Sprintf("at most %d running", s.MaxRunning))
	}
	if s.Setup != "" {
		parts = append(parts, "setup: "+s.Setup)
	}
	if s.Teardown != "" {
		parts = append(parts, "teardown: "+s.Teardown)
	}
	if s.CancelOnFailure {
		parts = append(parts, "cancel on failure")
	}
	if s.Memory > 0 {
		parts = append(parts, sched.FormatBytes(s.Memory)+" memory per task")
	}
	return strings.Join(parts, ", ")
}

func formatCounts(m map[string]int) string {
	var parts []string
	for _, s := range []string{api.TaskQueued, api.TaskAssigned, api.TaskRunning, api.TaskCompleted, api.TaskFailed, api.TaskTimedOut, api.TaskCanceled, api.TaskLost} {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// printStoredLogs prints the output a job (or one task, task >= 0) has
// stored so far.
func printStoredLogs(ctx context.Context, c *client, id string, task int, p *linePrinter) error {
	q := url.Values{}
	if task >= 0 {
		q.Set("task", strconv.Itoa(task))
	}
	resp, err := c.send(ctx, "GET", "/v1/jobs/"+url.PathEscape(id)+"/logs?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ch api.LogChunk
		if err := dec.Decode(&ch); err != nil {
			break
		}
		if !ch.End {
			if err := p.chunk(ch); err != nil {
				return err
			}
		}
	}
	return p.flush()
}

func newLogsCmd(g *globals) *cobra.Command {
	var task int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a job's output, each line prefixed by its task index",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if follow {
				_, err := followLogs(cmd.Context(), g, c, args[0], task, newLinePrinter(g), false)
				return err
			}
			return printStoredLogs(cmd.Context(), c, args[0], task, newLinePrinter(g))
		},
	}
	cmd.Flags().IntVar(&task, "task", -1, "only this task's output")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the job ends")
	return cmd
}
