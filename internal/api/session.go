package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FrameType identifies a message on the agent session stream. A frame is a
// 4-byte big-endian length (type byte plus body), the type byte, and a JSON
// body.
type FrameType uint8

// Agent session frames. Agent → coordinator: Hello, Heartbeat, Started,
// Output, Results, RenewRequest. Coordinator → agent: Welcome,
// HeartbeatAck, Assign, Ack, Cancel, Drain, Trust, RenewNow, Renewed, Bye.
const (
	FrameHello FrameType = iota + 1
	FrameWelcome
	FrameHeartbeat
	FrameAssign
	FrameStarted
	FrameOutput
	FrameResults
	FrameAck
	FrameCancel
	FrameDrain
	FrameTrust
	FrameRenewRequest
	FrameRenewed
	FrameRenewNow
	FrameBye
	FrameChallenge     // plaintext only: coordinator → agent nonce
	FrameAuth          // plaintext only: agent → coordinator certificate and signature
	FrameUpgradeTLS    // coordinator → plaintext agent: move to the TLS cluster port
	FrameUpgradeResult // agent → coordinator: why an upgrade to TLS failed
	FrameCRLs          // coordinator → agent: the current CRLs
	FrameSettings      // coordinator → agent: new session settings
	FrameHeartbeatAck  // coordinator → agent: answers each Heartbeat, so liveness is checked both ways
	FrameOutputAck     // coordinator → agent: output stored durably
	FrameProfile       // coordinator → agent: the agent's profile (ProfilePush)
	FrameProfileResult // agent → coordinator: the profile applied, or why not
	FrameJobsEnded     // coordinator → agent: jobs that ended: tear down their environments
)

// JobsEnded names jobs that ended (or are unknown to the coordinator): an
// agent runs the teardown of each one it set up, and forgets it.
type JobsEnded struct {
	Jobs []string `json:"jobs"`
}

// LivenessTimeout is how long either end of an agent session waits for a
// frame before it declares the other end gone: three heartbeat intervals
// plus a grace for scheduling and network delays (twice the interval,
// between 2 s and 10 s). The agent heartbeats every interval and the
// coordinator answers each heartbeat, so on a healthy link neither end is
// ever silent for much longer than one interval, busy or idle.
func LivenessTimeout(interval time.Duration) time.Duration {
	return 3*interval + min(max(2*interval, 2*time.Second), 10*time.Second)
}

// HeartbeatAck answers a Heartbeat. It proves to an idle agent that the
// coordinator is still there; it carries nothing else (an empty JSON
// object), so the coordinator sends the same few bytes every time.
type HeartbeatAck struct{}

// Settings changes a live session's settings: the coordinator stretches
// the heartbeat interval as the fleet grows.
type Settings struct {
	HeartbeatInterval Duration `json:"heartbeat_interval"`
}

// CRLs pushes the current CRLs of every trusted issuing CA (PEM).
type CRLs struct {
	PEM []byte `json:"pem"`
}

// PlaintextPreface opens an agent session on the plaintext migration
// listener; anything else there is refused.
const PlaintextPreface = "WARD/1 AGENT\n"

// PlaintextAuthContext is signed, with the challenge nonce, cluster and
// node, by an agent authenticating on the plaintext listener.
const PlaintextAuthContext = "ward plaintext agent auth v1"

// PlaintextAuthMessage is the exact byte string a plaintext agent signs and
// the coordinator verifies: PlaintextAuthContext, the nonce and the agent's
// identity URI, separated by NUL bytes.
func PlaintextAuthMessage(nonce []byte, identity string) []byte {
	b := make([]byte, 0, len(PlaintextAuthContext)+len(nonce)+len(identity)+2)
	b = append(b, PlaintextAuthContext...)
	b = append(b, 0)
	b = append(b, nonce...)
	b = append(b, 0)
	return append(b, identity...)
}

// Challenge is the nonce an agent must sign on the plaintext listener.
type Challenge struct {
	Nonce []byte `json:"nonce"`
}

// Auth proves an agent's identity without TLS: its certificate chain and
// a signature by its key over PlaintextAuthContext, the nonce, the cluster
// and the node name. The link is still plaintext (link status NO).
type Auth struct {
	ChainPEM  []byte `json:"chain_pem"`
	Signature []byte `json:"signature"`
}

