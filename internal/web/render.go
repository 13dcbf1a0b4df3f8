package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/sched"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one parsed template set per page (the layout plus the page)
// and the versioned URLs of the static assets.
type pages struct {
	sets   map[string]*template.Template
	assets map[string]string // file name → URL with a content hash
}

func loadPages() (*pages, error) {
	p := &pages{sets: map[string]*template.Template{}, assets: map[string]string{}}
	err := fs.WalkDir(staticFS, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := strings.TrimPrefix(path, "static/")
		p.assets[name] = Prefix + "static/" + name + "?v=" + hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"asset": func(name string) string { return p.assets[name] },
	}
	for k, v := range viewFuncs {
		funcs[k] = v
	}
	base := template.New("layout.html").Funcs(funcs)
	if _, err := base.ParseFS(templateFS, "templates/layout.html"); err != nil {
		return nil, fmt.Errorf("web console templates: %w", err)
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		set, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("web console template %s: %w", n, err)
		}
		p.sets[name] = set
	}
	return p, nil
}

// view is what every page template gets: the chrome around the page and
// the page's own data.
type view struct {
	Title   string
	Section string // the navigation entry to highlight
	User    string
	Role    authz.Role
	Via     string
	CSRF    string
	Flash   string
	Error   *api.Error // a failed action, shown above the page
	Now     time.Time
	Data    any
	// Maintenance is the cluster's maintenance mode: a banner on every
	// page while it is on.
	Maintenance api.Maintenance
}

// Can reports whether the page's user may perform the action named a (an
// authz.Action), so the page offers only what the role allows; the
// operation decides.
func (v *view) Can(a string) bool { return authz.Can(v.Role, authz.Action(a)) }

// render writes a page. Rendering goes to a buffer first, so a template
// error becomes a clean 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, status int, page string, v *view) {
	set := s.pages.sets[page]
	if set == nil {
		http.Error(w, "no such page template: "+page, http.StatusInternalServerError)
		return
	}
	if v.Now.IsZero() {
		v.Now = s.now()
	}
	var buf bytes.Buffer
	if err := set.ExecuteTemplate(&buf, "layout", v); err != nil {
		s.log.Error("web console: render page", "page", page, "err", err)
		http.Error(w, "the console could not render this page; the coordinator log has the detail", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// viewFuncs are the template helpers: times relative to now, classes for
// states, and label formatting.
var viewFuncs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return roughDuration(now.Sub(t)) + " ago"
	},
	"until": func(now, t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		if d := t.Sub(now); d > 0 {
			return "in " + roughDuration(d)
		}
		return "expired " + roughDuration(now.Sub(t)) + " ago"
	},
	"expiry": func(now, t time.Time) string {
		switch left := t.Sub(now); {
		case t.IsZero():
			return ""
		case left <= 24*time.Hour:
			return "bad"
		case left <= 7*24*time.Hour:
			return "warn"
		}
		return "ok"
	},
	// leafExpiry classes a certificate that renews itself: only an
	// expired or nearly expired one needs attention (the doctor reports
	// renewals that are overdue).
	"leafExpiry": func(now, t time.Time) string {
		switch left := t.Sub(now); {
		case t.IsZero():
			return ""
		case left <= 0:
			return "bad"
		case left <= time.Hour:
			return "warn"
		}
		return "ok"
	},
	"dur":     func(d api.Duration) string { return time.Duration(d).String() },
	"span":    humanSpan,
	"command": shellJoin,
	"labels":  sched.FormatLabels,
	"lower":   strings.ToLower,
	"state":   stateClass,
	"deref": func(p *int) string {
		if p == nil {
			return "—"
		}
		return strconv.Itoa(*p)
	},
	"join":      strings.Join,
	"list":      func(s ...string) []string { return s },
	"hasPrefix": strings.HasPrefix,
	"add":       func(a, b int) int { return a + b },
	"bytes":     sched.FormatBytes,
	"short":     shortSum,
	"fileURL":   fileURL,
}

// humanSpan is a configured span for people: 7 days, 36h, 90m.
func humanSpan(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return d.String()
}

// shellJoin shows a command's arguments as they would be typed, quoting
// those a shell would split or expand, so it can be copied back.
func shellJoin(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && !strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%{}", r))
		}) {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}

// roughDuration is a duration for people: two units at most.
func roughDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

// stateClass maps a state or verdict word to a CSS class: ok, warn, bad or
// idle.
func stateClass(s string) string {
	switch strings.ToLower(s) {
	case "yes", "ready", "completed", "ok", "active", "running", "checked", "info", "applied":
		return "ok"
	case "partly", "draining", "drained", "disconnected", "queued", "assigned", "warning", "expired", "used", "unavailable", "pending", "invited":
		return "warn"
	case "no", "down", "revoked", "failed", "timed_out", "lost", "critical", "canceled", "invite_expired", "removed":
		return "bad"
	}
	return "idle"
}

// pager is the paging of a long list.
type pager struct {
	From, To, Total int
	Prev, Next      string // URLs; empty at either end
}

// pageSize is how many rows a list page shows.
const pageSize = 100

// pageOf reads ?page= (from 1) and returns the offset to list from.
func pageOf(r *http.Request) (int, int) {
	n, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || n < 1 {
		n = 1
	}
	return n, (n - 1) * pageSize
}

// newPager links the neighbouring pages of a list of total rows, keeping
// the request's other query parameters.
func newPager(r *http.Request, page, shown, total int) pager {
	off := (page - 1) * pageSize
	p := pager{From: off + 1, To: off + shown, Total: total}
	if shown == 0 {
		p.From = 0
	}
	link := func(n int) string {
		q := url.Values{}
		for k, v := range r.URL.Query() {
			q[k] = v
		}
		q.Set("page", strconv.Itoa(n))
		return r.URL.Path + "?" + q.Encode()
	}
	if page > 1 {
		p.Prev = link(page - 1)
	}
	if off+shown < total {
		p.Next = link(page + 1)
	}
	return p
}
