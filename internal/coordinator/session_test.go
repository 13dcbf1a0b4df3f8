package coordinator

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/agent"
	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
)

// startTestCluster runs an in-process coordinator with base heartbeat
// interval hb and one joined agent, and waits for the agent's session.
func startTestCluster(t *testing.T, hb time.Duration) (*Coordinator, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.CoordinatorDefaults()
	cfg.DataDir = filepath.Join(dir, "coord")
	cfg.ClusterAddr, cfg.PublicAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Advertise = []string{"127.0.0.1"}
	cfg.HeartbeatInterval = config.Duration(hb)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := New(cfg, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })

	tok, err := c.CreateToken(ctx, c.LocalAdmin(), api.TokenCreate{TTL: api.Duration(time.Minute), Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	acfg := config.AgentDefaults()
	acfg.DataDir = filepath.Join(dir, "agent")
	acfg.Name, acfg.Slots = "a1", 1
	a, err := agent.New(ctx, acfg, agent.Options{Logger: quiet, JoinString: tok.Join})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { a.Run(actx); close(ran) }()
	t.Cleanup(func() { acancel(); <-ran })
	waitUntil(t, 20*time.Second, "the agent's session", func() bool { return c.liveSession("a1") != nil })
	return c, "a1"
}

func (c *Coordinator) liveSession(node string) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[node]
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A stretched heartbeat interval (a fleet that grew) must not cost idle
// sessions: the read already waiting by the old, short interval is given
// the new one, and the agent is answered at the new interval.
func TestStretchedHeartbeatKeepsIdleSessions(t *testing.T) {
	c, node := startTestCluster(t, 100*time.Millisecond)
	first := c.liveSession(node)

	// Stretch the budget so that this one node alone gets 3 s: longer than
	// the liveness timeout of the 100 ms interval the session opened with.
	const stretched = 3 * time.Second
	if old := api.LivenessTimeout(100 * time.Millisecond); stretched <= old {
		t.Fatalf("test assumption: the stretched interval %s must exceed the old liveness timeout %s", stretched, old)
	}
	c.mu.Lock()
	c.hbSpacing = stretched
	c.mu.Unlock()
	waitUntil(t, 10*time.Second, "the coordinator to stretch the session's interval", func() bool {
		return time.Duration(first.interval.Load()) == stretched
	})

	// Two stretched intervals: the old timeout passes twice over, and the
	// agent heartbeats (and is answered) at the new interval.
	time.Sleep(2 * stretched)
	if got := c.liveSession(node); got != first {
		t.Fatalf("the session was replaced after the stretch (reconnects: %d)", c.reconnects(node))
	}
	if n := c.reconnects(node); n != 0 {
		t.Fatalf("%d reconnects after the stretch, want 0", n)
	}
}

func (c *Coordinator) reconnects(node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.histories[node].recent(c.now())
}

// The doctor names an agent that keeps reconnecting, with how its last
// session ended, and says nothing of one that reconnected once.
func TestDoctorReportsRepeatedReconnects(t *testing.T) {
	c, node := startTestCluster(t, 100*time.Millisecond)
	kick := func() {
		s := c.liveSession(node)
		s.close()
		waitUntil(t, 20*time.Second, "the agent to reconnect", func() bool {
			n := c.liveSession(node)
			return n != nil && n != s
		})
	}
	flapping := func() *api.Finding {
		t.Helper()
		fs, err := c.doctor(context.Background(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.Code == "SESSION_FLAPPING" {
				return &f
			}
		}
		return nil
	}
	kick()
	if f := flapping(); f != nil {
		t.Fatalf("one reconnect reported as flapping: %+v", f)
	}
	kick()
	kick()
	f := flapping()
	if f == nil {
		t.Fatalf("3 reconnects in a row, no SESSION_FLAPPING finding")
	}
	if f.Severity != api.SeverityWarning || f.Fix == "" {
		t.Errorf("finding %+v: want a warning with a fix", f)
	}
	for _, want := range []string{"agent " + node, "reconnected 3 times", "closed by the coordinator"} {
		if !strings.Contains(f.Finding, want) {
			t.Errorf("finding %q does not say %q", f.Finding, want)
		}
	}
}
