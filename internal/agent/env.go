package agent

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// A job's environment on this node: its --setup runs once, before the
// job's first task here, and its --teardown once after the job ended.
const (
	envPending = iota // setup running; tasks wait for it
	envReady          // setup succeeded
	envFailed         // setup failed: the job's tasks here end with environment_error
)

// setupOutputKept bounds the setup output quoted in an environment_error.
const setupOutputKept = 2 << 10

// defaultSetupTimeout bounds a setup of a job without --timeout.
const defaultSetupTimeout = time.Hour

type jobEnv struct {
	state    int
	err      string // why the setup failed
	teardown string
	dir      string
	env      map[string]string
	waiting  []launchReq // tasks waiting for the setup
	ended    bool        // the job ended while its setup ran
}

type launchReq struct {
	at *attempt
	as api.Assignment
}

// launchInEnv launches an attempt of a job with a --setup: at once when
// the setup already succeeded here, after it when it runs, or not at all
// (environment_error) when it failed. The first task starts the setup.
func (a *Agent) launchInEnv(at *attempt, as api.Assignment) {
	a.mu.Lock()
	if a.envs == nil {
		a.envs = map[string]*jobEnv{}
	}
	e := a.envs[as.Job]
	first := e == nil
	if first {
		e = &jobEnv{teardown: as.Teardown, dir: as.Dir, env: as.Env}
		a.envs[as.Job] = e
	}
	state, why := e.state, e.err
	if state == envPending {
		e.waiting = append(e.waiting, launchReq{at, as})
	}
	a.mu.Unlock()
	switch {
	case first:
		go a.runSetup(as, e)
	case state == envReady:
		a.launchNow(at, as)
	case state == envFailed:
		a.envFailed(as, why)
	}
}

// runSetup runs a job's setup and then starts (or fails) the tasks that
// waited for it.
func (a *Agent) runSetup(as api.Assignment, e *jobEnv) {
	timeout := as.Timeout.D()
	if timeout <= 0 {
		timeout = defaultSetupTimeout
	}
	start := time.Now()
	out, err := a.runEnvCommand(as.Job, as.Setup, e, timeout)
	a.mu.Lock()
	if err != nil {
		e.state, e.err = envFailed, fmt.Sprintf("setup failed on node %s: %v%s", a.state.Node, err, quoteOutput(out))
	} else {
		e.state = envReady
	}
	waiting, ended := e.waiting, e.ended
	e.waiting = nil
	a.mu.Unlock()
	if err != nil {
		a.log.Warn("job setup failed: its tasks on this node end with environment_error and go elsewhere", "job", as.Job, "err", err, "took", time.Since(start).Round(time.Millisecond).String())
	} else {
		a.log.Info("job setup done", "job", as.Job, "took", time.Since(start).Round(time.Millisecond).String())
	}
	for _, w := range waiting {
		switch {
		case err != nil:
			a.envFailed(w.as, e.err)
		case !a.sessionLive() && a.hold(w.at, w.as):
			// The session died during the setup: started once the
			// coordinator confirms it.
		default:
			a.launchNow(w.at, w.as)
		}
	}
	if ended {
		a.endJobs([]string{as.Job})
	}
}

// envFailed ends an attempt that cannot start here because its job's setup
// failed on this node.
func (a *Agent) envFailed(as api.Assignment, why string) {
	now := api.NanosOf(time.Now())
	(&reporter{a: a, ref: as.AttemptRef}).Exited(api.TaskResult{AttemptRef: as.AttemptRef, ExitCode: -1, Reason: api.EndEnvError, Error: why, Ended: now})
}

// endJobs tears down the environments of jobs that ended: the teardown of
// each whose setup succeeded runs once, and the job is forgotten.
func (a *Agent) endJobs(jobs []string) {
	for _, id := range jobs {
		a.mu.Lock()
		e := a.envs[id]
		switch {
		case e == nil:
		case e.state == envPending:
			e.ended = true // torn down when its setup finishes
			e = nil
		default:
			delete(a.envs, id)
		}
		a.mu.Unlock()
		if e == nil || e.state != envReady || e.teardown == "" {
			continue
		}
		go func(id string, e *jobEnv) {
			out, err := a.runEnvCommand(id, e.teardown, e, defaultSetupTimeout)
			if err != nil {
				a.log.Warn("job teardown failed", "job", id, "err", err, "output", strings.TrimSpace(string(out)))
				return
			}
			a.log.Info("job teardown done", "job", id)
		}(id, e)
	}
}

// envJobsLocked lists the jobs whose environment this agent holds, for the
// hello. Callers hold a.mu.
func (a *Agent) envJobsLocked() []string {
	out := make([]string, 0, len(a.envs))
	for id := range a.envs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// runEnvCommand runs a setup or teardown with sh -c in the job's directory
// and environment, in its own process group (killed whole at the timeout
// or if the agent dies), and returns its combined output.
func (a *Agent) runEnvCommand(job, command string, e *jobEnv, timeout time.Duration) ([]byte, error) {
	processDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = e.dir
	env := append([]string{}, baseEnv...)
	for k, v := range e.env {
		env = append(env, k+"="+v)
	}
	cmd.Env = append(env, "WARD_JOB_ID="+job, "WARD_NODE="+a.state.Node)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("killed after %s", timeout)
	}
	return out.Bytes(), err
}

// quoteOutput is the end of a command's output, for an error message.
func quoteOutput(out []byte) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return ""
	}
	if len(s) > setupOutputKept {
		s = "…" + s[len(s)-setupOutputKept:]
	}
	return "; output: " + s
}
