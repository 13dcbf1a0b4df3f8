package agent_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentDoesNotImportServerSide keeps the role boundary: the agent never
// links the coordinator, the store or the web UI.
func TestAgentDoesNotImportServerSide(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/wardcluster/ward/internal/agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/wardcluster/ward/internal/coordinator",
		"github.com/wardcluster/ward/internal/store",
		"github.com/wardcluster/ward/internal/web",
		"go.etcd.io/bbolt",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned too little to judge: %q", deps)
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("internal/agent depends on %s", d)
			}
		}
	}
}
