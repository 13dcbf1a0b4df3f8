package coordinator

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/sched"
)

func TestChunkRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 89, time.UTC)
	j := &sched.Job{ID: "7", Spec: api.JobSpec{Count: 130}, Tasks: make([]sched.Task, 130)}
	j.Tasks[64] = sched.Task{State: sched.Completed, Attempts: []sched.Attempt{
		{N: 1, Node: "a", State: sched.Lost, Assigned: t0, Ended: t0.Add(time.Second), Reason: "agent lost", Late: true, HasExit: true, Exit: 0, Account: "alice"},
		{N: 2, Node: "bé", State: sched.Completed, Assigned: t0, Started: t0.Add(time.Millisecond), Ended: t0.Add(time.Minute), HasExit: true, Exit: -9, Reason: "exited"},
		{N: 3, Node: "a", State: sched.Completed, Assigned: t0, HasExit: true, Exit: 0, Reason: "exited", Requeue: 2},
	}}
	j.Tasks[65] = sched.Task{State: sched.Running, CancelRequested: true, Attempts: []sched.Attempt{{N: 1, Node: "c", State: sched.Running, Assigned: t0, Started: t0}}}
	tests := []struct {
		name  string
		chunk int
		want  int
	}{
		{"full chunk", 1, 64},
		{"last, short chunk", 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, tasks, err := decodeChunk(encodeJobChunk(j, tt.chunk))
			if err != nil {
				t.Fatal(err)
			}
			if first != tt.chunk*chunkSize || len(tasks) != tt.want {
				t.Fatalf("first %d, %d tasks", first, len(tasks))
			}
			want := append([]sched.Task(nil), j.Tasks[first:first+tt.want]...)
			for i := range want {
				want[i].State = persisted(want[i].State)
				want[i].Attempts = append([]sched.Attempt(nil), want[i].Attempts...)
				for k := range want[i].Attempts {
					want[i].Attempts[k].State = persisted(want[i].Attempts[k].State)
				}
				if len(want[i].Attempts) == 0 {
					want[i].Attempts = []sched.Attempt{}
				}
			}
			if diff := cmp.Diff(want, tasks, cmp.AllowUnexported(sched.Task{})); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeChunkRefusesDamage(t *testing.T) {
	j := &sched.Job{ID: "1", Tasks: make([]sched.Task, 3)}
	j.Tasks[1].Attempts = []sched.Attempt{{N: 1, Node: "n", State: sched.Completed, Reason: "exited"}}
	good := encodeJobChunk(j, 0)
	for _, bad := range [][]byte{nil, {9}, good[:len(good)-3], append(append([]byte{}, good...), 0)} {
		if _, _, err := decodeChunk(bad); err == nil {
			t.Errorf("accepted damaged record %x", bad)
		}
	}
}

func FuzzDecodeChunk(f *testing.F) {
	j := &sched.Job{ID: "1", Tasks: make([]sched.Task, 3)}
	j.Tasks[1].Attempts = []sched.Attempt{{N: 1, Node: "n", State: sched.Completed, Reason: "exited", HasExit: true, Exit: 3}}
	f.Add(encodeJobChunk(j, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		first, tasks, err := decodeChunk(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same.
		again, tasks2, err := decodeChunk(encodeChunk(first, tasks))
		if err != nil || again != first || len(tasks2) != len(tasks) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
