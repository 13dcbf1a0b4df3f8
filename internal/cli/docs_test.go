package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestDocsWritesAPageForEveryCommand generates the man pages and markdown
// and checks there is one page per visible command, with its flags.
func TestDocsWritesAPageForEveryCommand(t *testing.T) {
	var want []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.Parent() != nil {
			return
		}
		want = append(want, c.CommandPath())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	root.InitDefaultCompletionCmd() // cobra adds it when the command runs
	walk(root)

	tests := []struct {
		kind, ext, sep, marker string
	}{
		{"man", ".1", "-", ".TH \"WARD\" \"1\""},
		{"markdown", ".md", "_", "## ward"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			var out, errb bytes.Buffer
			if code := Execute(context.Background(), []string{"docs", tt.kind, "--dir", dir}, &out, &errb); code != 0 {
				t.Fatalf("ward docs %s: exit %d: %s", tt.kind, code, errb.String())
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(want) {
				t.Errorf("%d pages for %d commands", len(entries), len(want))
			}
			for _, name := range want {
				// Pages join the words of a command path with sep; a word
				// may itself hold a hyphen (ward ui hash-password).
				b, err := os.ReadFile(filepath.Join(dir, strings.ReplaceAll(name, " ", tt.sep)+tt.ext))
				if err != nil {
					t.Errorf("no page for %s: %v", name, err)
					continue
				}
				if !strings.Contains(string(b), tt.marker) {
					t.Errorf("page for %s lacks %q", name, tt.marker)
				}
			}
			agent, _ := os.ReadFile(filepath.Join(dir, "ward"+tt.sep+"agent"+tt.ext))
			if !strings.Contains(string(agent), "join-file") || !strings.Contains(string(agent), "print-config") {
				t.Errorf("the agent's page does not list its flags:\n%s", agent)
			}
		})
	}
	var out, errb bytes.Buffer
	if code := Execute(context.Background(), []string{"docs", "man"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "pass --dir DIR") {
		t.Errorf("ward docs man without --dir: exit %d, %q", code, errb.String())
	}
}
