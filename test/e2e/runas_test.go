package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// localAccounts creates accounts (and one supplementary group for the
// first) for the test, and removes them when it ends.
func localAccounts(t *testing.T, names ...string) (group string) {
	t.Helper()
	suffix := make([]byte, 3)
	rand.Read(suffix)
	group = "wardg" + hex.EncodeToString(suffix)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("groupadd", group)
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	for i, n := range names {
		args := []string{"useradd", "--no-create-home", "--shell", "/usr/sbin/nologin"}
		if i == 0 {
			args = append(args, "--groups", group)
		}
		run(append(args, n)...)
		t.Cleanup(func() { exec.Command("userdel", n).Run() })
	}
	return group
}

// TestRunAsUser: an agent started as root with --run-as-user runs each
// task as its submitter's local account (same name, or the mapping file's),
// with that account's groups; a user with no account fails with
// USER_UNKNOWN_ON_NODE naming the node; a user mapped to root is refused;
// job status shows the account of each attempt, also on an agent without
// the flag (its own account).
func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create local accounts and to start an agent with --run-as-user (CI runs as root)")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd is not installed")
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	ua, ub := "wra"+hex.EncodeToString(suffix), "wrb"+hex.EncodeToString(suffix)
	group := localAccounts(t, ua, ub)

	c := newCluster(t)
	mapFile := filepath.Join(c.dir, "users.map")
	if err := os.WriteFile(mapFile, []byte("# Ward user  local account\nmapped "+ub+"\nrootie root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The map decides which account runs tasks: group-writable is refused.
	os.Chmod(mapFile, 0o664)
	bad := startProc(t, c.dir, "agent-badmap", nil, "agent", "--data", c.agentDir("badmap"), "--name", "badmap", "--run-as-user", "--user-map", mapFile,
		"--join-file", c.writeJoinFile(c.token()))
	if code := bad.wait(20 * time.Second); code == 0 || !strings.Contains(bad.stderrText(), "chmod go-w") {
		t.Fatalf("agent with a group-writable map: exit %d: %s", code, bad.stderrText())
	}
	os.Chmod(mapFile, 0o644)
	// With exactly the capabilities the packaged drop-in leaves it.
	c.startAgentBin(withDropInCaps(t, c.dir), "runas", 2, "--run-as-user", "--user-map", mapFile, "--label", "mode=runas")
	c.startAgent("plain", 1, "--label", "mode=plain")

	a := c.addUser(ua, "submitter")
	m := c.addUser("mapped", "submitter")
	none := c.addUser("ghost", "submitter")
	root := c.addUser("rootie", "submitter")

	// Each task prints its uid and groups.
	ids := func(u *person) (uid string, groups []string, detail api.JobDetail) {
		t.Helper()
		id := strings.TrimSpace(u.must("submit", "--label", "mode=runas", "--", "sh", "-c", "echo uid=$(id -u) groups=$(id -G | tr ' ' ,)"))
		detail = c.waitJob(id, 30*time.Second)
		out := u.must("logs", id)
		for _, f := range strings.Fields(out) {
			if v, ok := strings.CutPrefix(f, "uid="); ok {
				uid = v
			}
			if v, ok := strings.CutPrefix(f, "groups="); ok {
				groups = strings.Split(v, ",")
			}
		}
		if uid == "" {
			t.Fatalf("no uid in the output of %s's job %s: %q (%+v)", u.name, id, out, detail.Tasks)
		}
		return uid, groups, detail
	}
	lookup := func(name string) *user.User {
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	uid, groups, detail := ids(a)
	if want := lookup(ua).Uid; uid != want {
		t.Fatalf("%s's task ran as uid %s, want %s", ua, uid, want)
	}
	if !slices.Contains(groups, g.Gid) || slices.Contains(groups, "0") {
		t.Fatalf("%s's task has groups %v: want its supplementary group %s and never root's", ua, groups, g.Gid)
	}
	if acct := detail.Tasks[0].Attempts[0].Account; acct != ua {
		t.Fatalf("job status says the attempt ran as %q, want %s", acct, ua)
	}
	if uid, _, detail = ids(m); uid != lookup(ub).Uid || detail.Tasks[0].Attempts[0].Account != ub {
		t.Fatalf("mapped's task ran as uid %s (account %q), want %s's %s", uid, detail.Tasks[0].Attempts[0].Account, ub, lookup(ub).Uid)
	}
	if !strings.Contains(c.mustWard("job", "status", detail.ID, "--all"), ub) {
		t.Fatal("ward job status does not show the account")
	}

	// No account on the node, or mapped to root: the task fails, saying
	// which node and why.
	for _, tc := range []struct {
		u    *person
		want string
	}{
		{none, `node runas has no local account for Ward user "ghost"`},
		{root, "maps to root"},
	} {
		id := strings.TrimSpace(tc.u.must("submit", "--label", "mode=runas", "--", "true"))
		d := c.waitJob(id, 30*time.Second)
		at := d.Tasks[0].Attempts
		if d.State != "failed" || len(at) == 0 || !strings.Contains(at[0].Reason, string(api.CodeUserUnknownOnNode)) || !strings.Contains(at[0].Reason, tc.want) || at[0].Node != "runas" {
			t.Fatalf("%s's job: %s, attempts %+v; want failed with %s and %q", tc.u.name, d.State, at, api.CodeUserUnknownOnNode, tc.want)
		}
		if !strings.Contains(c.mustWard("job", "status", id), "USER_UNKNOWN_ON_NODE") {
			t.Fatal("ward job status does not show USER_UNKNOWN_ON_NODE")
		}
	}

	// Without --run-as-user, tasks run as the agent's own account, and
	// job status says so.
	id := strings.TrimSpace(a.must("submit", "--label", "mode=plain", "--", "id", "-u"))
	d := c.waitJob(id, 30*time.Second)
	if acct := d.Tasks[0].Attempts[0].Account; acct != "root (uid 0)" {
		t.Fatalf("the plain agent's attempt ran as %q, want the agent's own account root (uid 0)", acct)
	}

	// Staged files: the task's account owns its scratch directory and
	// inputs, and the agent (root) makes and reads them with that
	// account's rights only.
	in := filepath.Join(c.dir, "in.txt")
	if err := os.WriteFile(in, []byte("payload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id = strings.TrimSpace(a.must("submit", "--label", "mode=runas", "--input", in+":data/in.txt", "--output-file", "out.txt", "--output-file", "where.txt", "--",
		"sh", "-c", "cat data/in.txt > out.txt; stat -c %u data/in.txt . >> out.txt; pwd > where.txt"))
	if d := c.waitJob(id, 30*time.Second); d.State != api.JobCompleted {
		t.Fatalf("%s's staged job: %s %+v", ua, d.State, d.Tasks[0].Attempts)
	}
	to := filepath.Join(c.dir, "runas-out")
	a.must("job", "output", id, "--to", to)
	want := "payload\n" + lookup(ua).Uid + "\n" + lookup(ua).Uid + "\n"
	if b, err := os.ReadFile(filepath.Join(to, "task-0", "out.txt")); err != nil || string(b) != want {
		t.Fatalf("staged job's out.txt = %q, %v; want the input and the account's uid twice (input and scratch directory): %q", b, err, want)
	}
	// Its scratch directory: the account's, in the temporary directory,
	// and removed (by the account's helper) once the outputs were sent.
	b, _ := os.ReadFile(filepath.Join(to, "task-0", "where.txt"))
	where := strings.TrimSpace(string(b))
	if !strings.HasPrefix(where, filepath.Join(os.TempDir(), "ward-attempt-")) {
		t.Fatalf("the staged task ran in %q, want a ward-attempt-* directory in %s", where, os.TempDir())
	}
	if _, err := os.Stat(where); !os.IsNotExist(err) {
		t.Fatalf("the scratch directory %s is still there: %v", where, err)
	}

	// A --dir the account may not write, or a file in one it may not
	// read: refused as the account, never done as root.
	locked := filepath.Join(c.dir, "locked")
	if err := os.MkdirAll(locked, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(locked, "loot"), []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"an input into a directory of root's", []string{"--input", in + ":planted"}},
		{"an output of root's", []string{"--output-file", "loot"}},
	} {
		id := strings.TrimSpace(a.must(append(append([]string{"submit", "--label", "mode=runas", "--retries", "0", "--dir", locked}, tc.args...), "--", "true")...))
		d := c.waitJob(id, 30*time.Second)
		at := d.Tasks[0].Attempts
		if d.State != api.JobFailed || len(at) == 0 || !strings.Contains(at[0].Reason, "permission denied") {
			t.Fatalf("%s: %s %+v; want failed with permission denied", tc.name, d.State, at)
		}
	}
	if _, err := os.Stat(filepath.Join(locked, "planted")); !os.IsNotExist(err) {
		t.Fatalf("the input was written into root's directory: %v", err)
	}
}

// withDropInCaps writes a wrapper that runs ward with only the capability
// bounding set of the shipped run-as drop-in
// (packaging/systemd/ward-agent-run-as.conf), as systemd would.
func withDropInCaps(t *testing.T, dir string) string {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is missing: it bounds the agent's capabilities as the drop-in does")
	}
	b, err := os.ReadFile("../../packaging/systemd/ward-agent-run-as.conf")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapabilityBoundingSet="); ok {
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	if len(caps) == 0 {
		t.Fatal("the drop-in sets no CapabilityBoundingSet")
	}
	w := filepath.Join(dir, "ward-dropin-caps")
	script := "#!/bin/sh\nexec setpriv --bounding-set -all," + strings.Join(caps, ",") + " -- " + wardBin + " \"$@\"\n"
	if err := os.WriteFile(w, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}
