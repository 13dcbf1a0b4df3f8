package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/buildinfo"
)

// session runs one stream to addr: hello with what runs and what finished
// unacknowledged, then assignments in and results out until it breaks.
func (a *Agent) session(ctx context.Context, addr string) error {
	var conn net.Conn
	var err error
	if a.plaintext() {
		conn, err = a.dialPlaintext(ctx, addr)
	} else {
		conn, err = a.dial(ctx, addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	host, _ := os.Hostname()
	a.mu.Lock()
	hello := a.helloLocked(host)
	held := len(a.out.results) // results that follow their output
	a.mu.Unlock()

	b, err := api.AppendFrame(nil, api.FrameHello, hello)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(helloTimeout))
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	hdr := make([]byte, 5)
	t, body, err := api.ReadFrame(conn, hdr)
	if err != nil {
		return fmt.Errorf("wait for welcome: %w", err)
	}
	welcomed := monoNow()
	if t == api.FrameBye {
		return a.bye(body)
	}
	if t != api.FrameWelcome {
		return fmt.Errorf("coordinator answered hello with frame %d", t)
	}
	var w api.Welcome
	if err := api.DecodeFrame(t, body, &w); err != nil {
		return err
	}
	conn.SetDeadline(time.Time{})
	if len(w.BundlePEM) > 0 {
		if err := a.installBundle(w.BundlePEM); err != nil {
			a.log.Error("the coordinator's trust bundle was refused", "err", err)
		}
	}
	a.installCRLs(w.CRLsPEM)
	a.resultAccounts.Store(w.ResultAccounts)
	a.learnCoordinators(w.ClusterAddrs)
	interval := max(w.HeartbeatInterval.D(), 100*time.Millisecond)
	a.hbInterval.Store(int64(interval))
	a.openSession(conn, addr, &w, welcomed)
	defer a.closeSession()
	a.endJobs(w.EndedJobs)
	a.log.Info("session open", "coordinator", addr, "node", a.state.Node, "running", len(hello.Running), "results_resent", len(hello.Finished),
		"results_after_output", held, "heartbeat", interval.String(), "skew", time.Since(w.Time).Round(time.Millisecond).String())

	werr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() { werr <- a.writer(conn, interval, done) }()
	return a.readFrames(conn, addr, werr)
}

// openSession records a session the coordinator welcomed (its Welcome
// read at the monoNow reading welcomed) and makes it live. What the
// coordinator no longer wants here (it placed it elsewhere while this
// agent was away) is canceled first, before the session counts as live, so
// none of it starts; then the attempts held meanwhile start.
func (a *Agent) openSession(conn net.Conn, addr string, w *api.Welcome, welcomed int64) {
	a.cancel(w.Cancel, api.EndCanceled, false)
	a.mu.Lock()
	a.drain = w.Drain
	a.sessions++
	a.connected = true
	a.conn = conn
	a.sessionAddr = addr
	a.heard.Store(welcomed)
	a.mu.Unlock()
	a.releaseHeld()
}

// closeSession records that the session ended: nothing starts until the
// next one is open.
func (a *Agent) closeSession() {
	a.mu.Lock()
	a.heard.Store(0)
	a.connected = false
	a.conn = nil
	if a.renewDone != nil {
		a.renewDone <- errors.New("the session ended before the renewal was answered")
		a.renewDone = nil
	}
	a.out.renew = nil
	a.mu.Unlock()
}

// readFrames handles the coordinator's frames until the session breaks.
// werr reports the writer's end.
func (a *Agent) readFrames(conn net.Conn, addr string, werr <-chan error) error {
	hdr := make([]byte, 5)
	for {
		// The coordinator answers every heartbeat, so silence past the
		// liveness timeout means it (or the path to it) is gone.
		timeout := a.livenessTimeout()
		conn.SetReadDeadline(time.Now().Add(timeout))
		t, body, err := api.ReadFrame(conn, hdr)
		if err == nil {
			// A frame that arrives after a longer gap (the deadline did
			// not fire because this process was stopped, or the frame was
			// already buffered) is not acted on: the coordinator has
			// presumably given this session up.
			now := monoNow()
			if gap := time.Duration(now - a.heard.Load()); gap > timeout {
				return sessionErr{stalledError{addr: addr, gap: gap, timeout: timeout}}
			}
			a.heard.Store(now)
		}
		if err != nil {
			select {
			case werr := <-werr:
				if werr != nil {
					return sessionErr{werr}
				}
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if gap := time.Duration(monoNow() - a.heard.Load()); gap > timeout+time.Second {
					// The deadline fired late: this agent was stopped or
					// starved, not the coordinator silent.
					return sessionErr{stalledError{addr: addr, gap: gap, timeout: timeout}}
				}
				return sessionErr{silentError{addr: addr, silent: timeout, interval: time.Duration(a.hbInterval.Load())}}
			}
			return sessionErr{err}
		}
		if err := a.handle(t, body); err != nil {
			var fe errFatal
			if errors.As(err, &fe) {
				return err
			}
			return sessionErr{err}
		}
	}
}

const helloTimeout = 10 * time.Second

// silentError ends a session whose coordinator sent nothing, not even the
// answer to a heartbeat, for the liveness timeout.
type silentError struct {
	addr     string
	silent   time.Duration
	interval time.Duration
}

func (e silentError) Error() string {
	return fmt.Sprintf("the coordinator at %s sent nothing for %s (3 heartbeat intervals of %s plus a grace), so the session is presumed dead: i/o timeout", e.addr, e.silent, e.interval)
}

// Timeout marks the error as a timeout for diagnose.Explain.
func (e silentError) Timeout() bool { return true }

// helloLocked builds a new session's hello and refills the outbox with
// everything unacknowledged. A result rides in the hello unless output of
// its attempt is unacknowledged: then the attempt is reported as running,
// and its output goes first and its result after it, so a result is never
// stored before the output that preceded it. Callers hold a.mu.
func (a *Agent) helloLocked(host string) api.Hello {
	hello := api.Hello{
		Version: api.SessionVersion, WardVersion: buildinfo.Version(), Slots: a.cfg.Slots, Memory: int64(a.cfg.Memory), Labels: a.cfg.Labels, Hostname: host,
		Running: a.runningLocked(), InsecureSkipVerify: a.cfg.InsecureSkipVerify, Time: time.Now(),
		Revocation: a.revocationState(), Profile: a.profileName, ProfileRevision: a.profileRev,
		Account: a.account, RunAsUser: a.runAs != nil,
		Envs: a.envJobsLocked(),
	}
	var held []api.TaskResult
	for _, r := range a.unacked {
		if len(a.pending[r.AttemptRef]) > 0 {
			held = append(held, r)
			hello.Running = append(hello.Running, r.AttemptRef)
		} else {
			hello.Finished = append(hello.Finished, r)
		}
	}
	sortResults(hello.Finished)
	sortResults(held)
	a.out.started, a.out.results = nil, held
	a.out.output = a.pendingOutputLocked()
	return hello
}

// revocationState is what the agent reports about checking the
// coordinator's certificate.
func (a *Agent) revocationState() string {
	s, _ := a.revocation.Load().(string)
	return s
}

func sortResults(rs []api.TaskResult) {
	sort.Slice(rs, func(i, j int) bool { return lessAttempt(rs[i].AttemptRef, rs[j].AttemptRef) })
}

func lessAttempt(x, y api.AttemptRef) bool {
	if x.Job != y.Job {
		return x.Job < y.Job
	}
	if x.Task != y.Task {
		return x.Task < y.Task
	}
	return x.Attempt < y.Attempt
}

// bye turns the coordinator's goodbye into an error; refusals of this
// node's identity are fatal, because retrying cannot fix them.
func (a *Agent) bye(body []byte) error {
	var m api.Bye
	if err := api.DecodeFrame(api.FrameBye, body, &m); err != nil {
		return err
	}
	if m.Error != nil {
		switch m.Error.Code {
		case api.CodeCertRevoked, api.CodePermissionDenied:
			return errFatal{m.Error}
		}
		return m.Error
	}
	return fmt.Errorf("coordinator ended the session: %s", m.Reason)
}

func (a *Agent) handle(t api.FrameType, body []byte) error {
	switch t {
	case api.FrameAssign:
		var m api.Assign
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		tasks, err := m.Expand()
		if err != nil {
			return err
		}
		for _, as := range tasks {
			a.start(as)
		}
	case api.FrameAck:
		var m api.Ack
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		a.mu.Lock()
		for _, r := range m.Refs {
			delete(a.unacked, r)
			if len(a.pending) > 0 {
				// The attempt's output preceded its result: it is stored too.
				a.dropPendingLocked(r, math.MaxInt)
			}
		}
		a.mu.Unlock()
	case api.FrameOutputAck:
		var m api.OutputAcks
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		a.mu.Lock()
		for _, ack := range m.Acks {
			a.dropPendingLocked(ack.AttemptRef, ack.Seq)
		}
		a.mu.Unlock()
	case api.FrameCancel:
		var m api.Cancel
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		reason := m.EndReason
		if reason == "" {
			reason = api.EndCanceled
		}
		a.cancel(m.Refs, reason, m.WaitingOnly)
	case api.FrameDrain:
		var m api.Drain
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		a.mu.Lock()
		a.drain = m.Drain
		a.mu.Unlock()
		a.log.Info("drain state changed", "drain", m.Drain)
	case api.FrameBye:
		return a.bye(body)
	case api.FrameRenewed:
		return a.renewed(body)
	case api.FrameRenewNow:
		var m api.RenewNow
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		select {
		case a.renewNow <- m.Delay.D():
		default:
		}
	case api.FrameUpgradeTLS:
		var m api.UpgradeTLS
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		go a.upgradeToTLS(context.Background(), m)
	case api.FrameCRLs:
		var m api.CRLs
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		a.installCRLs(m.PEM)
	case api.FrameJobsEnded:
		var m api.JobsEnded
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		a.endJobs(m.Jobs)
	case api.FrameHeartbeatAck:
		// Reading it renewed the liveness deadline; nothing else to do.
	case api.FrameSettings:
		var m api.Settings
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		if d := m.HeartbeatInterval.D(); d >= 100*time.Millisecond {
			a.hbInterval.Store(int64(d))
			select {
			case a.hbChanged <- struct{}{}:
			default:
			}
		}
	case api.FrameProfile:
		var m api.ProfilePush
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		a.applyProfile(m)
	case api.FrameTrust:
		var m api.Trust
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		if err := a.installBundle(m.BundlePEM); err != nil {
			a.log.Error("the coordinator pushed a trust bundle that was refused", "err", err)
		}
	default:
		a.log.Debug("ignoring frame", "frame", t)
	}
	return nil
}

// cancel kills attempts. One still waiting for a slot never starts: it
// ends at once with reason. With waitingOnly, started attempts run on.
func (a *Agent) cancel(refs []api.AttemptRef, reason string, waitingOnly bool) {
	var dropped []*attempt
	var droppedHeld []*attempt
	a.mu.Lock()
	for _, r := range refs {
		at := a.running[r]
		switch {
		case at == nil:
		case at.as != nil:
			// Out of running now, so a second cancel finds nothing and
			// Exited frees no slots for it.
			delete(a.running, r)
			a.waiting = slices.DeleteFunc(a.waiting, func(w *attempt) bool { return w == at })
			dropped = append(dropped, at)
		case at.held:
			// Not started either; it gives its slots back here.
			delete(a.running, r)
			a.dropHeldLocked(at)
			droppedHeld = append(droppedHeld, at)
		case waitingOnly:
		case at.handle == nil:
			if at.kill == "" {
				at.kill = reason
			}
		default:
			at.handle.Kill(reason)
		}
	}
	a.mu.Unlock()
	for _, at := range dropped {
		a.notStarted(at.ref, reason, "ended before it started: it was waiting on the agent for a slot")
	}
	for _, at := range droppedHeld {
		a.notStarted(at.ref, reason, "ended before it started: it was held on the agent while its session with the coordinator was down")
	}
}

// start runs an assignment unless it is already running or finished here
// (a redelivered assignment must not run twice). One that does not fit in
// the free slots (the coordinator assigned it ahead) waits, in order.
func (a *Agent) start(as api.Assignment) {
	a.mu.Lock()
	if _, ok := a.running[as.AttemptRef]; ok {
		a.mu.Unlock()
		return
	}
	if _, ok := a.unacked[as.AttemptRef]; ok {
		a.mu.Unlock()
		return
	}
	at := &attempt{ref: as.AttemptRef, slots: as.Slots}
	a.running[as.AttemptRef] = at
	if len(a.waiting) > 0 || !a.roomLocked(as.Slots) {
		at.as = &as
		a.waiting = append(a.waiting, at)
		a.mu.Unlock()
		return
	}
	a.used += as.Slots
	a.mu.Unlock()
	a.launch(at, as)
}

// roomLocked reports whether an attempt needing slots may start now: they
// are free, or nothing else runs. The coordinator's scheduler follows the
// same rule.
func (a *Agent) roomLocked(slots int) bool {
	have := a.settings.Slots
	if have == 0 { // an agent built without New (tests)
		have = a.cfg.Slots
	}
	return a.used+slots <= have || a.used == 0
}

// launch hands an attempt that holds its slots to the executor, after its
// job's setup when it has one, or holds it while the session is not live.
func (a *Agent) launch(at *attempt, as api.Assignment) {
	if !a.sessionLive() && a.hold(at, as) {
		return
	}
	if as.Setup != "" && len(as.Argv) > 0 {
		a.launchInEnv(at, as)
		return
	}
	a.launchNow(at, as)
}

// launchNow hands an attempt to the executor.
func (a *Agent) launchNow(at *attempt, as api.Assignment) {
	if len(as.Argv) == 0 {
		now := time.Now()
		(&reporter{a: a, ref: as.AttemptRef}).Exited(api.TaskResult{AttemptRef: as.AttemptRef, ExitCode: -1, Reason: api.EndStartErr, Error: "empty command", Started: api.NanosOf(now), Ended: api.NanosOf(now)})
		return
	}
	var h Handle
	if as.Staging != nil {
		h = a.runStaged(as, &reporter{a: a, ref: as.AttemptRef})
	} else {
		h = a.exec.Run(as, &reporter{a: a, ref: as.AttemptRef})
	}
	a.mu.Lock()
	at.handle = h
	kill := at.kill
	a.mu.Unlock()
	if kill != "" {
		h.Kill(kill)
	}
}

// readyAttempt is a waiting attempt that may start now.
type readyAttempt struct {
	at *attempt
	as api.Assignment
}

// startWaitingLocked takes the attempts waiting for slots that fit now,
// in order, and counts their slots; the caller launches them after
// releasing a.mu.
func (a *Agent) startWaitingLocked() []readyAttempt {
	var next []readyAttempt
	for len(a.waiting) > 0 {
		w := a.waiting[0]
		if !a.roomLocked(w.slots) {
			break
		}
		a.waiting = a.waiting[1:]
		a.used += w.slots
		next = append(next, readyAttempt{w, *w.as})
		w.as = nil
	}
	return next
}

// reporter feeds one attempt's events into the outbox. seq and dropped
// are guarded by a.mu (stdout and stderr report from two goroutines).
type reporter struct {
	a       *Agent
	ref     api.AttemptRef
	seq     int // the last output chunk's number
	dropped int // output bytes dropped over maxBufferedOutput
}

func (r *reporter) Started(at time.Time) {
	r.a.mu.Lock()
	r.a.out.started = append(r.a.out.started, api.StartedRef{AttemptRef: r.ref, At: api.NanosOf(at)})
	r.a.mu.Unlock()
	r.a.wake()
}

// Output keeps a chunk until the coordinator acknowledges it, and queues
// it for the writer.
func (r *reporter) Output(stream string, data []byte) {
	a := r.a
	a.mu.Lock()
	if a.pendingBytes+len(data) > maxBufferedOutput {
		a.out.dropped += len(data)
		r.dropped += len(data)
		a.mu.Unlock()
		return
	}
	r.outputLocked(stream, data)
	a.mu.Unlock()
	a.wake()
}

func (r *reporter) outputLocked(stream string, data []byte) {
	a := r.a
	r.seq++
	ch := api.OutputChunk{AttemptRef: r.ref, Stream: stream, Data: data, Seq: r.seq}
	a.pending[r.ref] = append(a.pending[r.ref], ch)
	a.pendingBytes += len(data)
	a.out.output = append(a.out.output, ch)
}

func (r *reporter) Exited(res api.TaskResult) {
	a := r.a
	a.mu.Lock()
	if r.dropped > 0 {
		// Say in the task's own output what is missing, before its result.
		r.outputLocked("stderr", fmt.Appendf(nil, "\n[ward: %d bytes of this task's output were dropped on the agent: more than %d bytes were waiting for the coordinator to store them]\n",
			r.dropped, maxBufferedOutput))
		r.dropped = 0
	}
	if at := a.running[r.ref]; at != nil {
		if at.as == nil {
			a.used -= at.slots
		}
		delete(a.running, r.ref)
	}
	a.unacked[r.ref] = res
	a.out.results = append(a.out.results, res)
	// Freed slots go to the attempts waiting for them, in order.
	next := a.startWaitingLocked()
	a.mu.Unlock()
	a.wake()
	for _, n := range next {
		a.launch(n.at, n.as)
	}
}

// writer sends everything the outbox collects, batched into one write per
// wake-up, plus heartbeats.
func (a *Agent) writer(conn net.Conn, interval time.Duration, done <-chan struct{}) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	current := interval
	var buf []byte
	// The started and results lists of the last write are cleared and
	// handed back to the outbox, so a busy agent does not regrow them for
	// every write.
	var spareStarted []api.StartedRef
	var spareResults []api.TaskResult
	for {
		select {
		case <-done:
			return nil
		case <-a.notify:
		case <-a.hbChanged:
			if d := time.Duration(a.hbInterval.Load()); d != current {
				current = d
				tick.Reset(d)
			}
			continue
		case <-tick.C:
			a.mu.Lock()
			a.out.heartbeat = true
			a.mu.Unlock()
		}
		a.mu.Lock()
		o := a.out
		a.out = outbox{started: spareStarted, results: spareResults}
		spareStarted, spareResults = nil, nil // the outbox owns them now
		used, running := a.used, len(a.running)-len(a.waiting)
		a.mu.Unlock()
		if o.dropped > 0 {
			a.log.Warn("task output dropped while the coordinator was unreachable", "bytes", o.dropped)
		}
		buf = buf[:0]
		var err error
		if len(o.started) > 0 && len(o.results) > 0 {
			// A task that started and ended since the last write needs no
			// Started message: its result carries the start time.
			ended := make(map[api.AttemptRef]bool, len(o.results))
			for _, r := range o.results {
				ended[r.AttemptRef] = true
			}
			kept := o.started[:0]
			for _, st := range o.started {
				if !ended[st.AttemptRef] {
					kept = append(kept, st)
				}
			}
			o.started = kept
		}
		if len(o.started) > 0 {
			buf, err = api.AppendFrame(buf, api.FrameStarted, api.Started{Refs: o.started})
		}
		for rest := o.output; err == nil && len(rest) > 0; {
			// Frames of at most maxOutputFrame bytes of output (at least
			// one chunk each).
			n, size := 1, len(rest[0].Data)
			for n < len(rest) && size+len(rest[n].Data) <= maxOutputFrame {
				size += len(rest[n].Data)
				n++
			}
			buf, err = api.AppendFrame(buf, api.FrameOutput, api.Output{Chunks: rest[:n]})
			rest = rest[n:]
		}
		if err == nil && len(o.results) > 0 {
			if a.runAs != nil && !a.resultAccounts.Load() {
				// An older coordinator refuses the accounts' extra bytes.
				for i := range o.results {
					o.results[i].Account = ""
				}
			}
			buf, err = api.AppendFrame(buf, api.FrameResults, api.Results{Results: o.results})
		}
		if err == nil && o.profile != nil {
			buf, err = api.AppendFrame(buf, api.FrameProfileResult, o.profile)
		}
		if err == nil && o.upgradeErr != nil {
			buf, err = api.AppendFrame(buf, api.FrameUpgradeResult, o.upgradeErr)
		}
		if err == nil && o.renew != nil {
			buf, err = api.AppendFrame(buf, api.FrameRenewRequest, api.RenewRequest{CSR: o.renew})
		}
		if err == nil && o.heartbeat {
			buf, err = api.AppendFrame(buf, api.FrameHeartbeat, api.Heartbeat{Time: time.Now(), Running: running, UsedSlots: used})
		}
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			continue
		}
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(buf); err != nil {
			// Output and results are kept until acknowledged and are sent
			// again after the reconnect.
			conn.Close()
			return fmt.Errorf("send to coordinator: %w", err)
		}
		if cap(buf) > 1<<20 {
			buf = nil // do not keep a large buffer on an idle session
		}
		spareStarted, spareResults = reuse(o.started), reuse(o.results)
	}
}

