package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/supportbundle"
)

// TestDebugBundleHoldsNoSecret collects a support bundle from a running
// cluster whose CA keys are encrypted with a passphrase, with agents that
// joined with tokens and a token still unused, and checks the bundle has
// what support needs and not one private key, token secret or passphrase.
func TestDebugBundleHoldsNoSecret(t *testing.T) {
	const passphrase = "correct horse battery staple 8347"
	passFile := filepath.Join(t.TempDir(), "ca.pass")
	os.WriteFile(passFile, []byte(passphrase+"\n"), 0o600)
	c := newCluster(t, "--ca-passphrase-file", passFile)
	c.startAgent("a1", 2)
	c.startAgent("a2", 1)
	unused := c.token("--ttl", "1h")
	c.mustWard("run", "--count", "3", "--", "echo", "hello")

	out := filepath.Join(t.TempDir(), "support.tar.gz")
	c.mustWard("debug", "bundle", "--out", out, "--lines", "200")
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle: %v, mode %v; want 0600", err, fi.Mode())
	}
	files := readBundle(t, out)

	// Every secret of this cluster.
	secrets := secretSet{"the CA passphrase": passphrase}
	joins, _ := filepath.Glob(filepath.Join(c.dir, "join-*"))
	secrets.addJoin(t, unused)
	for _, js := range joins {
		b, _ := os.ReadFile(js)
		secrets.addJoin(t, string(b))
	}
	if keys := secrets.addKeys(c.data, c.agentDir("a1"), c.agentDir("a2")); keys < 6 { // root and issuing CA, coordinator, admin, two agents
		t.Fatalf("found only %d private keys to look for", keys)
	}
	for name, data := range files {
		secrets.check(t, name, data)
	}

	// And what support needs.
	for name, want := range map[string]string{
		"status.json": `"agent_versions"`, "doctor.json": `"findings"`, "nodes.json": `"a2"`, "ca-status.json": `"phase"`,
		"certs.json": `"serial"`, "tokens.json": `"state"`, "audit.jsonl": `"session.open"`, "versions/cli.json": `"go_version"`,
		"coordinator/log.jsonl": `"msg":"coordinator starting"`, "coordinator/config.json": `"ca_passphrase_file": "` + passFile,
		"coordinator/data-dir.txt": "audit.log", "coordinator/runtime.json": `"goroutines"`, "coordinator/metrics.txt": "ward_tasks_total",
		"context.json": `"server"`,
	} {
		if !strings.Contains(files[name], want) {
			t.Errorf("bundle file %s lacks %q:\n%.400s", name, want, files[name])
		}
	}
	if e, ok := files["errors.txt"]; ok {
		t.Errorf("the bundle reports errors:\n%s", e)
	}
}

// readBundle returns the files of a bundle by name.
func readBundle(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := supportbundle.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for k, v := range raw {
		files[k] = string(v)
	}
	return files
}
