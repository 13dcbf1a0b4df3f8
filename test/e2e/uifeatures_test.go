package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wardcluster/ward/internal/api"
)

// TestWebConsoleJobAndNodeFeatures clicks through issue 16's features and
// issue 15's users in headless Chromium against a real coordinator and
// agent: maintenance mode on and off (the banner, and a real submitter
// refused meanwhile), a job's progress, options and output files (one
// downloaded), requeue of the failed tasks, clone, the nodes' memory,
// profile and coordinator, the profiles page, and users (add, role change,
// remove). A viewer signed in with their own `ward ui` link sees all of it
// but can act on none of it: the forms are not offered, and a forged POST
// with the viewer's own CSRF token is refused.
func TestWebConsoleJobAndNodeFeatures(t *testing.T) {
	c := newCluster(t)
	c.startAgent("m1", 2, "--memory", "1GiB", "--label", "rack=a")
	c.mustWard("profile", "set", "duo", "slots=2", "labels=tier=web")
	c.mustWard("profile", "assign", "duo", "--label", "rack=a")
	b := newBrowser(t, c)
	base := "https://" + c.public + "/ui/"
	b.open(strings.TrimSpace(c.mustWard("ui")))
	b.waitText("h1", "Overview", 20*time.Second, "")

	// Nodes: memory offered, the profile and its state, the coordinator.
	row := b.waitText(`tr[data-node="m1"] td.profile`, "applied", 20*time.Second, base+"nodes")
	if !strings.Contains(row, "duo") {
		t.Errorf("profile cell %q", row)
	}
	n, _ := c.node("m1")
	if mem := b.text(`tr[data-node="m1"] td.memory`); !strings.Contains(mem, "1 GiB") {
		t.Errorf("memory cell %q", mem)
	}
	if co := b.text(`tr[data-node="m1"] td.coordinator`); n.Coordinator == "" || co != n.Coordinator {
		t.Errorf("coordinator cell %q, node ls says %q", co, n.Coordinator)
	}
	// Profiles: the settings and the node it applies to, applied.
	b.open(base + "profiles")
	if p := b.text(`tr[data-profile="duo"]`); !strings.Contains(p, "slots=2") || !strings.Contains(p, "tier=web") || !strings.Contains(p, "rack=a") {
		t.Errorf("profile row %q", p)
	}
	if s := b.text(`[data-profile-node="m1"]`); !strings.Contains(s, "applied") {
		t.Errorf("profile node %q", s)
	}

	// Maintenance on from the browser: the banner on every page, and a
	// submitter refused by the coordinator with the message.
	sue := c.addUser("sue", "submitter")
	b.open(base + "maintenance")
	b.run(20*time.Second,
		chromedp.Click(chromedp.CSS(`a[href="/ui/maintenance/on"]`)),
		chromedp.WaitVisible(chromedp.CSS("form.confirm")),
		chromedp.SetValue(chromedp.CSS("#f-message"), "switch swap until 11:00"),
		chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	for _, page := range []string{"", "nodes", "jobs"} {
		b.open(base + page)
		if s := b.text("#maintenance-banner"); !strings.Contains(s, "switch swap until 11:00") {
			t.Errorf("banner on /ui/%s: %q", page, s)
		}
	}
	sue.refused(api.CodeMaintenance, []string{"submit", "--", "true"}, "switch swap until 11:00")
	b.open(base + "maintenance/off")
	b.run(20*time.Second, chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.open(base)
	if n := get(b, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("#maintenance-banner").length`)); n != 0 {
		t.Fatal("the banner stays after maintenance mode was turned off")
	}
	sue.must("submit", "--", "true")

	// A job with the new options; task 1 fails. Its page shows the
	// progress, the options and each task's output file.
	id := strings.TrimSpace(c.mustWard("submit", "--count", "3", "--memory", "64MiB", "--max-running", "2", "--setup", "true",
		"--output-file", "out.txt", "--", "sh", "-c", `echo r$0 > out.txt; test $0 != 1`, "{index}"))
	c.waitJob(id, 60*time.Second)
	jobURL := base + "jobs/" + id
	b.open(jobURL)
	for sel, want := range map[string]string{"#progress-done": "2", "#progress-failed": "1", "#progress-running": "0", "#progress-queued": "0"} {
		if got := b.text(sel); got != want {
			t.Errorf("%s = %q, want %s", sel, got, want)
		}
	}
	opts := b.text("#job-options")
	for _, want := range []string{"64 MiB", "2 task(s) at once", "true", "out.txt"} {
		if !strings.Contains(opts, want) {
			t.Errorf("options lack %q:\n%s", want, opts)
		}
	}
	for i := range 3 {
		if s := b.text(`tr[data-file="` + strconv.Itoa(i) + `/out.txt"]`); !strings.Contains(s, "out.txt") {
			t.Errorf("file row of task %d: %q", i, s)
		}
	}
	body := get(b, 20*time.Second, chromedp.Evaluate[string](`fetch(document.querySelector('tr[data-file="2/out.txt"] a').href).then(r => r.text())`, chromedp.EvalAwaitPromise))
	if body != "r2\n" {
		t.Fatalf("downloaded output %q", body)
	}

	// Requeue only the failed task: one more attempt, in requeue 1.
	b.run(20*time.Second,
		chromedp.Click(chromedp.CSS("#requeue-failed")),
		chromedp.WaitVisible(chromedp.CSS("form.confirm")),
		chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if f := b.text(".flash"); !strings.Contains(f, "1 task(s) back in the queue") {
		t.Fatalf("requeue: %q", f)
	}
	d := c.waitJob(id, 60*time.Second)
	if d.Requeues != 1 || len(d.Tasks[1].Attempts) != 2 || d.Tasks[1].Attempts[1].Requeue != 1 || len(d.Tasks[0].Attempts) != 1 {
		t.Fatalf("after the requeue: requeues %d, task 1 attempts %+v", d.Requeues, d.Tasks[1].Attempts)
	}
	b.waitText("#job-requeues", "1 time(s)", 10*time.Second, jobURL)

	// Clone it with two tasks.
	b.run(20*time.Second,
		chromedp.Click(chromedp.CSS("#clone")),
		chromedp.WaitVisible(chromedp.CSS("form.confirm")),
		chromedp.SetValue(chromedp.CSS("#f-count"), "2"),
		chromedp.SetValue(chromedp.CSS("#f-name"), "copy"),
		chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	loc := get(b, 5*time.Second, chromedp.Location())
	clone := loc[strings.LastIndex(loc, "/")+1:]
	cd := c.job(clone)
	if cd.CloneOf != id || cd.Spec.Count != 2 || cd.Spec.Name != "copy" || cd.Spec.Memory != 64<<20 || cd.Spec.Setup != "true" || len(cd.Spec.Outputs) != 1 {
		t.Fatalf("clone %s: %+v", clone, cd.Job)
	}

	// Submit with the new options from the form.
	b.open(base + "jobs/new")
	b.run(20*time.Second,
		chromedp.SetValue(chromedp.CSS("#command"), "true"),
		chromedp.SetValue(chromedp.CSS("#memory"), "32MiB"),
		chromedp.SetValue(chromedp.CSS("#max_running"), "1"),
		chromedp.SetValue(chromedp.CSS("#setup"), "true"),
		chromedp.Click(chromedp.CSS(`input[name="cancel_on_failure"]`)),
		chromedp.Click(chromedp.CSS("#submit-job button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#progress")))
	loc = get(b, 5*time.Second, chromedp.Location())
	fd := c.job(loc[strings.LastIndex(loc, "/")+1:])
	if fd.Spec.Memory != 32<<20 || fd.Spec.MaxRunning != 1 || fd.Spec.Setup != "true" || !fd.Spec.CancelOnFailure || fd.Spec.Exclusive {
		t.Fatalf("job submitted from the form: %+v", fd.Spec)
	}

	// Users: add a viewer; the one-time login is shown once and works.
	b.open(base + "users")
	b.run(20*time.Second,
		chromedp.SetValue(chromedp.CSS("#user-name"), "vic"),
		chromedp.SetValue(chromedp.CSS("#user-role"), "viewer"),
		chromedp.Click(chromedp.CSS("#add-user button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#user-invite")))
	join := strings.TrimSpace(b.text("#login-string"))
	if cmd := strings.TrimSpace(b.text("#login-command")); cmd != "ward login --join-file -" { // the string goes on stdin, not in shell history
		t.Fatalf("login command %q", cmd)
	}
	joinFile := filepath.Join(c.dir, "vic.join")
	if err := os.WriteFile(joinFile, []byte(join+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "home-vic"), 0o700); err != nil {
		t.Fatal(err)
	}
	vic := (&person{c: c, name: "vic", ctxPath: filepath.Join(c.dir, "home-vic", "context")}).login(joinFile)
	b.open(base + "users")
	if strings.Contains(b.text("main"), join) {
		t.Fatal("the login string is shown again")
	}
	b.waitText(`tr[data-user="vic"]`, "active", 10*time.Second, base+"users")

	// The viewer, in the same browser after the admin signs out, sees
	// everything and can act on nothing.
	b.signOut()
	b.open(strings.TrimSpace(vic.must("ui")))
	b.waitText(".user", "vic", 20*time.Second, "")
	b.open(jobURL)
	if got := b.text("#progress-done"); got != "2" {
		t.Errorf("viewer: progress %q", got)
	}
	if acts := b.text("#job-actions"); strings.Contains(acts, "Requeue") || strings.Contains(acts, "Clone") {
		t.Errorf("viewer is offered %q", acts)
	}
	if s := b.text(`tr[data-file="2/out.txt"]`); !strings.Contains(s, "out.txt") {
		t.Errorf("viewer: file row %q", s)
	}
	for _, path := range []string{"jobs/" + id + "/requeue", "jobs/" + id + "/clone", "maintenance/on", "users"} {
		b.open(base + path)
		if e := b.text(".error"); !strings.Contains(e, "has role viewer") || !strings.Contains(e, "PERMISSION_DENIED") {
			t.Errorf("viewer GET %s: %q", path, e)
		}
	}
	b.open(jobURL)
	status := get(b, 20*time.Second, chromedp.Evaluate[int](`fetch(location.pathname + "/requeue", {method: "POST",
		headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: "csrf=" + encodeURIComponent(document.querySelector('input[name=csrf]').value)}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != 403 {
		t.Fatalf("the viewer's forged requeue (with its own CSRF token) answered %d", status)
	}
	if d := c.job(id); d.Requeues != 1 {
		t.Fatalf("the viewer requeued the job: requeues %d", d.Requeues)
	}

	// Back as the admin: change vic's role (a new login is shown) and
	// remove vic.
	b.signOut()
	b.open(strings.TrimSpace(c.mustWard("ui")))
	b.waitText(".user", "admin", 20*time.Second, "")
	b.open(base + "users/vic/role")
	b.run(20*time.Second,
		chromedp.SetValue(chromedp.CSS("#f-role"), "submitter"),
		chromedp.Click(chromedp.CSS("#user-role-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#user-invite")))
	if cmd := b.text("#login-command"); !strings.Contains(cmd, "--force") || strings.Contains(cmd, join) {
		t.Errorf("role change login command %q", cmd)
	}
	vic.refused(api.CodeUnauthenticated, []string{"job", "ls"})
	b.open(base + "users/vic/remove")
	b.run(20*time.Second, chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if f := b.text(".flash"); !strings.Contains(f, "User vic removed") {
		t.Fatalf("remove: %q", f)
	}
	b.waitText(`tr[data-user="vic"]`, "removed", 10*time.Second, base+"users")

	// Every action is audited with the console user.
	want := map[string]bool{"cluster.maintenance": false, "job.requeue": false, "job.clone": false, "user.add": false, "user.role": false, "user.remove": false, "file.download": false}
	for _, e := range c.auditEvents() {
		if _, ok := want[e.Type]; ok && e.Via == "ui-link" && strings.HasSuffix(e.Actor, "/user/admin") {
			want[e.Type] = true
		}
	}
	for typ, seen := range want {
		if !seen {
			t.Errorf("no %s audit event by the console user", typ)
		}
	}
}

// signOut signs out and waits for the signed-out page: a navigation started
// while the sign-out's redirect is still loading is aborted by it
// (net::ERR_ABORTED).
func (b *browser) signOut() {
	b.t.Helper()
	b.run(20*time.Second, chromedp.Click(chromedp.CSS("form.signout button")))
	b.waitText("p.notice", "You have signed out.", 20*time.Second, "")
}
