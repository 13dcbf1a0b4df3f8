package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/transport"
)

// heartbeatAckFrame is the encoded HeartbeatAck, the same bytes for every
// heartbeat of every session: answering costs no encoding or allocation
// beyond the session's write queue.
var heartbeatAckFrame = func() []byte {
	b, err := api.AppendFrame(nil, api.FrameHeartbeatAck, api.HeartbeatAck{})
	if err != nil {
		panic(err)
	}
	return b
}()

// helloTimeout bounds the wait for an agent's first frame.
const helloTimeout = 10 * time.Second

// session is one agent's live stream. It has one reader goroutine; writes
// are queued and flushed by a writer goroutine that exists only while there
// is something to write, so an idle session costs one goroutine and its
// TLS buffers.
type session struct {
	c    *Coordinator
	conn net.Conn
	node string
	peer transport.Peer
	link transport.LinkStatus
	// revocation is what the agent reported about checking our certificate.
	revocation string
	// account is the local account the agent runs as (its hello), which
	// ran its attempts unless runAsUser: then each result names its own.
	account   string
	runAsUser bool
	// upgradeErr is why the agent's last move to TLS failed ("" if none).
	upgradeErr atomic.Value
	// interval is the heartbeat interval the agent was told (nanoseconds;
	// it changes when the fleet grows).
	interval atomic.Int64

	wmu     sync.Mutex
	wbuf    []byte
	writing bool
	closed  bool

	// replaced is set when a newer session of the same node closed this one.
	replaced atomic.Bool
	// closedFor is why the coordinator closed the session, if it did.
	closedFor atomic.Pointer[string]
	// outPending is the agent's output read but not yet stored; over
	// session_queue_bytes the reader waits on outDrained.
	outPending atomic.Int64
	outDrained chan struct{}

	lastSeen  atomic.Int64 // unix nanos
	skew      atomic.Int64 // agent clock minus coordinator clock, nanos
	usedSlots atomic.Int32
	done      chan struct{}
}

func (s *session) send(t api.FrameType, msg any) {
	b, err := api.AppendFrame(nil, t, msg)
	if err != nil {
		s.c.log.Error("encode frame", "node", s.node, "err", err)
		return
	}
	s.sendRaw(b)
}

// sendRaw queues encoded frames. Frames queued while a write is in flight
// go out together in the next write. b is only read, never kept for
// appending, so one encoded frame may be queued on many sessions (a
// heartbeat answer, a settings change) without a copy per session.
// An agent that does not read (its queue passes session_queue_bytes) loses
// its session instead of growing the coordinator's memory.
func (s *session) sendRaw(b []byte) {
	s.wmu.Lock()
	if s.closed {
		s.wmu.Unlock()
		return
	}
	if limit := s.c.cfg.Limits.SessionQueueBytes; limit > 0 && len(s.wbuf)+len(b) > limit {
		queued := len(s.wbuf)
		s.wmu.Unlock()
		s.c.metrics.SessionLimits.WithLabelValues("session_queue_bytes", "closed").Inc()
		s.c.log.Warn("agent session closed: it does not read what is sent to it", "node", s.node, "code", string(api.CodeSessionQueueFull),
			"queued_bytes", queued, "setting", "session_queue_bytes", "limit", limit,
			"fix", "check the agent's host and network; raise session_queue_bytes only if frames this large are expected")
		s.closeFor(fmt.Sprintf("%s: the agent did not read %d queued bytes, over session_queue_bytes (%d)", api.CodeSessionQueueFull, queued, limit))
		return
	}
	if len(s.wbuf) == 0 {
		s.wbuf = b[:len(b):len(b)] // a later append must copy, not write into b
	} else {
		s.wbuf = append(s.wbuf, b...)
	}
	if s.writing {
		s.wmu.Unlock()
		return
	}
	s.writing = true
	s.wmu.Unlock()
	go s.flush()
}

