package sched

import (
	"fmt"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// Requeue puts a finished job's tasks back in the queue: every task, or
// with failedOnly only those that did not complete. Every earlier attempt
// stays in each task's history; new attempts carry the job's new requeue
// number, and --retries counts afresh from it. It returns how many tasks
// went back.
func (c *Cluster) Requeue(j *Job, failedOnly bool, now time.Time) (int, error) {
	if !j.Terminal() {
		return 0, api.Errorf(api.CodeFailedPrecondition, "wait for it to end, or cancel it first (`ward job cancel "+j.ID+"`)",
			"job %s is still %s; only a job that ended can be requeued", j.ID, j.State)
	}
	var idx []int
	for i := range j.Tasks {
		if !failedOnly || j.Tasks[i].State != Completed {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return 0, api.Errorf(api.CodeFailedPrecondition, "requeue without --failed to run every task again",
			"every task of job %s completed: no failed task to requeue", j.ID)
	}
	j.Requeues++
	j.CancelReason = ""
	j.Consequential = false
	j.avoid = nil // a setup that failed may work now
	j.Finished = time.Time{}
	j.State = api.JobQueued
	j.next = len(j.Tasks)
	j.requeue = j.requeue[:0]
	for _, i := range idx {
		j.Tasks[i].CancelRequested = false
		c.requeue(j, i)
	}
	c.markJob(j)
	return len(idx), nil
}

// RequeueSummary says in words what a requeue did, for logs and audit.
func RequeueSummary(j *Job, n int, failedOnly bool) string {
	what := "every task"
	if failedOnly {
		what = "the tasks that did not complete"
	}
	return fmt.Sprintf("requeue %d of job %s: %s (%d) back in the queue", j.Requeues, j.ID, what, n)
}
