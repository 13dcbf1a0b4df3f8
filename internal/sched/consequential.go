package sched

import (
	"fmt"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// consequentialReason starts the reason of every task a --cancel-on-failure
// job stops because another of its tasks failed.
const consequentialReason = "consequential"

// cancelOnFailure stops the rest of a --cancel-on-failure job once its
// task i failed: waiting tasks end canceled, and active attempts are
// queued for killing (TakeKills). Their reasons say "consequential".
func (c *Cluster) cancelOnFailure(j *Job, i int, now time.Time) {
	if !j.Spec.CancelOnFailure || j.CancelReason != "" {
		return
	}
	j.Consequential = true
	why := fmt.Sprintf("%s: task %d %s, and the job has --cancel-on-failure", consequentialReason, i, j.Tasks[i].State)
	c.kills = append(c.kills, c.cancelRest(j, why)...)
}

// TakeKills returns and forgets the attempts that a job's own failure
// canceled (--cancel-on-failure), for the coordinator to stop on their
// agents once the change is durable.
func (c *Cluster) TakeKills() []Placement {
	k := c.kills
	c.kills = nil
	return k
}

// envError ends an attempt whose job's --setup failed on node: like a lost
// node, it counts against --retries and the task goes back to the queue,
// but never to that node again. When no node is left that could run the
// job, its waiting tasks end at once instead of waiting forever.
func (c *Cluster) envError(j *Job, i int, node string, r api.TaskResult) {
	if j.avoid == nil {
		j.avoid = map[string]bool{}
	}
	j.avoid[node] = true
	a := j.Tasks[i].Current()
	a.Ended = r.Ended.Time()
	reason := api.EndEnvError + ": " + r.Error
	if r.Error == "" {
		reason = api.EndEnvError + ": the job's setup failed on " + node
	}
	c.loseAttempt(j, i, reason)
	if j.Terminal() || j.Pending() == 0 || c.placeableSomewhere(j) {
		return
	}
	why := fmt.Sprintf("%s: the job's setup failed on every node that could run it (%d)", api.EndEnvError, len(j.avoid))
	for j.Pending() > 0 {
		k := j.pop()
		t := &j.Tasks[k]
		if a := t.Current(); a != nil && a.State == Lost {
			a.Reason += "; " + why
		}
		c.setState(j, k, Lost)
	}
	if j.CancelReason == "" && !j.Spec.CancelOnFailure {
		j.CancelReason = why
		j.Consequential = true // it ends failed, not canceled
		c.markJob(j)
	}
	c.cancelOnFailure(j, i, a.Ended)
	c.refreshJob(j, a.Ended)
}

// placeableSomewhere reports whether some node not avoided by the job
// matches its labels and is large enough for its tasks.
func (c *Cluster) placeableSomewhere(j *Job) bool {
	for _, n := range c.order {
		if !n.Revoked && !j.avoid[n.Name] && n.Matches(j.Spec.Labels) && n.Slots >= j.Slots && j.Spec.Memory <= n.Memory {
			return true
		}
	}
	return false
}