func (s *session) flush() {
	for {
		s.wmu.Lock()
		buf := s.wbuf
		s.wbuf = nil
		if len(buf) == 0 || s.closed {
			s.writing = false
			s.wmu.Unlock()
			return
		}
		s.wmu.Unlock()
		s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := s.conn.Write(buf); err != nil {
			s.closeFor("writing to the agent failed: " + err.Error())
			return
		}
	}
}

// setReadDeadline gives the next read the liveness timeout of the current
// interval. The interval may be stretched concurrently (heartbeatLoop sets
// the deadline of a read in progress too): reading it again after setting
// the deadline makes sure the later interval wins.
func (s *session) setReadDeadline() {
	iv := s.interval.Load()
	s.conn.SetReadDeadline(time.Now().Add(api.LivenessTimeout(time.Duration(iv))))
	if now := s.interval.Load(); now != iv {
		s.conn.SetReadDeadline(time.Now().Add(api.LivenessTimeout(time.Duration(now))))
	}
}

// endReason says in words why the session's read failed.
func (s *session) endReason(err error) string {
	if why := s.closedFor.Load(); why != nil {
		return *why
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("no frame from the agent for %s (3 heartbeat intervals of %s plus a grace)",
			api.LivenessTimeout(time.Duration(s.interval.Load())), time.Duration(s.interval.Load()))
	case errors.Is(err, io.EOF):
		return "the agent closed the session"
	}
	return err.Error()
}

// close ends the session from the coordinator's side.
func (s *session) close() { s.closeFor("closed by the coordinator") }

// closeFor closes the session and keeps the first reason given, which is
// how the session is said to have ended.
func (s *session) closeFor(reason string) {
	s.closedFor.CompareAndSwap(nil, &reason)
	s.wmu.Lock()
	s.closed = true
	s.wbuf = nil
	s.wmu.Unlock()
	s.conn.Close()
}

// sendBye tells a peer why its session is refused and closes it.
func (c *Coordinator) sendBye(conn net.Conn, e *api.Error) {
	b, _ := api.AppendFrame(nil, api.FrameBye, api.Bye{Reason: e.Message, Error: e})
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	conn.Write(b)
	conn.Close()
}

// heartbeatSpacing is the coordinator's heartbeat budget: at most one per
// this much time, about 2,000 heartbeats (and as many answers) per second.
const heartbeatSpacing = time.Second / 2000

// heartbeatInterval stretches the base interval for big clusters so the
// coordinator processes at most one heartbeat per c.hbSpacing. Callers
// hold c.mu.
func (c *Coordinator) heartbeatInterval(nodes int) time.Duration {
	base := c.cfg.HeartbeatInterval.D()
	if scaled := time.Duration(nodes) * c.hbSpacing; scaled > base {
		return scaled
	}
	return base
}

// outputQueued counts output bytes read from the agent and queued for the
// store.
func (s *session) outputQueued(n int) { s.outPending.Add(int64(n)) }

// outputStored counts queued output as stored and wakes a waiting reader.
func (s *session) outputStored(n int) {
	if s.outPending.Add(-int64(n)) <= int64(s.c.cfg.Limits.SessionQueueBytes) {
		select {
		case s.outDrained <- struct{}{}:
		default:
		}
	}
}

// waitOutputStored holds the reader while the agent's output waiting for
// the store is over session_queue_bytes: the agent then waits on TCP,
// instead of the coordinator buffering without bound.
func (s *session) waitOutputStored() {
	limit := int64(s.c.cfg.Limits.SessionQueueBytes)
	if limit <= 0 || s.outPending.Load() <= limit {
		return
	}
	s.c.metrics.SessionLimits.WithLabelValues("session_queue_bytes", "paused").Inc()
	for s.outPending.Load() > limit {
		select {
		case <-s.outDrained:
		case <-time.After(time.Second): // the store may have failed: check again
		}
	}
}

