package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"1000", 1000, ""},
		{"512MiB", 512 << 20, ""},
		{"4G", 4 << 30, ""},
		{"4gib", 4 << 30, ""},
		{"4GB", 4e9, ""},
		{"1.5GiB", 3 << 29, ""},
		{" 2 KiB ", 2048, ""},
		{"", 0, "want a number"},
		{"GiB", 0, "want a number"},
		{"4XB", 0, "want a number"},
		{"-1G", 0, "want a number"},
		{"1e30", 0, "want a number"},
		{"99999999T", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSize(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestSizeJSON(t *testing.T) {
	var z Size
	for in, want := range map[string]Size{`"64GiB"`: 64 << 30, `1048576`: 1 << 20} {
		if err := json.Unmarshal([]byte(in), &z); err != nil || z != want {
			t.Errorf("unmarshal %s = %d, %v", in, z, err)
		}
	}
	if b, _ := json.Marshal(Size(3 << 30)); string(b) != `"3GiB"` {
		t.Errorf("marshal: %s", b)
	}
	if err := json.Unmarshal([]byte(`"lots"`), &z); err == nil {
		t.Error("\"lots\" was read as a size")
	}
}
