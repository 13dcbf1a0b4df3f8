package coordinator

import (
	"context"
	"net/http"
	"strconv"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/sched"
)

// apiJobProgress answers GET /v1/jobs/{id}/progress[?known_failed=N]: a
// job's counts for a live progress line, and the indexes of its failed
// tasks when their number is not the caller's known_failed.
func (c *Coordinator) apiJobProgress(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	known := -1
	if s := r.URL.Query().Get("known_failed"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return api.Errorf(api.CodeInvalidArgument, "known_failed is the number of failed tasks the caller has seen, 0 or more", "known_failed %q is not a count", s)
		}
		known = n
	}
	pr, err := c.JobProgress(r.Context(), p, r.PathValue("id"), known)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pr)
}

// JobProgress is a job's counts. The failed tasks' indexes are listed only
// when their number differs from known (-1: always), so polling a job
// whose failures did not change costs O(1) under the lock. A job that
// ended is reported once its end is durable.
func (c *Coordinator) JobProgress(ctx context.Context, p authz.Principal, id string, known int) (api.JobProgress, error) {
	scope, err := c.decide(p, authz.JobRead)
	if err != nil {
		return api.JobProgress{}, err
	}
	c.mu.Lock()
	j, err := c.findJobLocked(id)
	if err == nil {
		err = c.ownJob(p, scope, authz.JobRead, j)
	}
	if err != nil {
		c.mu.Unlock()
		return api.JobProgress{}, err
	}
	pr := api.JobProgress{ID: j.ID, State: j.State, Tasks: len(j.Tasks), Counts: j.Counts()}
	for _, s := range []sched.State{sched.Failed, sched.TimedOut, sched.Canceled, sched.Lost} {
		pr.Failed += j.Count(s)
	}
	if pr.Failed > 0 && pr.Failed != known {
		pr.FailedTasks = make([]int, 0, min(pr.Failed, api.MaxProgressFailedTasks))
		for i := range j.Tasks {
			if s := j.Tasks[i].State; s.Terminal() && s != sched.Completed {
				if pr.FailedTasks = append(pr.FailedTasks, i); len(pr.FailedTasks) == api.MaxProgressFailedTasks {
					break
				}
			}
		}
	}
	terminal := j.Terminal()
	if terminal && pr.Failed > 0 {
		pr.Failures = firstFailures(j, api.MaxFailuresShown)
	}
	if !terminal {
		c.mu.Unlock()
		return pr, nil
	}
	// Memory runs ahead of the store: report an ended job only once
	// everything queued so far, its end included, is durable.
	durable := make(chan error, 1)
	c.journal.Commit(nil, func(err error) { durable <- err })
	c.mu.Unlock()
	if err := <-durable; err != nil {
		return api.JobProgress{}, api.Errorf(api.CodeUnavailable, "retry once the coordinator has restarted; its log names the store error", "the coordinator could not make the job's end durable: %v", err)
	}
	return pr, nil
}
