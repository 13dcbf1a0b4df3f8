package agent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// ReaperCommand is the hidden subcommand that runs RunReaper.
const ReaperCommand = "agent-reaper"

// Reaper is a companion process that kills every task process group still
// registered when the agent dies, however it dies. A task's direct child
// dies with the agent through Pdeathsig, but processes the task started
// in the background would otherwise live on as orphans next to the attempt
// the coordinator requeues elsewhere.
//
// The agent tells the reaper about each group over a pipe; the pipe's end
// (even after SIGKILL of the agent) is the signal to reap.
type Reaper struct {
	mu  sync.Mutex
	w   io.WriteCloser
	cmd *exec.Cmd
}

// StartReaper starts the reaper by re-running this executable with the
// hidden ReaperCommand.
func StartReaper() (*Reaper, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start the task reaper: %w", err)
	}
	cmd := exec.Command(exe, ReaperCommand)
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Its own session: a Ctrl-C to the agent's terminal must not kill the
	// reaper before the agent has stopped its tasks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the task reaper: %w", err)
	}
	return &Reaper{w: w, cmd: cmd}, nil
}

func (r *Reaper) send(op byte, pgid int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, "%c%d\n", op, pgid)
}

// Track registers a running task's process group.
func (r *Reaper) Track(pgid int) { r.send('+', pgid) }

// Untrack forgets a process group whose task ended.
func (r *Reaper) Untrack(pgid int) { r.send('-', pgid) }

// Close ends the reaper, which kills whatever is still registered.
func (r *Reaper) Close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	r.w.Close()
	r.mu.Unlock()
	return r.cmd.Wait()
}

// RunReaper is the reaper process: it reads +PGID and -PGID lines until its
// input ends, then SIGKILLs every process group still registered.
func RunReaper(in io.Reader) {
	groups := map[int]bool{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[pgid] = true
		case '-':
			delete(groups, pgid)
		}
	}
	for pgid := range groups {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
}
