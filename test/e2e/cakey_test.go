package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func encrypted(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.HasPrefix(b, []byte("-----BEGIN WARD ENCRYPTED PRIVATE KEY-----"))
}

// TestEncryptedCAKeys: with --ca-passphrase-file every CA key is encrypted
// at rest, also the ones a rotation creates; without the passphrase, or
// with a wrong one, the coordinator refuses to start and says which.
func TestEncryptedCAKeys(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "ca.pass")
	os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600)
	c := newCluster(t, "--ca-passphrase-file", pass)
	for _, k := range []string{"pki/root-ca.key", "pki/issuing-ca.key"} {
		if !encrypted(t, filepath.Join(c.data, k)) {
			t.Fatalf("%s is not encrypted", k)
		}
	}
	c.startAgent("a", 1)
	c.mustWard("ca", "rotate")
	if !encrypted(t, filepath.Join(c.data, "pki/gen-2/issuing-ca.key")) || !encrypted(t, filepath.Join(c.data, "pki/gen-2/root-ca.key")) {
		t.Fatal("the rotation wrote plain CA keys")
	}
	c.mustWard("ca", "rotate", "--rollback")
	c.coord.kill9()

	start := func(extra ...string) *proc {
		return startProc(t, c.dir, "coord-pass", nil, append([]string{"coordinator", "--data", c.data, "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, extra...)...)
	}
	p := start()
	if code := p.wait(10 * time.Second); code == 0 || !strings.Contains(p.stderrText(), "is encrypted") || !strings.Contains(p.stderrText(), "--ca-passphrase-file") {
		t.Fatalf("without the passphrase: %s", p.stderrText())
	}
	wrong := filepath.Join(dir, "wrong.pass")
	os.WriteFile(wrong, []byte("not the passphrase\n"), 0o600)
	p = start("--ca-passphrase-file", wrong)
	if code := p.wait(10 * time.Second); code == 0 || !strings.Contains(p.stderrText(), "does not decrypt") {
		t.Fatalf("with a wrong passphrase: %s", p.stderrText())
	}
	os.Chmod(pass, 0o644)
	p = start("--ca-passphrase-file", pass)
	if code := p.wait(10 * time.Second); code == 0 || !strings.Contains(p.stderrText(), "chmod 600 "+pass) {
		t.Fatalf("with a readable passphrase file: %s", p.stderrText())
	}
	os.Chmod(pass, 0o600)

	// A cluster with plain keys gets them encrypted when a passphrase is set.
	c2 := newCluster(t)
	c2.coord.kill9()
	c2.args = append(c2.args, "--ca-passphrase-file", pass)
	c2.restartCoordinator()
	if !encrypted(t, filepath.Join(c2.data, "pki/issuing-ca.key")) || !strings.Contains(c2.coord.stderrText(), "it is encrypted now") {
		t.Fatal("plain CA keys were not encrypted at start")
	}
	c2.mustWard("node", "ls")
}
