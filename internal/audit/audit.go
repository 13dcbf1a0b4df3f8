// Package audit writes Ward's append-only audit log: one JSON object per
// line for every join, issuance, renewal, revocation, rotation,
// authentication failure and admin action. It never records secrets.
package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Event is one audit record.
type Event struct {
	Time   time.Time         `json:"time"`
	Type   string            `json:"type"`             // e.g. join, token.create, cert.revoke
	Actor  string            `json:"actor,omitempty"`  // identity or source address that acted
	Via    string            `json:"via,omitempty"`    // how the actor authenticated: cert, ui-link, ui-password, local
	Source string            `json:"source,omitempty"` // the actor's network address
	Target string            `json:"target,omitempty"` // what it acted on
	Result string            `json:"result"`           // ok, or the refusal's stable code
	Detail map[string]string `json:"detail,omitempty"`
}

// Log appends events to a file opened O_APPEND with mode 0600.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	path string
	now  func() time.Time
}

// Open opens (or creates) the audit log at path.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return &Log{f: f, path: path, now: time.Now}, nil
}

// Path returns the log file's path.
func (l *Log) Path() string { return l.path }

// Record appends one event; the time is filled in when zero. A write error
// is returned so callers can refuse an action they could not audit.
func (l *Log) Record(e Event) error {
	if l == nil {
		return nil
	}
	if e.Time.IsZero() {
		e.Time = l.now().UTC()
	}
	if e.Result == "" {
		e.Result = "ok"
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("write audit log %s: %w", l.path, err)
	}
	return nil
}

// Close closes the file.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// Read returns the events in r at or after since, oldest first.
func Read(r io.Reader, since time.Time) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("audit log line %d is not a JSON event: %w", line, err)
		}
		if !e.Time.Before(since) {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}