// dropPendingLocked forgets ref's output chunks numbered up to upTo: the
// coordinator stored them.
func (a *Agent) dropPendingLocked(ref api.AttemptRef, upTo int) {
	chunks := a.pending[ref]
	i := 0
	for i < len(chunks) && chunks[i].Seq <= upTo {
		a.pendingBytes -= len(chunks[i].Data)
		i++
	}
	if i == len(chunks) {
		delete(a.pending, ref)
		return
	}
	clear(chunks[:i]) // let the data go
	a.pending[ref] = chunks[i:]
}

// pendingOutputLocked lists every unacknowledged chunk, each attempt's in
// order, to send again on a new session.
func (a *Agent) pendingOutputLocked() []api.OutputChunk {
	refs := make([]api.AttemptRef, 0, len(a.pending))
	for r := range a.pending {
		refs = append(refs, r)
	}
	sort.Slice(refs, func(i, j int) bool { return lessAttempt(refs[i], refs[j]) })
	var out []api.OutputChunk
	for _, r := range refs {
		out = append(out, a.pending[r]...)
	}
	return out
}

// reuse empties a list whose contents were sent, for the next write; a
// large one is dropped so an idle agent does not hold it.
func reuse[T any](l []T) []T {
	if cap(l) > 4096 {
		return nil
	}
	clear(l)
	return l[:0]
}
