package web

import (
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// console is a console over a fake cluster, served over TLS, with a
// browser-like client (cookie jar, no automatic redirects) and a clock the
// test moves.
type console struct {
	t      *testing.T
	srv    *Server
	fake   *fakeCluster
	ts     *httptest.Server
	client *http.Client
	mu     sync.Mutex
	now    time.Time
}

func newConsole(t *testing.T, fake *fakeCluster, password string) *console {
	t.Helper()
	c := &console{t: t, fake: fake, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := Config{Cluster: "c1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: c.clock}
	if password != "" {
		var err error
		if cfg.Password, err = ParsePasswordHash(cheapHash(password)); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(cfg, fake)
	if err != nil {
		t.Fatal(err)
	}
	c.srv = srv
	c.ts = httptest.NewTLSServer(srv)
	t.Cleanup(c.ts.Close)
	c.client = c.newClient()
	return c
}

func (c *console) newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	cl := c.ts.Client()
	return &http.Client{Transport: cl.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (c *console) clock() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *console) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// get fetches a console path and returns the response and its body.
func (c *console) get(cl *http.Client, path string) (*http.Response, string) {
	c.t.Helper()
	resp, err := cl.Get(c.ts.URL + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// post submits a form, as a same-origin browser form would.
func (c *console) post(cl *http.Client, path string, form url.Values, header ...string) (*http.Response, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.ts.URL)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := cl.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hiddenRe = regexp.MustCompile(`name="(csrf|token)" value="([^"]*)"`)

// hidden returns a hidden form field's value from a page.
func hidden(body, name string) string {
	for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	return ""
}

// signIn signs cl in with a fresh one-time link and returns the session's
// CSRF token.
func (c *console) signIn(cl *http.Client) string {
	c.t.Helper()
	return c.signInAs(cl, testAdmin)
}

// signInAs opens a session for p with a one-time link, as a browser
// would, and returns the session's CSRF token.
func (c *console) signInAs(cl *http.Client, p authz.Principal) string {
	c.t.Helper()
	path, _, err := c.srv.NewLoginLink(p, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, body := c.get(cl, path)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("link page: %s", resp.Status)
	}
	resp, _ = c.post(cl, Prefix+"login", url.Values{"csrf": {hidden(body, "csrf")}, "token": {hidden(body, "token")}, "next": {Prefix}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != Prefix {
		c.t.Fatalf("sign-in: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	_, page := c.get(cl, Prefix)
	csrf := hidden(page, "csrf")
	if csrf == "" {
		c.t.Fatal("signed in, but the overview has no CSRF token")
	}
	return csrf
}

func TestSecurityHeadersOnEveryPage(t *testing.T) {
	c := newConsole(t, newFakeCluster(3, 5), "")
	csrf := c.signIn(c.client)
	paths := []string{"", "nodes", "nodes?state=ready&q=node", "jobs", "jobs?state=failed", "jobs/new", "jobs/1", "jobs/1?output=2", "jobs/1/output?task=all",
		"tokens", "certs", "certs?state=revoked", "ca", "ca/rotate", "ca/rotate?rollback=1", "check", "audit", "audit?type=ui&since=1h", "migration",
		"nodes/node-0001/drain", "nodes/node-0001/undrain", "nodes/node-0001/revoke", "jobs/1/cancel", "tokens/0123456789abcdef/revoke",
		"certs/0abc/revoke", "migration/upgrade", "migration/finish", "no/such/page", "jobs/999", "ca/bundle.pem", "ca/crl"}
	check := func(resp *http.Response, what string) {
		t.Helper()
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", what, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows inline code: %q", what, csp)
		}
		for k, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", what, k, got, want)
			}
		}
	}
	for _, p := range paths {
		resp, body := c.get(c.client, Prefix+p)
		check(resp, "GET "+p)
		if resp.StatusCode >= 500 {
			t.Errorf("GET %s: %s\n%s", p, resp.Status, body)
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") && (strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") || strings.Contains(body, "style=")) {
			t.Errorf("GET %s: the page has inline script or style", p)
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") && resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q", p, resp.Header.Get("Cache-Control"))
		}
	}
	// Signed out, errors and assets too.
	anon := c.newClient()
	for _, p := range []string{"", "login", "nodes", "static/style.css", "static/ui.js"} {
		resp, _ := c.get(anon, Prefix+p)
		check(resp, "anonymous GET "+p)
	}
	resp, _ := c.post(c.client, Prefix+"nodes/node-0001/drain", url.Values{"csrf": {csrf}})
	check(resp, "POST drain")
}

func TestNoSessionGetsTheSignInPageNeverData(t *testing.T) {
	c := newConsole(t, newFakeCluster(3, 5), "")
	anon := c.newClient()
	for _, p := range []string{"", "nodes", "jobs/1", "jobs/1/output", "tokens", "audit", "ca/bundle.pem"} {
		resp, body := c.get(anon, Prefix+p)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), Prefix+"login?next=") {
			t.Errorf("GET %s without a session: %s to %q", p, resp.Status, resp.Header.Get("Location"))
		}
		if strings.Contains(body, "node-0001") || strings.Contains(body, "simulate") {
			t.Errorf("GET %s without a session leaks data", p)
		}
	}
	resp, body := c.get(anon, Prefix+"jobs/1/events")
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "hello") {
		t.Errorf("events without a session: %s", resp.Status)
	}
	resp, _ = c.post(anon, Prefix+"nodes/node-0001/drain", url.Values{"csrf": {"x"}})
	if resp.StatusCode != http.StatusUnauthorized || len(c.fake.actionsSeen()) != 0 {
		t.Errorf("POST without a session: %s, actions %v", resp.Status, c.fake.actionsSeen())
	}
}

func TestCSRFRefused(t *testing.T) {
	c := newConsole(t, newFakeCluster(3, 5), "")
	csrf := c.signIn(c.client)
	for _, tc := range []struct {
		name   string
		form   url.Values
		header []string
	}{
		{"missing token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {csrf + "x"}}, nil},
		{"another session's token", url.Values{"csrf": {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}, nil},
		{"right token from another site", url.Values{"csrf": {csrf}}, []string{"Origin", "https://evil.example"}},
		{"right token, cross-site fetch", url.Values{"csrf": {csrf}}, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"nodes/node-0001/drain", "jobs", "tokens", "logout", "check", "ca/rotate",
				"maintenance/on", "maintenance/off", "jobs/3/requeue", "jobs/3/clone", "users", "users/alice/role", "users/alice/remove"} {
				resp, body := c.post(c.client, Prefix+path, tc.form, tc.header...)
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "nothing was done") {
					t.Errorf("POST %s: %s", path, resp.Status)
				}
			}
			if a := c.fake.actionsSeen(); len(a) != 0 {
				t.Fatalf("actions ran: %v", a)
			}
		})
	}
	// The session survived the refused logout, and the right token works.
	resp, _ := c.post(c.client, Prefix+"nodes/node-0001/drain", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != Prefix+"nodes" {
		t.Fatalf("drain with the token: %s", resp.Status)
	}
	if a := c.fake.actionsSeen(); len(a) != 1 || a[0] != "drain node-0001" {
		t.Fatalf("actions: %v", a)
	}
	if p := c.fake.who[0]; p.ID != testAdmin.ID || p.Via != "ui-link" || p.CertSerial != "0a" || !strings.HasPrefix(p.Source, "127.0.0.1:") {
		t.Fatalf("the action ran as %+v", p)
	}
	_, page := c.get(c.client, Prefix+"nodes")
	if !strings.Contains(page, "Node node-0001 is draining.") {
		t.Error("no confirmation message after the drain")
	}
}

func TestLoggedOutCookieRefused(t *testing.T) {
	c := newConsole(t, newFakeCluster(3, 5), "")
	csrf := c.signIn(c.client)
	u, _ := url.Parse(c.ts.URL)
	var old *http.Cookie
	for _, ck := range c.client.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			old = ck
		}
	}
	if old == nil {
		t.Fatal("no session cookie")
	}
	resp, _ := c.post(c.client, Prefix+"logout", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	var cleared bool
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie && ck.MaxAge < 0 {
			cleared = true
		}
	}
	if !cleared {
		t.Error("logout did not clear the cookie")
	}
	// Replay the old cookie, as a copy kept elsewhere would.
	replay := c.newClient()
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: old.Value}})
	resp, body := c.get(replay, Prefix+"nodes")
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(body, "node-0001") {
		t.Errorf("GET with a logged-out cookie: %s", resp.Status)
	}
	resp, _ = c.post(replay, Prefix+"nodes/node-0001/drain", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusUnauthorized || len(c.fake.actionsSeen()) != 0 {
		t.Errorf("POST with a logged-out cookie: %s, actions %v", resp.Status, c.fake.actionsSeen())
	}
	if !c.audited("ui.logout", "ok") {
		t.Error("the logout is not audited")
	}
}

