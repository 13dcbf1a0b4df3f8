package sched

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// Cluster holds every job and node. It is not safe for concurrent use: the
// coordinator serializes calls under one lock.
type Cluster struct {
	// AgingStep raises a waiting job's effective priority by one level per
	// step, so low work is not starved forever. Zero disables aging.
	AgingStep time.Duration
	// PrefetchBelow lets Schedule assign tasks ahead: when every slot of a
	// node is taken, and every attempt there belongs to a job whose
	// attempts ran for less than this on average, the node is given up to
	// its slot count of further tasks. The agent starts them the moment a
	// slot frees, instead of one store commit and a round trip later. The
	// wait this can add for a task assigned ahead is bounded by those short
	// run times. Zero disables it.
	PrefetchBelow time.Duration

	jobs   map[string]*Job
	active []*Job // jobs with tasks waiting for placement
	nodes  map[string]*Node
	order  []*Node // nodes in a stable order for placement
	rr     int     // rotating start for spreading work over nodes
	// served is when each user and each user's queue (user NUL queue)
	// last had a task placed, in servedTick units: fair share serves the
	// least recently served first.
	served     map[string]uint64
	servedTick uint64
	// kills are attempts stopped by --cancel-on-failure, for TakeKills.
	kills []Placement

	dirtyJobs  []*Job
	dirtyTasks []TaskKey
}

// TaskKey names a task whose record changed.
type TaskKey struct {
	Job  *Job
	Task int
}

// NewCluster returns an empty cluster.
func NewCluster(agingStep time.Duration) *Cluster {
	return &Cluster{AgingStep: agingStep, jobs: map[string]*Job{}, nodes: map[string]*Node{}}
}

// Job returns a job by ID.
func (c *Cluster) Job(id string) (*Job, bool) {
	j, ok := c.jobs[id]
	return j, ok
}

