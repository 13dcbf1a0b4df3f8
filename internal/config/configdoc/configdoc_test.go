package configdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/config"
)

const committed = "../../../docs/config.md"

// TestReferenceIsCurrent fails when docs/config.md differs from what the
// config structs say: a key added, removed, renamed, given a new flag,
// default or doc comment without regenerating the reference.
func TestReferenceIsCurrent(t *testing.T) {
	want, err := Render("..")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("read the committed reference: %v", err)
	}
	if string(got) != string(want) {
		t.Fatalf("docs/config.md is stale: run `go generate ./internal/config` and commit the result")
	}
	for _, r := range roles() {
		for _, k := range config.Keys(r.cfg) {
			if !strings.Contains(string(got), "| `"+k.Name+"` |") {
				t.Errorf("docs/config.md has no row for %s key %s", r.command, k.Name)
			}
		}
	}
}

// TestUndocumentedKeyFails proves the reference refuses a key without a
// doc comment, by rendering a copy of the config package with one removed.
func TestUndocumentedKeyFails(t *testing.T) {
	dir := t.TempDir()
	files, err := filepath.Glob("../*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("config sources: %v %v", files, err)
	}
	removed := false
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		const doc = "\t// JoinBurst is the join attempts allowed in a burst per source address.\n"
		if strings.Contains(s, doc) {
			s, removed = strings.Replace(s, doc, "", 1), true
		}
		os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(s), 0o644)
	}
	if !removed {
		t.Fatal("the doc comment this test removes is gone; update the test")
	}
	_, err = Render(dir)
	if err == nil || !strings.Contains(err.Error(), "config.Coordinator.JoinBurst (key join_burst)") {
		t.Fatalf("Render without JoinBurst's doc: err = %v, want it to name the key", err)
	}
}
