package pki

import (
	"strings"
	"testing"
)

func TestParseSerial(t *testing.T) {
	const ward = "a3f00b7c1d2e3f405162738495a6b7c8"
	tests := []struct {
		name, in, want, wantErr string
	}{
		{"Ward's own form", ward, ward, ""},
		{"upper case", strings.ToUpper(ward), ward, ""},
		{"openssl x509 -serial", "serial=A3F00B7C1D2E3F405162738495A6B7C8", ward, ""},
		{"openssl -text with a leading zero byte", "00:a3:f0:0b:7c:1d:2e:3f:40:51:62:73:84:95:a6:b7:c8", ward, ""},
		{"a leading zero nibble", "0a3f00b7c1d2e3f405162738495a6b7c8", ward, ""},
		{"0x prefix and spaces", " 0xA3 F0 0B 7C 1D 2E 3F 40 51 62 73 84 95 A6 B7 C8 ", ward, ""},
		{"short serial as openssl -text prints it", "4660 (0x1234)", "1234", ""},
		{"a small serial with a leading zero", "0f", "f", ""},
		{"not hex", "a3f0zz", "", `character 'z' at position 5`},
		{"empty", "  ", "", "no hex digits"},
		{"zero", "00:00", "", "zero"},
		{"longer than RFC 5280 allows", strings.Repeat("ab", 21), "", "21 bytes long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseSerial(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || SerialString(n) != tt.want {
				t.Fatalf("got %v, %v; want %s", n, err, tt.want)
			}
		})
	}
}
