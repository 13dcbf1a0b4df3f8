package e2e

import (
	"encoding/json"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// dashboardMetrics returns every ward_ metric the Grafana dashboard
// queries, with histogram series (_bucket, _sum, _count) named by their
// histogram.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json is not JSON: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(dash)
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, m := range regexp.MustCompile(`\bward_[a-z0-9_]+`).FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if strings.HasSuffix(m, suffix) {
					m = strings.TrimSuffix(m, suffix)
				}
			}
			seen[m] = true
		}
	}
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// TestDashboardQueriesExportedMetrics scrapes a real coordinator whose
// cluster has joined, renewed, revoked and run work, and checks that every
// metric the dashboard queries is exported, and the queue depth is right.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	want := dashboardMetrics(t)
	if len(want) < 10 {
		t.Fatalf("the dashboard queries only %v", want)
	}
	// Agent certificates of 9s renew every few seconds over the session.
	c := newCluster(t, "--agent-cert-lifetime", "9s")
	c.startAgent("a1", 2)
	c.startAgent("victim", 1)
	c.mustWard("run", "--count", "3", "--", "true")
	c.mustWard("node", "revoke", "victim")
	c.mustWard("submit", "--count", "4", "--label", "gpu=none", "--wait-for-nodes", "--", "true")

	certFile, keyFile := certAndKey(t, c)
	hc := c.httpClient(certFile, keyFile)
	scrape := func() string {
		resp, err := hc.Get("https://" + c.cluster + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var text string
	waitFor(t, 30*time.Second, "an agent certificate renewal in the metrics", func() bool {
		text = scrape()
		return strings.Contains(text, "ward_cert_renewals_total{")
	})
	for _, m := range want {
		if !regexp.MustCompile(`(?m)^# TYPE ` + m + ` `).MatchString(text) {
			t.Errorf("the dashboard queries %s, which /metrics does not export", m)
		}
	}
	for _, line := range []string{"ward_tasks_queued 4", "ward_cert_revocations_total 1", `ward_sessions{link="YES"} 1`} {
		if !strings.Contains(text, "\n"+line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if !regexp.MustCompile(`\nward_build_info\{commit="[^"]*",go_version="go1\.[^"]+",version="[^"]+"\} 1\n`).MatchString(text) {
		t.Errorf("/metrics lacks ward_build_info")
	}
}
