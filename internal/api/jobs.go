package api

import "time"

// Limits on what a job may ask for; larger input is refused, not truncated.
const (
	MaxTaskCount = 1_000_000
	MaxArgBytes  = 256 << 10 // argv plus env, in bytes
	MaxArgs      = 4096
	// MaxTaskMemory bounds the memory a task may reserve: 1 PiB.
	MaxTaskMemory = 1 << 50
)

// Priority names, lowest first.
var Priorities = []string{"low", "below-normal", "normal", "above-normal", "high"}

// JobSpec is what a client submits.
type JobSpec struct {
	Name         string            `json:"name,omitempty"`
	Argv         []string          `json:"argv"`
	Env          map[string]string `json:"env,omitempty"`
	Dir          string            `json:"dir,omitempty"`
	Count        int               `json:"count"`
	Slots        int               `json:"slots,omitempty"`    // per task; default 1
	Labels       map[string]string `json:"labels,omitempty"`   // constraints on agent labels
	Priority     string            `json:"priority,omitempty"` // one of Priorities; default normal
	Timeout      Duration          `json:"timeout,omitempty"`  // per task; 0 = none
	Retries      *int              `json:"retries,omitempty"`  // infrastructure retries; default 3
	Queue        string            `json:"queue,omitempty"`    // default "default"
	WaitForNodes bool              `json:"wait_for_nodes,omitempty"`
	// Memory is the memory each task reserves on its agent, in bytes
	// (0: none); the scheduler never places more than an agent offers.
	Memory int64 `json:"memory,omitempty"`
	// Exclusive gives each task a whole node: nothing else runs there
	// beside it.
	Exclusive bool `json:"exclusive,omitempty"`
	// MaxRunning caps how many of the job's tasks are active at once (0:
	// no cap).
	MaxRunning int `json:"max_running,omitempty"`
	// Inputs are files sent to each task's working directory before it
	// starts (uploaded first: PUT /v1/staging/files/{sha256}).
	Inputs []StagedFile `json:"inputs,omitempty"`
	// Outputs are patterns of files, relative to the task's working
	// directory, brought back to the coordinator when the task ends.
	Outputs []string `json:"outputs,omitempty"`
	// CancelOnFailure cancels the rest of the job when one of its tasks
	// fails (exits non-zero, times out, or is lost past --retries); the
	// tasks it stops give the reason "consequential".
	CancelOnFailure bool `json:"cancel_on_failure,omitempty"`
	// Setup is a shell command run once on each node before the job's
	// first task there; when it fails, that node's tasks end with
	// environment_error and go to other nodes within --retries.
	// Teardown runs once on each such node after the job ended.
	Setup    string `json:"setup,omitempty"`
	Teardown string `json:"teardown,omitempty"`
	// HoldForFollower keeps the job's tasks from starting until a follower
	// that asked for all output (logs?follow=1&all=1) attaches, or for
	// HoldForFollowerMax at most: output beyond the per-task cap reaches
	// only live followers, so none may be written before one is there.
	// `ward run --output-dir` sets it. Clones and jobs loaded after a
	// coordinator restart are not held.
	HoldForFollower bool `json:"hold_for_follower,omitempty"`
}

// HoldForFollowerMax is how long a job submitted with HoldForFollower
// waits for its follower before its tasks start anyway.
const HoldForFollowerMax = 30 * time.Second

// StagedFile is one input file of a job: where it goes in the task's
// working directory, and its SHA-256 and size, which every end verifies.
type StagedFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Exec   bool   `json:"exec,omitempty"` // made executable on the agent
}

// HeaderSHA256 carries a staged file's checksum (sha256:<hex>) with its
// bytes, in both directions.
const HeaderSHA256 = "X-Ward-Sha256"

// Limits on a job's staging lists.
const (
	MaxJobInputs  = 1000
	MaxJobOutputs = 100
)

// OutputFile is a file a task left, kept on the coordinator: the outputs
// of each task's latest attempt that sent any.
type OutputFile struct {
	Task    int       `json:"task"`
	Attempt int       `json:"attempt"`
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	SHA256  string    `json:"sha256"`
	Stored  time.Time `json:"stored,omitzero"`
}

// Job states.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobCompleted = "completed"
	JobFailed    = "failed"
	JobCanceled  = "canceled"
)

// Task states, in the order a task moves through them.
const (
	TaskQueued    = "queued"
	TaskAssigned  = "assigned"
	TaskRunning   = "running"
	TaskCompleted = "completed"
	TaskFailed    = "failed"
	TaskTimedOut  = "timed_out"
	TaskCanceled  = "canceled"
	TaskLost      = "lost"
)

// Job is a job's summary.
type Job struct {
	ID           string         `json:"id"`
	Spec         JobSpec        `json:"spec"`
	State        string         `json:"state"`
	Submitted    time.Time      `json:"submitted,omitzero"`
	Finished     time.Time      `json:"finished,omitzero"`
	SubmittedBy  string         `json:"submitted_by"`
	CancelReason string         `json:"cancel_reason,omitempty"`
	Counts       map[string]int `json:"counts"` // tasks per state
	// Requeues counts `ward job requeue`s; each attempt says in which
	// round it was made (Attempt.Requeue).
	Requeues int `json:"requeues,omitempty"`
	// CloneOf is the job this one was cloned from.
	CloneOf string `json:"clone_of,omitempty"`
}

