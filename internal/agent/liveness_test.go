package agent

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
)

// newHeldAgent is an agent with slots that runs tasks on a heldExec and
// heartbeats every interval (its liveness timeout follows from it).
func newHeldAgent(slots int, interval time.Duration) (*Agent, *heldExec) {
	ex := &heldExec{rep: map[api.AttemptRef]Reporter{}, killed: map[api.AttemptRef]string{}}
	a := &Agent{
		cfg:     config.Agent{Slots: slots},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		exec:    ex,
		running: map[api.AttemptRef]*attempt{}, unacked: map[api.AttemptRef]api.TaskResult{},
		pending: map[api.AttemptRef][]api.OutputChunk{},
		notify:  make(chan struct{}, 1), hbChanged: make(chan struct{}, 1),
		state: &stateFile{Node: "n1"},
	}
	a.hbInterval.Store(int64(interval))
	return a, ex
}

func taskRef(i int) api.AttemptRef { return api.AttemptRef{Job: "1", Task: i, Attempt: 1} }

// deadlineBlindConn ignores read deadlines, as a stopped process does: its
// deadline timer has not fired yet when, on resume, the bytes that arrived
// meanwhile are read.
type deadlineBlindConn struct{ net.Conn }

func (deadlineBlindConn) SetReadDeadline(time.Time) error { return nil }

