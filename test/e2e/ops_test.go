package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/buildinfo"
)

// buildRelease builds ward as packaging/build.sh does, with the version,
// commit and date set at link time.
func buildRelease(t *testing.T, version, commit, date string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ward-"+version)
	const pkg = "github.com/wardcluster/ward/internal/buildinfo"
	ld := "-X " + pkg + ".version=" + version + " -X " + pkg + ".commit=" + commit + " -X " + pkg + ".date=" + date
	cmd := exec.Command("go", "build", "-ldflags", ld, "-o", bin, "../../cmd/ward")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ward %s: %v\n%s", version, err, out)
	}
	return bin
}

func runBin(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return string(out)
}

// TestReleaseVersionsAcrossTheCluster runs a 0.9.0 coordinator with a
// 0.8.0 agent and a 0.9.0 agent: `ward version` shows what the build set,
// status and the node list report every version, and doctor warns about
// the older agent only.
func TestReleaseVersionsAcrossTheCluster(t *testing.T) {
	const commit = "c0ffee0123456789abcdef0123456789abcdef01"
	v090 := buildRelease(t, "0.9.0", commit, "2025-06-01T12:00:00Z")
	v080 := buildRelease(t, "0.8.0", "0ld0000000000000000000000000000000000000", "2025-01-01T12:00:00Z")

	var in buildinfo.Info
	if err := json.Unmarshal([]byte(runBin(t, v090, "version", "-o", "json")), &in); err != nil {
		t.Fatal(err)
	}
	if in.Version != "0.9.0" || in.Commit != commit || in.Date != "2025-06-01T12:00:00Z" || !strings.HasPrefix(in.GoVersion, "go1.") {
		t.Fatalf("ward version -o json = %+v", in)
	}
	text := runBin(t, v090, "version")
	for _, want := range []string{"ward 0.9.0", "commit:    " + commit, "built:     2025-06-01T12:00:00Z", "go:        go1."} {
		if !strings.Contains(text, want) {
			t.Errorf("ward version does not show %q:\n%s", want, text)
		}
	}
	if line := runBin(t, v090, "--version"); !strings.HasPrefix(line, "ward 0.9.0 (commit c0ffee012345), built 2025-06-01T12:00:00Z, go1.") {
		t.Errorf("ward --version = %q", line)
	}

	c := newClusterBin(t, v090)
	c.startAgentBin(v080, "old", 1)
	c.startAgentBin(v090, "same", 1)

	certFile, keyFile := certAndKey(t, c)
	resp, err := c.httpClient(certFile, keyFile).Get("https://" + c.cluster + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Coordinators) != 1 || st.Coordinators[0].Version != "0.9.0" || st.Coordinators[0].Commit != commit || st.Version != "0.9.0" {
		t.Errorf("status coordinators = %+v, version %q", st.Coordinators, st.Version)
	}
	if len(st.AgentVersions) != 2 || st.AgentVersions["0.8.0"] != 1 || st.AgentVersions["0.9.0"] != 1 {
		t.Errorf("status agent_versions = %v", st.AgentVersions)
	}
	versions := map[string]string{}
	for _, n := range c.nodes() {
		versions[n.Name] = n.Version
	}
	if versions["old"] != "0.8.0" || versions["same"] != "0.9.0" {
		t.Errorf("node versions = %v", versions)
	}

	out, _, code := c.ward("doctor", "-o", "json")
	if code != 1 {
		t.Errorf("doctor exit = %d, want 1 for the outdated agent", code)
	}
	var rep api.DoctorReport
	json.Unmarshal([]byte(out), &rep)
	var outdated []api.Finding
	for _, f := range rep.Findings {
		if strings.HasPrefix(f.Code, "AGENT_") {
			outdated = append(outdated, f)
		}
	}
	if len(outdated) != 1 || outdated[0].Code != "AGENT_OUTDATED" || outdated[0].Severity != api.SeverityWarning ||
		!strings.Contains(outdated[0].Finding, "agent old runs Ward 0.8.0, older than the coordinator's 0.9.0") || !strings.Contains(outdated[0].Fix, "0.9.0") {
		t.Errorf("doctor's version findings = %+v", outdated)
	}
}

// TestRolesFromConfigFiles runs a coordinator and an agent the way the
// systemd units do, from config files: JSON logs, connection lines at
// debug, and an agent that joins from join_file and later starts without
// it.
func TestRolesFromConfigFiles(t *testing.T) {
	dir := t.TempDir()
	coordCfg := filepath.Join(dir, "coordinator.json")
	os.WriteFile(coordCfg, []byte(`{"version": 1, "log_format": "json", "connection_log_level": "debug", "heal_grace": "48h"}`), 0o644)
	c := newCluster(t, "--config", coordCfg)

	joinFile := c.writeJoinFile(c.token())
	agentData := filepath.Join(dir, "agent-data")
	agentCfg := filepath.Join(dir, "agent.json")
	os.WriteFile(agentCfg, []byte(`{"version": 1, "data_dir": "`+agentData+`", "join_file": "`+joinFile+`", "name": "fromfile", "slots": 2, "labels": {"rack": "r1"}, "log_format": "json"}`), 0o644)
	start := func(n int) *proc {
		p := startProc(t, dir, "agent-fromfile-"+string(rune('0'+n)), nil, "agent", "--config", agentCfg)
		waitFor(t, 20*time.Second, "the agent from its config file", func() bool {
			if !p.running() {
				t.Fatalf("agent exited: %s", p.stderrText())
			}
			nd, ok := c.node("fromfile")
			return ok && nd.State == "ready" && nd.Slots == 2 && nd.Labels["rack"] == "r1"
		})
		return p
	}
	a := start(1)
	a.interrupt()
	a.wait(20 * time.Second)
	os.Remove(joinFile) // a service keeps naming join_file; once joined it is not read
	a = start(2)
	c.mustWard("run", "--count", "2", "--", "true")

	for name, p := range map[string]*proc{"coordinator": c.coord, "agent": a} {
		records := 0
		for _, l := range lines(p.stderrText()) {
			if !strings.HasPrefix(l, "{") {
				continue // the coordinator's human-readable banner
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Errorf("%s log line is not JSON: %q", name, l)
				continue
			}
			records++
			if m["msg"] == "connection accepted" || m["msg"] == "agent session open" {
				t.Errorf("%s logged a connection line at %v with connection_log_level debug: %q", name, m["level"], l)
			}
		}
		if records == 0 {
			t.Errorf("%s wrote no JSON log records:\n%s", name, p.stderrText())
		}
	}
	if !strings.Contains(c.coord.stderrText(), `"msg":"coordinator starting"`) {
		t.Errorf("the coordinator did not log its start with its version:\n%s", c.coord.stderrText())
	}
}
