package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
)

// An admin turns maintenance mode on with a message: every page shows
// the banner with it, for every role, until it is turned off.
func TestMaintenanceBanner(t *testing.T) {
	c := newConsole(t, newFakeCluster(3, 4), "")
	csrf := c.signIn(c.client)
	if _, body := c.get(c.client, Prefix+"nodes"); strings.Contains(body, "maintenance-banner") {
		t.Fatal("a banner while maintenance mode is off")
	}
	resp, _ := c.post(c.client, Prefix+"maintenance/on", url.Values{"csrf": {csrf}, "message": {"disk swap <until 14:00>"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("maintenance on: %s", resp.Status)
	}
	viewer := c.newClient()
	c.signInAs(viewer, authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleUser, Name: "vera"}, Role: authz.RoleViewer, Via: authz.ViaCert, CertSerial: "0b"})
	for _, cl := range []*http.Client{c.client, viewer} {
		for _, page := range []string{"", "nodes", "jobs", "jobs/3", "maintenance"} {
			_, body := c.get(cl, Prefix+page)
			if !strings.Contains(body, `id="maintenance-banner"`) || !strings.Contains(body, "disk swap &lt;until 14:00&gt;") {
				t.Fatalf("page /%s has no banner with the (escaped) message", page)
			}
		}
	}
	_, body := c.get(viewer, Prefix+"maintenance")
	if strings.Contains(body, "/ui/maintenance/off") {
		t.Error("the viewer is offered to turn maintenance mode off")
	}
	resp, body = c.post(viewer, Prefix+"maintenance/off", url.Values{"csrf": {hidden(body, "csrf")}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "needs role admin") {
		t.Fatalf("viewer turning maintenance off: %s", resp.Status)
	}
	if resp, _ := c.post(c.client, Prefix+"maintenance/off", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("maintenance off: %s", resp.Status)
	}
	if _, body := c.get(c.client, Prefix); strings.Contains(body, "maintenance-banner") {
		t.Fatal("the banner stays after maintenance mode is off")
	}
	if a := c.fake.actionsSeen(); len(a) != 2 || a[0] != `maintenance true "disk swap <until 14:00>"` || a[1] != `maintenance false ""` {
		t.Fatalf("actions: %q", a)
	}
}

// The job page shows the progress counts, the new options and the output
// files; requeue and clone go through confirmation forms.
func TestJobFeatures(t *testing.T) {
	fake := newFakeCluster(3, 4)
	fake.jobs[2].Spec.Outputs = []string{"*.txt"}
	fake.jobs[2].Spec.Memory = 512 << 20
	fake.jobs[2].Spec.Exclusive = true
	fake.jobs[2].Spec.MaxRunning = 2
	fake.jobs[2].Spec.CancelOnFailure = true
	fake.jobs[2].Spec.Setup = "make env"
	fake.jobs[2].Spec.Inputs = []api.StagedFile{{Path: "data.csv", Size: 2048, SHA256: "sha256:" + strings.Repeat("cd", 32)}}
	fake.jobs[2].Counts = map[string]int{api.TaskCompleted: 2, api.TaskFailed: 1, api.TaskLost: 1}
	c := newConsole(t, fake, "")
	csrf := c.signIn(c.client)
	_, body := c.get(c.client, Prefix+"jobs/3")
	for _, want := range []string{`id="progress-done">2<`, `id="progress-failed">2<`, `id="progress-running">0<`, `id="progress-queued">0<`,
		"512 MiB", "each task has a node to itself", "2 task(s) at once", "a failed task cancels the rest", "<code>make env</code>", "data.csv",
		`href="/ui/jobs/3/files/0?path=result&#43;%3C1%3E.txt"`, `id="requeue-failed"`, `id="clone"`} {
		if !strings.Contains(body, want) {
			t.Errorf("job page lacks %s", want)
		}
	}
	resp, file := c.get(c.client, Prefix+"jobs/3/files/0?path="+url.QueryEscape(fakeOutput))
	if resp.StatusCode != http.StatusOK || file != "bytes\n" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download: %s %q %q", resp.Status, file, resp.Header.Get("Content-Disposition"))
	}
	if resp, _ := c.get(c.client, Prefix+"jobs/3/files/0?path=other"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("download of a file the task did not leave: %s", resp.Status)
	}
	_, form := c.get(c.client, Prefix+"jobs/3/requeue?failed=1")
	if !strings.Contains(form, `name="failed" value="1" checked`) {
		t.Fatal("the requeue form for failed tasks does not start checked")
	}
	resp, _ = c.post(c.client, Prefix+"jobs/3/requeue", url.Values{"csrf": {csrf}, "failed": {"1"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != Prefix+"jobs/3" {
		t.Fatalf("requeue: %s to %s", resp.Status, resp.Header.Get("Location"))
	}
	_, form = c.get(c.client, Prefix+"jobs/3/clone")
	if !strings.Contains(form, `name="count" type="text" value="4"`) {
		t.Fatalf("the clone form does not start from the job's options:\n%s", form)
	}
	resp, body = c.post(c.client, Prefix+"jobs/3/clone", url.Values{"csrf": {csrf}, "count": {"x"}, "name": {"copy"}, "priority": {"high"}, "queue": {"default"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `value="copy"`) {
		t.Fatalf("clone with a bad count: %s; the form must come back as typed", resp.Status)
	}
	resp, _ = c.post(c.client, Prefix+"jobs/3/clone", url.Values{"csrf": {csrf}, "count": {"7"}, "name": {"copy"}, "priority": {"high"}, "queue": {"default"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != Prefix+"jobs/5" {
		t.Fatalf("clone: %s to %s", resp.Status, resp.Header.Get("Location"))
	}
	want := []string{"download 3/0/" + fakeOutput, "download 3/0/other", "requeue 3 failed=true", `clone 3 count=7 name="copy" priority=high`}
	if a := c.fake.actionsSeen(); strings.Join(a, "|") != strings.Join(want, "|") {
		t.Fatalf("actions: %q", a)
	}
	if c.fake.jobs[4].Spec.Setup != "make env" || len(c.fake.jobs[4].Spec.Inputs) != 1 {
		t.Fatal("the clone lost the original's options")
	}
}

// Users: the admin adds one and sees the one-time login once; a role
// change shows a new one; removal goes through a confirmation.
func TestUsersPage(t *testing.T) {
	c := newConsole(t, newFakeCluster(3, 4), "")
	csrf := c.signIn(c.client)
	_, body := c.get(c.client, Prefix+"users")
	if !strings.Contains(body, `data-user="alice"`) || !strings.Contains(body, `href="/ui/users/alice/role"`) || strings.Contains(body, `href="/ui/users/admin/role"`) {
		t.Fatal("users page: alice's row and actions")
	}
	// An add or a role change redirects to the users page, which shows
	// the login once (so a reload repeats nothing); the command takes the
	// login string on standard input, never on its command line.
	invite := func(resp *http.Response, what, command, join string) {
		t.Helper()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), Prefix+"users") {
			t.Fatalf("%s: %s to %q, want a redirect to the users page", what, resp.Status, resp.Header.Get("Location"))
		}
		_, body := c.get(c.client, Prefix+"users")
		if !strings.Contains(body, `<pre id="login-command" class="copyable">`+command+`</pre>`) || !strings.Contains(body, `<pre id="login-string" class="copyable">`+join+`</pre>`) {
			t.Fatalf("%s: the users page does not show the login once:\n%s", what, body)
		}
		if strings.Contains(body, "printf") {
			t.Fatalf("%s: the login string is put on a command line:\n%s", what, body)
		}
		if _, body := c.get(c.client, Prefix+"users"); strings.Contains(body, "token=secret") {
			t.Fatalf("%s: the login string is shown again", what)
		}
	}
	resp, _ := c.post(c.client, Prefix+"users", url.Values{"csrf": {csrf}, "name": {"bob"}, "role": {"viewer"}, "ttl": {"1h"}})
	invite(resp, "user add", "ward login --join-file -", "wardjoin://h1?user=bob&amp;token=secret")
	if resp, body := c.post(c.client, Prefix+"users", url.Values{"csrf": {csrf}, "name": {"carl"}, "ttl": {"soon"}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `value="carl"`) {
		t.Fatalf("user add with a bad TTL: %s", resp.Status)
	}
	resp, _ = c.post(c.client, Prefix+"users/alice/role", url.Values{"csrf": {csrf}, "role": {"operator"}})
	invite(resp, "role change", "ward login --join-file - --force", "wardjoin://h1?user=alice&amp;token=secret2")
	if resp, _ := c.post(c.client, Prefix+"users/alice/remove", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove: %s", resp.Status)
	}
	want := []string{"user add bob viewer", "user role alice operator", "user remove alice"}
	if a := c.fake.actionsSeen(); strings.Join(a, "|") != strings.Join(want, "|") {
		t.Fatalf("actions: %q", a)
	}
	// An operator sees profiles, not users.
	op := c.newClient()
	c.signInAs(op, authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleUser, Name: "olga"}, Role: authz.RoleOperator, Via: authz.ViaCert, CertSerial: "0c"})
	if resp, _ := c.get(op, Prefix+"users"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("operator's users page: %s", resp.Status)
	}
	_, body = c.get(op, Prefix+"profiles")
	if !strings.Contains(body, `data-profile="big"`) || !strings.Contains(body, `data-profile-node="node-0001"`) || !strings.Contains(body, "slots=3") || !strings.Contains(body, "ward profile set") {
		t.Fatalf("profiles page:\n%s", body)
	}
}

// The submit form takes issue 16's job options; a bad size keeps what was
// typed.
func TestSubmitJobOptions(t *testing.T) {
	c := newConsole(t, newFakeCluster(1, 1), "")
	csrf := c.signIn(c.client)
	form := url.Values{"csrf": {csrf}, "command": {"./sim {index}"}, "count": {"3"}, "memory": {"lots"}, "max_running": {"2"},
		"exclusive": {"1"}, "cancel_on_failure": {"1"}, "setup": {"make env"}, "teardown": {"rm -rf env"}}
	resp, body := c.post(c.client, Prefix+"jobs", form)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "memory per task") || !strings.Contains(body, `value="make env"`) || !strings.Contains(body, `name="exclusive" value="1" checked`) {
		t.Fatalf("bad memory: %s\n%s", resp.Status, body)
	}
	form.Set("memory", "512MiB")
	if resp, _ := c.post(c.client, Prefix+"jobs", form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("submit: %s", resp.Status)
	}
	s := c.fake.jobs[len(c.fake.jobs)-1].Spec
	if s.Memory != 512<<20 || s.MaxRunning != 2 || !s.Exclusive || !s.CancelOnFailure || s.Setup != "make env" || s.Teardown != "rm -rf env" {
		t.Fatalf("submitted spec %+v", s)
	}
}
