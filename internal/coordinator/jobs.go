package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/store"
)

const defaultRetries = 3

// validateSpec checks a submitted spec completely before anything is
// written, filling in defaults. Every refusal names the field and the fix.
func validateSpec(s *api.JobSpec) (sched.Priority, error) {
	bad := func(fix, format string, args ...any) error {
		return api.Errorf(api.CodeInvalidArgument, fix, format, args...)
	}
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return 0, bad("give the command after --, e.g. `ward run -- echo hi`", "the job has no command")
	}
	if len(s.Argv) > api.MaxArgs {
		return 0, api.Errorf(api.CodeJobTooLarge, "pass long inputs in a file and give its path", "the command has %d arguments; the limit is %d", len(s.Argv), api.MaxArgs)
	}
	size := 0
	for i, a := range s.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return 0, bad("remove NUL bytes from the arguments", "argument %d contains a NUL byte", i)
		}
		size += len(a) + 1
	}
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return 0, bad("use NAME=value with a NAME free of '=' and NUL", "environment variable %q is not valid", k)
		}
		if strings.HasPrefix(k, "WARD_") {
			return 0, bad("choose another name; WARD_ variables are set by Ward", "environment variable %q is reserved", k)
		}
		size += len(k) + len(v) + 2
	}
	if size > api.MaxArgBytes {
		return 0, api.Errorf(api.CodeJobTooLarge, "pass long inputs in a file and give its path", "the command and environment are %d bytes; the limit is %d", size, api.MaxArgBytes)
	}
	if s.Count == 0 {
		s.Count = 1
	}
	if s.Count < 0 || s.Count > api.MaxTaskCount {
		return 0, bad(fmt.Sprintf("use --count between 1 and %d", api.MaxTaskCount), "task count %d is out of range", s.Count)
	}
	if s.Slots == 0 {
		s.Slots = 1
	}
	if s.Slots < 0 || s.Slots > 100000 {
		return 0, bad("use --slots between 1 and 100000", "slots per task %d is out of range", s.Slots)
	}
	for k, v := range s.Labels {
		if err := config.ValidLabel(k, v); err != nil {
			return 0, bad("use --label key=value", "%v", err)
		}
	}
	p, err := sched.ParsePriority(s.Priority)
	if err != nil {
		return 0, bad("use --priority "+strings.Join(api.Priorities, "|"), "%v", err)
	}
	s.Priority = p.String()
	if s.Timeout < 0 {
		return 0, bad("use a positive --timeout such as 10m, or none", "timeout %s is negative", s.Timeout.D())
	}
	if s.Retries == nil {
		r := defaultRetries
		s.Retries = &r
	}
	if *s.Retries < 0 || *s.Retries > 100 {
		return 0, bad("use --retries between 0 and 100", "retries %d is out of range", *s.Retries)
	}
	if s.Queue == "" {
		s.Queue = "default"
	}
	if err := pki.ValidName("queue", s.Queue); err != nil {
		return 0, bad("use a queue name of lower-case letters, digits, '-', '_' and '.'", "%v", err)
	}
	if s.MaxRunning < 0 || s.MaxRunning > api.MaxTaskCount {
		return 0, bad("use --max-running between 1 and the task count, or 0 for no cap", "max running %d is out of range", s.MaxRunning)
	}
	if s.Memory < 0 || s.Memory > api.MaxTaskMemory {
		return 0, bad("use --memory such as 512MiB or 4GiB", "memory per task %d bytes is out of range (0 to %d)", s.Memory, int64(api.MaxTaskMemory))
	}
	if s.Dir != "" && !filepath.IsAbs(s.Dir) {
		return 0, bad("give an absolute --dir", "working directory %q is not absolute", s.Dir)
	}
	for _, c := range []struct{ flag, cmd string }{{"--setup", s.Setup}, {"--teardown", s.Teardown}} {
		if strings.IndexByte(c.cmd, 0) >= 0 {
			return 0, bad("remove NUL bytes from "+c.flag, "%s holds a NUL byte", c.flag)
		}
		size += len(c.cmd)
	}
	if size > api.MaxArgBytes {
		return 0, api.Errorf(api.CodeJobTooLarge, "pass long inputs in a file and give its path", "the command, environment, setup and teardown are %d bytes; the limit is %d", size, api.MaxArgBytes)
	}
	if s.Teardown != "" && s.Setup == "" {
		return 0, bad("give --setup too (the teardown runs where the setup succeeded), or use --setup true", "--teardown without --setup")
	}
	if len(s.Name) > 200 {
		return 0, bad("shorten --name", "job name is %d characters; the limit is 200", len(s.Name))
	}
	return p, nil
}

func (c *Coordinator) apiJobSubmit(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return created(c, w, r, func(spec api.JobSpec) (api.Job, error) { return c.SubmitJob(r.Context(), p, spec) })
}

