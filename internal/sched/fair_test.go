package sched

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// userJob is a job submitted by user into queue.
func userJob(id, user, queue string, count int, p Priority, at time.Time) *Job {
	j := newJob(id, count, 1, p, at)
	j.SubmittedBy, j.Spec.Queue = "spiffe://ward/user/"+user, queue
	return j
}

// sim runs a cluster one freed slot at a time: each step ends the oldest
// active attempt and schedules again. It records every placement in order.
type sim struct {
	t      *testing.T
	c      *Cluster
	active []Placement // in placement order
	placed []Placement
}

func (s *sim) schedule() {
	for _, p := range s.c.Schedule(t0) {
		s.active = append(s.active, p)
		s.placed = append(s.placed, p)
	}
	for _, n := range s.c.Nodes() {
		checkCapacity(s.t, n)
	}
}

// step ends the oldest active attempt (exit 0) and schedules again.
func (s *sim) step() {
	p := s.active[0]
	s.active = s.active[1:]
	if got := s.c.Result(p.Node.Name, result(p.Ref, 0, api.EndExited)); got != Recorded {
		s.t.Fatalf("result of %v: %v", p.Ref, got)
	}
	s.schedule()
}

// checkCapacity checks that a node's slots and memory are never
// oversubscribed, that its counts match its attempts, and that an exclusive
// attempt runs alone.
func checkCapacity(t *testing.T, n *Node) {
	t.Helper()
	checkNode(t, n)
	var mem int64
	excl := 0
	for _, h := range n.running {
		mem += h.mem
		if h.excl {
			excl++
		}
	}
	if mem != n.MemUsed || mem > n.Memory && mem > 0 {
		t.Fatalf("node %s: MemUsed %d, attempts reserve %d, node offers %d", n.Name, n.MemUsed, mem, n.Memory)
	}
	if excl != n.exclusive || excl > 0 && len(n.running) > 1 {
		t.Fatalf("node %s: %d exclusive attempts (counted %d) among %d", n.Name, excl, n.exclusive, len(n.running))
	}
}

// TestFairShareBoundsTheWaitOfASmallJob: a small job that arrives while
// another user's (or queue's) huge job holds every slot gets every other
// freed slot, so it is placed completely within 2 × its size placements.
// Within one user and queue, jobs stay first come, first served.
func TestFairShareBoundsTheWaitOfASmallJob(t *testing.T) {
	tests := []struct {
		name                 string
		bigUser, bigQueue    string
		smallUser, smallQ    string
		bigCount             int
		smallPrio            Priority
		wantLastPlacedAtMost int // placements after the small job arrives until its last task is placed
		wantFirstPlaced      int
	}{
		{"another user", "alice", "default", "bob", "default", 100_000, Normal, 20, 1},
		{"another queue of the same user", "alice", "default", "alice", "urgent", 100_000, Normal, 20, 1},
		{"same user and queue: first come, first served", "alice", "default", "alice", "default", 1_000, Normal, 1_000 - 4 + 10, 1_000 - 4 + 1},
		{"lower priority waits for the higher one", "alice", "default", "bob", "default", 1_000, Low, 1_000 - 4 + 10, 1_000 - 4 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			c.UpsertNode("n", 4, nil).Connected = true
			s := &sim{t: t, c: c}
			big := userJob("1", tt.bigUser, tt.bigQueue, tt.bigCount, Normal, t0)
			c.AddJob(big)
			s.schedule()
			if len(s.placed) != 4 {
				t.Fatalf("the big job took %d slots of 4", len(s.placed))
			}
			small := userJob("2", tt.smallUser, tt.smallQ, 10, tt.smallPrio, t0.Add(time.Second))
			c.AddJob(small)
			arrived := len(s.placed)
			first, last := 0, 0
			for small.Count(Completed) < 10 {
				s.step()
				for k := arrived; k < len(s.placed); k++ {
					if s.placed[k].Job == small {
						if first == 0 {
							first = k - arrived + 1
						}
						last = k - arrived + 1
					}
				}
				if len(s.placed) > tt.bigCount+20 {
					t.Fatalf("the small job never finished")
				}
			}
			if last > tt.wantLastPlacedAtMost || first != tt.wantFirstPlaced {
				t.Fatalf("the small job's tasks were placed from placement %d to %d after it arrived; want from %d to at most %d", first, last, tt.wantFirstPlaced, tt.wantLastPlacedAtMost)
			}
		})
	}
}