// readFrame reads the agent's next frame within max_frame_bytes.
func (c *Coordinator) readFrame(conn net.Conn, hdr []byte) (api.FrameType, []byte, error) {
	t, body, err := api.ReadFrameLimit(conn, hdr, c.cfg.Limits.MaxFrameBytes)
	var tooLarge *api.FrameTooLargeError
	if errors.As(err, &tooLarge) {
		c.metrics.SessionLimits.WithLabelValues("max_frame_bytes", "closed").Inc()
		return t, nil, api.Errorf(api.CodeFrameTooLarge, "upgrade the agent (it splits output into smaller frames); an admin can raise max_frame_bytes",
			"frame %d is %d bytes, over max_frame_bytes (%d bytes)", tooLarge.Type, tooLarge.Size, tooLarge.Limit)
	}
	return t, body, err
}

// runSession serves one agent from its hello until the stream ends.
func (c *Coordinator) runSession(conn net.Conn, peer transport.Peer) {
	if c.follower() {
		// Only the leader holds the job system; TLS sessions on a
		// follower are relayed before they get here, plaintext ones are not.
		c.sendBye(conn, api.Errorf(api.CodeUnavailable, "the agent fails over to another coordinator on its own; a plaintext agent must point at the leader's plaintext listener (`ward status` shows the leader)",
			"coordinator %s does not lead the cluster, so it cannot serve this session itself", c.memberID()))
		return
	}
	s := &session{c: c, conn: conn, node: peer.ID.Name, peer: peer, link: peer.Link, done: make(chan struct{}), outDrained: make(chan struct{}, 1)}
	s.upgradeErr.Store("")
	defer close(s.done)
	hdr := make([]byte, 5)
	conn.SetReadDeadline(time.Now().Add(helloTimeout))
	t, body, err := c.readFrame(conn, hdr)
	var tooLarge *api.Error
	if errors.As(err, &tooLarge) {
		c.log.Warn("agent session refused", "node", s.node, "peer_addr", conn.RemoteAddr().String(), "code", string(tooLarge.Code), "reason", tooLarge.Message)
		c.sendBye(conn, tooLarge)
		return
	}
	if err != nil || t != api.FrameHello {
		c.connLog("agent session refused", "node", s.node, "peer_addr", conn.RemoteAddr().String(), "reason", "no hello", "err", err)
		conn.Close()
		return
	}
	var hello api.Hello
	if err := api.DecodeFrame(t, body, &hello); err != nil {
		c.sendBye(conn, api.Errorf(api.CodeInvalidArgument, "upgrade the agent to this coordinator's version", "bad hello: %v", err))
		return
	}
	if hello.InsecureSkipVerify && s.link == transport.LinkYes {
		s.link = transport.LinkPartly
	}
	s.revocation = hello.Revocation
	s.account, s.runAsUser = hello.Account, hello.RunAsUser
	if err := c.openSession(s, &hello); err != nil {
		c.sendBye(conn, api.AsError(err))
		return
	}
	var ended string
	defer func() { c.endSession(s, ended) }()
	for {
		s.waitOutputStored()
		s.setReadDeadline()
		t, body, err := c.readFrame(conn, hdr)
		if err != nil {
			ended = s.endReason(err)
			var limit *api.Error
			switch {
			case errors.As(err, &limit):
				c.log.Warn("agent session closed", "node", s.node, "code", string(limit.Code), "reason", limit.Message, "fix", limit.Fix)
				c.sendBye(conn, limit)
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				c.connLog("agent session ended", "node", s.node, "reason", ended, "err", err)
			}
			return
		}
		s.lastSeen.Store(time.Now().UnixNano())
		if err := c.handleFrame(s, t, body); err != nil {
			c.log.Warn("agent session protocol error", "node", s.node, "frame", t, "err", err)
			return
		}
	}
}