// UpgradeTLS asks a plaintext agent to move its session to the TLS
// cluster port. It proves it can connect first and stays on plaintext
// (reporting why) if it cannot: it never falls back silently.
type UpgradeTLS struct {
	ClusterAddrs []string `json:"cluster_addrs"`
}

// UpgradeResult reports a failed upgrade attempt.
type UpgradeResult struct {
	Error   string `json:"error"`
	Verdict string `json:"verdict"`
}

// MaxFrame bounds one frame; larger frames end the session.
const MaxFrame = 16 << 20

// SessionVersion is the agent protocol version in Hello.
const SessionVersion = 1

// AttemptRef names one attempt of one task.
type AttemptRef struct {
	Job     string `json:"j"`
	Task    int    `json:"t"`
	Attempt int    `json:"a"`
}

// Hello opens a session. It tells the coordinator what the agent is running
// and which finished results it has not had acknowledged, so the
// coordinator can reconcile in one step.
type Hello struct {
	Version int `json:"version"`
	// WardVersion is the agent's Ward release (buildinfo), shown in node
	// lists and status, and compared with the coordinator's by doctor.
	WardVersion string `json:"ward_version,omitempty"`
	Slots       int    `json:"slots"`
	// Memory is the memory the agent offers tasks, in bytes (0: none).
	Memory             int64             `json:"memory,omitempty"`
	Labels             map[string]string `json:"labels,omitempty"`
	Hostname           string            `json:"hostname,omitempty"`
	Running            []AttemptRef      `json:"running,omitempty"`
	Finished           []TaskResult      `json:"finished,omitempty"`
	InsecureSkipVerify bool              `json:"insecure_skip_verify,omitempty"`
	// Revocation says whether the agent could check the coordinator's
	// certificate against a current CRL: checked, or unavailable.
	Revocation string    `json:"revocation,omitempty"`
	Time       time.Time `json:"time"`
	// Profile and ProfileRevision name the agent profile the agent runs
	// with ("" for none).
	Profile         string `json:"profile,omitempty"`
	ProfileRevision int64  `json:"profile_revision,omitempty"`
	// Account is the local account the agent runs as ("ward (uid 998)"),
	// which runs its tasks unless RunAsUser.
	Account string `json:"account,omitempty"`
	// RunAsUser says the agent runs each task as its submitter's local
	// account: assignments then carry the user, and results the account.
	RunAsUser bool `json:"run_as_user,omitempty"`
	// Envs are the jobs whose environment (--setup) the agent holds; the
	// Welcome's EndedJobs says which of them ended while it was away.
	Envs []string `json:"envs,omitempty"`
}

// Welcome answers Hello.
type Welcome struct {
	Node              string    `json:"node"`
	HeartbeatInterval Duration  `json:"heartbeat_interval"`
	Time              time.Time `json:"time"`
	Drain             bool      `json:"drain"`
	// Cancel lists attempts the agent reported running that the coordinator
	// no longer wants (declared lost or canceled while the agent was away).
	Cancel []AttemptRef `json:"cancel,omitempty"`
	// BundlePEM is the cluster's current trust bundle, so an agent that was
	// away during a CA rotation catches up.
	BundlePEM []byte `json:"bundle_pem,omitempty"`
	// CRLsPEM is every trusted issuing CA's CRL (also pushed in CRL frames
	// when they change), so agents need no fetch of their own.
	CRLsPEM []byte `json:"crls_pem,omitempty"`
	// ClusterAddrs are the TLS cluster addresses (used by plaintext agents
	// when they upgrade).
	ClusterAddrs []string `json:"cluster_addrs,omitempty"`
	// ResultAccounts says the coordinator reads TaskResult.Account in
	// binary Results frames (an older one refuses the extra bytes).
	ResultAccounts bool `json:"result_accounts,omitempty"`
	// EndedJobs are the Hello's Envs whose jobs ended: tear them down.
	EndedJobs []string `json:"ended_jobs,omitempty"`
}

