package coordinator

import (
	"context"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/store"
)

// poke wakes the dispatcher; many pokes before it runs coalesce into one
// scheduling round.
func (c *Coordinator) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// dispatchLoop runs scheduling rounds when something changed, and every
// second so aging can reorder waiting jobs.
func (c *Coordinator) dispatchLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-tick.C:
		}
		c.dispatchRound()
	}
}

// dispatchRound places what fits, persists every placement in one batch
// and sends each node its assignments in one frame after the batch is
// durable. A crash between commit and send loses nothing: the agent's hello
// after reconnect shows it never got them, and they are requeued.
func (c *Coordinator) dispatchRound() {
	if !c.leading.Load() {
		return // a term that ended places nothing more (the fence refuses it anyway)
	}
	c.mu.Lock()
	pl := c.placeLocked()
	if pl.empty() {
		c.mu.Unlock()
		return
	}
	ch := c.changesLocked()
	c.mu.Unlock()
	frames := pl.frames(c)
	c.commit(ch, func() { frames.send() })
}

// placement is one scheduling round's assignments, one frame per session.
type placement struct {
	byNode   map[string]*api.Assign
	sessions map[string]*session
}

func (p placement) empty() bool { return len(p.byNode) == 0 }

// placeLocked runs a scheduling round. Callers hold c.mu and commit the
// changes it makes before sending the frames. Each frame carries a job's
// command once, however many of its tasks it holds.
func (c *Coordinator) placeLocked() placement {
	ps := c.cl.Schedule(c.now())
	p := placement{byNode: map[string]*api.Assign{}, sessions: map[string]*session{}}
	// Schedule returns runs of placements of one job on one node; the maps
	// are consulted once per run, not once per task.
	var (
		seen     map[string]map[string]bool // node → jobs with a template in its frame
		m        *api.Assign
		lastNode *sched.Node
		lastJob  *sched.Job
		runAs    bool // the node runs tasks as their submitters: send users
	)
	for _, pl := range ps {
		if pl.Node != lastNode {
			lastNode, lastJob = pl.Node, nil
			if m = p.byNode[pl.Node.Name]; m == nil {
				m = &api.Assign{}
				p.byNode[pl.Node.Name] = m
			}
			s := c.sessions[pl.Node.Name]
			runAs = s != nil && s.runAsUser
		}
		if pl.Job != lastJob {
			lastJob = pl.Job
			if seen == nil {
				seen = map[string]map[string]bool{}
			}
			if seen[pl.Node.Name] == nil {
				seen[pl.Node.Name] = map[string]bool{}
			}
			if !seen[pl.Node.Name][pl.Job.ID] {
				seen[pl.Node.Name][pl.Job.ID] = true
				spec := &pl.Job.Spec
				slots := pl.Job.Slots
				if spec.Exclusive {
					// The task holds the whole node: the agent starts
					// nothing beside it.
					slots = max(slots, pl.Node.Slots)
				}
				aj := api.AssignJob{Job: pl.Job.ID, Argv: spec.Argv, Env: spec.Env, Dir: spec.Dir, Slots: slots, Timeout: spec.Timeout, Setup: spec.Setup, Teardown: spec.Teardown}
				if len(spec.Inputs) > 0 || len(spec.Outputs) > 0 {
					aj.Staging = &api.Staging{Inputs: spec.Inputs, Outputs: spec.Outputs}
				}
				if runAs {
					aj.User = userName(pl.Job.SubmittedBy)
				}
				m.Jobs = append(m.Jobs, aj)
			}
		}
		m.Tasks = append(m.Tasks, pl.Ref.APIRef())
	}
	for name := range p.byNode {
		p.sessions[name] = c.sessions[name]
	}
	return p
}

// userName is the user name of a submitter's identity
// (spiffe://CLUSTER/user/NAME), or "" for another kind of identity.
func userName(submittedBy string) string {
	_, name, ok := strings.Cut(submittedBy, "/user/")
	if !ok {
		return ""
	}
	return name
}

// sendSet is encoded frames waiting for a commit.
type sendSet map[*session][]byte

func (f sendSet) send() {
	for s, b := range f {
		s.sendRaw(b)
	}
}

// frames encodes each node's assignments, outside c.mu.
func (p placement) frames(c *Coordinator) sendSet {
	out := make(sendSet, len(p.byNode))
	for name, m := range p.byNode {
		s := p.sessions[name]
		if s == nil {
			continue // its agent is away; the hello after reconnect reconciles
		}
		b, err := api.AppendFrame(nil, api.FrameAssign, m)
		if err != nil {
			c.log.Error("encode assignments", "node", name, "err", err)
			continue
		}
		out[s] = b
	}
	return out
}

