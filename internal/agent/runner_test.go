package agent

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// recorder is a Reporter that keeps what it is told.
type recorder struct {
	mu      sync.Mutex
	started bool
	out     strings.Builder
	done    chan api.TaskResult
}

func (r *recorder) Started(time.Time) { r.mu.Lock(); r.started = true; r.mu.Unlock() }
func (r *recorder) Output(_ string, d []byte) {
	r.mu.Lock()
	r.out.Write(d)
	r.mu.Unlock()
}
func (r *recorder) Exited(res api.TaskResult) { r.done <- res }

func TestProcessExecutor(t *testing.T) {
	tests := []struct {
		name       string
		argv       []string
		killAtOnce bool // Kill right after Run returns, before the process can have started
		wantReason string
		wantExit   int
		wantOut    string
	}{
		{name: "output and exit code", argv: []string{"sh", "-c", "echo hi; exit 3"}, wantReason: api.EndExited, wantExit: 3, wantOut: "hi\n"},
		{name: "killed before it started", argv: []string{"sleep", "30"}, killAtOnce: true, wantReason: api.EndCanceled, wantExit: -1},
		{name: "cannot start", argv: []string{"/nonexistent/ward-test"}, wantReason: api.EndStartErr, wantExit: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{done: make(chan api.TaskResult, 1)}
			h := ProcessExecutor{KillGrace: time.Second}.Run(api.Assignment{AttemptRef: api.AttemptRef{Job: "1"}, Argv: tt.argv}, r)
			if tt.killAtOnce {
				h.Kill(api.EndCanceled)
			}
			select {
			case res := <-r.done:
				r.mu.Lock()
				defer r.mu.Unlock()
				if res.Reason != tt.wantReason || res.ExitCode != tt.wantExit || r.out.String() != tt.wantOut {
					t.Fatalf("reason %q exit %d output %q (error %q), want %q %d %q", res.Reason, res.ExitCode, r.out.String(), res.Error, tt.wantReason, tt.wantExit, tt.wantOut)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no result after 10s")
			}
		})
	}
}
