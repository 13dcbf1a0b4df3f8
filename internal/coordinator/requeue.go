package coordinator

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
)

func (c *Coordinator) apiJobRequeue(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.RequeueRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	res, err := c.RequeueJob(r.Context(), p, r.PathValue("id"), req.Failed)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// RequeueJob puts a finished job's tasks (or, with failedOnly, those that
// did not complete) back in the queue under the same job ID. Every earlier
// attempt stays in the history; the new ones carry the next requeue number.
func (c *Coordinator) RequeueJob(ctx context.Context, p authz.Principal, id string, failedOnly bool) (api.RequeueResult, error) {
	scope, err := c.decide(p, authz.JobRequeue)
	if err != nil {
		return api.RequeueResult{}, err
	}
	if err := c.refuseInMaintenance(p, "requeueing a job"); err != nil {
		return api.RequeueResult{}, err
	}
	c.mu.Lock()
	j, err := c.findJobLocked(id)
	if err == nil {
		err = c.ownJob(p, scope, authz.JobRequeue, j)
	}
	var finished time.Time
	if err == nil && j.Terminal() && len(j.Spec.Inputs) > 0 {
		finished = j.Finished
	}
	c.mu.Unlock()
	if err != nil {
		return api.RequeueResult{}, err
	}
	if at, purged, err := c.purgedAt(ctx, id, finished); err != nil {
		return api.RequeueResult{}, api.Errorf(api.CodeUnavailable, "retry", "reading job %s's staging record: %v", id, err)
	} else if purged {
		return api.RequeueResult{}, c.purgedError(api.CodeFailedPrecondition, id, at, "its input files are gone, so its tasks cannot run again",
			"submit it again with its files (`ward run --input LOCAL ...`)")
	}
	// The job ended, so nothing writes its output now: its counters are
	// read outside the lock, and the new attempts' output continues after
	// what is stored instead of overwriting it.
	counters, err := c.storedOutputCounters(ctx, id)
	if err != nil {
		return api.RequeueResult{}, err
	}
	c.mu.Lock()
	if !j.Terminal() {
		c.mu.Unlock()
		return api.RequeueResult{}, api.Errorf(api.CodeFailedPrecondition, "wait for it to end, or cancel it first (`ward job cancel "+id+"`)",
			"job %s is still %s; only a job that ended can be requeued", id, j.State)
	}
	if !j.Spec.WaitForNodes {
		if why := c.cl.Unschedulable(j.Spec.Slots, j.Spec.Memory, j.Spec.Labels); why != "" {
			c.mu.Unlock()
			return api.RequeueResult{}, api.Errorf(api.CodeJobUnschedulable, "see the reason; `ward job clone "+id+" --wait-for-nodes` queues a copy until a node fits", "no agent can run this job now: %s", why)
		}
	}
	n, err := c.cl.Requeue(j, failedOnly, c.now())
	if err != nil {
		c.mu.Unlock()
		return api.RequeueResult{}, err
	}
	for task, st := range counters {
		c.outputs[outputKey{j.ID, task}] = st
	}
	pl := c.placeLocked()
	ch := c.changesLocked()
	out := api.RequeueResult{Job: jobAPI(j), Requeued: n}
	round := j.Requeues
	c.mu.Unlock()
	frames := pl.frames(c)
	done := make(chan error, 1)
	c.commit(ch, func() { frames.send() }, func(err error) { done <- err })
	if err := <-done; err != nil {
		return api.RequeueResult{}, err
	}
	c.Record(p, audit.Event{Type: "job.requeue", Target: id, Result: "ok", Detail: map[string]string{
		"requeue": strconv.Itoa(round), "tasks": strconv.Itoa(n), "failed_only": boolStr(failedOnly)}})
	c.log.Info("job requeued", "job", id, "requeue", round, "tasks", n, "failed_only", failedOnly, "by", p.String())
	return out, nil
}

func (c *Coordinator) apiJobClone(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return created(c, w, r, func(spec api.JobSpec) (api.Job, error) { return c.CloneJob(r.Context(), p, r.PathValue("id"), spec) })
}

// CloneJob submits spec as a new job that records job id as its source.
// The CLI sends id's spec with the flags given on `ward job clone` applied.
func (c *Coordinator) CloneJob(ctx context.Context, p authz.Principal, id string, spec api.JobSpec) (api.Job, error) {
	scope, err := c.decide(p, authz.JobClone)
	if err != nil {
		return api.Job{}, err
	}
	if err := c.refuseInMaintenance(p, "cloning a job"); err != nil {
		return api.Job{}, err
	}
	c.mu.Lock()
	j, err := c.findJobLocked(id)
	if err == nil {
		err = c.ownJob(p, scope, authz.JobClone, j)
	}
	c.mu.Unlock()
	if err != nil {
		return api.Job{}, err
	}
	spec.HoldForFollower = false // a copy has no follower waiting for it
	return c.submit(p, spec, id)
}