// Attempt is one run of a task on one agent.
type Attempt struct {
	N        int       `json:"n"`
	Node     string    `json:"node"`
	State    string    `json:"state"`
	Assigned time.Time `json:"assigned,omitzero"`
	Started  time.Time `json:"started,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Reason   string    `json:"reason,omitempty"` // why it ended
	Late     bool      `json:"late,omitempty"`   // result arrived after the attempt was declared lost
	// Account is the local account that ran the attempt on its node.
	Account string `json:"account,omitempty"`
	// Requeue is the job's requeue number when the attempt was made (0:
	// before any requeue).
	Requeue int `json:"requeue,omitempty"`
}

// Task is one task with every attempt.
type Task struct {
	Index    int       `json:"index"`
	State    string    `json:"state"`
	Attempts []Attempt `json:"attempts,omitempty"`
	// Reason says why a task that never ran ended (its job was canceled,
	// or stopped by another task's failure: "consequential: ...").
	Reason string `json:"reason,omitempty"`
	// OutputTruncated says the task wrote more than the coordinator keeps
	// (JobDetail.MaxOutputBytes); the rest was not stored.
	OutputTruncated bool `json:"output_truncated,omitempty"`
}

// JobDetail is a job with its tasks, for `ward job status`.
type JobDetail struct {
	Job
	// MaxOutputBytes is the output the coordinator keeps per task
	// (--max-output-bytes).
	MaxOutputBytes int    `json:"max_output_bytes"`
	Tasks          []Task `json:"tasks"`
}

// TaskFailure is a task that did not complete: its last attempt, if it
// had one, and why that ended.
type TaskFailure struct {
	Task     int    `json:"task"`
	State    string `json:"state"`
	Attempt  int    `json:"attempt,omitempty"`
	Node     string `json:"node,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// MaxFailuresShown bounds the failures a job's end line carries; `ward job
// status` lists them all.
const MaxFailuresShown = 5

// JobFilter selects jobs for a listing; empty fields match every job.
// Newest lists the most recent first. Offset and Limit page through what
// matches (Limit 0: all of it).
type JobFilter struct {
	State string
	Queue string
	User  string
	// Mine keeps only the caller's own jobs (`ward job ls` without --all).
	Mine bool
	// All asks for every user's jobs (`ward job ls --all`); a submitter,
	// who sees only its own, is refused rather than shown less.
	All    bool
	Newest bool
	Offset int
	Limit  int
}

// TaskFilter selects a job's tasks: those in State (all when empty), and of
// those Limit from Offset (Limit 0: all).
type TaskFilter struct {
	State  string
	Offset int
	Limit  int
	// None asks for the job alone, with no tasks (GET /v1/jobs/{id}?tasks=none):
	// what a clone or a script reading the spec and counts needs, at the
	// same cost for a job of a million tasks as for one.
	None bool
}

// CancelRequest gives the reason recorded with a cancellation.
type CancelRequest struct {
	Reason string `json:"reason,omitempty"`
}

// RequeueRequest asks for a finished job's tasks to run again: every
// task, or with Failed only those that did not complete.
type RequeueRequest struct {
	Failed bool `json:"failed,omitempty"`
}

// RequeueResult answers a requeue: the job as it is now and how many tasks
// went back in the queue.
type RequeueResult struct {
	Job
	Requeued int `json:"requeued"`
}

// CancelResult answers a cancel: the job as it is now. Canceling a job that
// already ended changes nothing and is not an error: AlreadyEnded says so.
type CancelResult struct {
	Job
	AlreadyEnded bool `json:"already_ended,omitempty"`
}

// LogChunk is one piece of task output. A log stream is JSON lines of these;
// the last line of a followed stream has End set and the job's final state.
type LogChunk struct {
	Task      int    `json:"task"`
	Seq       int    `json:"seq,omitempty"` // per task, increasing: followers skip what they have seen
	Attempt   int    `json:"attempt"`
	Stream    string `json:"stream,omitempty"` // stdout or stderr
	Data      string `json:"data,omitempty"`
	Truncated bool   `json:"truncated,omitempty"` // the task's stored output ends here: the rest was beyond the limit
	// Unstored marks output beyond the limit, sent only to a live follower
	// that asked for all of it (logs?follow=1&all=1); it has no Seq and
	// is never sent again.
	Unstored bool `json:"unstored,omitempty"`
	// Note is Ward's word on this chunk for people (why output stops), not
	// task output.
	Note     string         `json:"note,omitempty"`
	End      bool           `json:"end,omitempty"`
	JobState string         `json:"job_state,omitempty"`
	Failed   int            `json:"failed,omitempty"` // with End: tasks that did not complete
	Counts   map[string]int `json:"counts,omitempty"` // with End: tasks per state
	// Failures, with End: the first MaxFailuresShown tasks that did not
	// complete, by index.
	Failures []TaskFailure `json:"failures,omitempty"`
}

// MaxProgressFailedTasks bounds the failed task indexes one progress answer
// lists; a client that needs more reads `GET /v1/jobs/{id}?state=failed`.
const MaxProgressFailedTasks = 10_000

// JobProgress is a job's counts without its tasks, cheap enough to poll for
// a live progress line (`GET /v1/jobs/{id}/progress`).
type JobProgress struct {
	ID     string         `json:"id"`
	State  string         `json:"state"`
	Tasks  int            `json:"tasks"`
	Counts map[string]int `json:"counts"` // tasks per state
	// Failed is how many tasks ended without completing.
	Failed int `json:"failed"`
	// FailedTasks lists the indexes of the tasks that ended without
	// completing (at most MaxProgressFailedTasks, lowest first). It is
	// only filled when the caller's known_failed differs from Failed, so a
	// poller pays for the list only when it changed.
	FailedTasks []int `json:"failed_tasks,omitempty"`
	// Failures, once the job ended: the first MaxFailuresShown tasks that
	// did not complete, as on a followed log stream's end.
	Failures []TaskFailure `json:"failures,omitempty"`
}
