package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkPages renders each page through the console's whole handler
// (session check, the cluster reads, templates) over a cluster of 1,000
// nodes and 10,000 jobs. The target is under 100 ms a page.
func BenchmarkPages(b *testing.B) {
	fake := newFakeCluster(1000, 10000)
	srv, err := New(Config{Cluster: "c1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, fake)
	if err != nil {
		b.Fatal(err)
	}
	id, _, err := srv.sessions.create(testAdmin, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for _, page := range []struct{ name, path string }{
		{"overview", ""},
		{"nodes", "nodes"},
		{"nodes_page10", "nodes?page=10"},
		{"jobs", "jobs"},
		{"jobs_filtered", "jobs?state=failed&page=20"},
		{"job", "jobs/5000"},
		{"tokens", "tokens"},
		{"certs", "certs"},
		{"ca", "ca"},
		{"audit", "audit"},
		{"migration", "migration"},
	} {
		b.Run(page.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "https://h1:8443"+Prefix+page.path, nil)
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
			var size int
			for b.Loop() {
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d\n%s", page.path, rec.Code, rec.Body.String())
				}
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}
