package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
)

// secretSet names every secret a test cluster used: what it is → the text
// that must not appear anywhere a user, operator or log reader can see.
type secretSet map[string]string

// addJoin adds the secret of a join string.
func (s secretSet) addJoin(t *testing.T, join string) {
	t.Helper()
	js, err := enroll.ParseJoinString(strings.TrimSpace(join))
	if err != nil || len(js.Secret) < 16 {
		t.Fatalf("cannot find the token secret in %q: %v", join, err)
	}
	s["the join token secret of "+js.TokenID] = js.Secret
}

// addKeys adds every private key under dirs (PEM files, and the key_pem of
// CLI contexts), one entry per base64 line of 40 characters or more, and
// returns how many keys it found.
func (s secretSet) addKeys(dirs ...string) int {
	keys := 0
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			data, _ := os.ReadFile(p)
			if strings.HasSuffix(p, ".context") { // JSON holding key_pem
				var ctx struct {
					KeyPEM string `json:"key_pem"`
				}
				json.Unmarshal(data, &ctx)
				data = []byte(ctx.KeyPEM)
			}
			for rest := data; ; {
				var blk *pem.Block
				blk, rest = pem.Decode(rest)
				if blk == nil {
					break
				}
				if strings.Contains(blk.Type, "PRIVATE") || strings.Contains(blk.Type, "ENCRYPTED") {
					keys++
					for i, line := range strings.Split(string(pem.EncodeToMemory(blk)), "\n") {
						if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
							s[fmt.Sprintf("%s (key line %d)", p, i)] = line
						}
					}
				}
			}
			return nil
		})
	}
	return keys
}

// check reports every secret found in text, which came from where.
func (s secretSet) check(t *testing.T, where, text string) {
	t.Helper()
	for what, secret := range s {
		if i := strings.Index(text, secret); i >= 0 {
			// The place, with the secret itself masked.
			from, to := max(i-120, 0), min(i+len(secret)+60, len(text))
			t.Errorf("%s holds %s: …%s…", where, what, strings.ReplaceAll(text[from:to], secret, "<SECRET>"))
		}
	}
	if strings.Contains(text, "PRIVATE KEY-----") {
		t.Errorf("%s holds a PEM private key", where)
	}
}

