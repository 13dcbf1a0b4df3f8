package sched

import (
	"testing"

	"github.com/wardcluster/ward/internal/api"
)

// finish runs every placeable task of the cluster to its end: exit codes
// by task index from exits (default 0).
func finish(t *testing.T, c *Cluster, exits map[int]int) {
	t.Helper()
	for range 100 {
		ps := c.Schedule(t0)
		if len(ps) == 0 {
			return
		}
		for _, p := range ps {
			c.Result(p.Node.Name, result(p.Ref, exits[p.Task], api.EndExited))
		}
	}
	t.Fatal("the job never ended")
}

func TestRequeue(t *testing.T) {
	tests := []struct {
		name       string
		exits      map[int]int // first run's exit codes
		cancel     bool        // cancel the job before it runs
		failedOnly bool
		wantN      int      // tasks requeued
		wantCode   api.Code // refusal, or ""
		wantTasks  []int    // attempts per task after the second run
	}{
		{"only the failed tasks", map[int]int{1: 3, 3: 1}, false, true, 2, "", []int{1, 2, 1, 2}},
		{"every task", map[int]int{1: 3}, false, false, 4, "", []int{2, 2, 2, 2}},
		{"a completed job, every task", nil, false, false, 4, "", []int{2, 2, 2, 2}},
		{"a completed job has nothing failed", nil, false, true, 0, api.CodeFailedPrecondition, nil},
		{"a canceled job runs again", nil, true, true, 4, "", []int{1, 1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			c.UpsertNode("n", 8, nil).Connected = true
			j := newJob("1", 4, 1, Normal, t0)
			c.AddJob(j)
			if tt.cancel {
				c.Cancel(j, "canceled by test", t0)
			} else {
				finish(t, c, tt.exits)
			}
			if !j.Terminal() {
				t.Fatalf("first run: job %s", j.State)
			}
			n, err := c.Requeue(j, tt.failedOnly, t0)
			if tt.wantCode != "" {
				if api.CodeOf(err) != tt.wantCode {
					t.Fatalf("Requeue: %v, want %s", err, tt.wantCode)
				}
				return
			}
			if err != nil || n != tt.wantN || j.Requeues != 1 || j.State != api.JobQueued || j.CancelReason != "" || !j.Finished.IsZero() || j.Count(Queued) != n {
				t.Fatalf("Requeue = %d, %v; job %s, %d queued, requeues %d, cancel %q", n, err, j.State, j.Count(Queued), j.Requeues, j.CancelReason)
			}
			finish(t, c, nil)
			if j.State != api.JobCompleted {
				t.Fatalf("second run: job %s", j.State)
			}
			for i, want := range tt.wantTasks {
				at := j.Tasks[i].Attempts
				if len(at) != want {
					t.Fatalf("task %d has %d attempts, want %d", i, len(at), want)
				}
				last := at[len(at)-1]
				wantRequeue := 0
				if !tt.failedOnly || tt.exits[i] != 0 || tt.cancel {
					wantRequeue = 1
				}
				if last.Requeue != wantRequeue || last.N != len(at) || (len(at) > 1 && at[0].Requeue != 0) {
					t.Fatalf("task %d attempts %+v", i, at)
				}
			}
		})
	}
}

func TestRequeueRefusesARunningJobAndGivesRetriesAfresh(t *testing.T) {
	c := NewCluster(0)
	c.UpsertNode("n", 1, nil).Connected = true
	j := newJob("1", 1, 1, Normal, t0) // --retries 1
	c.AddJob(j)
	c.Schedule(t0)
	if _, err := c.Requeue(j, false, t0); api.CodeOf(err) != api.CodeFailedPrecondition {
		t.Fatalf("requeue of a running job: %v", err)
	}
	for range 2 { // lost twice: past --retries 1
		c.NodeLost("n", "gone", t0)
		c.Node("n")
		c.Schedule(t0)
	}
	if j.State != api.JobFailed || j.Tasks[0].State != Lost {
		t.Fatalf("job %s task %s", j.State, j.Tasks[0].State)
	}
	if _, err := c.Requeue(j, true, t0); err != nil {
		t.Fatal(err)
	}
	c.Schedule(t0)
	c.NodeLost("n", "gone", t0) // one loss in the new round is within --retries
	if j.Tasks[0].State != Queued {
		t.Fatalf("after a requeue, one loss left the task %s", j.Tasks[0].State)
	}
}
