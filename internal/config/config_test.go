package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/config"
)

func write(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "ward.json")
	os.WriteFile(p, []byte(body), 0o600)
	return p
}

func TestLoadCoordinatorStrict(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"unknown key names key and line", "{\n  \"version\": 1,\n  \"data_dir\": \"/x\",\n  \"min_tsl\": \"1.2\"\n}", `line 4: unknown key "min_tsl"`},
		{"wrong version", `{"version": 2}`, `"version" is 2`},
		{"missing version", `{"data_dir": "/x"}`, `"version" is 0`},
		{"bad duration", `{"version": 1, "node_lost_timeout": "soon"}`, "duration"},
		{"wrong type", "{\"version\": 1,\n \"join_burst\": \"many\"}", `line 2: key "join_burst"`},
		{"trailing data", `{"version": 1} {}`, "unexpected data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(t, tt.body)
			_, err := config.LoadCoordinator(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v, want it to name %s and contain %q", err, p, tt.want)
			}
		})
	}
	c, err := config.LoadCoordinator(write(t, `{"version": 1, "data_dir": "/tmp/x", "node_lost_timeout": "45s"}`))
	if err != nil || c.NodeLostTimeout.D() != 45*time.Second || c.ClusterAddr != ":7443" {
		t.Fatalf("good file: %+v, %v", c, err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := config.CoordinatorDefaults()
	c.ClusterAddr = "nope"
	c.MinTLS = "1.1"
	c.HeartbeatInterval = config.Duration(time.Millisecond)
	c.PrefetchBelow = config.Duration(-time.Second)
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"data_dir", "cluster_addr", "min_tls", "heartbeat_interval", "prefetch_below"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	a := config.AgentDefaults()
	a.DataDir = "/x"
	a.Key = "hsm"
	a.Pins = []string{"sha256:12"}
	a.Slots = 0
	err = a.Validate()
	for _, want := range []string{"key", "pins", "slots"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("agent error does not mention %s: %v", want, err)
		}
	}
}

func TestConsoleSettings(t *testing.T) {
	c, err := config.LoadCoordinator(write(t, `{"version": 1, "data_dir": "/tmp/x"}`))
	if err != nil || !c.UI || c.UIIdleTimeout.D() != 30*time.Minute || c.UISessionLifetime.D() != 12*time.Hour {
		t.Fatalf("defaults: ui %v idle %s lifetime %s, %v", c.UI, c.UIIdleTimeout.D(), c.UISessionLifetime.D(), err)
	}
	c, err = config.LoadCoordinator(write(t, `{"version": 1, "data_dir": "/tmp/x", "ui": false}`))
	if err != nil || c.UI {
		t.Fatalf(`"ui": false: %v, %v`, c.UI, err)
	}
	for _, tc := range []struct {
		name string
		set  func(*config.Coordinator)
		want string
	}{
		{"idle too short", func(c *config.Coordinator) { c.UIIdleTimeout = config.Duration(time.Second) }, "ui_idle_timeout"},
		{"lifetime below idle", func(c *config.Coordinator) { c.UISessionLifetime = config.Duration(10 * time.Minute) }, "ui_session_lifetime"},
		{"lifetime too long", func(c *config.Coordinator) { c.UISessionLifetime = config.Duration(1000 * time.Hour) }, "ui_session_lifetime"},
		{"password with the console off", func(c *config.Coordinator) { c.UI = false; c.UIPasswordFile = "/x" }, "ui_password_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.CoordinatorDefaults()
			c.DataDir = "/tmp/x"
			tc.set(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want it to name %s", err, tc.want)
			}
		})
	}
}

// TestLimits: limits are top-level keys of the file, and every value out
// of range is reported with its key and flag.
func TestLimits(t *testing.T) {
	c, err := config.LoadCoordinator(write(t, `{"version": 1, "data_dir": "/x", "public_max_conns": 4096, "handshake_timeout": "3s"}`))
	if err != nil || c.PublicMaxConns != 4096 || c.HandshakeTimeout.D() != 3*time.Second || c.MaxFrameBytes != config.MaxFrameLimit {
		t.Fatalf("limits from a file: %+v, %v", c.Limits, err)
	}
	tests := []struct {
		name string
		set  func(l *config.Limits)
		want string
	}{
		{"frame over the protocol's bound", func(l *config.Limits) { l.MaxFrameBytes = 32 << 20 }, "max_frame_bytes (--max-frame-bytes): 33554432 is out of range"},
		{"frame under an output frame", func(l *config.Limits) { l.MaxFrameBytes = 1 << 20 }, "max_frame_bytes (--max-frame-bytes)"},
		{"no global join rate", func(l *config.Limits) { l.JoinGlobalRate = 0 }, "join_global_rate"},
		{"per source over total", func(l *config.Limits) { l.PublicMaxConnsPerSource = 2000 }, "public_max_conns_per_source (--public-max-conns-per-source): 2000 is over public_max_conns"},
		{"handshakes over connections", func(l *config.Limits) { l.PublicMaxHandshakes = 2000 }, "public_max_handshakes (--public-max-handshakes): 2000 is over public_max_conns"},
		{"zero timeout", func(l *config.Limits) { l.PublicIdleTimeout = 0 }, "public_idle_timeout (--public-idle-timeout): 0s is out of range"},
		{"tiny session queue", func(l *config.Limits) { l.SessionQueueBytes = 1024 }, "session_queue_bytes"},
		{"tiny header limit", func(l *config.Limits) { l.MaxHeaderBytes = 100 }, "max_header_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.CoordinatorDefaults()
			c.DataDir = "/x"
			tt.set(&c.Limits)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	d := config.CoordinatorDefaults()
	d.DataDir = "/x"
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestStagingRetention(t *testing.T) {
	for _, tt := range []struct {
		body string
		want time.Duration
		err  string
	}{
		{`{"version": 1, "data_dir": "/tmp/x"}`, 0, ""},
		{`{"version": 1, "data_dir": "/tmp/x", "staging_retention": "168h"}`, 168 * time.Hour, ""},
		{`{"version": 1, "data_dir": "/tmp/x", "staging_retention": "-1h"}`, 0, "staging_retention"},
		{`{"version": 1, "data_dir": "/tmp/x", "staging_retention": "10ms"}`, 0, "at least 1s"},
	} {
		c, err := config.LoadCoordinator(write(t, tt.body))
		if err == nil {
			err = c.Validate()
		}
		switch {
		case tt.err == "" && (err != nil || c.StagingRetention.D() != tt.want):
			t.Errorf("%s: %v, %v", tt.body, c.StagingRetention.D(), err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: err %v, want %q", tt.body, err, tt.err)
		}
	}
}