func (c *console) audited(typ, result string) bool {
	c.fake.mu.Lock()
	defer c.fake.mu.Unlock()
	for _, e := range c.fake.events {
		if e.Type == typ && e.Result == result && strings.HasPrefix(e.Source, "127.0.0.1:") {
			return true
		}
	}
	return false
}

func TestSessionCookieAttributes(t *testing.T) {
	c := newConsole(t, newFakeCluster(1, 1), "")
	path, _, _ := c.srv.NewLoginLink(testAdmin, 0)
	_, body := c.get(c.client, path)
	resp, _ := c.post(c.client, Prefix+"login", url.Values{"csrf": {hidden(body, "csrf")}, "token": {hidden(body, "token")}})
	var raw string
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, sessionCookie+"=") {
			raw = v
		}
	}
	for _, want := range []string{"Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(raw, want) {
			t.Errorf("session cookie %q lacks %s", raw, want)
		}
	}
	if strings.Contains(raw, "Domain=") || strings.Contains(raw, "Max-Age") || strings.Contains(raw, "Expires") {
		t.Errorf("session cookie %q outlives the browser session or names a domain", raw)
	}
}

func TestLoginLinkWorksOnce(t *testing.T) {
	c := newConsole(t, newFakeCluster(1, 1), "")
	path, _, err := c.srv.NewLoginLink(testAdmin, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	use := func(cl *http.Client) (*http.Response, string) {
		_, body := c.get(cl, path)
		return c.post(cl, Prefix+"login", url.Values{"csrf": {hidden(body, "csrf")}, "token": {hidden(body, "token")}})
	}
	if resp, _ := use(c.client); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use: %s", resp.Status)
	}
	resp, body := use(c.newClient())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "already used") {
		t.Fatalf("second use: %s", resp.Status)
	}
	path2, _, _ := c.srv.NewLoginLink(testAdmin, time.Minute)
	c.advance(time.Minute)
	path = path2
	if resp, body := use(c.newClient()); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("expired link: %s", resp.Status)
	}
	path = Prefix + "login?token=made-up"
	if resp, body := use(c.newClient()); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
		t.Fatalf("made-up link: %s", resp.Status)
	}
	for _, code := range []string{"ok", codeLinkUsed, codeLinkExpired, codeLinkInvalid} {
		if !c.audited("ui.login", code) {
			t.Errorf("no ui.login %s audit event with the source address", code)
		}
	}
	// Without the form's CSRF cookie the secret is not even looked at.
	path3, _, _ := c.srv.NewLoginLink(testAdmin, time.Minute)
	cl := c.newClient()
	_, body = c.get(cl, path3)
	resp, _ = c.post(c.newClient(), Prefix+"login", url.Values{"csrf": {hidden(body, "csrf")}, "token": {hidden(body, "token")}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without the form cookie: %s", resp.Status)
	}
	if resp, _ := c.post(cl, Prefix+"login", url.Values{"csrf": {hidden(body, "csrf")}, "token": {hidden(body, "token")}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the link was used up by a refused attempt: %s", resp.Status)
	}
}

func TestPasswordSignInAndThrottle(t *testing.T) {
	c := newConsole(t, newFakeCluster(1, 1), "correct horse battery")
	try := func(cl *http.Client, pw string) *http.Response {
		_, body := c.get(cl, Prefix+"login")
		resp, _ := c.post(cl, Prefix+"login", url.Values{"csrf": {hidden(body, "csrf")}, "password": {pw}, "next": {Prefix + "jobs?state=failed"}})
		return resp
	}
	if resp := try(c.client, "correct horse battery"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != Prefix+"jobs?state=failed" {
		t.Fatalf("right password: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if resp, _ := c.get(c.client, Prefix+"nodes"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after password sign-in: %s", resp.Status)
	}
	cl := c.newClient()
	for i := range throttleFailures {
		if resp := try(cl, "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %s", i, resp.Status)
		}
	}
	if resp := try(cl, "correct horse battery"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after %d failures the right password got %s, want 429", throttleFailures, resp.Status)
	}
	c.advance(throttleWindow)
	if resp := try(cl, "correct horse battery"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %s", resp.Status)
	}
	if !c.audited("ui.login", codeWrongPassword) || !c.audited("ui.login", codeThrottled) {
		t.Error("refused password sign-ins are not audited")
	}
}

func TestSessionTimeouts(t *testing.T) {
	c := newConsole(t, newFakeCluster(1, 1), "")
	c.signIn(c.client)
	// Used every 20 minutes, it lives until the 12 h lifetime.
	for range 35 {
		c.advance(20 * time.Minute)
		if resp, _ := c.get(c.client, Prefix+"nodes"); resp.StatusCode != http.StatusOK {
			t.Fatalf("a session in use ended early at %s", c.clock())
		}
	}
	c.advance(40 * time.Minute)
	if resp, _ := c.get(c.client, Prefix+"nodes"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a session past its 12 h lifetime: %s", resp.Status)
	}
	c.signIn(c.client)
	c.advance(DefaultIdleTimeout)
	if resp, _ := c.get(c.client, Prefix+"nodes"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("an idle session: %s", resp.Status)
	}
	if !c.audited("ui.session_end", "timed_out") {
		t.Error("the timed-out session is not audited")
	}
}

func TestFormErrorsKeepInput(t *testing.T) {
	c := newConsole(t, newFakeCluster(1, 1), "")
	csrf := c.signIn(c.client)
	resp, body := c.post(c.client, Prefix+"jobs", url.Values{"csrf": {csrf}, "command": {`echo "unterminated`}, "count": {"7"}, "labels": {"rack=a"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "never closed") || !strings.Contains(body, `value="7"`) || !strings.Contains(body, "rack=a") ||
		!strings.Contains(body, `value="echo &#34;unterminated"`) {
		t.Fatalf("bad command: %s\n%s", resp.Status, body)
	}
	resp, _ = c.post(c.client, Prefix+"jobs", url.Values{"csrf": {csrf}, "command": {`sh -c 'echo a; echo b' {index}`}, "count": {"2"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("good command: %s", resp.Status)
	}
	if a := c.fake.actionsSeen(); len(a) != 1 || a[0] != `submit ["sh" "-c" "echo a; echo b" "{index}"]` {
		t.Fatalf("submitted %v", a)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                       Prefix,
		Prefix + "jobs?state=x":  Prefix + "jobs?state=x",
		"https://evil.example/":  Prefix,
		"//evil.example/ui/":     Prefix,
		"/ui/\\evil":             Prefix,
		Prefix + "login?next=/x": Prefix,
		"/v1/nodes":              Prefix,
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEventsStreamOutput(t *testing.T) {
	c := newConsole(t, newFakeCluster(1, 1), "")
	c.signIn(c.client)
	resp, body := c.get(c.client, Prefix+"jobs/1/events?task=all")
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "event: chunk\ndata: {") || !strings.Contains(body, `"data":"hello \u003cb\u003e\n"`) || !strings.Contains(body, "event: end\n") ||
		!strings.Contains(body, "event: progress\ndata: {\"total\":4,\"done\":3,\"failed\":0,\"running\":1,\"queued\":0}\n\n") {
		t.Fatalf("stream:\n%s", body)
	}
	_, body = c.get(c.client, Prefix+"jobs/1/output?task=all")
	if body != "[0] hello <b>\n" {
		t.Fatalf("plain output %q", body)
	}
}

// TestBrowserFormPost: a browser posts the console's forms with Origin
// "null" (Referrer-Policy: no-referrer) and Sec-Fetch-Site same-origin;
// that is accepted, and a refused sign-in never posts itself again.
func TestBrowserFormPost(t *testing.T) {
	c := newConsole(t, newFakeCluster(1, 1), "")
	csrf := c.signIn(c.client)
	resp, _ := c.post(c.client, Prefix+"nodes/node-0000/undrain", url.Values{"csrf": {csrf}}, "Origin", "null", "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a browser's same-origin form post: %s", resp.Status)
	}
	path, _, _ := c.srv.NewLoginLink(testAdmin, 0)
	cl := c.newClient()
	_, body := c.get(cl, path)
	if !strings.Contains(body, "data-autosubmit") {
		t.Fatal("the link page does not post itself")
	}
	resp, body = c.post(cl, Prefix+"login", url.Values{"csrf": {"wrong"}, "token": {hidden(body, "token")}})
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "data-autosubmit") || hidden(body, "token") == "" {
		t.Fatalf("a refused link sign-in: %s, autosubmit %v", resp.Status, strings.Contains(body, "data-autosubmit"))
	}
}

func TestDownloads(t *testing.T) {
	fake := newFakeCluster(1, 1)
	ca := pkitest.NewCluster(t, "c1")
	fake.roots = []*x509.Certificate{ca.Root.Cert}
	c := newConsole(t, fake, "")
	csrf := c.signIn(c.client)
	resp, body := c.get(c.client, Prefix+"ca/bundle.pem")
	if certs, err := pki.ParseCertsPEM([]byte(body)); err != nil || len(certs) != 1 || !certs[0].Equal(ca.Root.Cert) || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("PEM bundle: %v %v", resp.Header, err)
	}
	_, body = c.get(c.client, Prefix+"ca/roots/"+pki.SerialHex(ca.Root.Cert))
	if body != string(ca.Root.Cert.Raw) {
		t.Fatal("the DER root is not the root")
	}
	if resp, _ := c.get(c.client, Prefix+"ca/roots/00"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unknown root: %s", resp.Status)
	}
	resp, body = c.post(c.client, Prefix+"ca/bundle.p12", url.Values{"csrf": {csrf}, "password": {"changeit"}})
	cf, err := pki.ParseCertFile([]byte(body), "changeit")
	if resp.StatusCode != http.StatusOK || err != nil || len(cf.Certs) != 1 || !cf.Certs[0].Equal(ca.Root.Cert) {
		t.Fatalf("PKCS#12 bundle: %s %v", resp.Status, err)
	}
	if resp, body := c.post(c.client, Prefix+"ca/bundle.p12", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "needs a password") {
		t.Fatalf("PKCS#12 without a password: %s", resp.Status)
	}
	if resp, _ := c.get(c.client, Prefix+"ca/crl"); resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("CRL: %v", resp.Header)
	}
}
