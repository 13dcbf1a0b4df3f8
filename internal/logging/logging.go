// Package logging builds Ward's loggers: log/slog to standard error (which
// journald captures under systemd) as text or JSON lines, and a ring of the
// most recent lines that support bundles include.
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// Formats are the values of log_format (--log-format).
var Formats = []string{"text", "json"}

// ParseLevel reads a level name: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
	default:
		return l, fmt.Errorf("log level %q is not one of debug, info, warn, error", s)
	}
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// CheckFormat refuses a log format other than text or json.
func CheckFormat(s string) error {
	if s != "text" && s != "json" {
		return fmt.Errorf("log format %q is not text or json", s)
	}
	return nil
}

// New returns a logger writing to w at level in format, and also into
// recent (when not nil) as JSON lines, at info level or below.
func New(w io.Writer, level, format string, recent *Ring) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	if err := CheckFormat(format); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	if recent != nil {
		h = tee{h, slog.NewJSONHandler(recent, &slog.HandlerOptions{Level: min(lvl, slog.LevelInfo)})}
	}
	return slog.New(h), nil
}

// tee sends each record to two handlers, each by its own level.
type tee struct{ a, b slog.Handler }

func (t tee) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t tee) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if t.a.Enabled(ctx, r.Level) {
		err = t.a.Handle(ctx, r.Clone())
	}
	if t.b.Enabled(ctx, r.Level) {
		if err2 := t.b.Handle(ctx, r); err == nil {
			err = err2
		}
	}
	return err
}

func (t tee) WithAttrs(as []slog.Attr) slog.Handler {
	return tee{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t tee) WithGroup(name string) slog.Handler {
	return tee{t.a.WithGroup(name), t.b.WithGroup(name)}
}

// Ring keeps the last lines written to it: each Write is one line (as
// slog handlers write). It is safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	lines [][]byte
	next  int
	full  bool
}

// NewRing keeps up to n lines.
func NewRing(n int) *Ring { return &Ring{lines: make([][]byte, max(n, 1))} }

// Write stores p as one line, replacing the oldest when full.
func (r *Ring) Write(p []byte) (int, error) {
	line := bytes.TrimRight(p, "\n")
	r.mu.Lock()
	r.lines[r.next] = append(r.lines[r.next][:0], line...)
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
	return len(p), nil
}

// Last returns up to n of the most recent lines, oldest first.
func (r *Ring) Last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	count := r.next
	if r.full {
		count = len(r.lines)
	}
	n = min(n, count)
	out := make([]string, 0, n)
	for i := count - n; i < count; i++ {
		j := i
		if r.full {
			j = (r.next + i) % len(r.lines)
		}
		out = append(out, string(r.lines[j]))
	}
	return out
}