// Jobs returns every job in submission order.
func (c *Cluster) Jobs() []*Job {
	out := make([]*Job, 0, len(c.jobs))
	for _, j := range c.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].Submitted.Equal(out[b].Submitted) {
			return out[a].Submitted.Before(out[b].Submitted)
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// Node returns a node by name.
func (c *Cluster) Node(name string) (*Node, bool) {
	n, ok := c.nodes[name]
	return n, ok
}

// Load counts the tasks waiting for placement and the attempts assigned to
// or running on nodes, for the queue-depth metrics.
func (c *Cluster) Load() (queued, active int) {
	for _, j := range c.active {
		if !j.Terminal() {
			queued += j.Pending()
		}
	}
	for _, n := range c.order {
		active += n.Running()
	}
	return queued, active
}

// Nodes returns every node in name order.
func (c *Cluster) Nodes() []*Node { return slices.Clone(c.order) }

// TakeDirty returns and forgets the jobs and tasks changed since the last
// call, for the coordinator to persist in one batch.
func (c *Cluster) TakeDirty() ([]*Job, []TaskKey) {
	jobs, tasks := c.dirtyJobs, c.dirtyTasks
	for _, j := range jobs {
		j.dirty = false
	}
	for _, k := range tasks {
		k.Job.Tasks[k.Task].dirty = false
	}
	c.dirtyJobs, c.dirtyTasks = nil, nil
	return jobs, tasks
}

func (c *Cluster) markJob(j *Job) {
	if !j.dirty {
		j.dirty = true
		c.dirtyJobs = append(c.dirtyJobs, j)
	}
}

func (c *Cluster) markTask(j *Job, i int) {
	if t := &j.Tasks[i]; !t.dirty {
		t.dirty = true
		c.dirtyTasks = append(c.dirtyTasks, TaskKey{Job: j, Task: i})
	}
}

// setState moves a task to s, keeping the job's counts right.
func (c *Cluster) setState(j *Job, i int, s State) {
	t := &j.Tasks[i]
	j.counts[t.State]--
	t.State = s
	j.counts[s]++
	c.markTask(j, i)
}

// UpsertNode adds a node or updates its capacity and labels.
func (c *Cluster) UpsertNode(name string, slots int, labels map[string]string) *Node {
	n, ok := c.nodes[name]
	if !ok {
		n = &Node{Name: name, running: map[Ref]hold{}}
		c.nodes[name] = n
		// Insert in name order: a join costs O(log n) to find the place
		// and one copy, not a sort of every node (which made joining n
		// agents O(n² log n)).
		i, _ := slices.BinarySearchFunc(c.order, name, func(m *Node, name string) int { return strings.Compare(m.Name, name) })
		c.order = slices.Insert(c.order, i, n)
	}
	n.Slots, n.Labels = slots, labels
	return n
}

// Unschedulable explains why no known node could ever run tasks needing
// slots and memory bytes with these label constraints, or returns "" when
// one could.
func (c *Cluster) Unschedulable(slots int, memory int64, labels map[string]string) string {
	// One pass with no allocation answers the common case (a node fits);
	// the lists for the explanation are built only when none does.
	usableN, labelledN, largest := 0, 0, 0
	var largestMem int64 // among the matching nodes with enough slots
	for _, n := range c.order {
		if n.Revoked {
			continue
		}
		usableN++
		if n.Matches(labels) {
			labelledN++
			largest = max(largest, n.Slots)
			if n.Slots >= slots {
				largestMem = max(largestMem, n.Memory)
				if memory <= n.Memory {
					return ""
				}
			}
		}
	}
	if usableN == 0 {
		return "the cluster has no nodes yet; join an agent (`ward token create`, then `ward agent --join-file ...`) or pass --wait-for-nodes"
	}
	if labelledN == 0 {
		var have []string
		for _, n := range c.order {
			if !n.Revoked {
				have = append(have, fmt.Sprintf("%s{%s}", n.Name, FormatLabels(n.Labels)))
			}
		}
		return fmt.Sprintf("no node has the labels %s (nodes: %s); fix the --label constraints, label an agent, or pass --wait-for-nodes", FormatLabels(labels), strings.Join(have, ", "))
	}
	if largest < slots {
		return fmt.Sprintf("each task needs %d slots, but the largest matching node has %d; lower --slots, start an agent with more --slots, or pass --wait-for-nodes", slots, largest)
	}
	if largestMem == 0 {
		return fmt.Sprintf("each task reserves %s of memory, but no matching node with %d slots reports its memory (agents older than this coordinator do not); upgrade the agents, drop --memory, or pass --wait-for-nodes", FormatBytes(memory), slots)
	}
	return fmt.Sprintf("each task reserves %s of memory, but the largest matching node with %d slots offers %s; lower --memory, start an agent with more --memory, or pass --wait-for-nodes", FormatBytes(memory), slots, FormatBytes(largestMem))
}

// FormatBytes renders a size in the largest binary unit that keeps it
// at or above 1 (1.5 GiB, 512 MiB, 100 B).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n), 0
	for v >= unit && u < 5 {
		v /= unit
		u++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}[u]
}

// FormatLabels renders labels as k=v,k=v in key order.
func FormatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// AddJob registers a validated job with all tasks queued.
func (c *Cluster) AddJob(j *Job) {
	if len(j.Tasks) == 0 {
		j.Tasks = make([]Task, j.Spec.Count)
	}
	j.counts = [numStates]int{}
	for i := range j.Tasks {
		j.counts[j.Tasks[i].State]++
	}
	if j.State == "" {
		j.State = api.JobQueued
	}
	c.jobs[j.ID] = j
	c.markJob(j)
	c.activate(j)
}

func (c *Cluster) activate(j *Job) {
	if !j.active && j.Pending() > 0 && !j.Terminal() {
		j.active = true
		c.active = append(c.active, j)
	}
}

