package sched

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newJob(id string, count, slots int, p Priority, at time.Time) *Job {
	return &Job{ID: id, Spec: api.JobSpec{Count: count}, Priority: p, Slots: slots, Retries: 1, Submitted: at}
}

func result(r Ref, exit int, reason string) api.TaskResult {
	return api.TaskResult{AttemptRef: r.APIRef(), ExitCode: exit, Reason: reason, Ended: api.NanosOf(t0)}
}

func TestScheduleNeverOversubscribes(t *testing.T) {
	tests := []struct {
		name      string
		nodeSlots []int
		jobSlots  int
		count     int
		want      int
	}{
		{"fills exactly", []int{4, 4}, 1, 20, 8},
		{"two-slot tasks", []int{3, 5}, 2, 20, 3},
		{"too big for any", []int{1, 1}, 2, 5, 0},
		{"fewer tasks than slots", []int{8}, 1, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			for i, s := range tt.nodeSlots {
				c.UpsertNode(fmt.Sprintf("n%d", i), s, nil).Connected = true
			}
			c.AddJob(newJob("1", tt.count, tt.jobSlots, Normal, t0))
			got := c.Schedule(t0)
			if len(got) != tt.want {
				t.Fatalf("placed %d, want %d", len(got), tt.want)
			}
			for _, n := range c.Nodes() {
				if n.Used > n.Slots {
					t.Fatalf("node %s oversubscribed: %d of %d", n.Name, n.Used, n.Slots)
				}
			}
			if again := c.Schedule(t0); len(again) != 0 {
				t.Fatalf("second round placed %d with no free slots", len(again))
			}
		})
	}
}

func TestSchedulePriorityAndAging(t *testing.T) {
	tests := []struct {
		name  string
		aging time.Duration
		now   time.Time
		want  string // job that gets the single slot
	}{
		{"high first", 0, t0.Add(time.Hour), "high"},
		{"aging lifts old low work", time.Minute, t0.Add(10 * time.Minute), "low"},
		{"aging not yet enough", time.Hour, t0.Add(10 * time.Minute), "high"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(tt.aging)
			c.UpsertNode("n", 1, nil).Connected = true
			c.AddJob(newJob("low", 1, 1, Low, t0))
			c.AddJob(newJob("high", 1, 1, High, t0.Add(9*time.Minute)))
			got := c.Schedule(tt.now)
			if len(got) != 1 || got[0].Job.ID != tt.want {
				t.Fatalf("placed %v, want job %s", got, tt.want)
			}
		})
	}
}

func TestEffectivePriorityCapsAtHigh(t *testing.T) {
	c := NewCluster(time.Minute)
	j := newJob("1", 1, 1, Low, t0)
	if got := c.EffectivePriority(j, t0.Add(time.Hour)); got != High {
		t.Fatalf("got %v", got)
	}
	if got := c.EffectivePriority(j, t0.Add(90*time.Second)); got != BelowNormal {
		t.Fatalf("got %v", got)
	}
}

func TestLabelsAndDrain(t *testing.T) {
	c := NewCluster(0)
	c.UpsertNode("cpu", 4, map[string]string{"kind": "cpu"}).Connected = true
	gpu := c.UpsertNode("gpu", 4, map[string]string{"kind": "gpu"})
	gpu.Connected = true
	j := newJob("1", 2, 1, Normal, t0)
	j.Spec.Labels = map[string]string{"kind": "gpu"}
	c.AddJob(j)
	if msg := c.Unschedulable(1, 0, map[string]string{"kind": "tpu"}); msg == "" {
		t.Fatal("tpu constraint should be unschedulable")
	}
	if msg := c.Unschedulable(8, 0, nil); msg == "" {
		t.Fatal("8 slots should be unschedulable")
	}
	if msg := c.Unschedulable(1, 0, j.Spec.Labels); msg != "" {
		t.Fatalf("gpu constraint: %s", msg)
	}
	if _, err := c.SetDrain("gpu", true, false); err != nil {
		t.Fatal(err)
	}
	if got := c.Schedule(t0); len(got) != 0 {
		t.Fatalf("placed on drained or unmatched node: %+v", got[0].Node.Name)
	}
	c.SetDrain("gpu", false, false)
	got := c.Schedule(t0)
	if len(got) != 2 || got[0].Node.Name != "gpu" {
		t.Fatalf("got %d placements", len(got))
	}
}