// SubmitJob validates and records a job; it returns once the job is
// durable.
func (c *Coordinator) SubmitJob(ctx context.Context, p authz.Principal, spec api.JobSpec) (api.Job, error) {
	if err := c.allow(p, authz.JobSubmit); err != nil {
		return api.Job{}, err
	}
	if err := c.refuseInMaintenance(p, "submitting a job"); err != nil {
		return api.Job{}, err
	}
	return c.submit(p, spec, "")
}

// submit validates and records a job (a clone of job cloneOf, if set) and
// places what fits now; it returns once the job is durable. Callers have
// authorized p.
func (c *Coordinator) submit(p authz.Principal, spec api.JobSpec, cloneOf string) (api.Job, error) {
	who := p.ID
	down := c.health.Down() // before the job is accepted: an outage from here on is answered below
	prio, err := validateSpec(&spec)
	if err != nil {
		return api.Job{}, err
	}
	if len(spec.Inputs) > 0 || len(spec.Outputs) > 0 {
		if err := c.checkStaging(&spec); err != nil {
			return api.Job{}, err
		}
	}
	c.mu.Lock()
	if !spec.WaitForNodes {
		if why := c.cl.Unschedulable(spec.Slots, spec.Memory, spec.Labels); why != "" {
			c.mu.Unlock()
			return api.Job{}, api.Errorf(api.CodeJobUnschedulable, "see the reason; --wait-for-nodes keeps the job queued until a node fits", "no agent can ever run this job: %s", why)
		}
	}
	c.jobSeq++
	j := &sched.Job{
		ID: strconv.FormatUint(c.jobSeq, 10), Spec: spec, Priority: prio, Slots: spec.Slots, Retries: *spec.Retries,
		Submitted: c.now().UTC(), SubmittedBy: who.String(), CloneOf: cloneOf, Held: spec.HoldForFollower,
	}
	c.cl.AddJob(j)
	if j.Held {
		time.AfterFunc(api.HoldForFollowerMax, func() { c.releaseHold(j, false) })
	}
	out := jobAPI(j)
	// Place what fits now, so the job and its first assignments share one
	// durable commit: a task's path to its agent costs one commit, not two.
	// The frames leave only after that commit, as in a dispatch round.
	pl := c.placeLocked()
	ch := c.changesLocked()
	ch.add(store.Put(keyJobSeq, []byte(j.ID)))
	c.mu.Unlock()
	frames := pl.frames(c)
	done := make(chan error, 1)
	c.commit(ch, func() { frames.send() }, func(err error) {
		if err == nil { // recorded once durable, even after an outage
			c.metrics.Jobs.WithLabelValues("submitted").Inc()
			if cloneOf != "" {
				c.Record(p, audit.Event{Type: "job.clone", Target: j.ID, Detail: map[string]string{"source": cloneOf, "count": strconv.Itoa(spec.Count), "command": spec.Argv[0]}})
			} else {
				c.Record(p, audit.Event{Type: "job.submit", Target: j.ID, Detail: map[string]string{"count": strconv.Itoa(spec.Count), "command": spec.Argv[0]}})
			}
			c.log.Info("job submitted", "job", j.ID, "tasks", spec.Count, "by", who.String(), "priority", spec.Priority, "queue", spec.Queue, "clone_of", cloneOf)
		}
		done <- err
	})
	select {
	case err := <-done:
		if err != nil {
			return api.Job{}, err
		}
		return out, nil
	case <-down:
		// The store stopped writing after the job was accepted: it is kept
		// and runs once the store writes again. Not a refusal.
		c.log.Warn("job accepted as the store stopped writing; kept, and written once the store writes again", "job", j.ID)
		return api.Job{}, c.health.Pending("job " + j.ID)
	}
}

func jobAPI(j *sched.Job) api.Job {
	return api.Job{ID: j.ID, Spec: j.Spec, State: j.State, Submitted: j.Submitted, Finished: j.Finished,
		SubmittedBy: j.SubmittedBy, CancelReason: j.CancelReason, Counts: j.Counts(), Requeues: j.Requeues, CloneOf: j.CloneOf}
}

// findJob resolves a job ID from a request path. Callers hold c.mu.
func (c *Coordinator) findJobLocked(id string) (*sched.Job, error) {
	if !validJobID(id) {
		return nil, api.Errorf(api.CodeInvalidArgument, "job IDs are the numbers `ward job ls` shows", "%q is not a job ID", id)
	}
	j, ok := c.cl.Job(id)
	if !ok {
		return nil, api.Errorf(api.CodeNotFound, "list jobs with `ward job ls`", "no job with ID %s", id)
	}
	return j, nil
}

