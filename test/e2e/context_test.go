package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Named contexts: add, use, show, ls, set, rm; and a context pointed at the
// public port is told the cluster port.
func TestContexts(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	home := t.TempDir()
	ward := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(wardBin, args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "WARD_CONTEXT=")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Run()
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := ward(args...)
		if code != 0 {
			t.Fatalf("ward %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	if out := must("context", "ls"); !strings.Contains(out, "No contexts") {
		t.Errorf("ls with nothing:\n%s", out)
	}
	must("context", "add", "prod", c.ctxPath)
	must("context", "use", "prod")
	def := filepath.Join(home, ".ward", "context")
	if fi, err := os.Lstat(def); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is not a link to the named context: %v", def, err)
	}
	must("node", "ls") // through ~/.ward/context

	show := must("context", "show")
	for _, want := range []string{"server:       " + c.cluster, "identity:     spiffe://ward/user/admin", "trusts:       CN=Ward Root CA ward", "the default location"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}

	// A second context, which becomes the default; the first stays
	// reachable by name.
	must("context", "add", "staging", c.ctxPath)
	must("context", "use", "staging")
	ls := must("context", "ls")
	if !strings.Contains(ls, "*        staging") || !strings.Contains(ls, "         prod") {
		t.Errorf("ls:\n%s", ls)
	}
	must("--context", "prod", "node", "ls")
	if _, errOut, code := ward("context", "rm", "staging"); code != 1 || !strings.Contains(errOut, "is the default") {
		t.Errorf("rm of the default: exit %d\n%s", code, errOut)
	}
	must("context", "use", "prod")
	must("context", "rm", "staging")

	// The public port is not the API's: the answer names the cluster port.
	_, errOut, code := ward("node", "ls", "--server", c.public)
	if code != 1 || !strings.Contains(errOut, "is the coordinator's public port") || !strings.Contains(errOut, c.cluster) || !strings.Contains(errOut, "WRONG_PORT") {
		t.Errorf("node ls against the public port: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := ward("context", "set", "--server", c.public); code != 1 || !strings.Contains(errOut, "the CLI talks to the cluster port") {
		t.Errorf("set --server to the public port: exit %d\n%s", code, errOut)
	}
	must("context", "set", "--server", "127.0.0.1:1")
	if _, errOut, code := ward("node", "ls"); code != 1 || !strings.Contains(errOut, "127.0.0.1:1") {
		t.Errorf("after set --server: exit %d\n%s", code, errOut)
	}
	must("context", "set", "--server", c.cluster)
	must("node", "ls")
}