func TestResultsDuplicatesAndLate(t *testing.T) {
	c := NewCluster(0)
	a := c.UpsertNode("a", 1, nil)
	a.Connected = true
	j := newJob("1", 1, 1, Normal, t0)
	c.AddJob(j)
	p := c.Schedule(t0)[0]
	c.Started("a", p.Ref, t0)
	if j.Tasks[0].State != Running {
		t.Fatalf("state %v", j.Tasks[0].State)
	}
	// The node dies: the attempt is lost and requeued (retries=1).
	c.NodeLost("a", "agent lost", t0)
	if j.Tasks[0].State != Queued || j.Tasks[0].Attempts[0].State != Lost {
		t.Fatalf("after loss: task %v attempt %v", j.Tasks[0].State, j.Tasks[0].Attempts[0].State)
	}
	// A late result for the lost attempt is recorded on it, nothing more.
	if got := c.Result("a", result(p.Ref, 0, api.EndExited)); got != LateLost {
		t.Fatalf("late result outcome %v", got)
	}
	if !j.Tasks[0].Attempts[0].Late || j.Tasks[0].State != Queued || j.Count(Completed) != 0 {
		t.Fatal("late result changed the task")
	}
	// The retry runs elsewhere and completes once, even if delivered twice.
	b := c.UpsertNode("b", 1, nil)
	b.Connected = true
	p2 := c.Schedule(t0)[0]
	if p2.Ref.Attempt != 2 || p2.Node.Name != "b" {
		t.Fatalf("retry placed as %+v", p2.Ref)
	}
	if got := c.Result("a", result(p2.Ref, 0, api.EndExited)); got != Rejected {
		t.Fatalf("result from the wrong node: %v", got)
	}
	if got := c.Result("b", result(p2.Ref, 0, api.EndExited)); got != Recorded {
		t.Fatalf("first delivery %v", got)
	}
	if got := c.Result("b", result(p2.Ref, 0, api.EndExited)); got != Duplicate {
		t.Fatalf("second delivery %v", got)
	}
	if j.Count(Completed) != 1 || j.State != api.JobCompleted {
		t.Fatalf("completed %d, job %s", j.Count(Completed), j.State)
	}
	if b.Used != 0 {
		t.Fatalf("slots not released: %d", b.Used)
	}
}

func TestRetriesExhaustedAndExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		exit   int
		reason string
		want   State
	}{
		{"success", 0, api.EndExited, Completed},
		{"non-zero exit is a failure, not a retry", 3, api.EndExited, Failed},
		{"timeout", -1, api.EndTimedOut, TimedOut},
		{"start failure", -1, api.EndStartErr, Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			c.UpsertNode("a", 1, nil).Connected = true
			j := newJob("1", 1, 1, Normal, t0)
			c.AddJob(j)
			p := c.Schedule(t0)[0]
			c.Result("a", result(p.Ref, tt.exit, tt.reason))
			if j.Tasks[0].State != tt.want {
				t.Fatalf("state %v, want %v", j.Tasks[0].State, tt.want)
			}
			if len(c.Schedule(t0)) != 0 {
				t.Fatal("task was retried")
			}
		})
	}
	t.Run("lost beyond retries", func(t *testing.T) {
		c := NewCluster(0)
		j := newJob("1", 1, 1, Normal, t0)
		j.Retries = 1
		c.AddJob(j)
		for i := 0; i < 2; i++ {
			c.UpsertNode("a", 1, nil).Connected = true
			if len(c.Schedule(t0)) != 1 {
				t.Fatalf("round %d: not placed", i)
			}
			c.NodeLost("a", "gone", t0)
		}
		if j.Tasks[0].State != Lost || j.State != api.JobFailed {
			t.Fatalf("task %v job %s", j.Tasks[0].State, j.State)
		}
	})
}