// changes is what one state transition must write: job records copied
// under c.mu and encoded later outside it, writes already encoded (task
// chunks among them), and the jobs it finished (whose log followers are
// told once the write is durable).
type changes struct {
	jobs  []jobRecord
	extra []store.Op
	ended []jobEnding
	// kills stop attempts that --cancel-on-failure canceled, sent once
	// the change is durable.
	kills map[*session]*api.Cancel
	// envEnds tell agents which jobs with a --setup ended, for their
	// teardown, once the end is durable.
	envEnds map[*session][]string
}

// add appends an already-encoded write.
func (ch *changes) add(op store.Op) { ch.extra = append(ch.extra, op) }

// ops encodes every write. Call it without holding c.mu.
func (ch *changes) ops() []store.Op {
	ops := make([]store.Op, 0, len(ch.jobs)+len(ch.extra))
	for i := range ch.jobs {
		ops = append(ops, putJSON(jobKey(ch.jobs[i].ID), &ch.jobs[i]))
	}
	return append(ops, ch.extra...)
}

// jobEnding is a job that reached a final state.
type jobEnding struct {
	id       string
	state    string
	failed   int
	counts   map[string]int
	failures []api.TaskFailure
}

// changesLocked snapshots every job the scheduler changed (encoded later,
// in commit) and encodes every chunk of tasks it changed. Callers hold c.mu.
func (c *Coordinator) changesLocked() changes {
	jobs, tasks := c.cl.TakeDirty()
	ch := changes{jobs: make([]jobRecord, 0, len(jobs))}
	if kill := c.cl.TakeKills(); len(kill) > 0 {
		ch.kills = c.cancelFramesLocked(kill, "consequential: another task of the job failed (--cancel-on-failure)", api.EndCanceled)
	}
	for _, j := range jobs {
		ch.jobs = append(ch.jobs, jobSnapshot(j))
		if j.Terminal() {
			c.metrics.Jobs.WithLabelValues(j.State).Inc()
			e := jobEnding{id: j.ID, state: j.State, failed: len(j.Tasks) - j.Count(sched.Completed), counts: j.Counts()}
			if e.failed > 0 {
				e.failures = firstFailures(j, api.MaxFailuresShown)
			}
			ch.ended = append(ch.ended, e)
			c.forgetOutputsLocked(j)
			if j.Spec.Setup != "" {
				ch.envEnds = c.envEndsLocked(ch.envEnds, j)
			}
		}
	}
	type chunkID struct {
		job   *sched.Job
		chunk int
	}
	// Changed tasks come in runs from the same chunk; the map is only
	// consulted when the chunk changes.
	seen := make(map[chunkID]bool, len(tasks)/8+1)
	last := chunkID{chunk: -1}
	for _, k := range tasks {
		id := chunkID{k.Job, k.Task / chunkSize}
		if id == last {
			continue
		}
		last = id
		if !seen[id] {
			seen[id] = true
			ch.add(store.Put(chunkKey(k.Job.ID, id.chunk), encodeJobChunk(k.Job, id.chunk)))
		}
	}
	return ch
}

// forgetOutputsLocked drops the output state of a finished job's tasks (a
// finished job produces no more output). It walks whichever is smaller,
// the job's tasks or the tasks with output, so a job of many silent tasks
// costs no lookup per task. Callers hold c.mu.
func (c *Coordinator) forgetOutputsLocked(j *sched.Job) {
	if len(c.outputs) < len(j.Tasks) {
		for k := range c.outputs {
			if k.job == j.ID {
				delete(c.outputs, k)
			}
		}
		return
	}
	for i := range j.Tasks {
		delete(c.outputs, outputKey{j.ID, i})
	}
}

// commit encodes ch (outside c.mu), makes it durable, then runs after
// (when not nil and the commit succeeded), tells followers of finished jobs,
// and hands the commit's error to each of report.
func (c *Coordinator) commit(ch changes, after func(), report ...func(error)) {
	c.journal.Commit(ch.ops(), func(err error) {
		if err == nil && after != nil {
			after()
		}
		if err == nil {
			for s, m := range ch.kills {
				s.send(api.FrameCancel, m)
			}
			for s, jobs := range ch.envEnds {
				s.send(api.FrameJobsEnded, api.JobsEnded{Jobs: jobs})
			}
		}
		c.publishEndings(ch.ended)
		for _, r := range report {
			r(err)
		}
	})
}

// envEndsLocked adds, for each connected node that ran an attempt of the
// ended job j, j to the jobs that node must tear down. An agent away now
// learns it from the Welcome after it reconnects. Callers hold c.mu.
func (c *Coordinator) envEndsLocked(m map[*session][]string, j *sched.Job) map[*session][]string {
	seen := map[string]bool{}
	for i := range j.Tasks {
		for _, a := range j.Tasks[i].Attempts {
			if seen[a.Node] {
				continue
			}
			seen[a.Node] = true
			if s := c.sessions[a.Node]; s != nil {
				if m == nil {
					m = map[*session][]string{}
				}
				m[s] = append(m[s], j.ID)
			}
		}
	}
	return m
}
