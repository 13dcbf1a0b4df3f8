package sched

import (
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// ran is a result for an attempt that ran for d and exited 0.
func ran(r Ref, d time.Duration) api.TaskResult {
	return api.TaskResult{AttemptRef: r.APIRef(), Reason: api.EndExited, Started: api.NanosOf(t0), Ended: api.NanosOf(t0.Add(d))}
}

// prefetchCluster is a cluster assigning ahead below 1 s, with one
// connected node n1.
func prefetchCluster(slots int) (*Cluster, *Node) {
	c := NewCluster(0)
	c.PrefetchBelow = time.Second
	n := c.UpsertNode("n1", slots, nil)
	n.Connected = true
	return c, n
}

// checkNode checks a node's counts against its attempts, and its slots.
func checkNode(t *testing.T, n *Node) {
	t.Helper()
	used, ahead := 0, 0
	for _, h := range n.running {
		if h.ahead {
			ahead += h.slots
		} else {
			used += h.slots
		}
	}
	if used != n.Used || ahead != n.Ahead || len(n.queue) > len(n.running) {
		t.Fatalf("node %s: Used %d Ahead %d queue %d, but its attempts hold %d and wait with %d", n.Name, n.Used, n.Ahead, len(n.queue), used, ahead)
	}
	if n.Used > n.Slots || n.Ahead > n.Slots {
		t.Fatalf("node %s: Used %d Ahead %d over %d slots", n.Name, n.Used, n.Ahead, n.Slots)
	}
}

func TestPrefetchOnlyBehindShortJobs(t *testing.T) {
	tests := []struct {
		name      string
		below     time.Duration
		firstRun  time.Duration // how long the job's first attempt ran; 0: none ended yet
		wantAhead int           // attempts assigned ahead on the full node
	}{
		{name: "off", below: 0, firstRun: time.Millisecond, wantAhead: 0},
		{name: "run time unknown", below: time.Second, wantAhead: 0},
		{name: "short job", below: time.Second, firstRun: time.Millisecond, wantAhead: 2},
		{name: "long job", below: time.Second, firstRun: 5 * time.Second, wantAhead: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			c.PrefetchBelow = tt.below
			n := c.UpsertNode("n1", 2, nil)
			n.Connected = true
			c.AddJob(newJob("1", 100, 1, Normal, t0))
			first := c.Schedule(t0)
			if len(first) != 2 {
				t.Fatalf("first round placed %d, want 2", len(first))
			}
			// Attempts assigned before the job's run time was known count
			// as slow until they end: finish the first wave.
			if tt.firstRun > 0 {
				c.Result("n1", ran(first[0].Ref, tt.firstRun))
				c.Result("n1", ran(first[1].Ref, tt.firstRun))
			}
			got := c.Schedule(t0)
			checkNode(t, n)
			ahead := n.Ahead
			if ahead != tt.wantAhead {
				t.Fatalf("%d assigned ahead (placements %d), want %d", ahead, len(got), tt.wantAhead)
			}
			if again := c.Schedule(t0); len(again) != 0 {
				t.Fatalf("a third round placed %d more", len(again))
			}
		})
	}
}

// TestPrefetchHandsFreedSlotsInOrder: attempts assigned ahead take freed
// slots in the order they were assigned, as the agent starts them; cancel
// and loss release them without touching the slots others hold.
func TestPrefetchHandsFreedSlotsInOrder(t *testing.T) {
	c, n := prefetchCluster(2)
	c.AddJob(newJob("1", 100, 1, Normal, t0))
	for _, pl := range c.Schedule(t0) { // the first wave: the job becomes known short
		c.Result("n1", ran(pl.Ref, time.Millisecond))
	}
	p := c.Schedule(t0) // 2 holding slots + 2 ahead
	if len(p) != 4 {
		t.Fatalf("placed %d, want 4", len(p))
	}
	checkNode(t, n)
	if n.Used != 2 || n.Ahead != 2 || len(n.queue) != 2 {
		t.Fatalf("Used %d Ahead %d queue %d, want 2, 2, 2", n.Used, n.Ahead, len(n.queue))
	}
	firstAhead := n.queue[0]

	// One slot frees: the first attempt ahead takes it.
	c.Result("n1", ran(p[0].Ref, time.Millisecond))
	checkNode(t, n)
	if n.running[firstAhead].ahead || n.Used != 2 || n.Ahead != 1 {
		t.Fatalf("after a result: %s ahead=%v Used %d Ahead %d", firstAhead.Job, n.running[firstAhead].ahead, n.Used, n.Ahead)
	}

	// The second attempt ahead is canceled before it starts.
	last := n.queue[0]
	c.Result("n1", api.TaskResult{AttemptRef: last.APIRef(), ExitCode: -1, Reason: api.EndCanceled, Ended: api.NanosOf(t0)})
	checkNode(t, n)
	if n.Ahead != 0 || n.Used != 2 || len(n.queue) != 0 {
		t.Fatalf("after canceling the one ahead: Used %d Ahead %d queue %d", n.Used, n.Ahead, len(n.queue))
	}

	// Refill, then lose the node: everything on it is released.
	c.Schedule(t0)
	checkNode(t, n)
	if n.Ahead == 0 {
		t.Fatal("nothing was assigned ahead again")
	}
	lost := c.NodeLost("n1", "gone", t0)
	if len(lost) != 4 || n.Used != 0 || n.Ahead != 0 || len(n.queue) != 0 || n.slow != 0 {
		t.Fatalf("after NodeLost: %d lost, Used %d Ahead %d queue %d slow %d", len(lost), n.Used, n.Ahead, len(n.queue), n.slow)
	}
}