// Heartbeat reports liveness, load and the agent's clock.
type Heartbeat struct {
	Time      time.Time `json:"time"`
	Running   int       `json:"running"`
	UsedSlots int       `json:"used_slots"`
}

// Nanos is a time as Unix nanoseconds, 0 for none. The hot frames carry
// times this way: a JSON number costs far less to write and read than a
// formatted timestamp.
type Nanos int64

// NanosOf converts a time.
func NanosOf(t time.Time) Nanos {
	if t.IsZero() {
		return 0
	}
	return Nanos(t.UnixNano())
}

// Time converts back.
func (n Nanos) Time() time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n)).UTC()
}

// Assignment is one task attempt for an agent's executor: the attempt and
// the command with {index} already substituted. On the wire it travels as
// an AssignJob template plus the attempt reference.
type Assignment struct {
	AttemptRef
	Argv    []string
	Env     map[string]string
	Dir     string
	Slots   int
	Timeout Duration
	// User is the Ward user who submitted the job, sent only to agents
	// that run tasks as their submitter (--run-as-user).
	User string
	// Staging, for a job with input or output files, says what to fetch
	// before the task starts and what to send back after it ends.
	Staging *Staging
	// Setup and Teardown are the job's shell commands run once per node
	// (see AssignJob).
	Setup, Teardown string
}

// Staging is a job's files as its agents see them.
type Staging struct {
	Inputs  []StagedFile `json:"inputs,omitempty"`
	Outputs []string     `json:"outputs,omitempty"`
}

// AssignJob is a job's command template, sent once per Assign frame for
// all of that job's tasks in it.
type AssignJob struct {
	Job     string            `json:"j"`
	Argv    []string          `json:"argv"`
	Env     map[string]string `json:"env,omitempty"`
	Dir     string            `json:"dir,omitempty"`
	Slots   int               `json:"slots"`
	Timeout Duration          `json:"timeout,omitempty"`
	Staging *Staging          `json:"staging,omitempty"`
	// User is the job's submitter (a Ward user name), only for agents that
	// said RunAsUser in their hello.
	User string `json:"user,omitempty"`
	// Setup runs (with sh -c, in the job's directory and environment) on
	// a node before the job's first task there; Teardown after the job
	// ended, on every node whose setup succeeded.
	Setup    string `json:"setup,omitempty"`
	Teardown string `json:"teardown,omitempty"`
}

// Assign carries a batch of attempts to run and the templates of their
// jobs.
type Assign struct {
	Jobs  []AssignJob  `json:"jobs"`
	Tasks []AttemptRef `json:"tasks"`
}

// IndexPlaceholder in a job's arguments becomes the task's index.
const IndexPlaceholder = "{index}"

// Expand turns the frame into assignments, substituting {index}. A task
// whose job template is missing is an error: the frame is malformed.
func (m *Assign) Expand() ([]Assignment, error) {
	jobs := make(map[string]*AssignJob, len(m.Jobs))
	for i := range m.Jobs {
		jobs[m.Jobs[i].Job] = &m.Jobs[i]
	}
	out := make([]Assignment, 0, len(m.Tasks))
	for _, ref := range m.Tasks {
		j := jobs[ref.Job]
		if j == nil {
			return nil, fmt.Errorf("assignment for job %s without its template", ref.Job)
		}
		idx := strconv.Itoa(ref.Task)
		argv := make([]string, len(j.Argv))
		for i, a := range j.Argv {
			argv[i] = strings.ReplaceAll(a, IndexPlaceholder, idx)
		}
		out = append(out, Assignment{AttemptRef: ref, Argv: argv, Env: j.Env, Dir: j.Dir, Slots: j.Slots, Timeout: j.Timeout, Staging: j.Staging, User: j.User, Setup: j.Setup, Teardown: j.Teardown})
	}
	return out, nil
}

// Started reports attempts whose processes started.
type Started struct {
	Refs []StartedRef `json:"refs"`
}

// StartedRef is one started attempt.
type StartedRef struct {
	AttemptRef
	At Nanos `json:"at"`
}

