package pki

import (
	"crypto/sha1" //nolint:gosec // SHA-1 thumbprints are accepted as a legacy pin form, with a warning.
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// PinKind says what a pin hashes.
type PinKind uint8

// The pin forms Ward accepts. SPKI pins are the default because they survive
// certificate renewal; thumbprints match one exact certificate.
const (
	// PinSPKI is sha256 over the DER SubjectPublicKeyInfo: "sha256:<64 hex>".
	PinSPKI PinKind = iota + 1
	// PinCertSHA256 is the SHA-256 thumbprint of a whole certificate:
	// "cert-sha256:<64 hex>".
	PinCertSHA256
	// PinCertSHA1 is the legacy SHA-1 thumbprint (40 hex, as Windows shows
	// it): "sha1:<40 hex>". Accepted with a warning.
	PinCertSHA1
)

// Pin identifies a public key or a certificate by hash.
type Pin struct {
	Kind PinKind
	Sum  []byte
}

// PinError explains why a pin string was refused, in words a user can act on.
type PinError struct {
	Input  string
	Reason string
}

func (e *PinError) Error() string {
	return fmt.Sprintf("invalid pin %q: %s; expected sha256:<64 hex digits> (SHA-256 of the CA's public key, as `ward ca pin` prints), cert-sha256:<64 hex digits> (a certificate thumbprint), or sha1:<40 hex digits> (legacy thumbprint); colons, spaces and either case are allowed", e.Input, e.Reason)
}

// ParsePin reads a pin as users paste it: an optional "sha256:",
// "cert-sha256:" or "sha1:" prefix, then hex with optional colons or spaces,
// in either case. Without a prefix, 64 hex digits mean an SPKI pin and 40 hex
// digits a SHA-1 thumbprint.
func ParsePin(s string) (Pin, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return Pin{}, &PinError{Input: s, Reason: "it is empty"}
	}
	kind := PinKind(0)
	body := in
	lower := strings.ToLower(in)
	switch {
	case strings.HasPrefix(lower, "cert-sha256:"):
		kind, body = PinCertSHA256, in[len("cert-sha256:"):]
	case strings.HasPrefix(lower, "sha256:"):
		kind, body = PinSPKI, in[len("sha256:"):]
	case strings.HasPrefix(lower, "sha1:"):
		kind, body = PinCertSHA1, in[len("sha1:"):]
	}
	var digits strings.Builder
	for i, r := range body {
		switch {
		case r == ':' || r == ' ' || r == '\t':
			continue
		case (r >= '0' && r <= '9') || (r >= 'a' && r <= 'f') || (r >= 'A' && r <= 'F'):
			digits.WriteRune(r)
		default:
			return Pin{}, &PinError{Input: s, Reason: fmt.Sprintf("character %q at position %d is not a hex digit", r, i+1)}
		}
	}
	hexStr := strings.ToLower(digits.String())
	n := len(hexStr)
	if kind == 0 {
		switch n {
		case 64:
			kind = PinSPKI
		case 40:
			kind = PinCertSHA1
		default:
			return Pin{}, &PinError{Input: s, Reason: fmt.Sprintf("it has %d hex digits", n)}
		}
	}
	want := 64
	if kind == PinCertSHA1 {
		want = 40
	}
	if n != want {
		return Pin{}, &PinError{Input: s, Reason: fmt.Sprintf("it has %d hex digits, this form needs %d", n, want)}
	}
	sum, err := hex.DecodeString(hexStr)
	if err != nil {
		return Pin{}, &PinError{Input: s, Reason: err.Error()}
	}
	return Pin{Kind: kind, Sum: sum}, nil
}

// ParsePins parses several pins and reports the first bad one.
func ParsePins(in []string) ([]Pin, error) {
	out := make([]Pin, 0, len(in))
	for _, s := range in {
		p, err := ParsePin(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// SPKIPin returns the SHA-256 pin of cert's public key.
func SPKIPin(cert *x509.Certificate) Pin {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return Pin{Kind: PinSPKI, Sum: sum[:]}
}

// CertSHA256 returns the SHA-256 thumbprint of cert as a pin.
func CertSHA256(cert *x509.Certificate) Pin {
	sum := sha256.Sum256(cert.Raw)
	return Pin{Kind: PinCertSHA256, Sum: sum[:]}
}

// Legacy reports whether the pin uses SHA-1, which callers should warn about.
func (p Pin) Legacy() bool { return p.Kind == PinCertSHA1 }

// String formats the pin in its canonical, prefixed, lower-case form.
func (p Pin) String() string {
	switch p.Kind {
	case PinSPKI:
		return "sha256:" + hex.EncodeToString(p.Sum)
	case PinCertSHA256:
		return "cert-sha256:" + hex.EncodeToString(p.Sum)
	case PinCertSHA1:
		return "sha1:" + hex.EncodeToString(p.Sum)
	}
	return "invalid-pin"
}

// Matches reports whether cert is the key or certificate the pin names.
func (p Pin) Matches(cert *x509.Certificate) bool {
	var got []byte
	switch p.Kind {
	case PinSPKI:
		s := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		got = s[:]
	case PinCertSHA256:
		s := sha256.Sum256(cert.Raw)
		got = s[:]
	case PinCertSHA1:
		s := sha1.Sum(cert.Raw) //nolint:gosec // legacy thumbprint form
		got = s[:]
	default:
		return false
	}
	return subtle.ConstantTimeCompare(got, p.Sum) == 1
}

// MatchAny returns the first certificate in certs that one of pins matches.
func MatchAny(pins []Pin, certs []*x509.Certificate) (*x509.Certificate, bool) {
	for _, c := range certs {
		for _, p := range pins {
			if p.Matches(c) {
				return c, true
			}
		}
	}
	return nil, false
}

// Fingerprint returns the SHA-256 thumbprint of cert as colon-free lower hex,
// the form `openssl x509 -fingerprint -sha256` shows without colons.
func Fingerprint(cert *x509.Certificate) string {
	s := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(s[:])
}
