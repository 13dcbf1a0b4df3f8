package sched

import (
	"sort"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// Placement is a task attempt assigned to a node by Schedule.
type Placement struct {
	Node *Node
	Job  *Job
	Task int
	Ref  Ref
}

// Schedule places waiting tasks on schedulable nodes with room. Jobs go by
// effective priority. Within one priority, placement is fair share: task by
// task, round-robin across the users who submitted the jobs and, for each
// user, across their queues, so one user's huge job cannot hold back
// another's small one; within a queue, jobs go in submission order. A job
// that cannot use the room lets a later job use it. A job's --max-running
// caps its active tasks, and an --exclusive task gets a node to itself. It
// never oversubscribes a node's slots or memory. With PrefetchBelow set, it
// then assigns tasks ahead on full nodes that run only short work (see
// PrefetchBelow), unless jobs of several users or queues contend.
func (c *Cluster) Schedule(now time.Time) []Placement {
	if len(c.active) == 0 {
		return nil
	}
	free := 0
	var nodes, ahead []*Node // free slots; room for tasks assigned ahead
	for _, n := range c.order {
		if !n.Schedulable() {
			continue
		}
		if n.Free() > 0 {
			nodes = append(nodes, n)
			free += n.Free()
		}
		if c.PrefetchBelow > 0 && n.Ahead < n.Slots {
			ahead = append(ahead, n)
		}
	}
	if free == 0 && len(ahead) == 0 {
		return nil
	}
	jobs := c.active
	sort.SliceStable(jobs, func(a, b int) bool {
		pa, pb := c.EffectivePriority(jobs[a], now), c.EffectivePriority(jobs[b], now)
		if pa != pb {
			return pa > pb
		}
		if !jobs[a].Submitted.Equal(jobs[b].Submitted) {
			return jobs[a].Submitted.Before(jobs[b].Submitted)
		}
		return jobs[a].ID < jobs[b].ID
	})
	var out []Placement
	for lo := 0; lo < len(jobs) && free > 0; {
		// A band: the jobs of one effective priority.
		p := c.EffectivePriority(jobs[lo], now)
		hi, oneShare := lo+1, true
		for hi < len(jobs) && c.EffectivePriority(jobs[hi], now) == p {
			oneShare = oneShare && sameShare(jobs[lo], jobs[hi])
			hi++
		}
		if oneShare {
			before := len(out)
			out = c.placeInOrder(jobs[lo:hi], nodes, &free, out, now)
			if len(out) > before {
				// Served too, so a user who arrives next goes first.
				c.markServed(jobs[lo])
			}
		} else {
			out = c.placeFair(jobs[lo:hi], nodes, &free, out, now)
		}
		lo = hi
	}
	// Ahead, in the same job order: only what the free slots left over,
	// on busy nodes running only short work.
	if len(ahead) > 0 && !c.contended(jobs, now) {
		out = c.placeAhead(jobs, ahead, out, now)
	}
	c.compactActive()
	return out
}

// sameShare reports whether two jobs share one fair-share slot: the same
// user and queue.
func sameShare(a, b *Job) bool { return a.User() == b.User() && a.Spec.Queue == b.Spec.Queue }

// placeInOrder places the jobs of a band that all share one user and queue,
// each as many tasks as fit before the next: the fast path, with no
// bookkeeping per task.
func (c *Cluster) placeInOrder(band []*Job, nodes []*Node, free *int, out []Placement, now time.Time) []Placement {
	for _, j := range band {
		if *free == 0 {
			break
		}
		if !j.waiting() {
			continue
		}
		if out == nil {
			// Sized by the first job that places: one allocation for the
			// usual case of one job filling the free slots.
			out = make([]Placement, 0, min(*free, j.Pending()))
		}
		start := c.rr
		c.rr++
		for k := 0; k < len(nodes) && j.canStart(); k++ {
			n := nodes[(start+k)%len(nodes)]
			if !n.fits(j) || !n.Matches(j.Spec.Labels) {
				continue
			}
			for n.fits(j) && j.canStart() {
				f := n.Free()
				out = append(out, c.assign(j, j.pop(), n, now, false))
				*free -= f - n.Free()
			}
		}
	}
	return out
}

// fairJob is a job in a fair round, with the node its search goes on from.
type fairJob struct {
	j       *Job
	pos     int // index into the round's nodes where the search goes on
	scanned int // nodes passed: they cannot fit it again this round
}

// fairQueue is one user's queue in a fair round: its jobs in band order.
type fairQueue struct {
	key  string
	jobs []*fairJob
}

// fairUser is one user's queues in a fair round.
type fairUser struct {
	key    string
	queues []*fairQueue
}

// placeFair places the jobs of a band that belong to several users or
// queues one task at a time: each placement goes to the user served least
// recently, and within that user to the queue served least recently, so
// shares alternate; what was served last is remembered across rounds
// (slots free one at a time, and each must go to the next in turn).
func (c *Cluster) placeFair(band []*Job, nodes []*Node, free *int, out []Placement, now time.Time) []Placement {
	var users []*fairUser
	byUser := map[string]*fairUser{}
	byQueue := map[string]*fairQueue{}
	for _, j := range band {
		if !j.waiting() {
			continue
		}
		uk := j.User()
		u := byUser[uk]
		if u == nil {
			u = &fairUser{key: uk}
			byUser[uk] = u
			users = append(users, u)
		}
		qk := j.queueKey()
		q := byQueue[qk]
		if q == nil {
			q = &fairQueue{key: qk}
			byQueue[qk] = q
			u.queues = append(u.queues, q)
		}
		q.jobs = append(q.jobs, &fairJob{j: j, pos: c.rr})
		c.rr++
	}
	for *free > 0 && len(users) > 0 {
		ui := c.leastServed(len(users), func(i int) string { return users[i].key })
		u := users[ui]
		qi := c.leastServed(len(u.queues), func(i int) string { return u.queues[i].key })
		q := u.queues[qi]
		var n *Node
		for len(q.jobs) > 0 {
			if n = q.jobs[0].next(nodes); n != nil {
				break
			}
			q.jobs = q.jobs[1:] // it can place nothing more this round
		}
		if n == nil {
			u.queues = append(u.queues[:qi], u.queues[qi+1:]...)
			if len(u.queues) == 0 {
				users = append(users[:ui], users[ui+1:]...)
			}
			continue
		}
		j := q.jobs[0].j
		f := n.Free()
		out = append(out, c.assign(j, j.pop(), n, now, false))
		*free -= f - n.Free()
		c.markServed(j)
	}
	if len(c.served) > 4*(len(byUser)+len(byQueue))+64 {
		// Forget shares that no longer wait, so the memory stays bounded.
		keep := make(map[string]uint64, len(byUser)+len(byQueue))
		for k := range byUser {
			keep[k] = c.served[k]
		}
		for k := range byQueue {
			keep[k] = c.served[k]
		}
		c.served = keep
	}
	return out
}

// markServed records that a task of j's share was just placed.
func (c *Cluster) markServed(j *Job) {
	if c.served == nil {
		c.served = map[string]uint64{}
	}
	if len(c.served) > maxServed {
		clear(c.served) // a bound on memory; turns restart from here
	}
	c.servedTick++
	c.served[j.User()] = c.servedTick
	c.served[j.queueKey()] = c.servedTick
}

// maxServed bounds the users and queues whose last turn is remembered.
const maxServed = 1 << 14

// leastServed returns the index, among n keys, of the one served least
// recently; ties go to the first, in band order.
func (c *Cluster) leastServed(n int, key func(int) string) int {
	best, bestAt := 0, c.served[key(0)]
	for i := 1; i < n; i++ {
		if at := c.served[key(i)]; at < bestAt {
			best, bestAt = i, at
		}
	}
	return best
}

// next finds a node for one more task of the job, or nil. Within a round
// nodes only fill, so a node passed once is never looked at again.
func (f *fairJob) next(nodes []*Node) *Node {
	if !f.j.canStart() {
		return nil
	}
	for f.scanned < len(nodes) {
		n := nodes[f.pos%len(nodes)]
		if n.fits(f.j) && n.Matches(f.j.Spec.Labels) {
			return n
		}
		f.pos++
		f.scanned++
	}
	return nil
}

// contended reports whether the waiting jobs of the highest effective
// priority belong to more than one user or queue. Tasks are then not
// assigned ahead: a slot freed on the agent would go to the task waiting
// there, not to the next share in turn.
func (c *Cluster) contended(jobs []*Job, now time.Time) bool {
	var first *Job
	var p Priority
	for _, j := range jobs {
		if !j.waiting() {
			continue
		}
		if first == nil {
			first, p = j, c.EffectivePriority(j, now)
			continue
		}
		if c.EffectivePriority(j, now) != p {
			return false
		}
		if !sameShare(first, j) {
			return true
		}
	}
	return false
}

// placeAhead assigns tasks ahead on busy nodes that run only short work.
// Exclusive jobs and jobs that reserve memory are never assigned ahead:
// they start only where their room is certain.
func (c *Cluster) placeAhead(jobs []*Job, ahead []*Node, out []Placement, now time.Time) []Placement {
	for _, j := range jobs {
		if len(ahead) == 0 {
			break
		}
		if !j.waiting() || j.Spec.Exclusive || j.Spec.Memory > 0 {
			continue
		}
		keep := ahead[:0]
		for _, n := range ahead {
			if n.Used == 0 || n.slow > 0 || n.exclusive > 0 {
				continue // idle (nothing fits it), running work not known short, or held whole
			}
			if n.Matches(j.Spec.Labels) && j.Slots <= n.Slots {
				for n.Ahead+j.Slots <= n.Slots && n.slow == 0 && j.canStart() {
					i := j.pop()
					out = append(out, c.assign(j, i, n, now, !n.room(j.Slots)))
				}
			}
			if n.Ahead < n.Slots {
				keep = append(keep, n)
			}
		}
		ahead = keep
	}
	return out
}

func (j *Job) pop() int {
	if len(j.requeue) > 0 {
		i := j.requeue[0]
		j.requeue = j.requeue[1:]
		return i
	}
	i := j.next
	j.next++
	return i
}

func (c *Cluster) compactActive() {
	keep := c.active[:0]
	for _, j := range c.active {
		if j.Pending() > 0 && !j.Terminal() {
			keep = append(keep, j)
		} else {
			j.active = false
		}
	}
	clear(c.active[len(keep):])
	c.active = keep
}

// assign makes a new attempt of task i on n: holding slots (and memory), or
// ahead (the agent starts it once earlier attempts free their slots). An
// exclusive attempt holds every slot of the node.
func (c *Cluster) assign(j *Job, i int, n *Node, now time.Time, ahead bool) Placement {
	t := &j.Tasks[i]
	a := Attempt{N: len(t.Attempts) + 1, Node: n.Name, State: Assigned, Assigned: now, Requeue: j.Requeues}
	if len(t.Attempts) == 0 {
		t.Attempts = j.firstAttempt(a)
	} else {
		t.Attempts = append(t.Attempts, a)
	}
	c.setState(j, i, Assigned)
	ref := Ref{Job: j.ID, Task: i, Attempt: a.N}
	h := hold{slots: j.Slots, mem: j.Spec.Memory, ahead: ahead, slow: !j.short(c.PrefetchBelow), excl: j.Spec.Exclusive}
	if h.excl {
		h.slots = max(h.slots, n.Slots)
	}
	n.take(ref, h)
	if j.State == api.JobQueued {
		j.State = api.JobRunning
		c.markJob(j)
	}
	return Placement{Node: n, Job: j, Task: i, Ref: ref}
}