// Restore re-registers a job loaded from the store, rebuilding its queue
// and the slots its active attempts hold on their nodes. Nothing is marked
// dirty: the store already has it.
func (c *Cluster) Restore(j *Job) {
	j.counts = [numStates]int{}
	j.next = len(j.Tasks)
	j.requeue = j.requeue[:0]
	j.avoid = nil
	for i := range j.Tasks {
		t := &j.Tasks[i]
		j.counts[t.State]++
		j.restoreAvoid(t)
		switch {
		case t.State == Queued && !j.Terminal():
			j.requeue = append(j.requeue, i)
		case t.State.Active():
			a := t.Current()
			n, ok := c.nodes[a.Node]
			if !ok {
				n = c.UpsertNode(a.Node, 0, nil)
			}
			// Restored as holding slots, even if it waits on the agent
			// behind others: it may count twice until those end, which
			// can only delay placement, never oversubscribe.
			h := hold{slots: j.Slots, mem: j.Spec.Memory, slow: true, excl: j.Spec.Exclusive}
			if h.excl {
				h.slots = max(h.slots, n.Slots)
			}
			n.take(Ref{Job: j.ID, Task: i, Attempt: a.N}, h)
		}
	}
	c.jobs[j.ID] = j
	c.activate(j)
}

// restoreAvoid remembers again the nodes where the job's --setup failed in
// this requeue round, from t's stored attempts (their reason starts with
// environment_error), so a coordinator restart does not send the job's
// tasks back to a node whose setup already failed.
func (j *Job) restoreAvoid(t *Task) {
	for k := range t.Attempts {
		a := &t.Attempts[k]
		if a.State == Lost && a.Requeue == j.Requeues && strings.HasPrefix(a.Reason, api.EndEnvError+":") {
			if j.avoid == nil {
				j.avoid = map[string]bool{}
			}
			j.avoid[a.Node] = true
		}
	}
}

// EffectivePriority is the job's priority raised by one level for every
// AgingStep it has waited, up to High.
func (c *Cluster) EffectivePriority(j *Job, now time.Time) Priority {
	p := j.Priority
	if c.AgingStep > 0 && p < High {
		steps := now.Sub(j.Submitted) / c.AgingStep
		if steps > 0 {
			p += Priority(min(int64(steps), int64(High-p)))
		}
	}
	return p
}

// lookup finds an attempt, reporting whether it is the task's current one.
func (c *Cluster) lookup(r Ref) (*Job, *Task, *Attempt, bool) {
	j, ok := c.jobs[r.Job]
	if !ok || r.Task < 0 || r.Task >= len(j.Tasks) {
		return nil, nil, nil, false
	}
	t := &j.Tasks[r.Task]
	if r.Attempt < 1 || r.Attempt > len(t.Attempts) {
		return nil, nil, nil, false
	}
	return j, t, &t.Attempts[r.Attempt-1], r.Attempt == len(t.Attempts)
}

// Started records that an attempt's process started on node.
func (c *Cluster) Started(node string, r Ref, at time.Time) {
	j, t, a, current := c.lookup(r)
	if j == nil || a.Node != node || !current || a.State != Assigned {
		return
	}
	a.State, a.Started = Running, at
	// Soft transition: not marked dirty. Running is persisted as assigned
	// and restored from the agent's hello, so a start costs no store write.
	j.counts[t.State]--
	t.State = Running
	j.counts[Running]++
	c.refreshJob(j, at)
}

// ResultOutcome says what Result did with a result.
type ResultOutcome uint8

// Outcomes of Result. Every outcome except Rejected is acknowledged to the
// agent: the result is durably known, so it must not be sent again.
const (
	Recorded  ResultOutcome = iota + 1 // ended the task's current attempt
	Duplicate                          // this attempt already had its result
	LateLost                           // recorded on an attempt already declared lost
	Rejected                           // unknown attempt or not this node's
)