func TestCancel(t *testing.T) {
	c := NewCluster(0)
	c.UpsertNode("a", 1, nil).Connected = true
	j := newJob("1", 3, 1, Normal, t0)
	c.AddJob(j)
	p := c.Schedule(t0)[0]
	kill := c.Cancel(j, "user asked", t0)
	if len(kill) != 1 || kill[0].Ref != p.Ref {
		t.Fatalf("kill %v", kill)
	}
	if j.Count(Canceled) != 2 || j.State != api.JobRunning {
		t.Fatalf("canceled %d state %s", j.Count(Canceled), j.State)
	}
	c.Result("a", result(p.Ref, 143, api.EndCanceled))
	if j.State != api.JobCanceled || j.Count(Canceled) != 3 {
		t.Fatalf("job %s canceled %d", j.State, j.Count(Canceled))
	}
	if len(c.Schedule(t0)) != 0 {
		t.Fatal("canceled job placed")
	}
}

func TestReconcile(t *testing.T) {
	c := NewCluster(0)
	c.UpsertNode("a", 2, nil).Connected = true
	j := newJob("1", 2, 1, Normal, t0)
	c.AddJob(j)
	ps := c.Schedule(t0)
	stranger := Ref{Job: "9", Task: 0, Attempt: 1}
	lost, kill := c.Reconcile("a", []Ref{ps[0].Ref, stranger}, t0)
	if len(lost) != 1 || lost[0] != ps[1].Ref {
		t.Fatalf("lost %v", lost)
	}
	if len(kill) != 1 || kill[0] != stranger {
		t.Fatalf("kill %v", kill)
	}
	if j.Tasks[1].State != Queued {
		t.Fatalf("missing task not requeued: %v", j.Tasks[1].State)
	}
}

func TestRestoreRebuildsQueueAndSlots(t *testing.T) {
	c := NewCluster(0)
	c.UpsertNode("a", 4, nil)
	j := newJob("1", 4, 1, Normal, t0)
	j.State = api.JobRunning
	j.Tasks = make([]Task, 4)
	j.Tasks[0] = Task{State: Completed, Attempts: []Attempt{{N: 1, Node: "a", State: Completed}}}
	j.Tasks[1] = Task{State: Running, Attempts: []Attempt{{N: 1, Node: "a", State: Running}}}
	c.Restore(j)
	n, _ := c.Node("a")
	if n.Used != 1 || j.Pending() != 2 {
		t.Fatalf("used %d pending %d", n.Used, j.Pending())
	}
	n.Connected = true
	if got := c.Schedule(t0); len(got) != 2 || got[0].Task != 2 {
		t.Fatalf("placed %d", len(got))
	}
}

