package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
)

func TestDoctorAndAudit(t *testing.T) {
	c := newCluster(t)
	c.startAgent("ok", 1)
	if out, _, code := c.ward("doctor"); code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("a healthy cluster: exit %d\n%s", code, out)
	}

	c2 := newCluster(t, "--min-tls", "1.2", "--user-cert-lifetime", "2h")
	c2.startAgent("skip", 1, "--insecure-skip-verify")
	c2.token("--uses", "50", "--ttl", "72h")
	skewed := newScriptedAgent(t, c2, "skewed")
	skewed.connect(api.Hello{Time: time.Now().Add(10 * time.Minute)})
	key := filepath.Join(c2.data, "pki", "coordinator.key")
	os.Chmod(key, 0o644)
	defer os.Chmod(key, 0o600)

	out, _, code := c2.ward("doctor")
	if code != 1 {
		t.Fatalf("doctor exit %d with findings:\n%s", code, out)
	}
	var rep api.DoctorReport
	c2.ward("doctor", "-o", "json")
	outJSON, _, _ := c2.ward("doctor", "-o", "json")
	if err := jsonUnmarshal(outJSON, &rep); err != nil {
		t.Fatal(err)
	}
	have := map[string]api.Finding{}
	for _, f := range rep.Findings {
		have[f.Code] = f
		if f.Fix == "" || f.Severity == "" {
			t.Errorf("finding without severity or fix: %+v", f)
		}
	}
	for code, sev := range map[string]string{
		"TLS12_ALLOWED": "warning", "INSECURE_SKIP_VERIFY": "critical", "TOKEN_BROAD": "warning",
		"CLOCK_SKEW": "critical", "KEY_PERMISSIONS": "critical", "CERT_EXPIRING": "info",
	} {
		if f, ok := have[code]; !ok || f.Severity != sev {
			t.Errorf("finding %s: %+v (want severity %s)\n%s", code, f, sev, out)
		}
	}
	if !strings.Contains(have["KEY_PERMISSIONS"].Fix, "chmod 600 "+key) || !strings.Contains(have["CLOCK_SKEW"].Finding, "skewed") {
		t.Errorf("findings lack their detail: %+v", rep.Findings)
	}

	// The audit log, through the CLI.
	var events []audit.Event
	c2.wardJSON(&events, "audit", "--type", "token")
	if len(events) == 0 || events[0].Type != "token.create" || events[0].Actor != "spiffe://ward/user/admin" {
		t.Fatalf("audit --type token: %+v", events)
	}
	c2.wardJSON(&events, "audit", "--since", "1h")
	types := map[string]bool{}
	for _, e := range events {
		types[e.Type] = true
	}
	for _, want := range []string{"ca.create", "token.create", "join", "cert.issue", "session.open"} {
		if !types[want] {
			t.Errorf("audit log lacks %s events (have %v)", want, types)
		}
	}
	if table := c2.mustWard("audit", "--type", "join"); !strings.Contains(table, "join") || !strings.Contains(table, "ok") {
		t.Errorf("audit table:\n%s", table)
	}
	if _, errOut, code := c2.ward("audit", "--since", "yesterday"); code == 0 || !strings.Contains(errOut, "RFC 3339") {
		t.Errorf("a bad --since: %s", errOut)
	}
}
