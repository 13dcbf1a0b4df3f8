package coordinator

import (
	"context"
	"strconv"
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
	c.mu.Lock()
	placements := c.cl.Schedule(c.now())
	if len(placements) == 0 {
		c.mu.Unlock()
		return
	}
	ch := c.changesLocked()
	byNode := map[string][]api.Assignment{}
	for _, p := range placements {
		byNode[p.Node.Name] = append(byNode[p.Node.Name], assignment(p))
	}
	sessions := make(map[string]*session, len(byNode))
	for name := range byNode {
		sessions[name] = c.sessions[name]
	}
	c.mu.Unlock()

	frames := make(map[*session][]byte, len(byNode))
	for name, tasks := range byNode {
		s := sessions[name]
		if s == nil {
			continue
		}
		b, err := api.AppendFrame(nil, api.FrameAssign, api.Assign{Tasks: tasks})
		if err != nil {
			c.log.Error("encode assignments", "node", name, "err", err)
			continue
		}
		frames[s] = b
	}
	c.commit(ch, func() {
		for s, b := range frames {
			s.sendRaw(b)
		}
	})
}

// assignment builds what an agent needs to run one attempt. The job spec
// never changes after submission, so this needs no lock.
func assignment(p sched.Placement) api.Assignment {
	spec := &p.Job.Spec
	idx := strconv.Itoa(p.Task)
	argv := make([]string, len(spec.Argv))
	for i, a := range spec.Argv {
		argv[i] = strings.ReplaceAll(a, "{index}", idx)
	}
	return api.Assignment{
		AttemptRef: p.Ref.APIRef(),
		Argv:       argv,
		Env:        spec.Env,
		Dir:        spec.Dir,
		Slots:      p.Job.Slots,
		Timeout:    spec.Timeout,
	}
}

// changes is what one state transition must write, and the jobs it
// finished (whose log followers are told once the write is durable).
type changes struct {
	ops   []store.Op
	ended []jobEnding
}

// jobEnding is a job that reached a final state.
type jobEnding struct {
	id     string
	state  string
	failed int
	counts map[string]int
}

// changesLocked turns every job and task the scheduler changed into store
// writes. Callers hold c.mu.
func (c *Coordinator) changesLocked() changes {
	jobs, tasks := c.cl.TakeDirty()
	ch := changes{ops: make([]store.Op, 0, len(jobs)+len(tasks))}
	for _, j := range jobs {
		ch.ops = append(ch.ops, encodeJob(j))
		if j.Terminal() {
			c.metrics.Jobs.WithLabelValues(j.State).Inc()
			ch.ended = append(ch.ended, jobEnding{id: j.ID, state: j.State, failed: len(j.Tasks) - j.Count(sched.Completed), counts: j.Counts()})
			for i := range j.Tasks { // a finished job produces no more output
				delete(c.outputs, outputKey{j.ID, i})
			}
		}
	}
	for _, k := range tasks {
		ch.ops = append(ch.ops, encodeTask(k.Job, k.Task))
	}
	return ch
}

// commit makes ch durable, then runs after (when not nil and the commit
// succeeded) and tells followers of finished jobs.
func (c *Coordinator) commit(ch changes, after func()) {
	c.journal.Commit(ch.ops, func(err error) {
		if err == nil && after != nil {
			after()
		}
		c.publishEndings(ch.ended)
	})
}
