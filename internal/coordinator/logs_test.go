package coordinator

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
	"github.com/wardcluster/ward/internal/storehealth"
)

// heldStore is a real bolt store whose commits wait until gate is closed.
type heldStore struct {
	store.Store
	gate chan struct{}
}

func (h *heldStore) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	<-h.gate
	return h.Store.Txn(ctx, conds, ops)
}

// outputCoordinator is a coordinator with what task output needs: the
// scheduler, the output limit, and a journal over st that runs until the
// test ends.
func outputCoordinator(t *testing.T, st store.Store, maxOutput int) *Coordinator {
	c := &Coordinator{
		cfg:     config.Coordinator{Cluster: "c1", MaxOutputBytes: maxOutput},
		st:      st,
		cl:      sched.NewCluster(time.Minute),
		outputs: map[outputKey]*outputState{},
		subs:    map[string]map[*logSub]struct{}{},
	}
	c.health = storehealth.New("test store", "")
	c.journal = newJournal(st, c.health, nil)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { c.journal.run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	return c
}

// TestJobLogsWaitForQueuedOutput: a job can look finished in memory while
// its output is still queued in the journal. A follower that arrives then
// must still get that output, not only the job's end (the race behind a
// `ward run` that printed one line of four).
func TestJobLogsWaitForQueuedOutput(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	held := &heldStore{Store: st, gate: make(chan struct{})}
	c := outputCoordinator(t, held, 1<<20)
	released := false
	release := func() {
		if !released {
			released = true
			close(held.gate)
		}
	}
	defer release()

	now := time.Now()
	c.cl.UpsertNode("n1", 1, nil).Connected = true
	c.cl.AddJob(&sched.Job{ID: "1", Spec: api.JobSpec{Count: 1}, Slots: 1, State: api.JobQueued})
	if p := c.cl.Schedule(now); len(p) != 1 {
		t.Fatalf("scheduled %d tasks, want 1", len(p))
	}
	ref := api.AttemptRef{Job: "1", Task: 0, Attempt: 1}
	c.recordOutput(&session{c: c, node: "n1", outDrained: make(chan struct{}, 1)}, []api.OutputChunk{{AttemptRef: ref, Stream: "stdout", Data: []byte("hello\n")}})
	c.mu.Lock()
	c.cl.Result("n1", api.TaskResult{AttemptRef: ref, Reason: api.EndExited, Started: api.Nanos(now.UnixNano()), Ended: api.Nanos(now.UnixNano())})
	j, _ := c.cl.Job("1")
	terminal := j.Terminal()
	c.mu.Unlock()
	if !terminal {
		t.Fatal("the job did not finish in memory")
	}

	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/jobs/1/logs?follow=1", nil)
	req.SetPathValue("id", "1")
	done := make(chan error, 1)
	go func() { done <- c.apiJobLogs(rec, req, c.LocalAdmin()) }()
	select {
	case err := <-done:
		t.Fatalf("the request finished (err %v) while the output was not durable; it sent %q", err, rec.Body.String())
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var chunks []api.LogChunk
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		var ch api.LogChunk
		if err := json.Unmarshal(sc.Bytes(), &ch); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		chunks = append(chunks, ch)
	}
	if len(chunks) != 2 || chunks[0].Data != "hello\n" || !chunks[1].End || chunks[1].JobState != api.JobCompleted {
		t.Errorf("got %+v, want the output, then the end of a completed job", chunks)
	}
}

func TestForgetOutputsOfAFinishedJob(t *testing.T) {
	// Both ways of walking: fewer tasks with output than tasks in the job,
	// and more.
	for _, tc := range []struct {
		name  string
		tasks int
	}{
		{"job larger than the output map", 10},
		{"job smaller than the output map", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Coordinator{outputs: map[outputKey]*outputState{
				{"1", 0}: {}, {"10", 0}: {}, {"2", 0}: {}, {"2", 1}: {},
			}}
			c.forgetOutputsLocked(&sched.Job{ID: "1", Tasks: make([]sched.Task, tc.tasks)})
			want := []outputKey{{"10", 0}, {"2", 0}, {"2", 1}}
			if len(c.outputs) != len(want) {
				t.Fatalf("left %v, want %v", c.outputs, want)
			}
			for _, k := range want {
				if _, ok := c.outputs[k]; !ok {
					t.Fatalf("%v was dropped: it is not job 1's", k)
				}
			}
		})
	}
}

// Output past max_output_bytes is not stored, but the truncation is (for
// job status), and a follower that asked for all of it (ward run
// --output-dir) still gets the rest, in order; other followers do not.
func TestOutputBeyondTheLimit(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := outputCoordinator(t, st, 10)

	c.cl.UpsertNode("n1", 1, nil).Connected = true
	c.cl.AddJob(&sched.Job{ID: "1", Spec: api.JobSpec{Count: 1}, Slots: 1, State: api.JobQueued})
	if p := c.cl.Schedule(time.Now()); len(p) != 1 {
		t.Fatalf("scheduled %d tasks, want 1", len(p))
	}
	plain, all := newLogSub(-1, false), newLogSub(-1, true)
	c.subs["1"] = map[*logSub]struct{}{plain: {}, all: {}}
	ref := api.AttemptRef{Job: "1", Task: 0, Attempt: 1}
	s := &session{c: c, node: "n1", outDrained: make(chan struct{}, 1)}
	c.recordOutput(s, []api.OutputChunk{{AttemptRef: ref, Stream: "stdout", Data: []byte("0123456789abc")}})
	c.recordOutput(s, []api.OutputChunk{{AttemptRef: ref, Stream: "stdout", Data: []byte("defghijkl")}})
	durable := make(chan error, 1)
	c.journal.Commit(nil, func(err error) { durable <- err })
	if err := <-durable; err != nil {
		t.Fatal(err)
	}

	got := func(s *logSub) (data string, chunks []api.LogChunk) {
		for _, it := range s.take() {
			chunks = append(chunks, it.chunk)
			data += it.chunk.Data
		}
		return data, chunks
	}
	data, chunks := got(plain)
	if data != "0123456789" || len(chunks) != 1 || !chunks[0].Truncated || !strings.Contains(chunks[0].Note, "--max-output-bytes") {
		t.Errorf("plain follower: %q %+v", data, chunks)
	}
	data, chunks = got(all)
	if data != "0123456789abcdefghijkl" || len(chunks) != 3 || chunks[0].Unstored || !chunks[1].Unstored || !chunks[2].Unstored {
		t.Errorf("follower of all output: %q %+v", data, chunks)
	}
	truncated, err := c.truncatedTasks(context.Background(), "1")
	if err != nil || !truncated[0] || len(truncated) != 1 {
		t.Errorf("truncated tasks %v, %v", truncated, err)
	}
}
