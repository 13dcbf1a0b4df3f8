package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// person is a user's own CLI: their context in a directory of their own.
type person struct {
	c       *cluster
	name    string
	ctxPath string
}

// ward runs the CLI as this person.
func (u *person) ward(args ...string) (string, string, int) {
	cmd := exec.Command(wardBin, append([]string{"--context", u.ctxPath}, args...)...)
	cmd.Env = append(os.Environ(), "WARD_CONTEXT=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func (u *person) must(args ...string) string {
	u.c.t.Helper()
	out, errOut, code := u.ward(args...)
	if code != 0 {
		u.c.t.Fatalf("%s: ward %s: exit %d\n%s%s", u.name, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// refused runs a command that must fail with code (and each of want in
// its error output).
func (u *person) refused(code api.Code, args []string, want ...string) {
	u.c.t.Helper()
	out, errOut, exit := u.ward(args...)
	if exit == 0 {
		u.c.t.Fatalf("%s: ward %s succeeded, want %s:\n%s", u.name, strings.Join(args, " "), code, out)
	}
	for _, w := range append([]string{string(code)}, want...) {
		if !strings.Contains(errOut, w) {
			u.c.t.Fatalf("%s: ward %s: %q not in\n%s", u.name, strings.Join(args, " "), w, errOut)
		}
	}
}

// addUser adds a user as the admin and logs them in from a data directory
// of their own, the way the person would on their machine.
func (c *cluster) addUser(name, role string) *person {
	c.t.Helper()
	dir := filepath.Join(c.dir, "home-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	joinFile := filepath.Join(c.dir, "join-"+name)
	out := c.mustWard("user", "add", name, "--role", role, "--out", joinFile)
	if strings.Contains(out, "wardjoin://") {
		c.t.Fatalf("the join string was printed although --out was given:\n%s", out)
	}
	u := &person{c: c, name: name, ctxPath: filepath.Join(dir, "context")}
	return u.login(joinFile)
}

func (u *person) login(joinFile string, extra ...string) *person {
	u.c.t.Helper()
	out := u.must(append([]string{"login", "--join-file", joinFile}, extra...)...)
	if !strings.Contains(out, "as "+u.name) {
		u.c.t.Fatalf("login output: %s", out)
	}
	st, err := os.Stat(u.ctxPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		u.c.t.Fatalf("context %s: %v, mode %v; want 0600", u.ctxPath, err, st.Mode())
	}
	return u
}

// userContext adds user name with the submitter role and logs them in
// from a directory of their own; it returns their context's path.
func (c *cluster) userContext(name string) string {
	c.t.Helper()
	return c.addUser(name, "submitter").ctxPath
}

// wardAs runs the CLI with another context.
func (c *cluster) wardAs(ctxPath string, args ...string) (string, string, int) {
	return c.ward(append([]string{"--context", ctxPath}, args...)...)
}

// TestUsersAndRoles: an admin adds two submitters and a viewer, each logs
// in from their own directory; a submitter runs a job; the viewer cannot
// submit or cancel it; the other submitter cannot see it, create tokens or
// revoke nodes; removing the user cuts their `ward logs -f` within a
// second and their next call is refused at the handshake.
func TestUsersAndRoles(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", 2)
	alice := c.addUser("alice", "submitter")
	bob := c.addUser("bob", "submitter")
	carol := c.addUser("carol", "viewer")

	// The join string is single-use.
	again := &person{c: c, name: "alice", ctxPath: filepath.Join(c.dir, "home-alice", "second")}
	again.refused(api.CodeTokenUsed, []string{"login", "--join-file", filepath.Join(c.dir, "join-alice")}, "already used")
	// An agent refuses a user join string, and login an agent's.
	p := startProc(t, c.dir, "agent-with-user-join", nil, "agent", "--data", filepath.Join(c.dir, "agent-x"), "--name", "x", "--join-file", filepath.Join(c.dir, "join-bob"))
	if code := p.wait(20 * time.Second); code == 0 || !strings.Contains(p.stderrText(), "ward login --join-file") {
		t.Fatalf("agent with a user join string: exit %d: %s", code, p.stderrText())
	}
	again.refused(api.CodeJoinStringMalformed, []string{"login", "--join-file", c.writeJoinFile(c.token())}, "agent join token")

	// alice runs a job and sees it.
	id := strings.TrimSpace(alice.must("submit", "--", "sh", "-c", "echo started; sleep 60"))
	if !strings.Contains(alice.must("job", "ls"), id) {
		t.Fatal("alice does not see her own job")
	}
	var detail api.JobDetail
	if err := jsonUnmarshal(alice.must("job", "status", id, "-o", "json"), &detail); err != nil || detail.SubmittedBy != "spiffe://ward/user/alice" {
		t.Fatalf("job submitted by %q (%v)", detail.SubmittedBy, err)
	}

	// carol (viewer) sees it but cannot submit or cancel.
	if !strings.Contains(carol.must("job", "ls", "--all"), id) {
		t.Fatal("the viewer does not see alice's job with --all")
	}
	carol.refused(api.CodePermissionDenied, []string{"submit", "--", "true"}, "has role viewer", "submitting jobs needs role admin, operator or submitter")
	carol.refused(api.CodePermissionDenied, []string{"job", "cancel", id}, "canceling jobs needs role admin, operator or submitter")

	// bob (another submitter) cannot see it, its output, nor widen his view.
	if strings.Contains(bob.must("job", "ls"), id) {
		t.Fatal("bob sees alice's job")
	}
	bob.refused(api.CodeForbiddenNotOwner, []string{"job", "status", id}, "belongs to spiffe://ward/user/alice")
	bob.refused(api.CodeForbiddenNotOwner, []string{"logs", id})
	bob.refused(api.CodeForbiddenNotOwner, []string{"job", "cancel", id})
	bob.refused(api.CodePermissionDenied, []string{"job", "ls", "--all"}, "sees only its own jobs")
	bob.refused(api.CodePermissionDenied, []string{"token", "create"}, "creating join tokens needs role admin or operator")
	bob.refused(api.CodePermissionDenied, []string{"node", "revoke", "n1"}, "revoking a node needs role admin or operator")
	bob.refused(api.CodePermissionDenied, []string{"user", "ls"}, "listing users needs role admin")
	// Reading nodes is a submitter's right.
	if !strings.Contains(bob.must("node", "ls"), "n1") {
		t.Fatal("bob cannot read nodes")
	}
	// Each refusal is in the audit log with the user and the route.
	audited := map[string]bool{}
	for _, ev := range c.auditEvents() {
		if ev.Type == "authz.denied" {
			audited[ev.Actor+" "+ev.Target] = true
		}
	}
	for _, want := range []string{
		"spiffe://ward/user/bob POST /v1/tokens", "spiffe://ward/user/bob POST /v1/nodes/{name}/revoke",
		"spiffe://ward/user/carol POST /v1/jobs", "spiffe://ward/user/bob GET /v1/jobs/{id}",
	} {
		if !audited[want] {
			t.Errorf("refusal %q not audited; audited: %v", want, audited)
		}
	}

	// alice follows her job's output; removing her cuts the stream at once.
	follow := startProc(t, c.dir, "alice-logs", nil, "--context", alice.ctxPath, "logs", id, "-f")
	waitFor(t, 20*time.Second, "alice's ward logs -f to show output", func() bool {
		b, _ := os.ReadFile(follow.stdout)
		return strings.Contains(string(b), "started")
	})
	t0 := time.Now()
	out := c.mustWard("user", "remove", "alice")
	removed := time.Now()
	if !strings.Contains(out, "live connection(s) closed") || strings.Contains(out, " 0 live connection") {
		t.Fatalf("remove: %s", out)
	}
	select {
	case <-follow.done:
	case <-time.After(time.Second):
		t.Fatalf("alice's ward logs -f still runs 1 s after her removal (remove took %s)", removed.Sub(t0))
	}
	t.Logf("ward logs -f ended %s after `ward user remove` returned (%s after it started)", time.Since(removed).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if follow.cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("ward logs -f exited 0 after the removal: %s", follow.stderrText())
	}
	alice.refused(api.CodeUnauthenticated, []string{"job", "ls"}, "client_cert_rejected")

	// The admin credential keeps working as admin; the job is alice's and
	// still there for the admin to cancel.
	c.mustWard("job", "cancel", id)
	users := c.mustWard("user", "ls")
	for _, want := range []string{"admin", "alice", "removed", "bob", "carol", "viewer"} {
		if !strings.Contains(users, want) {
			t.Fatalf("user ls lacks %q:\n%s", want, users)
		}
	}

	// A role change revokes carol's viewer certificate at once; her new
	// login gives her a submitter certificate.
	joinFile := filepath.Join(c.dir, "join-carol-2")
	c.mustWard("user", "role", "carol", "submitter", "--out", joinFile)
	carol.refused(api.CodeUnauthenticated, []string{"job", "ls"})
	carol.login(joinFile, "--force")
	cid := strings.TrimSpace(carol.must("submit", "--", "true"))
	c.waitJob(cid, 30*time.Second)
	// The admin sees every job with --all, and its own without.
	if all := c.mustWard("job", "ls", "--all"); !strings.Contains(all, cid) || !strings.Contains(all, id) {
		t.Fatalf("admin job ls --all:\n%s", all)
	}
}
