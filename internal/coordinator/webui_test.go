package coordinator

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/web"
)

// BenchmarkConsoleOnCoordinator renders console pages from a real
// coordinator's state (its store, scheduler and CA) holding 1,000 nodes
// and 10,000 jobs: the same reads the API serves, then the templates. The
// issue's target is under 100 ms a page.
func BenchmarkConsoleOnCoordinator(b *testing.B) {
	cfg := config.CoordinatorDefaults()
	cfg.DataDir = b.TempDir()
	cfg.ClusterAddr, cfg.PublicAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.StoreNoSync = true
	c, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.clusterLn.Close(); c.publicLn.Close(); c.closeStorage() })
	now := time.Now()
	c.mu.Lock()
	for i := range 1000 {
		name := fmt.Sprintf("node-%04d", i)
		labels := map[string]string{"rack": "r" + strconv.Itoa(i%20)}
		c.nodes[name] = &nodeRecord{Name: name, Joined: now, Labels: labels, Slots: 16, CertSerial: fmt.Sprintf("%032x", i), CertExpiry: now.Add(20 * time.Hour), CertIssuer: "x"}
		c.cl.UpsertNode(name, 16, labels)
	}
	for i := range 10000 {
		c.jobSeq++
		spec := api.JobSpec{Argv: []string{"./simulate", "--seed", "{index}"}, Count: 4, Slots: 1, Queue: "default", Priority: "normal"}
		c.cl.AddJob(&sched.Job{ID: strconv.FormatUint(c.jobSeq, 10), Spec: spec, Slots: 1, Retries: 3, Submitted: now.Add(time.Duration(i) * time.Millisecond), SubmittedBy: "spiffe://ward/user/admin"})
	}
	c.mu.Unlock()
	cookie := consoleSession(b, c)
	for _, page := range []string{"", "nodes", "jobs", "jobs?state=queued&page=50", "jobs/5000", "certs", "ca", "tokens", "migration"} {
		b.Run(strings.NewReplacer("?", "_", "&", "_", "=", "-", "/", "_").Replace("page_"+page), func(b *testing.B) {
			req := httptest.NewRequest("GET", "https://127.0.0.1"+web.Prefix+page, nil)
			req.AddCookie(cookie)
			for b.Loop() {
				rec := httptest.NewRecorder()
				c.console.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d\n%.2000s", page, rec.Code, rec.Body.String())
				}
			}
		})
	}
}

var formField = regexp.MustCompile(`name="(csrf|token)" value="([^"]*)"`)

// consoleSession signs into c's console with a one-time link, as a
// browser would, and returns the session cookie.
func consoleSession(b *testing.B, c *Coordinator) *http.Cookie {
	b.Helper()
	path, _, err := c.console.NewLoginLink(c.LocalAdmin(), 0)
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	c.console.ServeHTTP(rec, httptest.NewRequest("GET", "https://127.0.0.1"+path, nil))
	form := url.Values{}
	for _, m := range formField.FindAllStringSubmatch(rec.Body.String(), -1) {
		form.Set(m[1], m[2])
	}
	req := httptest.NewRequest("POST", "https://127.0.0.1"+web.Prefix+"login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range rec.Result().Cookies() {
		req.AddCookie(ck)
	}
	rec = httptest.NewRecorder()
	c.console.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.Value != "" && strings.Contains(ck.Name, "session") {
			return ck
		}
	}
	b.Fatalf("no session after signing in: %d\n%s", rec.Code, rec.Body.String())
	return nil
}