func BenchmarkSchedule(b *testing.B) {
	// One placement decision per task: 50 nodes, a 100,000-task job, slots
	// freed by completing every placed task before the next round.
	c := NewCluster(time.Minute)
	for i := 0; i < 50; i++ {
		c.UpsertNode(fmt.Sprintf("n%02d", i), 64, nil).Connected = true
	}
	j := newJob("1", b.N, 1, Normal, t0)
	c.AddJob(j)
	b.ResetTimer()
	placed := 0
	for placed < b.N {
		ps := c.Schedule(t0)
		for _, p := range ps {
			c.Result(p.Node.Name, result(p.Ref, 0, api.EndExited))
		}
		c.TakeDirty()
		placed += len(ps)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func TestNodesStayInNameOrder(t *testing.T) {
	c := NewCluster(time.Minute)
	names := []string{"n07", "n02", "n10", "n01", "n05", "n03", "n09", "n04", "n08", "n06"}
	for _, n := range names {
		c.UpsertNode(n, 1, nil)
	}
	c.UpsertNode("n05", 4, nil) // an update must not add a second entry
	var got []string
	for _, n := range c.Nodes() {
		got = append(got, n.Name)
	}
	want := []string{"n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09", "n10"}
	if !slices.Equal(got, want) {
		t.Fatalf("Nodes() = %v, want %v", got, want)
	}
}

func TestUnschedulableExplains(t *testing.T) {
	c := NewCluster(time.Minute)
	if why := c.Unschedulable(1, 0, nil); !strings.Contains(why, "no nodes yet") {
		t.Fatalf("empty cluster: %q", why)
	}
	c.UpsertNode("a", 2, map[string]string{"gpu": "no"})
	c.UpsertNode("b", 8, map[string]string{"gpu": "yes"})
	c.UpsertNode("c", 16, map[string]string{"gpu": "yes"}).Revoked = true
	for _, tc := range []struct {
		slots  int
		labels map[string]string
		want   string // "" means schedulable
	}{
		{1, nil, ""},
		{8, nil, ""},
		{2, map[string]string{"gpu": "no"}, ""},
		{9, nil, "largest matching node has 8"},
		{4, map[string]string{"gpu": "no"}, "largest matching node has 2"},
		{1, map[string]string{"gpu": "maybe"}, "no node has the labels gpu=maybe (nodes: a{gpu=no}, b{gpu=yes})"},
	} {
		why := c.Unschedulable(tc.slots, 0, tc.labels)
		if (tc.want == "") != (why == "") || !strings.Contains(why, tc.want) {
			t.Errorf("Unschedulable(%d, %v) = %q, want %q", tc.slots, tc.labels, why, tc.want)
		}
	}
}

func TestDescribeEnd(t *testing.T) {
	for _, tc := range []struct {
		r    api.TaskResult
		want string
	}{
		{api.TaskResult{Reason: api.EndExited, ExitCode: 0, Started: 1}, "exited with code 0"},
		{api.TaskResult{Reason: api.EndExited, ExitCode: 255, Started: 1}, "exited with code 255"},
		{api.TaskResult{Reason: api.EndExited, ExitCode: 256, Started: 1}, "exited with code 256"},
		{api.TaskResult{Reason: api.EndExited, ExitCode: -1, Started: 1}, "exited with code -1"},
		{api.TaskResult{Reason: api.EndTimedOut, Started: 1}, "killed at its timeout"},
		{api.TaskResult{Reason: api.EndCanceled}, "canceled before it started, while waiting on the agent for a slot"},
		{api.TaskResult{Reason: api.EndStartErr, Error: "no such file"}, "could not start: no such file"},
	} {
		if got := describeEnd(tc.r); got != tc.want {
			t.Errorf("describeEnd(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestFirstAttemptsShareABlockButNotAList(t *testing.T) {
	// Tasks placed together get their first attempts from one block; a
	// retry must move the task to a list of its own, never write into a
	// neighbour's attempt.
	c := NewCluster(time.Minute)
	c.UpsertNode("n", 4, nil).Connected = true
	j := newJob("1", 4, 1, Normal, t0)
	j.Retries = 1
	c.AddJob(j)
	ps := c.Schedule(t0)
	if len(ps) != 4 {
		t.Fatalf("placed %d", len(ps))
	}
	lost := result(ps[0].Ref, -1, api.EndDrained) // killed by a forced drain: lost, retried
	lost.Started = api.NanosOf(t0)
	c.Result("n", lost)
	for _, p := range c.Schedule(t0) {
		if p.Task != 0 {
			t.Fatalf("placed task %d, want the retry of task 0", p.Task)
		}
	}
	if got := len(j.Tasks[0].Attempts); got != 2 {
		t.Fatalf("task 0 has %d attempts, want 2", got)
	}
	for i := 1; i < 4; i++ {
		a := j.Tasks[i].Attempts
		if len(a) != 1 || a[0].N != 1 || a[0].State != Assigned {
			t.Fatalf("task %d attempts %+v: a neighbour's retry changed them", i, a)
		}
	}
	if a := j.Tasks[0].Attempts; a[0].State != Lost || a[1].N != 2 || a[1].State != Assigned {
		t.Fatalf("task 0 attempts %+v", a)
	}
}

func TestHeldJobWaits(t *testing.T) {
	c := NewCluster(time.Minute)
	c.UpsertNode("n", 4, nil).Connected = true
	held := newJob("1", 2, 1, High, t0)
	held.Held = true
	c.AddJob(held)
	c.AddJob(newJob("2", 1, 1, Low, t0))
	if got := c.Schedule(t0); len(got) != 1 || got[0].Job.ID != "2" {
		t.Fatalf("placed %v; want only job 2's task while job 1 is held", got)
	}
	held.Held = false
	if got := c.Schedule(t0); len(got) != 2 || got[0].Job.ID != "1" {
		t.Fatalf("placed %v after the release; want job 1's two tasks", got)
	}
}
