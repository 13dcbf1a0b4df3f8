package web_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestConsoleDoesNotImportTheCoordinator keeps the console a client of the
// Cluster interface: it never reaches into the coordinator or the store.
func TestConsoleDoesNotImportTheCoordinator(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/wardcluster/ward/internal/web").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned too little to judge: %q", deps)
	}
	for _, d := range deps {
		for _, f := range []string{"github.com/wardcluster/ward/internal/coordinator", "github.com/wardcluster/ward/internal/store", "go.etcd.io/bbolt"} {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("internal/web depends on %s", d)
			}
		}
	}
}
