package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConsolePasswordFile: the admin password is stored as a hash made by
// `ward ui hash-password`; the coordinator refuses a file others can read
// or one that holds no hash, naming the file and the fix; sign-in with the
// password works, a wrong one is refused and audited with the source.
func TestConsolePasswordFile(t *testing.T) {
	dir := t.TempDir()
	hash, errOut, code := (&cluster{t: t}).wardIn(strings.NewReader("a passphrase of words\n"), "ui", "hash-password")
	if code != 0 || !strings.HasPrefix(hash, "$argon2id$v=19$") {
		t.Fatalf("hash-password: exit %d: %s%s", code, hash, errOut)
	}
	pwFile := filepath.Join(dir, "ui-password")
	refused := func(name, content string, mode os.FileMode, want ...string) {
		t.Helper()
		os.WriteFile(pwFile, []byte(content), mode)
		os.Chmod(pwFile, mode)
		p := startProc(t, dir, name, nil, "coordinator", "--data", filepath.Join(dir, name), "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0", "--ui-password-file", pwFile)
		if code := p.wait(20 * time.Second); code == 0 {
			t.Fatalf("%s: the coordinator started", name)
		}
		for _, w := range append(want, pwFile) {
			if !strings.Contains(p.stderrText(), w) {
				t.Errorf("%s: the error does not say %q:\n%s", name, w, p.stderrText())
			}
		}
		if strings.Contains(p.stderrText(), content) && content != "" {
			t.Errorf("%s: the error shows the file's content", name)
		}
	}
	refused("coord-loose", hash, 0o644, "chmod 600")
	refused("coord-plain", "hunter2-in-the-clear\n", 0o600, "ward ui hash-password")

	os.WriteFile(pwFile, []byte(hash), 0o600)
	c := newCluster(t, "--ui-password-file", pwFile)
	jar, _ := cookiejar.New(nil)
	hc := c.publicClient()
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := "https://" + c.public + "/ui/"
	field := regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	signIn := func(password string) *http.Response {
		t.Helper()
		resp, err := hc.Get(base + "login")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := field.FindStringSubmatch(string(b))
		if m == nil {
			t.Fatalf("the sign-in page has no form:\n%s", b)
		}
		resp, err = hc.PostForm(base+"login", url.Values{"csrf": {m[1]}, "password": {password}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := signIn("not the passphrase"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %s", resp.Status)
	}
	if resp := signIn("a passphrase of words"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the right password: %s", resp.Status)
	}
	resp, err := hc.Get(base + "nodes")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("nodes after password sign-in: %v %v", resp, err)
	}
	resp.Body.Close()
	var wrong, ok bool
	for _, e := range c.auditEvents() {
		if e.Type == "ui.login" && strings.HasPrefix(e.Source, "127.0.0.1:") && e.Via == "ui-password" {
			wrong = wrong || e.Result == "PASSWORD_WRONG"
			ok = ok || (e.Result == "ok" && strings.HasSuffix(e.Actor, "/user/admin"))
		}
	}
	if !wrong || !ok {
		t.Errorf("password sign-ins in the audit log: wrong %v, ok %v", wrong, ok)
	}
	// The public port's root leads a browser to the console.
	resp, err = hc.Get("https://" + c.public + "/")
	if err != nil || resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET /: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestConsoleOff: with --ui=false nothing is served under /ui/ and `ward
// ui` says why.
func TestConsoleOff(t *testing.T) {
	c := newCluster(t, "--ui=false")
	resp, err := c.publicClient().Get("https://" + c.public + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /ui/ with the console off: %s", resp.Status)
	}
	_, errOut, code := c.ward("ui")
	if code == 0 || !strings.Contains(errOut, "turned off") || !strings.Contains(errOut, "FAILED_PRECONDITION") {
		t.Fatalf("ward ui with the console off: exit %d: %s", code, errOut)
	}
}