func (c *Coordinator) apiJobList(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	q := r.URL.Query()
	out, _, err := c.Jobs(r.Context(), p, api.JobFilter{State: q.Get("state"), Queue: q.Get("queue"), User: q.Get("user"), Mine: q.Get("mine") == "1", All: q.Get("all") == "1"})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// Jobs lists the jobs f selects, in submission order (or newest first),
// and how many match in all.
func (c *Coordinator) Jobs(ctx context.Context, p authz.Principal, f api.JobFilter) ([]api.Job, int, error) {
	scope, err := c.decide(p, authz.JobRead)
	if err != nil {
		return nil, 0, err
	}
	if scope == authz.ScopeOwn {
		// A submitter lists its own jobs; asking for someone else's is
		// refused rather than answered with an empty list.
		var err error
		switch {
		case f.All:
			err = api.Errorf(api.CodePermissionDenied, "list your own jobs (`ward job ls` without --all)",
				"%s has role %s, which sees only its own jobs; every user's jobs need role admin, operator or viewer", p.ID, p.Role)
		case f.User != "" && !userMatches(f.User, p.String()):
			err = api.Errorf(api.CodeForbiddenNotOwner, "list your own jobs (`ward job ls`)",
				"%s has role %s, which sees only its own jobs, not %s's", p.ID, p.Role, f.User)
		}
		if err != nil {
			c.refused(p, authz.JobRead, err)
			return nil, 0, err
		}
		f.Mine = true
	}
	mine := p.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	all := c.cl.Jobs()
	if f.Newest {
		slices.Reverse(all)
	}
	out := []api.Job{}
	total := 0
	for _, j := range all {
		if (f.State != "" && f.State != j.State) || (f.Queue != "" && f.Queue != j.Spec.Queue) || (f.User != "" && !userMatches(f.User, j.SubmittedBy)) ||
			(f.Mine && j.SubmittedBy != mine) {
			continue
		}
		if total >= f.Offset && (f.Limit <= 0 || len(out) < f.Limit) {
			out = append(out, jobAPI(j))
		}
		total++
	}
	return out, total, nil
}

// ownJob refuses a principal whose scope is its own jobs another user's
// job, with FORBIDDEN_NOT_OWNER, logged and audited like every refusal.
func (c *Coordinator) ownJob(p authz.Principal, scope authz.Scope, a authz.Action, j *sched.Job) error {
	if scope != authz.ScopeOwn || p.Owns(j.SubmittedBy) {
		return nil
	}
	err := authz.NotOwner(p, j.ID, j.SubmittedBy)
	c.refused(p, a, err)
	return err
}

// userMatches compares a user filter, a full identity or a bare user name,
// with the identity that submitted a job.
func userMatches(filter, submittedBy string) bool {
	return filter == submittedBy || strings.HasSuffix(submittedBy, "/user/"+filter)
}

func (c *Coordinator) apiJobStatus(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var tf api.TaskFilter
	switch v := r.URL.Query().Get("tasks"); v {
	case "":
	case "none":
		tf.None = true
	default:
		return api.Errorf(api.CodeInvalidArgument, "leave tasks out for every task, or pass tasks=none for the job alone", "tasks=%q is not a task selection", v)
	}
	d, _, err := c.Job(r.Context(), p, r.PathValue("id"), tf)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

// Job is one job with the tasks tf selects and every attempt of each, and
// how many tasks match tf in all.
func (c *Coordinator) Job(ctx context.Context, p authz.Principal, id string, tf api.TaskFilter) (api.JobDetail, int, error) {
	scope, err := c.decide(p, authz.JobRead)
	if err != nil {
		return api.JobDetail{}, 0, err
	}
	var truncated map[int]bool
	if !tf.None {
		if truncated, err = c.truncatedTasks(ctx, id); err != nil {
			return api.JobDetail{}, 0, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j, err := c.findJobLocked(id)
	if err == nil {
		err = c.ownJob(p, scope, authz.JobRead, j)
	}
	if err != nil {
		return api.JobDetail{}, 0, err
	}
	d := api.JobDetail{Job: jobAPI(j), MaxOutputBytes: c.cfg.MaxOutputBytes, Tasks: []api.Task{}}
	if tf.None {
		return d, len(j.Tasks), nil
	}
	if tf.State == "" && tf.Offset == 0 && tf.Limit <= 0 {
		d.Tasks = make([]api.Task, 0, len(j.Tasks))
	}
	total := 0
	for i := range j.Tasks {
		t := &j.Tasks[i]
		if tf.State != "" && t.State.String() != tf.State {
			continue
		}
		total++
		if total <= tf.Offset || (tf.Limit > 0 && len(d.Tasks) >= tf.Limit) {
			continue
		}
		at := api.Task{Index: i, State: t.State.String(), OutputTruncated: truncated[i]}
		if len(t.Attempts) == 0 && t.State.Terminal() {
			at.Reason = j.CancelReason
		}
		for _, a := range t.Attempts {
			aa := api.Attempt{N: a.N, Node: a.Node, State: a.State.String(), Assigned: a.Assigned, Started: a.Started, Ended: a.Ended, Reason: a.Reason, Late: a.Late, Account: a.Account, Requeue: a.Requeue}
			if a.HasExit {
				e := a.Exit
				aa.ExitCode = &e
			}
			at.Attempts = append(at.Attempts, aa)
		}
		d.Tasks = append(d.Tasks, at)
	}
	return d, total, nil
}

// truncatedTasks are the tasks of job id whose output passed the limit
// (read from the store: the job may have ended long ago).
func (c *Coordinator) truncatedTasks(ctx context.Context, id string) (map[int]bool, error) {
	if !validJobID(id) {
		return nil, nil // findJobLocked says why
	}
	out := map[int]bool{}
	prefix := truncatedPrefix(id)
	err := c.st.Scan(ctx, prefix, func(rec store.Record) error {
		if n, err := strconv.Atoi(strings.TrimPrefix(rec.Key, prefix)); err == nil {
			out[n] = true
		}
		return nil
	})
	return out, err
}

// firstFailures describes up to n tasks of j that did not complete, lowest
// index first, by their last attempt. Callers hold c.mu.
func firstFailures(j *sched.Job, n int) []api.TaskFailure {
	var out []api.TaskFailure
	for i := range j.Tasks {
		t := &j.Tasks[i]
		if t.State == sched.Completed || !t.State.Terminal() {
			continue
		}
		f := api.TaskFailure{Task: i, State: t.State.String()}
		if a := t.Current(); a == nil {
			f.Reason = j.CancelReason
		} else {
			f.Attempt, f.Node, f.Reason = a.N, a.Node, a.Reason
			if a.HasExit {
				e := a.Exit
				f.ExitCode = &e
			}
		}
		if out = append(out, f); len(out) == n {
			break
		}
	}
	return out
}

func (c *Coordinator) apiJobCancel(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.CancelRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	j, err := c.CancelJob(r.Context(), p, r.PathValue("id"), req.Reason)
	if errors.Is(err, ErrJobEnded) {
		// Canceling is idempotent over the API: the job is already where a
		// cancel would take it, and the answer says so.
		return writeJSON(w, http.StatusOK, api.CancelResult{Job: j, AlreadyEnded: true})
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.CancelResult{Job: j})
}

// ErrJobEnded is the cause of CancelJob's error for a job that already
// ended; CancelJob then also returns the job as it ended.
var ErrJobEnded = errors.New("the job already ended")

// CancelJob ends a job: its waiting tasks never start and its running
// ones are stopped, with the reason recorded.
func (c *Coordinator) CancelJob(ctx context.Context, p authz.Principal, id, why string) (api.Job, error) {
	scope, err := c.decide(p, authz.JobCancel)
	if err != nil {
		return api.Job{}, err
	}
	reason := "canceled by " + p.String()
	if why != "" {
		reason += ": " + why
	}
	c.mu.Lock()
	j, err := c.findJobLocked(id)
	if err == nil {
		err = c.ownJob(p, scope, authz.JobCancel, j)
	}
	if err != nil {
		c.mu.Unlock()
		return api.Job{}, err
	}
	if j.Terminal() {
		out := jobAPI(j)
		c.mu.Unlock()
		return out, api.Errorf(api.CodeFailedPrecondition, "nothing to cancel", "job %s already ended (%s)", j.ID, j.State).WithCause(ErrJobEnded)
	}
	kill := c.cl.Cancel(j, reason, c.now())
	ch := c.changesLocked()
	sends := c.cancelFramesLocked(kill, reason, api.EndCanceled)
	out := jobAPI(j)
	c.mu.Unlock()
	done := make(chan struct{})
	c.commit(ch, func() {
		for s, m := range sends {
			s.send(api.FrameCancel, m)
		}
		close(done)
	})
	<-done
	c.Record(p, audit.Event{Type: "job.cancel", Target: j.ID, Detail: map[string]string{"reason": reason, "running_killed": strconv.Itoa(len(kill))}})
	return out, nil
}

// cancelFramesLocked groups attempts to kill by their node's session.
// Attempts on disconnected nodes are killed at reconnect (the hello
// reconcile reports them). Callers hold c.mu.
func (c *Coordinator) cancelFramesLocked(kill []sched.Placement, reason, endReason string) map[*session]*api.Cancel {
	out := map[*session]*api.Cancel{}
	for _, p := range kill {
		s := c.sessions[p.Node.Name]
		if s == nil {
			continue
		}
		m := out[s]
		if m == nil {
			m = &api.Cancel{Reason: reason, EndReason: endReason}
			out[s] = m
		}
		m.Refs = append(m.Refs, p.Ref.APIRef())
	}
	return out
}
