package pki_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

func TestParsePin(t *testing.T) {
	ca := pkitest.New(t)
	spki := pki.SPKIPin(ca.Root.Cert)
	hex := strings.TrimPrefix(spki.String(), "sha256:")
	colons := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(s[i : i+2])
		}
		return b.String()
	}
	tests := []struct {
		name    string
		in      string
		kind    pki.PinKind
		wantErr string
	}{
		{name: "canonical", in: spki.String(), kind: pki.PinSPKI},
		{name: "upper case with colons", in: "SHA256:" + strings.ToUpper(colons(hex)), kind: pki.PinSPKI},
		{name: "spaces", in: "sha256: " + strings.ReplaceAll(colons(hex), ":", " "), kind: pki.PinSPKI},
		{name: "bare 64 hex is spki", in: hex, kind: pki.PinSPKI},
		{name: "cert thumbprint", in: "cert-sha256:" + hex, kind: pki.PinCertSHA256},
		{name: "bare 40 hex is sha1", in: strings.Repeat("ab", 20), kind: pki.PinCertSHA1},
		{name: "sha1 prefix", in: "sha1:" + colons(strings.Repeat("AB", 20)), kind: pki.PinCertSHA1},
		{name: "empty", in: "  ", wantErr: "it is empty"},
		{name: "short", in: "sha256:abcd", wantErr: "it has 4 hex digits, this form needs 64"},
		{name: "sha1 too long", in: "sha1:" + hex, wantErr: "it has 64 hex digits, this form needs 40"},
		{name: "non hex", in: "sha256:" + hex[:63] + "g", wantErr: `character 'g' at position 64 is not a hex digit`},
		{name: "unknown bare length", in: strings.Repeat("a", 50), wantErr: "it has 50 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := pki.ParsePin(tt.in)
			if tt.wantErr != "" {
				var pe *pki.PinError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePin(%q) error = %v, want PinError containing %q", tt.in, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "sha256:<64 hex digits>") {
					t.Errorf("error does not state the expected format: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePin(%q): %v", tt.in, err)
			}
			if p.Kind != tt.kind {
				t.Fatalf("kind = %v, want %v", p.Kind, tt.kind)
			}
		})
	}
}

func TestPinMatches(t *testing.T) {
	ca := pkitest.New(t)
	other := pkitest.New(t)
	leaf, _ := ca.Leaf(t, pki.RoleAgent, "n1")
	tests := []struct {
		name string
		pin  pki.Pin
		want bool
	}{
		{"spki of root", pki.SPKIPin(ca.Root.Cert), true},
		{"spki of other root", pki.SPKIPin(other.Root.Cert), false},
		{"thumbprint of leaf", pki.CertSHA256(leaf.Leaf), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs := append([]*x509.Certificate{leaf.Leaf}, ca.Issuing.Cert, ca.Root.Cert)
			_, got := pki.MatchAny([]pki.Pin{tt.pin}, certs)
			if got != tt.want {
				t.Fatalf("MatchAny = %v, want %v", got, tt.want)
			}
		})
	}
	// A parsed canonical pin round-trips.
	p, err := pki.ParsePin(pki.SPKIPin(ca.Root.Cert).String())
	if err != nil || !p.Matches(ca.Root.Cert) {
		t.Fatalf("round trip failed: %v", err)
	}
	sha1, _ := pki.ParsePin("sha1:" + strings.Repeat("00", 20))
	if !sha1.Legacy() || sha1.Matches(ca.Root.Cert) {
		t.Fatal("sha1 pin must be legacy and not match")
	}
}
