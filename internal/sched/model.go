// Package sched is the job system's state machine: jobs of tasks, attempts,
// nodes with slot capacity, placement by priority with aging, retries of
// infrastructure failures, cancellation and drain. It does no I/O and keeps
// no clock: the coordinator feeds it events under one lock, persists what it
// marks dirty, and sends what it returns.
package sched

import (
	"fmt"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// Priority orders jobs; higher runs first.
type Priority int8

// The five priority levels, lowest first.
const (
	Low Priority = iota
	BelowNormal
	Normal
	AboveNormal
	High
)

// ParsePriority reads a priority name; "" means normal.
func ParsePriority(s string) (Priority, error) {
	if s == "" {
		return Normal, nil
	}
	for i, name := range api.Priorities {
		if strings.EqualFold(s, name) {
			return Priority(i), nil
		}
	}
	return 0, fmt.Errorf("priority %q is not one of %s", s, strings.Join(api.Priorities, ", "))
}

// String returns the priority's name.
func (p Priority) String() string {
	if p < Low || p > High {
		return fmt.Sprintf("priority(%d)", p)
	}
	return api.Priorities[p]
}

// State is a task's (or an attempt's) state.
type State uint8

// Task states: queued → assigned → running → one of the terminal states.
const (
	Queued State = iota
	Assigned
	Running
	Completed
	Failed
	TimedOut
	Canceled
	Lost
	numStates
)

var stateNames = [...]string{api.TaskQueued, api.TaskAssigned, api.TaskRunning, api.TaskCompleted, api.TaskFailed, api.TaskTimedOut, api.TaskCanceled, api.TaskLost}

// String returns the state's wire name.
func (s State) String() string {
	if s >= numStates {
		return fmt.Sprintf("state(%d)", s)
	}
	return stateNames[s]
}

// ParseState reads a wire name.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if n == s {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown task state %q", s)
}

// Terminal reports whether the state is final.
func (s State) Terminal() bool { return s >= Completed }

// Active reports whether an attempt in this state holds slots on a node.
func (s State) Active() bool { return s == Assigned || s == Running }

// Attempt is one run of a task on one node.
type Attempt struct {
	N        int
	Node     string
	State    State
	Assigned time.Time
	Started  time.Time
	Ended    time.Time
	Exit     int
	HasExit  bool
	Reason   string
	Late     bool // the agent's result arrived after the attempt was declared lost
	// Account is the local account that ran the attempt on its node.
	Account string
	// Requeue is the job's requeue number when the attempt was made: 0
	// before any `ward job requeue`.
	Requeue int
}

// Task is one index of a job.
type Task struct {
	State           State
	CancelRequested bool
	Attempts        []Attempt
	dirty           bool
}

// Current returns the latest attempt, or nil when the task never ran.
func (t *Task) Current() *Attempt {
	if len(t.Attempts) == 0 {
		return nil
	}
	return &t.Attempts[len(t.Attempts)-1]
}

// infraFailures counts the attempts since requeue number requeue that
// ended by infrastructure failure: a requeue gives a task its --retries
// afresh.
func (t *Task) infraFailures(requeue int) int {
	n := 0
	for i := range t.Attempts {
		if t.Attempts[i].State == Lost && t.Attempts[i].Requeue == requeue {
			n++
		}
	}
	return n
}

// Job is a submitted job and all its tasks.
type Job struct {
	ID           string
	Spec         api.JobSpec
	Priority     Priority
	Slots        int
	Retries      int
	Submitted    time.Time
	SubmittedBy  string
	State        string
	Finished     time.Time
	CancelReason string
	// Requeues counts `ward job requeue`s of the job; CloneOf is the job it
	// was cloned from ("" for none).
	Requeues int
	CloneOf  string
	// Consequential says the job was canceled because a task failed
	// (--cancel-on-failure): it ends failed, not canceled.
	Consequential bool
	// Held keeps the job's tasks from being placed (a job waiting for its
	// follower, api.JobSpec.HoldForFollower); it stays queued meanwhile.
	Held  bool
	Tasks []Task

	counts  [numStates]int
	next    int   // lowest index never dispatched
	requeue []int // indices queued again, in order
	dirty   bool
	active  bool // in Cluster.active
	// runs and meanRun describe how long the job's attempts ran (a moving
	// average, in memory only): tasks are assigned ahead only behind jobs
	// known to be short.
	runs    int
	meanRun time.Duration
	// firsts is memory for first attempts not yet made, handed out one
	// per task, so a placement of many tasks allocates once per block
	// instead of once per task.
	firsts []Attempt
	// shareKey caches queueKey.
	shareKey string
	// avoid are the nodes where the job's --setup failed: none of its
	// tasks is placed there again (in memory only).
	avoid map[string]bool
}

// attemptBlock is how many first attempts a job allocates at once.
const attemptBlock = 256

// firstAttempt returns a one-element attempt list for a task that never
// ran, holding a. Its capacity is 1, so a retry's append moves the task's
// attempts to a list of its own.
func (j *Job) firstAttempt(a Attempt) []Attempt {
	if len(j.firsts) == 0 {
		// The task being placed was already taken from Pending.
		j.firsts = make([]Attempt, min(attemptBlock, j.Pending()+1))
	}
	out := j.firsts[:1:1]
	j.firsts = j.firsts[1:]
	out[0] = a
	return out
}

// observeRun adds one attempt's run time to the job's moving average.
func (j *Job) observeRun(d time.Duration) {
	if j.runs == 0 {
		j.meanRun = d
	} else {
		j.meanRun += (d - j.meanRun) / 8
	}
	j.runs++
}

