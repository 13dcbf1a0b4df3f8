package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/store"
)

// outputKey names one task's output.
type outputKey struct {
	job  string
	task int
}

// outputState counts what a task has stored, against the size limit, and
// the last agent chunk number stored per attempt.
type outputState struct {
	bytes     int
	seq       int
	truncated bool
	agentSeq  []int // by attempt-1: the highest api.OutputChunk.Seq stored
}

// seen reports whether the agent's chunk n of attempt was already stored,
// and records it otherwise. Chunks without a number (n 0) are never seen.
func (st *outputState) seen(attempt, n int) bool {
	if n <= 0 {
		return false
	}
	for len(st.agentSeq) < attempt {
		st.agentSeq = append(st.agentSeq, 0)
	}
	if n <= st.agentSeq[attempt-1] {
		return true
	}
	st.agentSeq[attempt-1] = n
	return false
}

// recordOutput stores output chunks within each task's limit, through the
// journal, passes them to followers once durable, and then acknowledges
// them to the agent, which keeps each chunk until then (and sends it again
// after a reconnect: a chunk stored before is acknowledged, not stored
// twice). Output for a job that has ended is acknowledged and dropped: an
// agent sends an attempt's output before its result, so what arrives
// after the job's end is a copy of stored output, or output of a process
// killed by a cancel.
func (c *Coordinator) recordOutput(s *session, chunks []api.OutputChunk) {
	var ops []store.Op
	var live []liveChunk
	var acks []api.OutputAck
	stored := 0
	c.mu.Lock()
	for _, ch := range chunks {
		if ch.Seq > 0 {
			acks = ackOutput(acks, ch)
		}
		j, ok := c.cl.Job(ch.Job)
		if !ok || j.Terminal() || ch.Task < 0 || ch.Task >= len(j.Tasks) {
			continue
		}
		t := &j.Tasks[ch.Task]
		if ch.Attempt < 1 || ch.Attempt > len(t.Attempts) || t.Attempts[ch.Attempt-1].Node != s.node {
			continue // output for an attempt this node does not own
		}
		k := outputKey{ch.Job, ch.Task}
		st := c.outputs[k]
		if st == nil {
			st = &outputState{}
			c.outputs[k] = st
		}
		if st.seen(ch.Attempt, ch.Seq) {
			continue // stored before: sent again after a reconnect
		}
		data := ch.Data
		var beyond []byte // past the limit: not stored, only for followers that want all
		if st.truncated {
			beyond, data = data, nil
		} else {
			rec := logRecord{Attempt: ch.Attempt, Stream: ch.Stream, AgentSeq: ch.Seq}
			if room := c.cfg.MaxOutputBytes - st.bytes; len(data) > room {
				data, beyond = data[:max(room, 0)], data[max(room, 0):]
				rec.Truncated = true
				st.truncated = true
				ops = append(ops, putJSON(truncatedKey(ch.Job, ch.Task), truncatedRecord{Attempt: ch.Attempt, Kept: st.bytes + len(data)}))
			}
			rec.Data = data
			st.bytes += len(data)
			st.seq++
			stored += len(data)
			ops = append(ops, putJSON(logKey(ch.Job, ch.Task, st.seq), rec))
			live = append(live, liveChunk{job: ch.Job, seq: st.seq, chunk: logChunk(ch.Task, st.seq, rec, c.cfg.MaxOutputBytes)})
		}
		if len(beyond) > 0 && c.wantsAllOutputLocked(ch.Job) {
			live = append(live, liveChunk{job: ch.Job, chunk: api.LogChunk{Task: ch.Task, Attempt: ch.Attempt, Stream: ch.Stream, Data: string(beyond), Unstored: true}})
		}
	}
	c.mu.Unlock()
	if len(live) == 0 && len(acks) == 0 {
		return
	}
	s.outputQueued(stored)
	// Unstored output and acknowledgements go through the journal too (with
	// no write of their own): unstored output reaches followers after the
	// stored output before it, and a chunk seen again may still be on its
	// way to the store.
	c.journal.Commit(ops, func(err error) {
		s.outputStored(stored)
		if err != nil {
			return
		}
		c.publish(live)
		if len(acks) > 0 {
			s.send(api.FrameOutputAck, api.OutputAcks{Acks: acks})
		}
	})
}