// openSession registers the session, reconciles what the agent runs, and
// answers with Welcome. Results the agent carried are acknowledged once
// durable.
func (c *Coordinator) openSession(s *session, h *api.Hello) error {
	now := c.now()
	s.lastSeen.Store(now.UnixNano())
	s.skew.Store(int64(h.Time.Sub(now)))
	c.mu.Lock()
	rec, ok := c.nodes[s.node]
	if !ok || rec.Revoked {
		c.mu.Unlock()
		return api.Errorf(api.CodeCertRevoked, "join again with a new token", "node %s is not registered (or was revoked)", s.node)
	}
	if old := c.sessions[s.node]; old != nil {
		c.connLog("agent reconnected; closing its previous session", "node", s.node)
		old.replaced.Store(true)
		old.closeFor("replaced by a new session from the same agent")
	}
	c.sessions[s.node] = s
	c.sessionHistory(s.node).opened(now)
	c.metrics.Sessions.WithLabelValues(string(s.link)).Inc()
	if t := c.lostTimers[s.node]; t != nil {
		t.Stop()
		delete(c.lostTimers, s.node)
	}
	if h.Slots > 0 {
		rec.Slots = h.Slots
	}
	rec.Labels = h.Labels
	rec.Version = h.WardVersion
	profilePush := c.openProfileLocked(rec, h)
	if h.Memory >= 0 && h.Memory <= api.MaxTaskMemory {
		rec.Memory = h.Memory
	}
	sn := c.cl.UpsertNode(s.node, effectiveSlots(rec), effectiveLabels(rec))
	sn.Memory = rec.Memory
	sn.Connected = true
	sn.Drain = rec.Drain
	acks := c.applyResultsLocked(s.node, h.Finished)
	running := make([]sched.Ref, len(h.Running))
	for i, r := range h.Running {
		running[i] = sched.RefOf(r)
	}
	lost, kill := c.cl.Reconcile(s.node, running, now)
	c.metrics.Tasks.WithLabelValues("lost").Add(float64(len(lost)))
	var cancelNow []api.AttemptRef
	for _, r := range running {
		c.cl.Started(s.node, r, now)
		if c.cl.CancelPending(r) {
			cancelNow = append(cancelNow, r.APIRef())
		}
	}
	var endedJobs []string // environments the agent holds for jobs that ended
	for _, id := range h.Envs {
		if j, ok := c.cl.Job(id); !ok || j.Terminal() {
			endedJobs = append(endedJobs, id)
		}
	}
	ch := c.changesLocked()
	ch.add(putJSON(nodeKey(s.node), rec))
	s.interval.Store(int64(c.heartbeatInterval(len(c.nodes))))
	c.mu.Unlock()

	welcome := api.Welcome{Node: s.node, HeartbeatInterval: api.Duration(s.interval.Load()), Time: now, Drain: rec.Drain, BundlePEM: c.clientBundle().PEM(),
		ClusterAddrs: c.clusterAddrs(), CRLsPEM: c.crlsPEM(), ResultAccounts: true}
	for _, r := range kill {
		welcome.Cancel = append(welcome.Cancel, r.APIRef())
	}
	welcome.EndedJobs = endedJobs
	s.send(api.FrameWelcome, welcome)
	if len(cancelNow) > 0 {
		s.send(api.FrameCancel, api.Cancel{Refs: cancelNow, Reason: "the job was canceled while the agent was away", EndReason: api.EndCanceled})
	}
	if profilePush != nil {
		s.send(api.FrameProfile, profilePush)
	}
	if s.link == transport.LinkNo && c.wantsUpgrade(s.node) {
		s.send(api.FrameUpgradeTLS, api.UpgradeTLS{ClusterAddrs: welcome.ClusterAddrs})
	}
	if d := c.catchUpDelay(s.peer.Cert); d > 0 {
		// A CA rotation moved on while this agent was away.
		s.send(api.FrameRenewNow, api.RenewNow{Delay: api.Duration(d)})
	}
	c.commit(ch, func() {
		if len(acks) > 0 {
			s.send(api.FrameAck, api.Ack{Refs: acks})
		}
	})
	c.connLog("agent session open", "node", s.node, "version", h.WardVersion, "link", string(s.link), "tls", transport.VersionName(s.peer.TLSVersion),
		"running", len(h.Running), "results_carried", len(h.Finished), "lost", len(lost), "kill", len(kill))
	if s.link != transport.LinkYes {
		c.log.Warn("INSECURE link", "node", s.node, "link", string(s.link), "reason", "the agent does not verify the coordinator (insecure_skip_verify)", "fix", "remove --insecure-skip-verify on the agent")
	}
	c.audit.Record(audit.Event{Type: "session.open", Actor: s.peer.ID.String(), Detail: map[string]string{"link": string(s.link), "addr": s.conn.RemoteAddr().String()}})
	c.poke()
	return nil
}