// short reports whether the job's attempts are known to run, on average,
// for less than limit.
func (j *Job) short(limit time.Duration) bool {
	return limit > 0 && j.runs > 0 && j.meanRun < limit
}

// Counts returns how many tasks are in each state, by wire name.
func (j *Job) Counts() map[string]int {
	m := make(map[string]int, numStates)
	for s, n := range j.counts {
		if n > 0 {
			m[State(s).String()] = n
		}
	}
	return m
}

// Count returns how many tasks are in state s.
func (j *Job) Count(s State) int { return j.counts[s] }

// User is whose share of the cluster the job's tasks count against for
// fair share: the identity that submitted it.
func (j *Job) User() string { return j.SubmittedBy }

// queueKey names the job's user and queue together, for fair share among
// one user's queues; made once per job.
func (j *Job) queueKey() string {
	if j.shareKey == "" {
		j.shareKey = j.User() + "\x00" + j.Spec.Queue
	}
	return j.shareKey
}

// waiting reports whether the job has tasks to place, is not being
// canceled and is not held.
func (j *Job) waiting() bool { return j.Pending() > 0 && j.CancelReason == "" && !j.Held }

// canStart reports whether one more of the job's tasks may be placed: one
// waits, and --max-running allows another active task.
func (j *Job) canStart() bool {
	return j.Pending() > 0 && (j.Spec.MaxRunning <= 0 || j.counts[Assigned]+j.counts[Running] < j.Spec.MaxRunning)
}

// Pending returns how many tasks wait for placement.
func (j *Job) Pending() int { return len(j.Tasks) - j.next + len(j.requeue) }

// Terminal reports whether the job has finished.
func (j *Job) Terminal() bool {
	return j.State == api.JobCompleted || j.State == api.JobFailed || j.State == api.JobCanceled
}

// Ref names one attempt of one task.
type Ref struct {
	Job     string
	Task    int
	Attempt int
}

// APIRef converts to the wire form.
func (r Ref) APIRef() api.AttemptRef {
	return api.AttemptRef{Job: r.Job, Task: r.Task, Attempt: r.Attempt}
}

// RefOf converts from the wire form.
func RefOf(a api.AttemptRef) Ref { return Ref{Job: a.Job, Task: a.Task, Attempt: a.Attempt} }

// Node is an agent's capacity as the scheduler sees it.
type Node struct {
	Name  string
	Slots int
	// Used is the slots of the attempts that hold them: started, or about
	// to start because a slot is free for them.
	Used int
	// Ahead is the slots of attempts assigned ahead: sent to the agent,
	// which starts them in order as its slots free (see
	// Cluster.PrefetchBelow).
	Ahead int
	// Memory is the memory the agent offers tasks, in bytes (0: unknown,
	// so no task that reserves memory is placed there); MemUsed is what
	// its active attempts reserve.
	Memory    int64
	MemUsed   int64
	Labels    map[string]string
	Connected bool
	Drain     bool
	Revoked   bool
	running   map[Ref]hold // active attempts here, holding slots or ahead
	queue     []Ref        // the attempts assigned ahead, in order
	slow      int          // attempts here whose job was not known short
	exclusive int          // attempts here of --exclusive jobs
}

// hold is one active attempt's claim on its node.
type hold struct {
	slots int
	mem   int64 // memory reserved (never for attempts assigned ahead)
	ahead bool  // waits on the agent for a slot
	slow  bool  // its job was not known to be short when it was assigned
	excl  bool  // its job is --exclusive: nothing else runs beside it
}

// take records an attempt's claim on the node.
func (n *Node) take(r Ref, h hold) {
	n.running[r] = h
	if h.slow {
		n.slow++
	}
	if h.excl {
		n.exclusive++
	}
	n.MemUsed += h.mem
	if h.ahead {
		n.queue = append(n.queue, r)
		n.Ahead += h.slots
	} else {
		n.Used += h.slots
	}
}

// fits reports whether one more task of j may start on the node now,
// by capacity (labels are checked apart): free slots and memory for it, no
// exclusive attempt there, and for an exclusive job nothing there at all.
func (n *Node) fits(j *Job) bool {
	switch {
	case n.exclusive > 0 || j.avoid != nil && j.avoid[n.Name]:
		return false
	case j.Spec.Exclusive:
		return len(n.running) == 0 && j.Slots <= n.Slots && j.Spec.Memory <= n.Memory
	}
	return n.Free() >= j.Slots && (j.Spec.Memory == 0 || j.Spec.Memory <= n.Memory-n.MemUsed)
}

// Free returns the node's unused slots.
func (n *Node) Free() int { return n.Slots - n.Used }

// room reports whether an attempt needing slots may start on the node now:
// they are free, or nothing else runs there. The agent uses the same rule
// for the attempts waiting on it.
func (n *Node) room(slots int) bool { return slots <= n.Free() || n.Used == 0 }

// Running returns how many attempts are active on the node.
func (n *Node) Running() int { return len(n.running) }

// RunningRefs returns the active attempts on the node.
func (n *Node) RunningRefs() []Ref {
	out := make([]Ref, 0, len(n.running))
	for r := range n.running {
		out = append(out, r)
	}
	return out
}

// Schedulable reports whether the node takes new tasks now.
func (n *Node) Schedulable() bool { return n.Connected && !n.Drain && !n.Revoked }

// Matches reports whether the node's labels satisfy every constraint.
func (n *Node) Matches(constraints map[string]string) bool {
	for k, v := range constraints {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}
