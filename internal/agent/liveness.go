package agent

import (
	"fmt"
	"slices"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// An agent starts work only while its session is live: a session is open
// and its last frame arrived within the liveness timeout. The coordinator
// ends a session it heard nothing from for that long, and after
// node_lost_timeout places the session's attempts elsewhere. An agent that
// was stopped (SIGSTOP, a frozen VM) or starved past that timeout cannot
// tell from its own state whether that happened, so it assumes it did:
//   - a frame read after such a gap ends the session without being acted
//     on (it may be an assignment the coordinator has since given to
//     another agent);
//   - an attempt due to start (assigned, or assigned ahead and now given
//     a slot) while the session is not live is held, keeping its slots,
//     and is reported as running in the next hello; the coordinator's
//     reconciliation then cancels what it placed elsewhere, and what is
//     left starts once the new session is open.
// Times are monotonic, so a stopped process sees the real gap on resume.

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow is a monotonic clock reading in nanoseconds, never 0.
func monoNow() int64 { return int64(time.Since(monoBase)) + 1 }

// livenessTimeout is how long the current session may go without a frame.
func (a *Agent) livenessTimeout() time.Duration {
	return api.LivenessTimeout(time.Duration(a.hbInterval.Load()))
}

// sessionLive reports whether a session is open and heard from within the
// liveness timeout.
func (a *Agent) sessionLive() bool {
	h := a.heard.Load()
	return h != 0 && time.Duration(monoNow()-h) <= a.livenessTimeout()
}

// hold keeps an attempt that holds its slots from starting while the
// session is not live; it reports false when the session is live after all
// (the attempt may start). Checked under a.mu, which opening a session
// takes too, so no attempt is held after the new session released the
// held ones.
func (a *Agent) hold(at *attempt, as api.Assignment) bool {
	a.mu.Lock()
	if a.sessionLive() {
		a.mu.Unlock()
		return false
	}
	if why := at.kill; why != "" {
		// Canceled before it started: it never will.
		a.mu.Unlock()
		a.notStarted(at.ref, why, "ended before it started: it was canceled while the agent had no live session")
		return true
	}
	at.held = true
	a.held = append(a.held, launchReq{at, as})
	n := len(a.held)
	a.mu.Unlock()
	a.log.Info("holding an attempt until the coordinator confirms it: no live session", "job", as.Job, "task", as.Task, "attempt", as.Attempt, "held", n)
	return true
}

// releaseHeld starts the held attempts the coordinator still wants here
// (the Welcome's cancels removed the others), in order.
func (a *Agent) releaseHeld() {
	a.mu.Lock()
	held := a.held
	a.held = nil
	for _, h := range held {
		h.at.held = false
	}
	a.mu.Unlock()
	if len(held) > 0 {
		a.log.Info("starting attempts held while the session was down", "attempts", len(held))
	}
	for _, h := range held {
		a.launch(h.at, h.as)
	}
}

// dropHeldLocked forgets a held attempt that will never start and frees
// its slots. Callers hold a.mu.
func (a *Agent) dropHeldLocked(at *attempt) {
	at.held = false
	a.used -= at.slots
	a.held = slices.DeleteFunc(a.held, func(h launchReq) bool { return h.at == at })
}

// notStarted reports an attempt that ended without starting.
func (a *Agent) notStarted(ref api.AttemptRef, reason, why string) {
	(&reporter{a: a, ref: ref}).Exited(api.TaskResult{AttemptRef: ref, ExitCode: -1, Reason: reason, Error: why, Ended: api.NanosOf(time.Now())})
}

// stalledError ends a session whose next frame came after a gap longer than
// the liveness timeout: the agent was stopped or starved, and the
// coordinator has presumably given up on the session already.
type stalledError struct {
	addr    string
	gap     time.Duration
	timeout time.Duration
}

func (e stalledError) Error() string {
	return fmt.Sprintf("no frame was read from the coordinator at %s for %s, longer than the liveness timeout of %s (this agent was stopped, or starved of CPU), so the coordinator has presumably ended the session and placed its work elsewhere: reconnecting without acting on what arrived meanwhile",
		e.addr, e.gap.Round(time.Millisecond), e.timeout)
}
