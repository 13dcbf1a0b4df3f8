package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestNewFormats(t *testing.T) {
	tests := []struct {
		name, level, format string
		wantErr             string
		check               func(t *testing.T, out string)
	}{
		{name: "json", level: "info", format: "json", check: func(t *testing.T, out string) {
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil || m["msg"] != "hello" || m["node"] != "n1" {
				t.Errorf("not one JSON record with msg and node: %q (%v)", out, err)
			}
		}},
		{name: "text", level: "info", format: "text", check: func(t *testing.T, out string) {
			if !strings.Contains(out, "msg=hello") || !strings.Contains(out, "node=n1") {
				t.Errorf("text line = %q", out)
			}
		}},
		{name: "level filters", level: "warn", format: "text", check: func(t *testing.T, out string) {
			if out != "" {
				t.Errorf("an info line passed a warn logger: %q", out)
			}
		}},
		{name: "bad format", level: "info", format: "xml", wantErr: `log format "xml"`},
		{name: "bad level", level: "loud", format: "json", wantErr: `log level "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, tt.level, tt.format, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello", "node", "n1")
			tt.check(t, buf.String())
		})
	}
}

func TestRingKeepsRecentInfoLines(t *testing.T) {
	ring := NewRing(3)
	var out bytes.Buffer
	log, err := New(&out, "warn", "text", ring)
	if err != nil {
		t.Fatal(err)
	}
	log = log.With("role", "coordinator")
	for i := range 5 {
		log.Info("step", "i", i)
	}
	log.Debug("too verbose for the ring")
	if out.Len() != 0 {
		t.Errorf("info lines reached a warn-level output: %q", out.String())
	}
	got := ring.Last(10)
	if len(got) != 3 {
		t.Fatalf("ring holds %d lines, want 3: %q", len(got), got)
	}
	for k, line := range got {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if m["i"] != float64(k+2) || m["role"] != "coordinator" {
			t.Errorf("line %d = %q, want i=%d with role", k, line, k+2)
		}
	}
	if last := ring.Last(1); len(last) != 1 || !strings.Contains(last[0], fmt.Sprintf(`"i":%d`, 4)) {
		t.Errorf("Last(1) = %q", last)
	}
}