// OutputChunk is a piece of an attempt's stdout or stderr.
type OutputChunk struct {
	AttemptRef
	Stream string `json:"s"` // "stdout" or "stderr"
	Data   []byte `json:"d"`
	// Seq numbers an attempt's chunks from 1. The agent keeps each chunk
	// until an OutputAck (or its result's Ack) covers it and sends it
	// again after a reconnect; the coordinator stores each Seq once.
	Seq int `json:"n,omitempty"`
}

// OutputAck says that an attempt's output up to Seq is stored durably.
// An Ack of the attempt's result covers all of its output too: an agent
// sends an attempt's output before its result, and the coordinator stores
// them in that order.
type OutputAck struct {
	AttemptRef
	Seq int `json:"n"`
}

// OutputAcks carries OutputAck items (FrameOutputAck).
type OutputAcks struct {
	Acks []OutputAck `json:"acks"`
}

// Output carries output chunks in the order they were produced.
type Output struct {
	Chunks []OutputChunk `json:"chunks"`
}

// End reasons an agent reports.
const (
	EndExited   = "exited"    // the process exited on its own (exit code says how)
	EndTimedOut = "timed_out" // killed at the task's timeout
	EndCanceled = "canceled"  // killed because the coordinator canceled it
	EndStartErr = "start_failed"
	EndDrained  = "drained" // killed by a forced drain; requeued
	// EndStagingFailed: a file could not be moved, or arrived with the
	// wrong checksum (the error starts with its code, CHECKSUM_MISMATCH);
	// an infrastructure failure, retried within the job's retries.
	EndStagingFailed = "staging_failed"
	// EndOutputRefused: the task's output files were over a size limit;
	// the task failed (not retried: it would leave the same files).
	EndOutputRefused = "output_refused"
	// EndEnvError: the job's --setup failed on this node, so its task did
	// not start here; the coordinator sends it elsewhere within --retries.
	EndEnvError = "environment_error"
)

// TaskResult is how an attempt ended.
type TaskResult struct {
	AttemptRef
	ExitCode int    `json:"exit"`
	Reason   string `json:"reason"`
	Error    string `json:"error,omitempty"`
	Started  Nanos  `json:"s"`
	Ended    Nanos  `json:"e"`
	// Account is the local account a --run-as-user agent ran the attempt
	// as; "" means the agent's own account (its hello's Account).
	Account string `json:"account,omitempty"`
}

// Results carries finished attempts; the agent keeps each until acknowledged.
type Results struct {
	Results []TaskResult `json:"results"`
}

// Ack acknowledges results that are durably recorded.
type Ack struct {
	Refs []AttemptRef `json:"refs"`
}

// Cancel asks the agent to stop attempts: SIGTERM to the process group, a
// grace period, then SIGKILL.
type Cancel struct {
	Refs   []AttemptRef `json:"refs"`
	Reason string       `json:"reason"`
	// EndReason is reported back in the result (canceled or drained).
	EndReason string `json:"end_reason"`
	// WaitingOnly limits the cancel to attempts still waiting on the agent
	// for a slot (assigned ahead); started ones run on. A drain sends it.
	WaitingOnly bool `json:"waiting_only,omitempty"`
}

// Drain tells the agent whether it is drained (for display only; the
// coordinator enforces it).
type Drain struct {
	Drain bool `json:"drain"`
}

// Trust pushes a new trust bundle (during CA rotation).
type Trust struct {
	BundlePEM []byte `json:"bundle_pem"`
}

// RenewRequest asks for a new certificate over the live session.
type RenewRequest struct {
	CSR []byte `json:"csr"`
}

// Renewed carries a renewed chain, or why renewal failed.
type Renewed struct {
	ChainPEM  []byte `json:"chain_pem,omitempty"`
	BundlePEM []byte `json:"bundle_pem,omitempty"` // the trust bundle now, so a renewal also catches up on rotations
	Error     *Error `json:"error,omitempty"`
}

// RenewNow asks the agent to renew at once, after Delay (spread by the
// coordinator so a fleet does not renew in one burst).
type RenewNow struct {
	Delay Duration `json:"delay"`
}

// Bye tells the agent why the coordinator ends the session.
type Bye struct {
	Reason string `json:"reason"`
	Error  *Error `json:"error,omitempty"`
}
