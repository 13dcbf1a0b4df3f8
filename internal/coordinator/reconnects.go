package coordinator

import (
	"fmt"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// Reconnect tracking: an agent whose sessions keep ending and reopening is
// reported by `ward doctor`, with how its last session ended.
const (
	// reconnectWindow is how far back reconnects count.
	reconnectWindow = 10 * time.Minute
	// flappingReconnects within reconnectWindow make a doctor finding.
	flappingReconnects = 3
)

// sessionHistory is one node's recent sessions, in memory only (a
// coordinator restart starts it over, and the reconnect that a restart
// causes is not counted).
type sessionHistory struct {
	everOpened bool
	reconnects []time.Time // opens after the first since start, oldest first
	lastEnd    string      // how the last session ended
	lastEndAt  time.Time
}

// sessionHistory returns node's history, creating it. Callers hold c.mu.
func (c *Coordinator) sessionHistory(node string) *sessionHistory {
	h := c.histories[node]
	if h == nil {
		h = &sessionHistory{}
		c.histories[node] = h
	}
	return h
}

func (h *sessionHistory) opened(now time.Time) {
	if h.everOpened {
		h.reconnects = append(h.prune(now), now)
	}
	h.everOpened = true
}

func (h *sessionHistory) ended(now time.Time, reason string) {
	h.lastEnd, h.lastEndAt = reason, now
}

// prune drops reconnects older than the window and returns the rest.
func (h *sessionHistory) prune(now time.Time) []time.Time {
	cut := 0
	for cut < len(h.reconnects) && now.Sub(h.reconnects[cut]) > reconnectWindow {
		cut++
	}
	h.reconnects = h.reconnects[cut:]
	return h.reconnects
}

// recent is how many times the node reconnected within the window.
func (h *sessionHistory) recent(now time.Time) int {
	if h == nil {
		return 0
	}
	return len(h.prune(now))
}

// flappingFinding reports a node that reconnected repeatedly; ok is false
// when it did not. Callers hold c.mu.
func (c *Coordinator) flappingFinding(node string, now time.Time) (api.Finding, bool) {
	h := c.histories[node]
	n := h.recent(now)
	if n < flappingReconnects {
		return api.Finding{}, false
	}
	finding := fmt.Sprintf("agent %s reconnected %d times in the last %s", node, n, reconnectWindow)
	if h.lastEnd != "" {
		finding += fmt.Sprintf("; its last session ended %s ago: %s", now.Sub(h.lastEndAt).Round(time.Second), h.lastEnd)
	}
	return api.Finding{
		Severity: api.SeverityWarning,
		Code:     "SESSION_FLAPPING",
		Finding:  finding,
		Fix: "read the agent's log for why it left (\"coordinator went silent\", \"cannot reach coordinator\"): something between the two hosts " +
			"(a firewall or NAT that drops idle connections, a flaky link) or an overloaded coordinator; keep heartbeat_interval below any idle timeout in between",
	}, true
}