// Result records how an attempt ended. A second delivery of the same
// result is a Duplicate; a result for an attempt already declared lost is
// recorded on that attempt and changes nothing else.
func (c *Cluster) Result(node string, r api.TaskResult) ResultOutcome {
	ref := RefOf(r.AttemptRef)
	j, t, a, current := c.lookup(ref)
	if j == nil || a.Node != node {
		return Rejected
	}
	if a.HasExit || (a.State.Terminal() && a.State != Lost) {
		return Duplicate
	}
	a.HasExit, a.Exit, a.Account = true, r.ExitCode, r.Account
	if r.Started != 0 {
		a.Started = r.Started.Time()
	}
	if a.State == Lost {
		a.Late = true
		a.Ended = r.Ended.Time()
		a.Reason = fmt.Sprintf("%s (late: reported after the attempt was declared lost; %s)", a.Reason, describeEnd(r))
		c.markTask(j, ref.Task)
		return LateLost
	}
	if !current {
		return Duplicate
	}
	c.release(node, ref)
	a.Ended = r.Ended.Time()
	a.Reason = describeEnd(r)
	if r.Started != 0 && r.Ended >= r.Started {
		j.observeRun(r.Ended.Time().Sub(r.Started.Time()))
	}
	var s State
	switch {
	case t.CancelRequested && r.Reason != api.EndDrained:
		s = Canceled
		if j.Consequential {
			a.Reason = consequentialReason + ": " + a.Reason
		}
	case r.Reason == api.EndDrained && r.Started == 0:
		// Withdrawn from a drained node before it started: back in the
		// queue, and not an infrastructure failure against --retries.
		a.State = Canceled
		a.Reason = "withdrawn before it started: its node was drained; the task went back to the queue"
		if t.CancelRequested {
			c.setState(j, ref.Task, Canceled)
		} else {
			c.requeue(j, ref.Task)
		}
		c.refreshJob(j, r.Ended.Time())
		return Recorded
	case r.Reason == api.EndDrained:
		c.loseAttempt(j, ref.Task, "drained with --force: "+describeEnd(r))
		return Recorded
	case r.Reason == api.EndStagingFailed:
		// A file that could not be moved or arrived corrupted is the
		// infrastructure's failure, not the task's: retried.
		c.loseAttempt(j, ref.Task, describeEnd(r))
		return Recorded
	case r.Reason == api.EndEnvError:
		c.envError(j, ref.Task, node, r)
		return Recorded
	case r.Reason == api.EndTimedOut:
		s = TimedOut
	case r.Reason == api.EndCanceled:
		s = Canceled
	case r.Reason == api.EndExited && r.ExitCode == 0:
		s = Completed
	default:
		s = Failed
	}
	a.State = s
	c.setState(j, ref.Task, s)
	if s == Failed || s == TimedOut {
		c.cancelOnFailure(j, ref.Task, r.Ended.Time())
	}
	c.refreshJob(j, r.Ended.Time())
	return Recorded
}

// exitReasons are the reasons for exit codes 0-255, made once.
var exitReasons = func() (out [256]string) {
	for i := range out {
		out[i] = fmt.Sprintf("exited with code %d", i)
	}
	return out
}()

func describeEnd(r api.TaskResult) string {
	if r.Started == 0 && (r.Reason == api.EndCanceled || r.Reason == api.EndDrained) {
		// It was assigned ahead and still waiting on the agent for a slot.
		return r.Reason + " before it started, while waiting on the agent for a slot"
	}
	switch r.Reason {
	case api.EndExited:
		if r.ExitCode >= 0 && r.ExitCode < len(exitReasons) {
			return exitReasons[r.ExitCode] // no allocation per result
		}
		return fmt.Sprintf("exited with code %d", r.ExitCode)
	case api.EndTimedOut:
		return "killed at its timeout"
	case api.EndCanceled:
		return "killed: canceled"
	case api.EndDrained:
		return "killed: node drained"
	case api.EndStartErr:
		return "could not start: " + r.Error
	}
	if r.Error != "" {
		return r.Reason + ": " + r.Error
	}
	return r.Reason
}