// ackOutput raises the acknowledgement of ch's attempt to ch.Seq.
func ackOutput(acks []api.OutputAck, ch api.OutputChunk) []api.OutputAck {
	for i := range acks {
		if acks[i].AttemptRef == ch.AttemptRef {
			acks[i].Seq = max(acks[i].Seq, ch.Seq)
			return acks
		}
	}
	return append(acks, api.OutputAck{AttemptRef: ch.AttemptRef, Seq: ch.Seq})
}

func logChunk(task, seq int, r logRecord, limit int) api.LogChunk {
	ch := api.LogChunk{Task: task, Seq: seq, Attempt: r.Attempt, Stream: r.Stream, Data: string(r.Data), Truncated: r.Truncated}
	if r.Truncated {
		ch.Note = truncationNote(limit)
	}
	return ch
}

// truncationNote tells a reader of a task's output why it stops.
func truncationNote(limit int) string {
	return fmt.Sprintf("output truncated: the coordinator keeps %d bytes per task (--max-output-bytes); `ward run --output-dir DIR` writes all of it to files", limit)
}

// wantsAllOutputLocked reports whether a follower of job asked for output
// beyond the limit. Callers hold c.mu.
func (c *Coordinator) wantsAllOutputLocked(job string) bool {
	for s := range c.subs[job] {
		if s.all {
			return true
		}
	}
	return false
}

type liveChunk struct {
	job   string
	seq   int
	chunk api.LogChunk
}

// maxFollowerBacklog is how many chunks a follower may fall behind before
// its stream is ended rather than let it hold up output.
const maxFollowerBacklog = 8192

// logSub is one follower of a job's output: a queue that grows with the
// follower's backlog (most followers keep up and hold a few items), and a
// wake-up for the goroutine streaming it.
type logSub struct {
	task   int  // -1: all tasks
	all    bool // also output beyond the limit, unstored
	wake   chan struct{}
	mu     sync.Mutex
	queue  []subItem
	behind bool // the backlog passed maxFollowerBacklog; no more items
}

type subItem struct {
	seq   int
	chunk api.LogChunk
}

func newLogSub(task int, all bool) *logSub {
	return &logSub{task: task, all: all, wake: make(chan struct{}, 1)}
}