// TestFrameAfterLivenessGapIsNotActedOn: an assignment read after a gap
// longer than the liveness timeout (the agent was stopped with it in its
// socket buffer, and the coordinator has since ended the session and
// placed the task elsewhere) ends the session without starting the task;
// one read in time starts.
func TestFrameAfterLivenessGapIsNotActedOn(t *testing.T) {
	a, ex := newHeldAgent(4, 100*time.Millisecond)
	timeout := a.livenessTimeout()
	local, remote := net.Pipe()
	defer remote.Close()
	a.openSession(local, "coord:7000", &api.Welcome{}, monoNow())
	ended := make(chan error, 1)
	go func() {
		err := a.readFrames(deadlineBlindConn{local}, "coord:7000", make(chan error))
		a.closeSession()
		ended <- err
	}()
	assign := func(task int) []byte {
		b, err := api.AppendFrame(nil, api.FrameAssign, api.Assign{Jobs: []api.AssignJob{{Job: "1", Argv: []string{"true"}, Slots: 1}}, Tasks: []api.AttemptRef{taskRef(task)}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := remote.Write(assign(0)); err != nil {
		t.Fatal(err)
	}
	hb, _ := api.AppendFrame(nil, api.FrameHeartbeatAck, api.HeartbeatAck{})
	if _, err := remote.Write(hb); err != nil { // read only after task 0 was handled
		t.Fatal(err)
	}
	if got := ex.startedRefs(); !slices.Equal(got, []api.AttemptRef{taskRef(0)}) {
		t.Fatalf("started %v, want task 0 (assigned on a live session)", got)
	}

	time.Sleep(timeout + 300*time.Millisecond) // the "stop"
	remote.Write(assign(1))                    // buffered while stopped: read on resume
	select {
	case err := <-ended:
		var st stalledError
		if !errors.As(err, &st) {
			t.Fatalf("session ended with %v, want a stall", err)
		}
		if st.gap <= timeout {
			t.Fatalf("stall gap %s, want over the liveness timeout %s", st.gap, timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after a frame arrived past the liveness timeout")
	}
	if got := ex.startedRefs(); !slices.Equal(got, []api.AttemptRef{taskRef(0)}) {
		t.Fatalf("started %v: task 1 arrived after the gap and must not start", got)
	}
	if got := a.Running(); !slices.Equal(got, []api.AttemptRef{taskRef(0)}) {
		t.Fatalf("Running() = %v: task 1 must not be taken on (the next hello reports only task 0)", got)
	}
	if a.sessionLive() {
		t.Fatal("the session still counts as live after it ended")
	}
}

// TestNothingStartsWithoutLiveSession: an attempt assigned ahead that gets
// a slot while no session is open, or while the open one has not been
// heard from for the liveness timeout (the agent was stopped: its tasks
// ended meanwhile and it sees their exits before it reads the socket), is
// held, not started. The next Welcome's cancels end held attempts the
// coordinator placed elsewhere without starting them; the others start.
func TestNothingStartsWithoutLiveSession(t *testing.T) {
	tests := []struct {
		name string
		// down makes the session not live.
		down func(a *Agent)
		// cancel is what the next Welcome cancels.
		cancel []api.AttemptRef
		// wantStarted after the Welcome, in order.
		wantStarted []api.AttemptRef
		wantEnded   []api.AttemptRef // ended without starting
	}{
		{
			name:        "session closed, coordinator placed the held task elsewhere",
			down:        func(a *Agent) { a.closeSession() },
			cancel:      []api.AttemptRef{taskRef(1)},
			wantStarted: []api.AttemptRef{taskRef(0), taskRef(2)},
			wantEnded:   []api.AttemptRef{taskRef(1)},
		},
		{
			name:        "session closed, coordinator still wants the held task",
			down:        func(a *Agent) { a.closeSession() },
			wantStarted: []api.AttemptRef{taskRef(0), taskRef(1)},
		},
		{
			name: "session open but silent past the liveness timeout (agent stopped)",
			down: func(a *Agent) {
				a.heard.Store(monoNow() - int64(a.livenessTimeout()) - int64(time.Second))
			},
			cancel:      []api.AttemptRef{taskRef(1), taskRef(2)},
			wantStarted: []api.AttemptRef{taskRef(0)},
			wantEnded:   []api.AttemptRef{taskRef(1), taskRef(2)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ex := newHeldAgent(1, time.Hour)
			a.openSession(nil, "coord:7000", &api.Welcome{}, monoNow())
			for i := range 3 {
				a.start(api.Assignment{AttemptRef: taskRef(i), Argv: []string{"x"}, Slots: 1})
			}
			if got := ex.startedRefs(); !slices.Equal(got, []api.AttemptRef{taskRef(0)}) {
				t.Fatalf("started %v, want task 0 (one slot)", got)
			}
			tt.down(a)
			ex.end(taskRef(0)) // its slot goes to task 1, which must wait
			if got := ex.startedRefs(); len(got) != 1 {
				t.Fatalf("started %v while the session was not live", got)
			}
			// The hello lists what is held and waiting, for the
			// coordinator to reconcile.
			if got := a.Running(); !slices.Equal(got, []api.AttemptRef{taskRef(1), taskRef(2)}) {
				t.Fatalf("Running() = %v, want the held task 1 and waiting task 2", got)
			}
			a.closeSession()
			a.openSession(nil, "coord:7000", &api.Welcome{Cancel: tt.cancel}, monoNow())
			if got := ex.startedRefs(); !slices.Equal(got, tt.wantStarted) {
				t.Fatalf("after the Welcome, started %v, want %v", got, tt.wantStarted)
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			for _, r := range tt.wantEnded {
				res, ok := a.unacked[r]
				if !ok || res.Reason != api.EndCanceled || res.Started != 0 {
					t.Errorf("task %d: result %+v (found %v), want canceled before it started", r.Task, res, ok)
				}
			}
			if want := len(tt.wantStarted) - 1; a.used != want || len(a.held) != 0 {
				t.Errorf("used %d slots, %d held; want %d used, none held", a.used, len(a.held), want)
			}
		})
	}
}

// BenchmarkSessionLive is the check every task start and every frame read
// pays (a monotonic clock read and two atomic loads).
func BenchmarkSessionLive(b *testing.B) {
	a, _ := newHeldAgent(1, time.Second)
	a.heard.Store(monoNow())
	for b.Loop() {
		if !a.sessionLive() {
			b.Fatal("not live")
		}
	}
}