// release ends an attempt's claim on its node. Freed slots go to the
// attempts assigned ahead there, in order, as the agent does the same.
func (c *Cluster) release(node string, r Ref) {
	n, ok := c.nodes[node]
	if !ok {
		return
	}
	h, ok := n.running[r]
	if !ok {
		return
	}
	delete(n.running, r)
	if h.slow {
		n.slow--
	}
	if h.excl {
		n.exclusive--
	}
	n.MemUsed -= h.mem
	if h.ahead {
		n.Ahead -= h.slots
		n.queue = slices.DeleteFunc(n.queue, func(q Ref) bool { return q == r })
	} else {
		n.Used -= h.slots
	}
	for len(n.queue) > 0 {
		// The agent starts the first waiting attempt once there is room.
		q := n.queue[0]
		h := n.running[q]
		if !n.room(h.slots) {
			break
		}
		h.ahead = false
		n.running[q] = h
		n.Ahead -= h.slots
		n.Used += h.slots
		n.queue = n.queue[1:]
	}
}

// requeue puts task i back in its job's queue for placement.
func (c *Cluster) requeue(j *Job, i int) {
	c.setState(j, i, Queued)
	j.requeue = append(j.requeue, i)
	c.activate(j)
}

// loseAttempt ends the current attempt as lost and requeues the task within
// its retry limit (or cancels it when cancellation was asked for).
func (c *Cluster) loseAttempt(j *Job, i int, reason string) {
	t := &j.Tasks[i]
	a := t.Current()
	a.State, a.Reason = Lost, reason
	switch {
	case t.CancelRequested:
		if j.Consequential {
			a.Reason = consequentialReason + ": " + a.Reason + "; not retried: another task of the job failed (--cancel-on-failure)"
		} else {
			a.Reason += "; not retried: the job was canceled"
		}
		c.setState(j, i, Canceled)
	case t.infraFailures(j.Requeues) <= j.Retries:
		c.requeue(j, i)
	default:
		a.Reason += fmt.Sprintf("; not retried: %d infrastructure failures exceed --retries %d", t.infraFailures(j.Requeues), j.Retries)
		c.setState(j, i, Lost)
		c.cancelOnFailure(j, i, a.Ended)
	}
	c.refreshJob(j, a.Ended)
}

// NodeLost declares every active attempt on the node lost (the node died or
// stayed away too long) and requeues what may be retried. It returns the
// attempts it ended.
func (c *Cluster) NodeLost(name, reason string, now time.Time) []Ref {
	n, ok := c.nodes[name]
	if !ok {
		return nil
	}
	refs := n.RunningRefs()
	sort.Slice(refs, func(a, b int) bool { return lessRef(refs[a], refs[b]) })
	for _, r := range refs {
		c.release(name, r)
		j, _, a, current := c.lookup(r)
		if j == nil || !current {
			continue
		}
		a.Ended = now
		c.loseAttempt(j, r.Task, reason)
	}
	return refs
}

func lessRef(a, b Ref) bool {
	if a.Job != b.Job {
		return a.Job < b.Job
	}
	if a.Task != b.Task {
		return a.Task < b.Task
	}
	return a.Attempt < b.Attempt
}

