package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Saving through ~/.ward/context, a link to a named context after `ward
// context use`, writes the named file and keeps the link.
func TestSaveFollowsTheLink(t *testing.T) {
	dir := t.TempDir()
	named := filepath.Join(dir, "contexts", "prod.context")
	if err := os.MkdirAll(filepath.Dir(named), 0o700); err != nil {
		t.Fatal(err)
	}
	c := &Context{Version: FileVersion, Server: "a:7443"}
	if err := c.Save(named); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "context")
	if err := os.Symlink("contexts/prod.context", link); err != nil {
		t.Fatal(err)
	}
	c.Server = "b:7443"
	if err := c.Save(link); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced by a file: %v", err)
	}
	data, _ := os.ReadFile(named)
	if !strings.Contains(string(data), `"server": "b:7443"`) {
		t.Errorf("the named file was not updated:\n%s", data)
	}
}

func TestContextNames(t *testing.T) {
	for name, ok := range map[string]bool{"prod": true, "eu-west.2_a": true, "": false, ".hidden": false, "a/b": false, "sp ace": false, string(make([]byte, 65)): false} {
		if err := ValidContextName(name); (err == nil) != ok {
			t.Errorf("ValidContextName(%q) = %v", name, err)
		}
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Chdir(t.TempDir())
	if err := os.MkdirAll(ContextDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(NamedContextPath("prod"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ flag, want string }{
		{"prod", NamedContextPath("prod")},   // a name
		{"staging", "staging"},               // no such name: a file name
		{"./prod", "./prod"},                 // a path
		{"/etc/x.context", "/etc/x.context"}, // a path
	} {
		if got, _ := ResolveContextPath(tc.flag); got != tc.want {
			t.Errorf("ResolveContextPath(%q) = %q, want %q", tc.flag, got, tc.want)
		}
	}
}

func contains(s, sub string) bool {
	return len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}
