package e2e

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
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
	secrets := map[string]string{"the CA passphrase": passphrase}
	joins, _ := filepath.Glob(filepath.Join(c.dir, "join-*"))
	for _, js := range append(joins, "") {
		s := unused
		if js != "" {
			b, _ := os.ReadFile(js)
			s = strings.TrimSpace(string(b))
		}
		_, tok, ok := strings.Cut(s, "token=")
		_, secret, ok2 := strings.Cut(tok, ".")
		if !ok || !ok2 || len(secret) < 16 {
			t.Fatalf("cannot find the token secret in %q", s)
		}
		secrets["the join token secret of "+tok[:strings.Index(tok, ".")]] = secret
	}
	keys := 0
	for _, dir := range []string{c.data, c.agentDir("a1"), c.agentDir("a2")} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			data, _ := os.ReadFile(p)
			if strings.HasSuffix(p, ".context") { // JSON holding key_pem
				var ctx struct {
					KeyPEM string `json:"key_pem"`
				}
				json.Unmarshal(data, &ctx)
				data = []byte(ctx.KeyPEM)
			}
			for rest := data; ; {
				var blk *pem.Block
				blk, rest = pem.Decode(rest)
				if blk == nil {
					break
				}
				if strings.Contains(blk.Type, "PRIVATE") || strings.Contains(blk.Type, "ENCRYPTED") {
					keys++
					body := string(pem.EncodeToMemory(blk))
					for i, line := range strings.Split(body, "\n") {
						if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
							secrets[fmt.Sprintf("%s (key line %d)", p, i)] = line
						}
					}
				}
			}
			return nil
		})
	}
	if keys < 6 { // root and issuing CA, coordinator, admin, two agents
		t.Fatalf("found only %d private keys to look for", keys)
	}
	for name, data := range files {
		for what, s := range secrets {
			if strings.Contains(data, s) {
				t.Errorf("%s holds %s", name, what)
			}
		}
		if strings.Contains(data, "PRIVATE KEY-----") {
			t.Errorf("%s holds a PEM private key", name)
		}
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
