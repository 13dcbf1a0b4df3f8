package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wardcluster/ward/internal/api"
)

// browser is a headless Chromium driven over the DevTools protocol.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts Debian's chromium with a fresh profile. It trusts the
// coordinator's public certificate by its key (SPKI hash) only, so nothing
// else is trusted, and it reaches nothing but loopback.
func newBrowser(t *testing.T, c *cluster) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; test.sh installs it with apt-get")
		}
		t.Skip("chromium not installed (./test.sh installs it)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", publicSPKI(t, c)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser; it must be on the tab's own
	// context, not a child with a deadline, or the deadline's end kills it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx}
}

// publicSPKI is the base64 SHA-256 of the public port's certificate key,
// read over a connection verified against the cluster CA.
func publicSPKI(t *testing.T, c *cluster) string {
	t.Helper()
	bundle := clusterBundle(t, c)
	conn, err := tls.Dial("tcp", c.public, &tls.Config{RootCAs: bundle.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// run runs browser actions in order, with a deadline.
func (b *browser) run(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// get runs one browser action that returns a value, with a deadline.
func get[T any](b *browser, timeout time.Duration, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v", err)
	}
	return v
}

// open loads a page and waits for its main content.
func (b *browser) open(url string) {
	b.t.Helper()
	b.run(30*time.Second, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("#main")))
}

// text is the text of the first element matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return get(b, 20*time.Second, chromedp.Text(chromedp.CSS(sel)))
}

// waitText waits until the element sel contains want, reloading the page
// with reload (when set) between looks. On timeout it shows the page.
func (b *browser) waitText(sel, want string, timeout time.Duration, reload string) string {
	b.t.Helper()
	var s string
	deadline := time.Now().Add(timeout)
	for {
		if reload != "" {
			b.open(reload)
		}
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		var err error
		s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil && strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
			defer cancel()
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			b.t.Fatalf("timed out after %s waiting for %s to show %q (it shows %q, err %v); the browser is at %s:\n%s", timeout, sel, want, s, err, loc, page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot saves the viewport as a PNG. With WARD_UPDATE_SCREENSHOTS=1
// it goes to docs/ (the README shows those); otherwise to the test's
// directory, so a test run leaves the work tree clean.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := get(b, 30*time.Second, chromedp.CaptureScreenshot())
	dir := b.t.TempDir()
	if os.Getenv("WARD_UPDATE_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs")
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	if len(png) < 10000 {
		b.t.Fatalf("screenshot %s is only %d bytes", name, len(png))
	}
}

// TestWebConsole drives the console in headless Chromium against a real
// coordinator and a real agent, as an admin would: sign in with a `ward
// ui` link (and see it refused the second time), read the overview, create
// a token and start an agent with its join command, watch it appear as
// YES, submit a job from the form and follow its output live, drain and
// revoke the node and see its session cut, and run a check against a port
// that does not speak TLS.
func TestWebConsole(t *testing.T) {
	c := newCluster(t)
	b := newBrowser(t, c)
	base := "https://" + c.public + "/ui/"

	// Sign in with a one-time link; the second use is refused.
	link := strings.TrimSpace(c.mustWard("ui"))
	if !strings.HasPrefix(link, base+"login?token=") {
		t.Fatalf("ward ui printed %q", link)
	}
	b.open(link)
	b.waitText("h1", "Overview", 20*time.Second, "")
	b.open(link)
	if msg := b.waitText(".notice", "already used", 20*time.Second, ""); !strings.Contains(msg, "ward ui") {
		t.Errorf("the refusal does not say how to get a new link: %q", msg)
	}

	// The overview: no agents yet, and the doctor's findings.
	b.open(base)
	if n := b.text("#links-yes"); n != "0" {
		t.Errorf("overview: %s links YES before any agent joined", n)
	}
	if s := strings.ToLower(b.text("main")); !strings.Contains(s, "insecure settings") || !strings.Contains(s, "root ca") || !strings.Contains(s, "crl number") {
		t.Errorf("overview lacks its sections:\n%s", s)
	}

	// Create a token; its join command is shown once.
	b.open(base + "tokens")
	b.run(20*time.Second,
		chromedp.SetValue(chromedp.CSS("#ttl"), "10m"),
		chromedp.SetValue(chromedp.CSS("#labels"), "rack=ui"),
		chromedp.Click(chromedp.CSS("#create-token button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#token-created")))
	join := strings.TrimSpace(b.text("#join-string"))
	if cmd := b.text("#join-command"); strings.Contains(cmd, join) || !strings.Contains(cmd, "--join-file -") {
		t.Fatalf("join command %q: want the join string on standard input, not on the command line", cmd)
	}
	b.open(base + "tokens")
	if strings.Contains(b.text("main"), join) {
		t.Fatal("the join string is shown again after creation")
	}

	// Start an agent with it as the page says: the string pasted on
	// standard input, then Enter (the input stays open, as a terminal's
	// does), and watch it appear as YES.
	pasteR, pasteW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pasteW.Close() })
	if _, err := pasteW.WriteString(join + "\n"); err != nil {
		t.Fatal(err)
	}
	agent := startProc(t, c.dir, "agent-ui1", pasteR, "agent", "--data", c.agentDir("ui1"), "--name", "ui1", "--slots", "2",
		"--kill-grace", "2s", "--join-file", "-")
	pasteR.Close()
	c.agents["ui1"] = agent
	b.waitText(`tr[data-node="ui1"] td.link`, "YES", 30*time.Second, base+"nodes")
	if row := b.text(`tr[data-node="ui1"]`); !strings.Contains(row, "rack=ui") || !strings.Contains(row, "ready") || !strings.Contains(row, "TLS 1.3") {
		t.Errorf("node row: %q", row)
	}
	b.open(base)
	b.waitText("#links-yes", "1", 10*time.Second, base)
	b.screenshot("ui-overview.png")

	// Submit a job from the form and follow its output while it runs: the
	// tasks print, then wait for a file the test creates.
	gate := filepath.Join(t.TempDir(), "go")
	b.open(base + "jobs/new")
	b.run(20*time.Second,
		chromedp.SetValue(chromedp.CSS("#command"), `sh -c 'echo started-{index}; while [ ! -e `+gate+` ]; do sleep 0.1; done; echo finished-{index}'`),
		chromedp.SetValue(chromedp.CSS("#count"), "2"),
		chromedp.SetValue(chromedp.CSS("#name"), "ui-live"),
		chromedp.Click(chromedp.CSS("#submit-job button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#output")))
	out := b.waitText("#output", "started-1", 20*time.Second, "")
	if !strings.Contains(out, "[0] started-0") || strings.Contains(out, "finished") {
		t.Fatalf("live output before the gate opened: %q", out)
	}
	if st := b.text("#output-status"); !strings.Contains(st, "Following live output") {
		t.Errorf("output status while running: %q", st)
	}
	// The progress counts follow live too, without a reload.
	b.waitText("#progress-running", "2", 20*time.Second, "")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.waitText("#output", "[1] finished-1", 20*time.Second, "")
	b.waitText("#output-status", "completed", 20*time.Second, "")
	b.waitText("#progress-done", "2", 20*time.Second, "")
	if r := b.text("#progress-running"); r != "0" {
		t.Errorf("running after the job ended: %q", r)
	}
	jobURL := get(b, 5*time.Second, chromedp.Location())
	b.open(jobURL)
	b.waitText("#output", "finished-0", 20*time.Second, "")
	b.screenshot("ui-job.png")
	id := jobURL[strings.LastIndex(jobURL, "/")+1:]
	if d := c.job(id); d.State != api.JobCompleted || d.Spec.Name != "ui-live" || !strings.HasSuffix(d.SubmittedBy, "/user/admin") {
		t.Fatalf("job %s: %s %q by %s", id, d.State, d.Spec.Name, d.SubmittedBy)
	}

	// Drain the node with the keyboard alone: focus the link, Enter, and
	// Enter again on the confirmation (its button has the focus).
	b.open(base + "nodes")
	b.run(20*time.Second,
		chromedp.Focus(chromedp.CSS(`tr[data-node="ui1"] a[href$="/drain"]`)),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS("form.confirm")),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if f := b.text(".flash"); !strings.Contains(f, "ui1 is draining") || !strings.Contains(b.text(`tr[data-node="ui1"]`), "drain") {
		t.Fatalf("after drain: %q", f)
	}
	if n, _ := c.node("ui1"); n.State != "draining" && n.State != "drained" {
		t.Fatalf("node state %s after the drain", n.State)
	}

	// Revoke it, with a reason: its session is cut at once.
	before := len(agent.stderrText())
	b.open(base + "nodes/ui1/revoke")
	b.run(20*time.Second,
		chromedp.SetValue(chromedp.CSS("#f-reason"), "key-compromise"),
		chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if f := b.text(".flash"); !strings.Contains(f, "1 session(s) closed") {
		t.Fatalf("after revoke: %q", f)
	}
	sessionEnds(t, agent, before, time.Now(), 5*time.Second)
	if code := agent.wait(30 * time.Second); code == 0 || !strings.Contains(agent.stderrText(), "revoked") {
		t.Fatalf("the revoked agent exited %d", code)
	}
	b.waitText(`tr[data-node="ui1"]`, "revoked", 10*time.Second, base+"nodes")

	// Check connection against a port that speaks plaintext.
	plain := plaintextPort(t, "SSH-2.0-OpenSSH_9.2\r\n")
	b.open(base + "check")
	b.run(20*time.Second,
		chromedp.SetValue(chromedp.CSS("#address"), plain),
		chromedp.Click(chromedp.CSS("#check-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#verdict")))
	if v := b.text("#verdict"); v != "not_tls" {
		t.Fatalf("check verdict %q", v)
	}
	if r := b.text("#check-report"); !strings.Contains(r, "Fix:") {
		t.Errorf("the check report has no fix:\n%s", r)
	}
	kept := get(b, 5*time.Second, chromedp.Value(chromedp.CSS("#address")))
	if kept != plain {
		t.Errorf("the form lost the address: %q", kept)
	}

	// Every action is in the audit log with the console user and source.
	want := map[string]bool{"ui.login": false, "token.create": false, "job.submit": false, "node.drain": false, "cert.revoke": false, "check.run": false}
	for _, e := range c.auditEvents() {
		if _, ok := want[e.Type]; ok && e.Result == "ok" && e.Via == "ui-link" && strings.HasSuffix(e.Actor, "/user/admin") && strings.HasPrefix(e.Source, "127.0.0.1:") {
			want[e.Type] = true
		}
	}
	for typ, seen := range want {
		if !seen {
			t.Errorf("no %s audit event by the console user (via ui-link, with the source address)", typ)
		}
	}
	if !c.hasAudit("ui.login", "LINK_USED") {
		t.Error("the second use of the link is not audited")
	}
	// The audit page shows them.
	b.open(base + "audit?type=node")
	if s := b.text("#audit"); !strings.Contains(s, "node.drain") || !strings.Contains(s, "ui-link") {
		t.Errorf("audit page:\n%s", s)
	}
}