// endSession marks the node disconnected and starts its lost timer.
// reason says how the session ended, for `ward doctor`.
func (c *Coordinator) endSession(s *session, reason string) {
	s.close()
	c.metrics.Sessions.WithLabelValues(string(s.link)).Dec()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[s.node] != s {
		// A newer session replaced this one, or a revocation removed it.
		if s.replaced.Load() {
			c.sessionHistory(s.node).ended(c.now(), "replaced by a new session from the same agent before this one was seen to end (the agent had given up on it)")
		}
		return
	}
	c.sessionHistory(s.node).ended(c.now(), reason)
	delete(c.sessions, s.node)
	if n, ok := c.cl.Node(s.node); ok {
		n.Connected = false
		if n.Running() > 0 {
			c.startLostTimerLocked(s.node)
		}
	}
	c.connLog("agent disconnected", "node", s.node, "lost_after", c.cfg.NodeLostTimeout.D().String())
}

// startLostTimerLocked declares the node's tasks lost if it stays away for
// NodeLostTimeout. Callers hold c.mu.
func (c *Coordinator) startLostTimerLocked(node string) {
	if t := c.lostTimers[node]; t != nil {
		t.Stop()
	}
	c.lostTimers[node] = time.AfterFunc(c.cfg.NodeLostTimeout.D(), func() {
		c.mu.Lock()
		if c.sessions[node] != nil {
			c.mu.Unlock()
			return
		}
		delete(c.lostTimers, node)
		refs := c.cl.NodeLost(node, "agent lost: no session for "+c.cfg.NodeLostTimeout.D().String(), c.now())
		c.metrics.Tasks.WithLabelValues("lost").Add(float64(len(refs)))
		ch := c.changesLocked()
		c.mu.Unlock()
		if len(refs) > 0 {
			c.log.Warn("node lost; its tasks are requeued within their retry limits", "node", node, "attempts", len(refs))
		}
		c.commit(ch, nil)
		c.poke()
	})
}

func (c *Coordinator) handleFrame(s *session, t api.FrameType, body []byte) error {
	switch t {
	case api.FrameHeartbeat:
		var hb api.Heartbeat
		if err := api.DecodeFrame(t, body, &hb); err != nil {
			return err
		}
		now := c.now()
		s.skew.Store(int64(hb.Time.Sub(now)))
		c.metrics.HeartbeatLag.Observe(max(now.Sub(hb.Time), 0).Seconds())
		s.usedSlots.Store(int32(hb.UsedSlots))
		// Answered, so an idle agent hears from the coordinator at the
		// interval it heartbeats at and can tell a live session from a
		// dead one.
		s.sendRaw(heartbeatAckFrame)
	case api.FrameStarted:
		var m api.Started
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		c.mu.Lock()
		for _, r := range m.Refs {
			c.cl.Started(s.node, sched.RefOf(r.AttemptRef), r.At.Time())
		}
		c.mu.Unlock()
	case api.FrameOutput:
		var m api.Output
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		c.recordOutput(s, m.Chunks)
	case api.FrameResults:
		var m api.Results
		if err := api.DecodeFrame(t, body, &m); err != nil {
			return err
		}
		// Results free slots: place work on them in the same critical
		// section, so results and new assignments share one commit.
		c.mu.Lock()
		acks := c.applyResultsLocked(s.node, m.Results)
		pl := c.placeLocked()
		ch := c.changesLocked()
		c.mu.Unlock()
		frames := pl.frames(c)
		c.commit(ch, func() {
			s.send(api.FrameAck, api.Ack{Refs: acks})
			frames.send()
		})
	case api.FrameProfileResult:
		c.profileResult(s, body)
	default:
		c.handleLifecycleFrame(s, t, body)
	}
	return nil
}