// TestSecretsStaySecret runs a cluster through a full working day (joins,
// refused joins with wrong, used and revoked tokens, jobs that succeed and
// fail, logs, renewals, a revocation, console sign-ins with a wrong and the
// right password, one-time links, token and certificate lists, doctor,
// status, a support bundle) and then reads everything a person or a log
// pipeline can see: every log line of every process, the audit log,
// /metrics, the coordinator's raw debug info and the support bundle, the
// error body of every failed request, and the output of every CLI command
// but the ones whose job is to print a secret once. None may hold a token
// secret, a private key or a passphrase the run used.
func TestSecretsStaySecret(t *testing.T) {
	const passphrase = "purple elephant marmalade 5520"
	const uiPassword = "a console password of words 7781"
	dir := t.TempDir()
	passFile := filepath.Join(dir, "ca.pass")
	os.WriteFile(passFile, []byte(passphrase+"\n"), 0o600)
	hash, errOut, code := (&cluster{t: t}).wardIn(strings.NewReader(uiPassword+"\n"), "ui", "hash-password")
	if code != 0 {
		t.Fatalf("hash-password: exit %d: %s", code, errOut)
	}
	pwFile := filepath.Join(dir, "ui.pass")
	os.WriteFile(pwFile, []byte(hash), 0o600)
	c := newCluster(t, "--ca-passphrase-file", passFile, "--ui-password-file", pwFile, "--node-lost-timeout", "5s")
	secrets := secretSet{"the CA passphrase": passphrase, "the console password": uiPassword}

	// seen collects everything the CLI printed, but for the commands whose
	// job is to print a secret (token create, ui).
	var seen []struct{ where, text string }
	see := func(where, text string) { seen = append(seen, struct{ where, text string }{where, text}) }
	ward := func(args ...string) string {
		out, errOut, _ := c.ward(args...)
		see("ward "+strings.Join(args, " "), out+errOut)
		return out
	}

	c.startAgent("a1", 2)
	c.startAgent("a2", 1)
	joins, _ := filepath.Glob(filepath.Join(c.dir, "join-*"))
	for _, j := range joins {
		b, _ := os.ReadFile(j)
		secrets.addJoin(t, string(b))
	}

	// Refused joins: a wrong secret, a used token, a revoked token.
	used := strings.TrimSpace(string(must(os.ReadFile(joins[0]))))
	unused := c.token("--ttl", "1h")
	secrets.addJoin(t, unused)
	revoked := c.token("--ttl", "1h")
	secrets.addJoin(t, revoked)
	rjs, _ := enroll.ParseJoinString(revoked)
	ward("token", "revoke", rjs.TokenID)
	ujs, _ := enroll.ParseJoinString(unused)
	wrong := ujs
	wrong.Secret = strings.Repeat("A", len(ujs.Secret)) // a wrong secret, same shape
	for i, js := range []string{used, revoked, wrong.String()} {
		name := fmt.Sprintf("refused%d", i)
		p := startProc(t, c.dir, "agent-"+name, nil, "agent", "--data", filepath.Join(c.dir, "agent-"+name), "--name", name, "--join-file", c.writeJoinFile(js))
		p.wait(30 * time.Second)
	}

	// Error bodies: joins and heals sent by hand, with real secrets where
	// they belong and in broken JSON around them. (A secret a client puts
	// in a field that is not secret, such as the node name, is echoed in
	// that field's error like any other value, so it is not sent here.)
	pub := c.publicClient()
	post := func(hc *http.Client, where, u, body string) {
		resp, err := hc.Post(u, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		see(fmt.Sprintf("%s (HTTP %d)", where, resp.StatusCode), string(b))
	}
	for i, body := range []string{
		fmt.Sprintf(`{"token_id":%q,"secret":%q,"name":"x1","csr":"AAAA"}`, ujs.TokenID, ujs.Secret),
		fmt.Sprintf(`{"token_id":%q,"secret":%q,"name":"x2","csr":"AAAA"}`, rjs.TokenID, rjs.Secret),
		fmt.Sprintf(`{"token_id":%q,"secret":%q,"unknown":%q}`, ujs.TokenID, ujs.Secret, ujs.Secret),
		fmt.Sprintf(`{"token_id":%q,"secret":%q,"name":"x3","csr":%q}`, ujs.TokenID, ujs.Secret, ujs.Secret),
		fmt.Sprintf(`{"token_id":%s}`, ujs.Secret),
		fmt.Sprintf(`{"secret":"%s\xff"}`, ujs.Secret),
	} {
		post(pub, fmt.Sprintf("join body %d", i), "https://"+c.public+api.PathJoin, body)
	}
	post(pub, "heal without a certificate", "https://"+c.public+api.PathHeal, fmt.Sprintf(`{"csr":%q}`, ujs.Secret))
	cert, key := certAndKey(t, c)
	hc := c.httpClient(cert, key)
	post(hc, "renew with a secret for a CSR", "https://"+c.cluster+"/v1/certs/renew", fmt.Sprintf(`{"csr":%q}`, ujs.Secret))
	post(hc, "a join body sent to the cluster port", "https://"+c.cluster+"/v1/jobs", fmt.Sprintf(`{"token_id":%q,"secret":%q}`, ujs.TokenID, ujs.Secret))

	// A day's work.
	ward("run", "--count", "4", "--", "sh", "-c", "echo out-{index}")
	failing := strings.TrimSpace(ward("submit", "--count", "2", "--", "sh", "-c", "echo bad >&2; exit 3"))
	c.waitJob(failing, 30*time.Second)
	ward("logs", failing)
	ward("job", "status", failing)
	ward("job", "ls")
	ward("node", "ls")
	ward("token", "ls")
	ward("token", "ls", "-o", "json")
	ward("cert", "ls", "-o", "json")
	ward("status")
	ward("doctor")
	ward("audit", "-o", "json")
	ward("ca", "status")
	ward("node", "revoke", "a2")
	link, _, code := c.ward("ui") // prints a one-time sign-in link: a secret of its own
	if code != 0 {
		t.Fatalf("ward ui: exit %d", code)
	}
	linkURL, err := url.Parse(strings.TrimSpace(link))
	if err != nil || len(linkURL.Query().Get("token")) < 16 {
		t.Fatalf("ward ui printed %q, not a link with a token", link)
	}
	secrets["the one-time sign-in link's token"] = linkURL.Query().Get("token")

	// Console sign-ins: a wrong password, the right one.
	jar, _ := cookiejar.New(nil)
	ui := c.publicClient()
	ui.Jar = jar
	ui.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if resp, err := ui.Get(linkURL.String()); err == nil { // used once, then again (refused)
		resp.Body.Close()
	}
	if resp, err := c.publicClient().Get(linkURL.String()); err == nil { // (its page may carry the token back to its holder)
		resp.Body.Close()
	}
	jar2, _ := cookiejar.New(nil)
	ui.Jar = jar2
	csrf := regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	for _, pw := range []string{passphrase, uiPassword} {
		resp, err := ui.Get("https://" + c.public + "/ui/login")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrf.FindSubmatch(b)
		if m == nil {
			t.Fatalf("no sign-in form:\n%s", b)
		}
		resp, err = ui.PostForm("https://"+c.public+"/ui/login", url.Values{"csrf": {string(m[1])}, "password": {pw}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		see(fmt.Sprintf("console sign-in (HTTP %d)", resp.StatusCode), string(b))
	}

	// What support and monitoring read.
	get := func(where, u string) {
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d: %s", where, resp.StatusCode, b)
		}
		see(where, string(b))
	}
	get("/metrics", "https://"+c.cluster+"/metrics")
	get("the coordinator's raw debug info", "https://"+c.cluster+"/v1/debug/info?lines=2000")
	bundle := filepath.Join(t.TempDir(), "support.tar.gz")
	ward("debug", "bundle", "--out", bundle, "--lines", "2000")
	for name, data := range readBundle(t, bundle) {
		see("support bundle file "+name, data)
	}

	// Every secret this run used, now that every key exists.
	agentDirs, _ := filepath.Glob(filepath.Join(c.dir, "agent-*"))
	if keys := secrets.addKeys(append(agentDirs, c.data)...); keys < 6 { // root and issuing CA, coordinator, admin, two agents
		t.Fatalf("found only %d private keys to look for", keys)
	}
	if len(secrets) < 12 {
		t.Fatalf("only %d secrets to look for", len(secrets))
	}

	// Every log line of every process, and the audit log.
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*.err"))
	outs, _ := filepath.Glob(filepath.Join(c.dir, "*.out"))
	var files []string
	for _, f := range append(append(logs, outs...), filepath.Join(c.data, "audit.log")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(b)) > 0 {
			files = append(files, filepath.Base(f))
		}
		see(f, string(b))
	}
	sort.Strings(files)
	t.Logf("%d secrets looked for in %d texts: CLI output, error bodies, /metrics, debug info, bundle files and the logs %s",
		len(secrets), len(seen), strings.Join(files, " "))
	for _, s := range seen {
		secrets.check(t, s.where, s.text)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
