package sched

import (
	"fmt"
	"time"
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
