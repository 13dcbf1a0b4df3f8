package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/runas"
)

// Reporter receives what happens to one attempt.
type Reporter interface {
	// Started is called once the process runs.
	Started(at time.Time)
	// Output is called with each piece of stdout or stderr, in order.
	Output(stream string, data []byte)
	// Exited is called once, last, with how the attempt ended.
	Exited(r api.TaskResult)
}

// Handle controls a running attempt.
type Handle interface {
	// Kill stops the attempt; reason is reported as its end reason.
	Kill(reason string)
}

// Executor runs attempts. ProcessExecutor runs real processes; the load
// generator supplies one that runs nothing.
type Executor interface {
	Run(a api.Assignment, r Reporter) Handle
}

// ProcessExecutor runs each attempt as a process in its own process group,
// so cancel and timeout reach every process the task started.
type ProcessExecutor struct {
	// KillGrace is the wait between SIGTERM and SIGKILL.
	KillGrace time.Duration
	// Grace, when set, gives the wait at each start instead: an agent
	// profile changes it without a restart.
	Grace func() time.Duration
	// Reaper, when set, kills the tasks' process groups if the agent dies.
	Reaper *Reaper
	// RunAs, when set (--run-as-user), runs each attempt as its job
	// user's local account: uid, gid and supplementary groups are set
	// before exec.
	RunAs *runas.Mapper
}

// Every task's stdin is /dev/null, opened once and shared (os/exec would
// open it again for every process), and every task inherits the agent's
// environment, read once.
var (
	devNullOnce sync.Once
	devNull     *os.File
	baseEnv     []string
)

func processDefaults() {
	devNullOnce.Do(func() {
		devNull, _ = os.Open(os.DevNull)
		baseEnv = os.Environ()
	})
}

type procHandle struct {
	grace time.Duration
	mu    sync.Mutex
	pgid  int
	why   string // end reason once a kill was asked for
	done  chan struct{}
}

// Kill sends SIGTERM to the whole process group, then SIGKILL after the
// grace period if it is still there. Before the process has started it
// records the reason, and the start delivers the kill.
func (h *procHandle) Kill(reason string) {
	h.mu.Lock()
	if h.why != "" || h.pgid == 0 {
		if h.why == "" {
			h.why = reason
		}
		h.mu.Unlock()
		return
	}
	h.why = reason
	pgid := h.pgid
	h.mu.Unlock()
	h.signal(pgid)
}

// signal sends SIGTERM to the group, then SIGKILL once the grace period
// passes (or the leader exits: stragglers in the group go too).
func (h *procHandle) signal(pgid int) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	go func() {
		select {
		case <-h.done:
		case <-time.After(h.grace):
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
	}()
}

func (h *procHandle) reason() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.why
}

type streamWriter struct {
	stream string
	r      Reporter
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.r.Output(w.stream, append([]byte(nil), p...))
	return len(p), nil
}

// copyBufs holds the read buffers of output streams. os/exec copies a
// task's stdout and stderr pipes with io.Copy, which would otherwise make
// a 32 KiB buffer for each stream of every task: at a thousand short tasks
// a second, 64 MB/s of garbage (measured: a tenth of the agent's CPU in
// allocation and GC in the dispatch-exec bench).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadFrom is what io.Copy uses: it reads with a pooled buffer and hands
// each piece on as its own slice.
func (w streamWriter) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += int64(n)
			w.r.Output(w.stream, append([]byte(nil), buf[:n]...))
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Run returns at once; the process starts on its own goroutine. Starting a
// process blocks until the exec succeeds (about a millisecond), and the
// agent hands over assignments one after another from its session reader:
// starting inline would run an agent's slots one spawn at a time.
func (e ProcessExecutor) Run(a api.Assignment, r Reporter) Handle {
	grace := e.KillGrace
	if e.Grace != nil {
		grace = e.Grace()
	}
	h := &procHandle{grace: grace, done: make(chan struct{})}
	go e.run(a, r, h)
	return h
}

func (e ProcessExecutor) run(a api.Assignment, r Reporter, h *procHandle) {
	processDefaults()
	cmd := exec.Command(a.Argv[0], a.Argv[1:]...)
	cmd.Dir = a.Dir
	if devNull != nil {
		cmd.Stdin = devNull
	}
	env := make([]string, 0, len(baseEnv)+len(a.Env)+3)
	env = append(env, baseEnv...)
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, "WARD_JOB_ID="+a.Job, "WARD_TASK_INDEX="+strconv.Itoa(a.Task), "WARD_ATTEMPT="+strconv.Itoa(a.Attempt))
	cmd.Stdout = streamWriter{"stdout", r}
	cmd.Stderr = streamWriter{"stderr", r}
	// Its own process group, killed if the agent dies so an orphan never
	// runs on beside the attempt the coordinator requeues.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild that keeps the output pipes open must not hold the
	// result back forever.
	cmd.WaitDelay = 5 * time.Second
	res := api.TaskResult{AttemptRef: a.AttemptRef}
	var err error
	if e.RunAs != nil {
		var acct runas.Account
		if acct, err = e.RunAs.Resolve(a.User); err == nil {
			// The credential applies in the child before exec; the parent
			// death signal is set after it, so it survives the switch.
			cmd.SysProcAttr.Credential = acct.Credential()
			env = append(env, "HOME="+acct.Home, "USER="+acct.Name, "LOGNAME="+acct.Name)
			if st, serr := os.Stat(acct.Home); cmd.Dir == "" && serr == nil && st.IsDir() {
				cmd.Dir = acct.Home
			}
			res.Account = acct.Name
		}
	}
	cmd.Env = env
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		now := time.Now()
		res.Reason, res.ExitCode, res.Error, res.Started, res.Ended = api.EndStartErr, -1, err.Error(), api.NanosOf(now), api.NanosOf(now)
		close(h.done)
		r.Exited(res)
		return
	}
	started := time.Now()
	res.Started = api.NanosOf(started)
	e.Reaper.Track(cmd.Process.Pid)
	h.mu.Lock()
	h.pgid = cmd.Process.Pid
	pending := h.why
	h.mu.Unlock()
	r.Started(started)
	if pending != "" { // killed before it even started
		h.signal(cmd.Process.Pid)
	}
	var timer *time.Timer
	if a.Timeout > 0 {
		timer = time.AfterFunc(a.Timeout.D(), func() { h.Kill(api.EndTimedOut) })
	}
	err = cmd.Wait()
	// Stragglers the task left in its group end with it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	e.Reaper.Untrack(cmd.Process.Pid)
	close(h.done)
	if timer != nil {
		timer.Stop()
	}
	res.Ended = api.NanosOf(time.Now())
	res.ExitCode = cmd.ProcessState.ExitCode()
	res.Reason = api.EndExited
	if why := h.reason(); why != "" {
		res.Reason = why
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && !errors.Is(err, exec.ErrWaitDelay) {
		res.Error = err.Error()
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Error = fmt.Sprintf("killed by signal %s", ws.Signal())
	}
	r.Exited(res)
}