// TestPrefetchNotBehindLongWork: a node running any attempt of a job not
// known to be short gets nothing ahead, whatever else it runs.
func TestPrefetchNotBehindLongWork(t *testing.T) {
	c, n := prefetchCluster(2)
	c.AddJob(newJob("1", 100, 1, Normal, t0))
	for _, pl := range c.Schedule(t0) { // job 1's first wave
		c.Result("n1", ran(pl.Ref, time.Millisecond))
	}
	p := c.Schedule(t0) // both slots and two ahead: job 1
	c.Result("n1", ran(p[0].Ref, time.Millisecond))
	// A long job, higher priority, takes the freed slot... after the
	// attempt assigned ahead, which the agent started first.
	c.Result("n1", ran(p[1].Ref, time.Millisecond))
	for _, pl := range p[2:] {
		c.Result("n1", ran(pl.Ref, time.Millisecond))
	}
	if n.Used != 0 || n.Ahead != 0 {
		t.Fatalf("Used %d Ahead %d after every attempt ended", n.Used, n.Ahead)
	}
	c.Schedule(t0) // job 1 fills both slots and two ahead again
	for _, r := range n.RunningRefs() {
		c.Result("n1", ran(r, time.Millisecond))
	}
	c.AddJob(newJob("2", 1, 1, High, t0))
	p2 := c.Schedule(t0)
	if len(p2) != 2 || p2[0].Job.ID != "2" || p2[1].Job.ID != "1" {
		t.Fatalf("placed %d, want job 2's task and then one of job 1 on the free slots", len(p2))
	}
	checkNode(t, n)
	if n.Ahead != 0 {
		t.Fatalf("%d slots assigned ahead behind a job of unknown run time", n.Ahead)
	}
	// Once job 2 ends, the node runs only short work again.
	c.Result("n1", ran(p2[0].Ref, time.Hour))
	c.Schedule(t0)
	checkNode(t, n)
	if n.Ahead == 0 {
		t.Fatal("nothing assigned ahead once only short work runs")
	}
}

func TestPrefetchRestoreAndReconcile(t *testing.T) {
	c, n := prefetchCluster(1)
	c.AddJob(newJob("1", 10, 1, Normal, t0))
	p := c.Schedule(t0)
	c.Result("n1", ran(p[0].Ref, time.Millisecond))
	c.Schedule(t0)
	checkNode(t, n)
	if n.Used != 1 || n.Ahead != 1 {
		t.Fatalf("Used %d Ahead %d, want 1 and 1", n.Used, n.Ahead)
	}
	// The agent reconnects reporting both: nothing is lost or killed.
	lost, kill := c.Reconcile("n1", n.RunningRefs(), t0)
	if len(lost) != 0 || len(kill) != 0 {
		t.Fatalf("reconcile: lost %v kill %v", lost, kill)
	}
	// The agent reconnects having lost the one ahead: it is requeued and
	// its wait is released.
	var holding []Ref
	for r, h := range n.running {
		if !h.ahead {
			holding = append(holding, r)
		}
	}
	lost, _ = c.Reconcile("n1", holding, t0)
	checkNode(t, n)
	if len(lost) != 1 || n.Ahead != 0 || n.Used != 1 {
		t.Fatalf("reconcile without the one ahead: lost %v, Used %d Ahead %d", lost, n.Used, n.Ahead)
	}

	// A restart restores active attempts as holding slots (and not known
	// short): the node may count over its slots but gets nothing more.
	j, _ := c.Job("1")
	c2, _ := prefetchCluster(1)
	c2.Restore(j)
	if got := c2.Schedule(t0); len(got) != 0 {
		t.Fatalf("after restore, placed %d on a full node", len(got))
	}
}

// TestDrainWithdrawsOnlyWaitingAttempts: a drain without --force returns
// only the attempts assigned ahead; one withdrawn before it started goes
// back to the queue without counting against --retries.
func TestDrainWithdrawsOnlyWaitingAttempts(t *testing.T) {
	c, n := prefetchCluster(1)
	j := newJob("1", 10, 1, Normal, t0)
	j.Retries = 0
	c.AddJob(j)
	p := c.Schedule(t0)
	c.Result("n1", ran(p[0].Ref, time.Millisecond))
	p = c.Schedule(t0) // one holding the slot, one ahead
	if len(p) != 2 || n.Ahead != 1 {
		t.Fatalf("placed %d, Ahead %d; want 2 and 1", len(p), n.Ahead)
	}
	kill, err := c.SetDrain("n1", true, false)
	if err != nil || len(kill) != 1 || kill[0].Ref != p[1].Ref {
		t.Fatalf("drain returned %v (%v), want only the attempt ahead %v", kill, err, p[1].Ref)
	}
	c.Result("n1", api.TaskResult{AttemptRef: p[1].Ref.APIRef(), ExitCode: -1, Reason: api.EndDrained, Ended: api.NanosOf(t0)})
	checkNode(t, n)
	task := j.Tasks[p[1].Task]
	if task.State != Queued || task.infraFailures(0) != 0 || n.Ahead != 0 {
		t.Fatalf("withdrawn task: %s with %d infrastructure failures, Ahead %d", task.State, task.infraFailures(0), n.Ahead)
	}
	if got := c.Schedule(t0); len(got) != 0 {
		t.Fatalf("placed %d on a drained node", len(got))
	}
	// With --force every active attempt is returned.
	if kill, _ := c.SetDrain("n1", true, true); len(kill) != 1 || kill[0].Ref != p[0].Ref {
		t.Fatalf("forced drain returned %v, want the running attempt", kill)
	}
}