// applyResultsLocked records results and returns the refs to acknowledge.
func (c *Coordinator) applyResultsLocked(node string, results []api.TaskResult) []api.AttemptRef {
	acks := make([]api.AttemptRef, 0, len(results))
	// Counted per batch: one metric lookup per end state, not per result.
	var completed, failed int
	account := ""
	if s := c.sessions[node]; s != nil {
		account = s.account
	}
	for _, r := range results {
		if r.Account == "" {
			r.Account = account // the agent's own account ran it
		}
		outcome := c.cl.Result(node, r)
		if outcome == sched.Recorded {
			switch {
			case r.Reason == api.EndExited && r.ExitCode == 0:
				completed++
			case r.Reason == api.EndExited:
				failed++
			default:
				c.metrics.Tasks.WithLabelValues(r.Reason).Inc()
				if r.Reason == api.EndStagingFailed && strings.HasPrefix(r.Error, string(api.CodeChecksumMismatch)) {
					c.auditAgentMismatch(node, r)
				}
			}
		}
		switch outcome {
		case sched.Rejected:
			c.log.Warn("result refused: the attempt is unknown or belongs to another node", "node", node, "job", r.Job, "task", r.Task, "attempt", r.Attempt)
			// Acknowledged anyway so the agent stops resending it.
		case sched.LateLost:
			c.log.Info("late result recorded on a lost attempt", "node", node, "job", r.Job, "task", r.Task, "attempt", r.Attempt)
		}
		acks = append(acks, r.AttemptRef)
	}
	if completed > 0 {
		c.metrics.Tasks.WithLabelValues("completed").Add(float64(completed))
	}
	if failed > 0 {
		c.metrics.Tasks.WithLabelValues("failed").Add(float64(failed))
	}
	return acks
}

// closeSessions ends every session (at shutdown).
func (c *Coordinator) closeSessions(reason string) {
	c.mu.Lock()
	all := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		all = append(all, s)
	}
	for _, t := range c.lostTimers {
		t.Stop()
	}
	c.mu.Unlock()
	for _, s := range all {
		s.send(api.FrameBye, api.Bye{Reason: reason})
		s.closeFor(reason)
	}
}

// handleLifecycleFrame is where certificate lifecycle frames arrive.
func (c *Coordinator) handleLifecycleFrame(s *session, t api.FrameType, body []byte) {
	switch t {
	case api.FrameRenewRequest:
		go c.renewOverSession(s, body)
	case api.FrameUpgradeResult:
		var m api.UpgradeResult
		if api.DecodeFrame(t, body, &m) == nil {
			s.upgradeErr.Store(m.Error)
			c.log.Warn("an agent could not move to TLS and stays on plaintext", "node", s.node, "verdict", m.Verdict, "err", m.Error)
			c.audit.Record(audit.Event{Type: "migrate.upgrade_failed", Actor: s.peer.ID.String(), Result: m.Verdict, Detail: map[string]string{"error": m.Error}})
		}
	default:
		c.log.Debug("ignoring frame", "node", s.node, "frame", t)
	}
}

// heartbeatLoop stretches live sessions' heartbeat intervals as the fleet
// grows, so the coordinator keeps to about 2,000 heartbeats per second
// however many agents joined after a session opened.
func (c *Coordinator) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		want := c.heartbeatInterval(len(c.nodes))
		var stale []*session
		for _, s := range c.sessions {
			if time.Duration(s.interval.Load()) < want*4/5 {
				stale = append(stale, s)
			}
		}
		c.mu.Unlock()
		if len(stale) == 0 {
			continue
		}
		b, err := api.AppendFrame(nil, api.FrameSettings, api.Settings{HeartbeatInterval: api.Duration(want)})
		if err != nil {
			continue
		}
		for _, s := range stale {
			s.interval.Store(int64(want))
			// The read in progress waits by the old interval: give it the
			// new one, or an agent that now heartbeats less often would be
			// taken for dead.
			s.conn.SetReadDeadline(time.Now().Add(api.LivenessTimeout(want)))
			s.sendRaw(b)
		}
		c.log.Info("stretched heartbeat intervals for a larger fleet", "sessions", len(stale), "interval", want.String())
	}
}
