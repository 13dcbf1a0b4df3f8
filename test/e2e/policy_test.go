package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// breakCRLSource points an agent's public address at a closed port and
// drops its cached CRLs, so it cannot learn the revocation status.
func breakCRLSource(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "agent.json")
	b, _ := os.ReadFile(path)
	var st map[string]any
	json.Unmarshal(b, &st)
	st["public_addrs"] = []string{"127.0.0.1:1"}
	b, _ = json.Marshal(st)
	os.WriteFile(path, b, 0o644)
	os.Remove(filepath.Join(dir, "crls.pem"))
}

func TestRevocationPolicyAndAgentPins(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 1)
	if n, _ := c.node("a"); n.Revocation != "checked" {
		t.Fatalf("a healthy agent's revocation status: %q", n.Revocation)
	}
	c.agents["a"].kill9()
	breakCRLSource(t, c.agentDir("a"))

	// hard: refuses, naming "revocation status unavailable".
	p := startProc(t, c.dir, "agent-a-hard", nil, "agent", "--data", c.agentDir("a"), "--revocation-policy", "hard")
	waitFor(t, 15*time.Second, "the hard-policy agent to refuse", func() bool {
		return strings.Contains(p.stderrText(), "revocation status unavailable") && strings.Contains(p.stderrText(), "revocation_policy is hard")
	})
	if n, _ := c.node("a"); n.Connected {
		t.Fatal("a hard-policy agent connected without revocation status")
	}
	p.kill9()
	// soft: connects, warns, and the coordinator shows it.
	q := c.startAgent("a", 1, "--revocation-policy", "soft")
	if n, _ := c.node("a"); n.Revocation != "unavailable" {
		t.Fatalf("soft policy: node shows revocation %q", n.Revocation)
	}
	if !strings.Contains(q.stderrText(), "revocation status unavailable") {
		t.Fatal("the soft-policy agent does not warn")
	}
	if out, _, _ := c.ward("doctor"); !strings.Contains(out, "REVOCATION_UNAVAILABLE") {
		t.Fatalf("doctor does not report it:\n%s", out)
	}

	// Agent --pin applies to the agent's connections: a wrong pin refuses
	// the coordinator, naming both pins; the right one (in any case and
	// with colons) connects.
	c.agents["a"].kill9()
	other := pki.SPKIPin(mustRoot(t)).String()
	r := startProc(t, c.dir, "agent-a-pin", nil, "agent", "--data", c.agentDir("a"), "--pin", other)
	waitFor(t, 15*time.Second, "the pinned agent to refuse", func() bool {
		return strings.Contains(r.stderrText(), "verdict=pin_mismatch") && strings.Contains(r.stderrText(), other)
	})
	r.kill9()
	good := readContext(t, c.ctxPath).Pins[0]
	hexPin := strings.TrimPrefix(good, "sha256:")
	var colons []string
	for i := 0; i < len(hexPin); i += 2 {
		colons = append(colons, strings.ToUpper(hexPin[i:i+2]))
	}
	c.startAgent("a", 1, "--pin", other, "--pin", strings.Join(colons, ":"))
}
