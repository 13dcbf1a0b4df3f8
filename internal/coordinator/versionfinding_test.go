package coordinator

import "testing"

func TestAgentVersionFinding(t *testing.T) {
	tests := []struct {
		name, agent, coord string
		wantCode, wantSev  string
	}{
		{"same", "0.9.0", "0.9.0", "", ""},
		{"same spelled with v", "v0.9.0", "0.9.0", "", ""},
		{"older", "0.8.5", "0.9.0", "AGENT_OUTDATED", "warning"},
		{"older prerelease", "0.9.0-rc.1", "0.9.0", "AGENT_OUTDATED", "warning"},
		{"too old to say", "", "0.9.0", "AGENT_OUTDATED", "warning"},
		{"newer", "0.10.0", "0.9.0", "AGENT_NEWER", "info"},
		{"development builds", "devel", "0.9.0", "AGENT_VERSION_DIFFERS", "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := agentVersionFinding("n1", tt.agent, tt.coord)
			if ok != (tt.wantCode != "") || f.Code != tt.wantCode || f.Severity != tt.wantSev {
				t.Fatalf("finding = %+v (reported %v), want code %q severity %q", f, ok, tt.wantCode, tt.wantSev)
			}
			if ok && (f.Fix == "" || f.Finding == "") {
				t.Errorf("finding without text or fix: %+v", f)
			}
		})
	}
}