func (s *logSub) offer(it subItem) {
	s.mu.Lock()
	switch {
	case s.behind:
	case len(s.queue) >= maxFollowerBacklog:
		// The follower is too slow: end its stream rather than block output.
		s.behind, s.queue = true, append(s.queue, subItem{seq: -1})
	default:
		s.queue = append(s.queue, it)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the queued items and empties the queue. An item with seq
// -1 marks the point where the follower fell behind.
func (s *logSub) take() []subItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

func (c *Coordinator) publish(live []liveChunk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range live {
		for s := range c.subs[l.job] {
			if (s.task < 0 || s.task == l.chunk.Task) && (s.all || !l.chunk.Unstored) {
				s.offer(subItem{seq: l.seq, chunk: l.chunk})
			}
		}
	}
}

// publishEndings tells followers that their job finished.
func (c *Coordinator) publishEndings(ended []jobEnding) {
	if len(ended) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range ended {
		for s := range c.subs[e.id] {
			s.offer(subItem{chunk: api.LogChunk{End: true, JobState: e.state, Failed: e.failed, Counts: e.counts, Failures: e.failures}})
		}
	}
}

// apiJobLogs streams a job's stored output as JSON lines, and with
// follow=1 keeps streaming live output until the job ends.
func (c *Coordinator) apiJobLogs(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	q := r.URL.Query()
	task := -1
	if s := q.Get("task"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return api.Errorf(api.CodeInvalidArgument, "pass a task index such as --task 3", "task %q is not an index", s)
		}
		task = n
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	all := q.Get("all") == "1" || q.Get("all") == "true"
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	started := false
	begin := func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
	}
	return c.followLogs(r.Context(), p, r.PathValue("id"), task, follow, all, func(ch api.LogChunk) error {
		begin()
		return enc.Encode(ch)
	}, func() {
		begin()
		if flusher != nil {
			flusher.Flush()
		}
	})
}

// FollowLogs sends a job's stored output (one task's, or every task's when
// task is -1) to emit, then, with follow, its live output until the job
// ends; the last chunk has End set. flush is called whenever emit has
// caught up. An error is returned only before the first emit or flush;
// after that the stream just ends (the client went away, or the store
// failed).
func (c *Coordinator) FollowLogs(ctx context.Context, p authz.Principal, id string, task int, follow bool, emit func(api.LogChunk) error, flush func()) error {
	return c.followLogs(ctx, p, id, task, follow, false, emit, flush)
}

// followLogs is FollowLogs; with all, a follower also gets the output
// beyond the limit that arrives while it follows (Unstored chunks).
func (c *Coordinator) followLogs(ctx context.Context, p authz.Principal, id string, task int, follow, all bool, emit func(api.LogChunk) error, flush func()) error {
	scope, err := c.decide(p, authz.JobRead)
	if err != nil {
		return err
	}
	c.mu.Lock()
	j, err := c.findJobLocked(id)
	if err == nil {
		err = c.ownJob(p, scope, authz.JobRead, j)
	}
	if err != nil {
		c.mu.Unlock()
		return err
	}
	if task >= len(j.Tasks) {
		c.mu.Unlock()
		return api.Errorf(api.CodeInvalidArgument, "task indexes run from 0", "job %s has %d tasks; there is no task %d", j.ID, len(j.Tasks), task)
	}
	var sub *logSub
	if follow && !j.Terminal() {
		sub = newLogSub(task, all)
		if c.subs[j.ID] == nil {
			c.subs[j.ID] = map[*logSub]struct{}{}
		}
		c.subs[j.ID][sub] = struct{}{}
		defer c.unsubscribe(j.ID, sub)
	}
	// A job held for its submitter's follower of all output starts now
	// that it is subscribed (released below, once c.mu is). Another
	// reader's follower does not release it.
	release := sub != nil && all && j.Held && p.ID.String() == j.SubmittedBy
	id, state, failed, counts := j.ID, j.State, len(j.Tasks)-j.Count(sched.Completed), j.Counts()
	var failures []api.TaskFailure
	if sub == nil && failed > 0 {
		failures = firstFailures(j, api.MaxFailuresShown)
	}
	// Memory runs ahead of the store: a task's output and its result may
	// still be in the journal's queue when the job already looks finished
	// here. Wait for everything queued so far, so the scan below sees all
	// output accepted before this request and the state it reports is
	// durable. Output queued later reaches a follower through sub.
	durable := make(chan error, 1)
	down := c.health.Down()
	c.journal.Commit(nil, func(err error) { durable <- err })
	c.mu.Unlock()
	if release {
		c.releaseHold(j, true)
	}
	select {
	case err = <-durable:
	case <-down:
		if err := c.health.Err(); err != nil {
			return err // output waits in memory for the store; nothing is lost
		}
		err = <-durable // writable again since: a moment's wait
	}
	if err != nil {
		return api.Errorf(api.CodeUnavailable, "retry once the coordinator has restarted; its log names the store error", "the coordinator could not make the job's output durable: %v", err)
	}

	// Stored output first. A follower subscribed before reading, so
	// nothing is missed; seen filters what both paths deliver.
	seen := map[int]int{} // task → highest stored seq sent
	prefix := logPrefix(id)
	if task >= 0 {
		prefix += padTask(task) + "/"
	}
	err = c.st.Scan(ctx, prefix, func(rec store.Record) error {
		t, seq, ok := parseLogKey(rec.Key)
		if !ok {
			return nil
		}
		var lr logRecord
		if err := json.Unmarshal(rec.Value, &lr); err != nil {
			return err
		}
		seen[t] = seq
		return emit(logChunk(t, seq, lr, c.cfg.MaxOutputBytes))
	})
	if err != nil {
		return nil // the client went away or the store failed mid-stream
	}
	if sub == nil {
		emit(api.LogChunk{End: true, JobState: state, Failed: failed, Counts: counts, Failures: failures})
		return nil
	}
	flush()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.wake:
		}
		for _, it := range sub.take() {
			if it.seq < 0 {
				emit(api.LogChunk{End: true, JobState: "unknown", Note: "this follower fell behind and was disconnected; run `ward logs` again"})
				return nil
			}
			if !it.chunk.End && !it.chunk.Unstored && it.seq <= seen[it.chunk.Task] {
				continue
			}
			if err := emit(it.chunk); err != nil {
				return nil
			}
			if it.chunk.End {
				return nil
			}
		}
		flush()
	}
}