// TestFairShareSplitsEvenly: with several users (and queues) waiting,
// placements alternate, both when slots free one at a time and when many
// are free at once.
func TestFairShareSplitsEvenly(t *testing.T) {
	tests := []struct {
		name  string
		nodes []int
		jobs  []*Job
		steps int
		want  map[string]int // placements per job ID after steps
	}{
		{"three users, one slot at a time", []int{3}, []*Job{
			userJob("1", "alice", "default", 1000, Normal, t0),
			userJob("2", "bob", "default", 1000, Normal, t0.Add(time.Second)),
			userJob("3", "carol", "default", 1000, Normal, t0.Add(2*time.Second)),
		}, 297, map[string]int{"1": 100, "2": 100, "3": 100}},
		{"a round of many free slots", []int{5, 5}, []*Job{
			userJob("1", "alice", "default", 1000, Normal, t0),
			userJob("2", "bob", "default", 1000, Normal, t0.Add(time.Second)),
		}, 0, map[string]int{"1": 5, "2": 5}},
		{"users first, then their queues", []int{4}, []*Job{
			userJob("1", "alice", "a", 1000, Normal, t0),
			userJob("2", "alice", "b", 1000, Normal, t0.Add(time.Second)),
			userJob("3", "bob", "default", 1000, Normal, t0.Add(2*time.Second)),
		}, 396, map[string]int{"1": 100, "2": 100, "3": 200}},
		{"a user's jobs in one queue go in order", []int{4}, []*Job{
			userJob("1", "alice", "default", 10, Normal, t0),
			userJob("2", "alice", "default", 1000, Normal, t0.Add(time.Second)),
			userJob("3", "bob", "default", 1000, Normal, t0.Add(2*time.Second)),
		}, 96, map[string]int{"1": 10, "2": 40, "3": 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			for i, slots := range tt.nodes {
				c.UpsertNode(fmt.Sprintf("n%d", i), slots, nil).Connected = true
			}
			for _, j := range tt.jobs {
				c.AddJob(j)
			}
			s := &sim{t: t, c: c}
			s.schedule()
			for range tt.steps {
				s.step()
			}
			got := map[string]int{}
			for _, p := range s.placed {
				got[p.Job.ID]++
			}
			for id, want := range tt.want {
				if got[id] != want {
					t.Fatalf("placements per job %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestFairShareTurnsOffPrefetchWhileContended: assigning ahead would hand
// a freed slot to the task waiting on the agent, not to the next user in
// turn, so it waits until one share is left.
func TestFairShareTurnsOffPrefetchWhileContended(t *testing.T) {
	c, n := prefetchCluster(2)
	alice := userJob("1", "alice", "default", 100, Normal, t0)
	c.AddJob(alice)
	for _, p := range c.Schedule(t0) {
		c.Result("n1", ran(p.Ref, time.Millisecond)) // known short now
	}
	c.Schedule(t0)
	if n.Ahead == 0 {
		t.Fatal("one user's short work is not assigned ahead")
	}
	// Let the ahead queue drain, then bring a second user.
	c.AddJob(userJob("2", "bob", "default", 100, Normal, t0.Add(time.Second)))
	for _, r := range n.RunningRefs() {
		c.Result("n1", ran(r, time.Millisecond))
	}
	got := c.Schedule(t0)
	if n.Ahead != 0 {
		t.Fatalf("assigned %d ahead while two users contend", n.Ahead)
	}
	users := map[string]int{}
	for _, p := range got {
		users[p.Job.ID]++
	}
	if users["1"] != 1 || users["2"] != 1 {
		t.Fatalf("placements per job %v, want one each", users)
	}
}

func TestExclusiveAndMaxRunning(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *sim)
	}{
		{"an exclusive task holds a whole node", func(t *testing.T, s *sim) {
			x := newJob("1", 3, 1, Normal, t0)
			x.Spec.Exclusive = true
			s.c.AddJob(x)
			s.c.AddJob(newJob("2", 8, 1, Normal, t0.Add(time.Second)))
			s.schedule()
			if len(s.placed) != 2 || s.placed[0].Job != x || s.placed[1].Job != x {
				t.Fatalf("placed %v; want one exclusive task per node", s.placed)
			}
			for _, n := range s.c.Nodes() {
				if n.Free() != 0 {
					t.Fatalf("node %s has %d free slots beside an exclusive task", n.Name, n.Free())
				}
			}
			s.step() // the third exclusive task takes the freed node
			if last := s.placed[len(s.placed)-1]; last.Job != x || len(s.placed) != 3 {
				t.Fatalf("after one ended, placed %v", s.placed)
			}
			for x.Count(Completed) < 3 {
				s.step()
			}
			if n := len(s.placed); n != 3+8 || s.c.Nodes()[0].Used+s.c.Nodes()[1].Used != 8 {
				t.Fatalf("after the exclusive job, %d placements", n)
			}
		}},
		{"an exclusive task waits for an idle node", func(t *testing.T, s *sim) {
			s.c.AddJob(newJob("1", 5, 1, Normal, t0))
			s.schedule() // four tasks on a, one on b
			x := newJob("2", 1, 1, Normal, t0.Add(time.Second))
			x.Spec.Exclusive = true
			s.c.AddJob(x)
			for step := 1; step <= 4; step++ {
				s.schedule()
				if x.Count(Assigned) != 0 {
					t.Fatalf("the exclusive task was placed beside others (after %d ended)", step-1)
				}
				s.step() // a's tasks end first
			}
			if x.Count(Assigned) != 1 || s.placed[len(s.placed)-1].Node.Name != "a" {
				t.Fatal("the exclusive task did not take the node that went idle")
			}
		}},
		{"max-running caps the active tasks", func(t *testing.T, s *sim) {
			j := newJob("1", 10, 1, Normal, t0)
			j.Spec.MaxRunning = 3
			s.c.AddJob(j)
			s.schedule()
			for j.Count(Completed) < 10 {
				if active := j.Count(Assigned) + j.Count(Running); active > 3 || active < min(3, 10-j.Count(Completed)) {
					t.Fatalf("%d active with --max-running 3 (%d done)", active, j.Count(Completed))
				}
				s.step()
			}
		}},
		{"max-running leaves the rest of the room to others", func(t *testing.T, s *sim) {
			j := newJob("1", 10, 1, Normal, t0)
			j.Spec.MaxRunning = 1
			s.c.AddJob(j)
			s.c.AddJob(newJob("2", 10, 1, Normal, t0.Add(time.Second)))
			s.schedule()
			if j.Count(Assigned) != 1 || len(s.placed) != 8 {
				t.Fatalf("job 1 has %d active, %d placed in all", j.Count(Assigned), len(s.placed))
			}
		}},
		{"memory is never oversubscribed", func(t *testing.T, s *sim) {
			j := newJob("1", 10, 1, Normal, t0)
			j.Spec.Memory = 3 << 30 // two fit in 8 GiB, on each node
			s.c.AddJob(j)
			s.c.AddJob(newJob("2", 10, 1, Normal, t0.Add(time.Second)))
			s.schedule()
			if j.Count(Assigned) != 4 {
				t.Fatalf("%d tasks of 3 GiB on two nodes of 8 GiB", j.Count(Assigned))
			}
			for _, n := range s.c.Nodes() {
				if n.MemUsed != 6<<30 || n.Free() != 0 {
					t.Fatalf("node %s: %d bytes reserved, %d slots free", n.Name, n.MemUsed, n.Free())
				}
			}
			for j.Count(Completed) < 10 {
				s.step()
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(0)
			for _, name := range []string{"a", "b"} {
				n := c.UpsertNode(name, 4, nil)
				n.Connected, n.Memory = true, 8<<30
			}
			tt.run(t, &sim{t: t, c: c})
		})
	}
}

func TestUnschedulableMemory(t *testing.T) {
	c := NewCluster(0)
	n := c.UpsertNode("a", 4, map[string]string{"rack": "1"})
	n.Memory = 16 << 30
	c.UpsertNode("b", 8, nil) // reports no memory
	tests := []struct {
		slots  int
		memory int64
		labels map[string]string
		want   string
	}{
		{1, 16 << 30, nil, ""},
		{1, 0, nil, ""},
		{1, 17 << 30, nil, "each task reserves 17 GiB of memory, but the largest matching node with 1 slots offers 16 GiB"},
		{8, 1 << 30, nil, "each task reserves 1 GiB of memory, but no matching node with 8 slots reports its memory"},
		{1, 1536 << 20, map[string]string{"rack": "1"}, ""},
	}
	for _, tc := range tests {
		if got := c.Unschedulable(tc.slots, tc.memory, tc.labels); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Unschedulable(%d, %d, %v) = %q, want %q", tc.slots, tc.memory, tc.labels, got, tc.want)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

func TestRestoreRebuildsExclusiveAndMemory(t *testing.T) {
	c := NewCluster(0)
	a := c.UpsertNode("a", 4, nil)
	a.Memory = 8 << 30
	b := c.UpsertNode("b", 4, nil)
	b.Memory = 8 << 30
	x := newJob("1", 1, 1, Normal, t0)
	x.Spec.Exclusive = true
	x.State = api.JobRunning
	x.Tasks = []Task{{State: Running, Attempts: []Attempt{{N: 1, Node: "a", State: Running}}}}
	c.Restore(x)
	m := newJob("2", 2, 1, Normal, t0)
	m.Spec.Memory = 5 << 30
	m.State = api.JobRunning
	m.Tasks = []Task{{State: Running, Attempts: []Attempt{{N: 1, Node: "b", State: Running}}}, {}}
	c.Restore(m)
	a.Connected, b.Connected = true, true
	if a.Free() != 0 || a.exclusive != 1 || b.MemUsed != 5<<30 {
		t.Fatalf("a: free %d exclusive %d; b: memory reserved %d", a.Free(), a.exclusive, b.MemUsed)
	}
	c.AddJob(newJob("3", 1, 1, Normal, t0))
	for _, p := range c.Schedule(t0) {
		if p.Node == a || p.Job == m {
			t.Fatalf("placed %v beside an exclusive task or past the memory", p.Ref)
		}
	}
}