// Reconcile compares what a reconnecting node runs with what the cluster
// expects there. Attempts the cluster expects but the node does not run
// are lost; attempts the node runs that the cluster no longer wants are
// returned, for the agent to kill.
func (c *Cluster) Reconcile(name string, running []Ref, now time.Time) (lost, kill []Ref) {
	n, ok := c.nodes[name]
	if !ok {
		return nil, running
	}
	has := make(map[Ref]bool, len(running))
	for _, r := range running {
		has[r] = true
		if _, expected := n.running[r]; !expected {
			kill = append(kill, r)
		}
	}
	for r := range n.running {
		if !has[r] {
			lost = append(lost, r)
		}
	}
	sort.Slice(lost, func(a, b int) bool { return lessRef(lost[a], lost[b]) })
	for _, r := range lost {
		c.release(name, r)
		j, _, a, current := c.lookup(r)
		if j == nil || !current {
			continue
		}
		a.Ended = now
		c.loseAttempt(j, r.Task, "the agent reconnected without it (it restarted, or the assignment never arrived)")
	}
	return lost, kill
}

// Cancel cancels a job: waiting tasks end at once, and the active attempts
// are returned so their agents can kill them. The job is canceled when its
// last active attempt ends.
func (c *Cluster) Cancel(j *Job, reason string, now time.Time) []Placement {
	if j.Terminal() {
		return nil
	}
	kill := c.cancelRest(j, reason)
	c.refreshJob(j, now)
	return kill
}

// cancelRest ends a job's waiting tasks and asks for its active attempts
// to be killed, which it returns.
func (c *Cluster) cancelRest(j *Job, reason string) []Placement {
	j.CancelReason = reason
	c.markJob(j)
	for j.Pending() > 0 {
		i := j.pop()
		c.setState(j, i, Canceled)
	}
	var kill []Placement
	for i := range j.Tasks {
		t := &j.Tasks[i]
		if t.State.Active() {
			t.CancelRequested = true
			c.markTask(j, i)
			a := t.Current()
			if n, ok := c.nodes[a.Node]; ok {
				kill = append(kill, Placement{Node: n, Job: j, Task: i, Ref: Ref{Job: j.ID, Task: i, Attempt: a.N}})
			}
		}
	}
	return kill
}

// SetDrain drains or undrains a node. A drain returns the attempts there
// for the agent to stop: with force every active one, which is requeued
// when it ends; without, the ones assigned ahead, which the agent
// withdraws if they have not started yet (and they go back to the queue).
func (c *Cluster) SetDrain(name string, drain, force bool) ([]Placement, error) {
	n, ok := c.nodes[name]
	if !ok {
		return nil, fmt.Errorf("unknown node %q", name)
	}
	n.Drain = drain
	if !drain {
		return nil, nil
	}
	var kill []Placement
	for r, h := range n.running {
		if !force && !h.ahead {
			continue
		}
		if j, _, _, current := c.lookup(r); j != nil && current {
			kill = append(kill, Placement{Node: n, Job: j, Task: r.Task, Ref: r})
		}
	}
	sort.Slice(kill, func(a, b int) bool { return lessRef(kill[a].Ref, kill[b].Ref) })
	return kill, nil
}

// refreshJob recomputes a job's state from its task counts.
func (c *Cluster) refreshJob(j *Job, now time.Time) {
	total := len(j.Tasks)
	terminal := j.counts[Completed] + j.counts[Failed] + j.counts[TimedOut] + j.counts[Canceled] + j.counts[Lost]
	var s string
	switch {
	case terminal == total && j.CancelReason != "" && !j.Consequential:
		s = api.JobCanceled
	case terminal == total && j.counts[Completed] == total:
		s = api.JobCompleted
	case terminal == total:
		s = api.JobFailed
	case j.counts[Assigned]+j.counts[Running] > 0 || terminal > 0:
		s = api.JobRunning
	default:
		s = api.JobQueued
	}
	if s != j.State {
		j.State = s
		if j.Terminal() {
			j.Finished = now
		}
		c.markJob(j)
	}
}

// CancelPending reports whether r is a task's current attempt and the
// task's cancellation was asked for, so a reconnecting agent must kill it.
func (c *Cluster) CancelPending(r Ref) bool {
	j, t, a, current := c.lookup(r)
	return j != nil && current && t.CancelRequested && a.State.Active()
}
