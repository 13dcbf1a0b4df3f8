package agent

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
)

// heldExec starts attempts and keeps them running until ended.
type heldExec struct {
	mu      sync.Mutex
	started []api.AttemptRef
	rep     map[api.AttemptRef]Reporter
	killed  map[api.AttemptRef]string
}

type heldHandle struct {
	e   *heldExec
	ref api.AttemptRef
}

func (h heldHandle) Kill(reason string) {
	h.e.mu.Lock()
	h.e.killed[h.ref] = reason
	h.e.mu.Unlock()
}

func (e *heldExec) Run(a api.Assignment, r Reporter) Handle {
	e.mu.Lock()
	e.started = append(e.started, a.AttemptRef)
	e.rep[a.AttemptRef] = r
	e.mu.Unlock()
	r.Started(time.Now())
	return heldHandle{e, a.AttemptRef}
}

func (e *heldExec) end(ref api.AttemptRef) {
	e.mu.Lock()
	r := e.rep[ref]
	e.mu.Unlock()
	now := api.NanosOf(time.Now())
	r.Exited(api.TaskResult{AttemptRef: ref, Reason: api.EndExited, Started: now, Ended: now})
}

func (e *heldExec) startedRefs() []api.AttemptRef {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]api.AttemptRef(nil), e.started...)
}

// TestAssignedAheadWaitsForSlots: assignments beyond the agent's slots
// (assigned ahead) wait, start in order as slots free, are reported as
// running in a hello, and end without starting when canceled.
func TestAssignedAheadWaitsForSlots(t *testing.T) {
	ex := &heldExec{rep: map[api.AttemptRef]Reporter{}, killed: map[api.AttemptRef]string{}}
	a := &Agent{
		cfg:     config.Agent{Slots: 2},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		exec:    ex,
		running: map[api.AttemptRef]*attempt{}, unacked: map[api.AttemptRef]api.TaskResult{},
		notify: make(chan struct{}, 1),
	}
	a.hbInterval.Store(int64(time.Hour))
	a.openSession(nil, "coord:7000", &api.Welcome{}, monoNow()) // attempts start only on a live session
	ref := func(i int) api.AttemptRef { return api.AttemptRef{Job: "1", Task: i, Attempt: 1} }
	for i := range 5 {
		a.start(api.Assignment{AttemptRef: ref(i), Argv: []string{"x"}, Slots: 1})
	}
	if got := ex.startedRefs(); len(got) != 2 || got[0] != ref(0) || got[1] != ref(1) {
		t.Fatalf("started %v, want tasks 0 and 1", got)
	}
	if got := a.Running(); len(got) != 5 {
		t.Fatalf("Running() = %d attempts, want all 5 (a hello must list the waiting ones)", len(got))
	}

	ex.end(ref(1))
	if got := ex.startedRefs(); len(got) != 3 || got[2] != ref(2) {
		t.Fatalf("after one ended, started %v: want task 2 next", got)
	}

	// Task 3 waits; canceling it (here for a drain) ends it at once,
	// without starting it.
	a.cancel([]api.AttemptRef{ref(2), ref(3)}, api.EndDrained, true) // a drain: task 2 has started and runs on
	a.cancel([]api.AttemptRef{ref(3)}, api.EndCanceled, false)       // a second cancel finds nothing
	a.mu.Lock()
	res, ok := a.unacked[ref(3)]
	nres := len(a.out.results)
	used, waiting := a.used, len(a.waiting)
	a.mu.Unlock()
	ex.mu.Lock()
	_, task2Killed := ex.killed[ref(2)]
	ex.mu.Unlock()
	if task2Killed {
		t.Fatal("a cancel for waiting attempts only killed a started one")
	}
	if !ok || res.Reason != api.EndDrained || res.Started != 0 || nres != 2 {
		t.Fatalf("canceled waiting attempt: result %+v (found %v), %d results queued", res, ok, nres)
	}
	if used != 2 || waiting != 1 {
		t.Fatalf("used %d waiting %d, want 2 and 1", used, waiting)
	}

	// Task 4 is next, after task 3 was dropped.
	ex.end(ref(0))
	if got := ex.startedRefs(); len(got) != 4 || got[3] != ref(4) {
		t.Fatalf("started %v: want task 4 after task 3 was canceled", got)
	}
	for _, r := range []api.AttemptRef{ref(2), ref(4)} {
		ex.end(r)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used != 0 || len(a.waiting) != 0 || len(a.running) != 0 {
		t.Fatalf("at rest: used %d waiting %d running %d", a.used, len(a.waiting), len(a.running))
	}
}