func (c *Coordinator) unsubscribe(job string, s *logSub) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs[job], s)
	if len(c.subs[job]) == 0 {
		delete(c.subs, job)
	}
}

func padTask(i int) string { return fmt.Sprintf("%07d", i) }

// parseLogKey splits logs/<job>/<task>/<seq>.
func parseLogKey(key string) (task, seq int, ok bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 {
		return 0, 0, false
	}
	t, err1 := strconv.Atoi(parts[2])
	s, err2 := strconv.Atoi(parts[3])
	return t, s, err1 == nil && err2 == nil
}

// restoreOutputCounters recounts the stored output of every job that has
// not ended, so the size limit holds across restarts and a chunk an agent
// sends again after the restart is stored once. One scan per job.
func (c *Coordinator) restoreOutputCounters(ctx context.Context, jobs map[string]*sched.Job) error {
	for _, j := range jobs {
		if j.Terminal() {
			continue
		}
		counters, err := c.storedOutputCounters(ctx, j.ID)
		if err != nil {
			return err
		}
		for task, st := range counters {
			c.outputs[outputKey{j.ID, task}] = st
		}
	}
	return nil
}

// storedOutputCounters counts what the store holds of job id's output, per
// task: bytes against the limit, the last chunk number, and each attempt's
// last agent chunk.
func (c *Coordinator) storedOutputCounters(ctx context.Context, id string) (map[int]*outputState, error) {
	out := map[int]*outputState{}
	err := c.st.Scan(ctx, logPrefix(id), func(rec store.Record) error {
		task, seq, ok := parseLogKey(rec.Key)
		if !ok {
			return nil
		}
		var lr logRecord
		if err := json.Unmarshal(rec.Value, &lr); err != nil {
			return fmt.Errorf("%s: %w", rec.Key, err)
		}
		st := out[task]
		if st == nil {
			st = &outputState{}
			out[task] = st
		}
		st.bytes += len(lr.Data)
		st.seq = max(st.seq, seq)
		st.truncated = st.truncated || lr.Truncated
		if lr.Attempt >= 1 {
			st.seen(lr.Attempt, lr.AgentSeq)
		}
		return nil
	})
	return out, err
}

// releaseHold lets a job held for its follower (api.JobSpec.HoldForFollower)
// be placed: when the follower attached, or when HoldForFollowerMax passed
// without one, which is logged since that job's output beyond the cap is
// then kept by no one.
func (c *Coordinator) releaseHold(j *sched.Job, followed bool) {
	c.mu.Lock()
	held := j.Held
	j.Held = false
	c.mu.Unlock()
	if !held {
		return
	}
	if !followed {
		c.log.Warn("job held for its follower: none attached in time, so its tasks start now and their output beyond --max-output-bytes is not kept",
			"job", j.ID, "waited", api.HoldForFollowerMax)
	}
	c.poke()
}

// holdAgainLocked holds a restored job that waited for its follower
// (api.JobSpec.HoldForFollower) and has placed nothing yet: after a restart
// or a change of leader, `ward run --output-dir` reconnects to follow it,
// and the output past the cap must not start before. As at submission, it
// waits HoldForFollowerMax at most.
func (c *Coordinator) holdAgainLocked(j *sched.Job) {
	if !j.Spec.HoldForFollower || j.Terminal() || j.CancelReason != "" {
		return
	}
	for i := range j.Tasks {
		if len(j.Tasks[i].Attempts) > 0 {
			return
		}
	}
	j.Held = true
	time.AfterFunc(api.HoldForFollowerMax, func() { c.releaseHold(j, false) })
}
