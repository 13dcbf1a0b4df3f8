package coordinator

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
)

// Bounds of a debug info answer.
const (
	maxDebugLogLines = 2000
	maxDataDirFiles  = 2000
)

func (c *Coordinator) apiDebugInfo(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	lines := 500
	if s := r.URL.Query().Get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return api.Errorf(api.CodeInvalidArgument, "use lines=N with N a number of lines", "lines=%q is not a count", s)
		}
		lines = n
	}
	return reply[api.DebugInfo](w)(c.DebugInfo(r.Context(), p, lines))
}

// DebugInfo gathers what a support bundle needs that no other operation
// serves: the effective configuration (paths to secrets, never secrets),
// the last log lines, a listing of the data directory (names, modes and
// sizes; no file is read) and the process's runtime figures.
func (c *Coordinator) DebugInfo(ctx context.Context, p authz.Principal, lines int) (api.DebugInfo, error) {
	if err := c.allow(p, authz.DebugInfo); err != nil {
		return api.DebugInfo{}, err
	}
	cfg, err := json.Marshal(c.cfg)
	if err != nil {
		return api.DebugInfo{}, err
	}
	out := api.DebugInfo{Coordinator: c.ca.id.String(), Config: cfg, LogLines: []string{}, DataDir: []api.DataDirFile{}}
	if c.recentLogs != nil {
		out.LogLines = c.recentLogs.Last(min(lines, maxDebugLogLines))
	}
	filepath.WalkDir(c.cfg.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || len(out.DataDir) >= maxDataDirFiles {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(c.cfg.DataDir, path)
		out.DataDir = append(out.DataDir, api.DataDirFile{Path: rel, Mode: fi.Mode().String(), Size: fi.Size(), Modified: fi.ModTime().UTC()})
		return nil
	})
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out.Runtime = api.RuntimeInfo{Started: c.started.UTC(), Goroutines: runtime.NumGoroutine(), HeapBytes: ms.HeapAlloc, SysBytes: ms.Sys, NumGC: ms.NumGC}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		out.Runtime.OpenFiles = len(fds)
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		out.Runtime.MaxOpenFiles = lim.Cur
	}
	c.audit.Record(audit.Event{Type: "debug.info", Actor: p.String(), Detail: map[string]string{"source": p.Source}})
	return out, nil
}
