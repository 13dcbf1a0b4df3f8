package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	tests := []struct {
		name   string
		a, b   string
		want   int
		wantOK bool
	}{
		{"equal", "1.2.3", "v1.2.3", 0, true},
		{"patch", "0.1.9", "0.1.10", -1, true},
		{"minor", "0.2.0", "0.1.99", 1, true},
		{"major", "2.0.0", "10.0.0", -1, true},
		{"prerelease below release", "1.0.0-rc.1", "1.0.0", -1, true},
		{"numeric prerelease", "1.0.0-rc.2", "1.0.0-rc.10", -1, true},
		{"numeric below alpha", "1.0.0-1", "1.0.0-alpha", -1, true},
		{"longer prerelease wins tie", "1.0.0-alpha", "1.0.0-alpha.1", -1, true},
		{"build metadata ignored", "1.0.0+abc", "1.0.0+def", 0, true},
		{"pseudo-versions by time", "v0.0.0-20250101000000-aaaaaaaaaaaa", "v0.0.0-20250201000000-bbbbbbbbbbbb", -1, true},
		{"devel", "devel", "1.0.0", 0, false},
		{"two parts", "1.2", "1.2.0", 0, false},
		{"leading zero", "01.2.3", "1.2.3", 0, false},
		{"empty prerelease", "1.2.3-", "1.2.3", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Compare(tt.a, tt.b)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Compare(%q, %q) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.wantOK)
			}
			if ok {
				if back, _ := Compare(tt.b, tt.a); back != -got {
					t.Errorf("Compare(%q, %q) = %d, not the opposite of %d", tt.b, tt.a, back, got)
				}
			}
		})
	}
}

func TestRead(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/wardcluster/ward", Version: "v0.0.0-20250101000000-abcdefabcdef+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abcdefabcdef0123456789"},
			{Key: "vcs.time", Value: "2025-01-01T00:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name                string
		ver, rev, when      string
		bi                  *debug.BuildInfo
		wantVer, wantCommit string
		wantDate            string
		wantModified        bool
	}{
		{"ldflags win", "0.3.0", "1111", "2026-02-02T00:00:00Z", stamped, "0.3.0", "1111", "2026-02-02T00:00:00Z", true},
		{"toolchain stamp", "", "", "", stamped, "v0.0.0-20250101000000-abcdefabcdef", "abcdefabcdef0123456789", "2025-01-01T00:00:00Z", true},
		{"nothing known", "", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Devel, "", "", false},
		{"no build info", "", "", "", nil, Devel, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := read(tt.ver, tt.rev, tt.when, tt.bi)
			if in.Version != tt.wantVer || in.Commit != tt.wantCommit || in.Date != tt.wantDate || in.Modified != tt.wantModified {
				t.Errorf("read = %+v; want version %q commit %q date %q modified %v", in, tt.wantVer, tt.wantCommit, tt.wantDate, tt.wantModified)
			}
			if in.GoVersion == "" || in.Platform == "" {
				t.Errorf("Go version or platform missing: %+v", in)
			}
			s := in.String()
			if !strings.HasPrefix(s, "ward "+tt.wantVer) || !strings.Contains(s, in.GoVersion) {
				t.Errorf("String() = %q", s)
			}
		})
	}
}
