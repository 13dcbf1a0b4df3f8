package sched

import (
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/api"
)

func TestCancelOnFailure(t *testing.T) {
	tests := []struct {
		name      string
		flag      bool
		end       func(c *Cluster, p Placement) // how task 0's attempt ends
		wantState string
		wantKills int
	}{
		{"a failed task stops the rest", true, func(c *Cluster, p Placement) { c.Result("n", result(p.Ref, 2, api.EndExited)) }, api.JobFailed, 1},
		{"a timed-out task stops the rest", true, func(c *Cluster, p Placement) { c.Result("n", result(p.Ref, -1, api.EndTimedOut)) }, api.JobFailed, 1},
		{"a task lost past --retries stops the rest", true, func(c *Cluster, p Placement) {
			for range 2 { // --retries 1
				c.NodeLost("n", "gone", t0)
				c.Schedule(t0)
			}
		}, api.JobFailed, 1}, // task 1's attempt, lost too in the same step: a kill the agent ignores
		{"without the flag the job goes on", false, func(c *Cluster, p Placement) { c.Result("n", result(p.Ref, 2, api.EndExited)) }, api.JobFailed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			c.UpsertNode("n", 2, nil).Connected = true
			j := newJob("1", 6, 1, Normal, t0)
			j.Spec.CancelOnFailure = tt.flag
			c.AddJob(j)
			ps := c.Schedule(t0)
			tt.end(c, ps[0])
			kills := c.TakeKills()
			if len(kills) != tt.wantKills {
				t.Fatalf("%d attempts to kill, want %d", len(kills), tt.wantKills)
			}
			if !tt.flag {
				for {
					more := c.Schedule(t0)
					for _, p := range c.Nodes()[0].RunningRefs() {
						c.Result("n", result(p, 0, api.EndExited))
					}
					if len(more) == 0 && j.Terminal() {
						break
					}
				}
				if j.Count(Completed) != 5 || j.State != tt.wantState {
					t.Fatalf("without --cancel-on-failure: %v, %s", j.Counts(), j.State)
				}
				return
			}
			// The agents report the killed attempts.
			for _, k := range kills {
				c.Result("n", result(k.Ref, -1, api.EndCanceled))
			}
			if len(c.Schedule(t0)) != 0 {
				t.Fatal("tasks were placed after the job was stopped")
			}
			if j.State != tt.wantState || !j.Consequential || !strings.HasPrefix(j.CancelReason, "consequential: task 0") {
				t.Fatalf("job %s, reason %q", j.State, j.CancelReason)
			}
			for i := 1; i < 6; i++ {
				task := &j.Tasks[i]
				if task.State != Canceled {
					t.Fatalf("task %d %s", i, task.State)
				}
				if a := task.Current(); a != nil && task.State == Canceled && !strings.HasPrefix(a.Reason, "consequential") {
					t.Fatalf("task %d's killed attempt gives %q", i, a.Reason)
				}
			}
			if _, err := c.Requeue(j, true, t0); err != nil || j.Consequential || j.CancelReason != "" {
				t.Fatalf("requeue after a consequential stop: %v", err)
			}
		})
	}
}

// A node whose --setup failed for a job is remembered from the job's
// stored attempts when the job is restored (a coordinator restart): its
// tasks do not go back there in the same requeue round, and may after a
// requeue.
func TestRestoreRemembersFailedSetup(t *testing.T) {
	for _, tt := range []struct {
		name      string
		requeues  int // the restored job's requeue round
		wantOnBad bool
	}{
		{"same round: the node stays avoided", 0, false},
		{"after a requeue: the node may be tried again", 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			c.UpsertNode("bad", 1, nil).Connected = true
			c.UpsertNode("good", 1, nil).Connected = true
			j := newJob("1", 4, 1, Normal, t0)
			j.Spec.Setup = "prepare"
			j.Retries = 5
			c.AddJob(j)
			for _, p := range c.Schedule(t0) {
				if p.Node.Name == "bad" {
					c.Result("bad", result(p.Ref, -1, api.EndEnvError))
				}
			}
			if !j.avoid["bad"] {
				t.Fatal("the failed setup was not noted")
			}
			// A restarted coordinator reads the job back from the store:
			// its tasks and attempts, nothing of the scheduler's memory.
			r := &Job{ID: j.ID, Spec: j.Spec, Priority: j.Priority, Slots: j.Slots, Retries: j.Retries, Submitted: j.Submitted, State: j.State, Requeues: tt.requeues}
			for _, task := range j.Tasks {
				r.Tasks = append(r.Tasks, Task{State: task.State, Attempts: append([]Attempt(nil), task.Attempts...)})
			}
			c2 := NewCluster(0)
			c2.UpsertNode("bad", 1, nil).Connected = true
			c2.UpsertNode("good", 1, nil).Connected = true
			c2.Restore(r)
			onBad := false
			for _, p := range c2.Schedule(t0) {
				onBad = onBad || p.Node.Name == "bad"
			}
			if onBad != tt.wantOnBad {
				t.Fatalf("a task went to the node whose setup failed: %v, want %v", onBad, tt.wantOnBad)
			}
		})
	}
}
