package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"software.sslmate.com/src/go-pkcs12"
)

// The formats ReadCertFile recognizes, as CertFile.Format reports them.
const (
	FormatPEM    = "pem"
	FormatDER    = "der"
	FormatPKCS12 = "pkcs12"
)

// Kinds of certificate-file failure. Every *FormatError matches exactly one
// of them with errors.Is, so callers can react (ask for the password again,
// say the file was cut short) without reading message text.
var (
	// ErrWrongPassword: the PKCS#12 password does not open the file.
	ErrWrongPassword = errors.New("the PKCS#12 password is wrong")
	// ErrTruncated: the file ends before its own structure says it should.
	ErrTruncated = errors.New("the file is truncated")
	// ErrCorrupt: the file has the shape of a known format but does not parse.
	ErrCorrupt = errors.New("the file is corrupt")
	// ErrUnknownFormat: the file is none of PEM, DER or PKCS#12.
	ErrUnknownFormat = errors.New("the file is not PEM, DER or PKCS#12")
	// ErrUnsupportedKey: the file holds a private key Ward cannot use.
	ErrUnsupportedKey = errors.New("the private key type is not supported")
	// ErrNoCertificate: the file parses but holds no certificate.
	ErrNoCertificate = errors.New("the file holds no certificate")
	// ErrKeyMismatch: the file's private key does not belong to its
	// certificate.
	ErrKeyMismatch = errors.New("the private key does not match the certificate")
)

// FormatError says why a certificate or key file was refused: its Kind (one
// of the Err* values above), the file, the format it looked like, and a
// detail a user can act on. Cause, when set, is the underlying library error.
type FormatError struct {
	Kind   error
	Path   string // empty when parsing bytes that came from no file
	Format string // FormatPEM, FormatDER, FormatPKCS12, or empty if unknown
	Detail string
	Cause  error
}

// Error names the file, the kind of failure and the detail.
func (e *FormatError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrWrongPassword) and friends work.
func (e *FormatError) Is(target error) bool { return target == e.Kind }

// Unwrap exposes the library error (for example pkcs12.ErrIncorrectPassword).
func (e *FormatError) Unwrap() error { return e.Cause }

// CertFile is what a certificate file held: its format, its certificates
// (the one matching Key first, when there is a key), and its private key.
type CertFile struct {
	Format string
	Certs  []*x509.Certificate
	Key    crypto.Signer // nil when the file holds no key
}

// ReadCertFile reads a PEM, DER (.cer/.der) or PKCS#12 (.pfx/.p12) file,
// detecting the format from the content, not the name. password opens
// PKCS#12 files and is ignored otherwise.
func ReadCertFile(path string, password string) (*CertFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate file: %w", err)
	}
	cf, err := ParseCertFile(data, password)
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Path = path
		}
		return nil, err
	}
	return cf, nil
}

// ParseCertFile is ReadCertFile for bytes already in memory.
func ParseCertFile(data []byte, password string) (*CertFile, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		what := "it is empty (0 bytes)"
		if len(data) > 0 {
			what = fmt.Sprintf("it holds only whitespace (%d bytes)", len(data))
		}
		return nil, &FormatError{Kind: ErrTruncated, Detail: what + "; expected a PEM, DER or PKCS#12 certificate"}
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return parsePEMFile(data)
	}
	return parseDERFile(data, password)
}

func parsePEMFile(data []byte) (*CertFile, error) {
	cf := &CertFile{Format: FormatPEM}
	rest := data
	offset := 0
	var sawKey bool
	var others []string
	for {
		start := bytes.Index(rest, []byte("-----BEGIN"))
		if start < 0 {
			break
		}
		b, next := pem.Decode(rest[start:])
		if b == nil {
			line := rest[start:]
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				line = line[:i]
			}
			label := strings.TrimSpace(string(line))
			return nil, &FormatError{Kind: ErrTruncated, Format: FormatPEM, Detail: fmt.Sprintf(
				"%q at byte %d of %d has no matching -----END line or its base64 is damaged; expected a complete PEM block",
				label, offset+start, len(data))}
		}
		blockAt := offset + start
		offset += len(rest) - len(next)
		rest = next
		switch b.Type {
		case "CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, &FormatError{Kind: ErrCorrupt, Format: FormatPEM, Cause: err,
					Detail: fmt.Sprintf("certificate %d (PEM block at byte %d, %d bytes of DER) does not parse: %v", len(cf.Certs)+1, blockAt, len(b.Bytes), err)}
			}
			cf.Certs = append(cf.Certs, c)
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			if sawKey {
				return nil, &FormatError{Kind: ErrUnsupportedKey, Format: FormatPEM,
					Detail: fmt.Sprintf("a second private key starts at byte %d; keep only the key that belongs to the certificate", blockAt)}
			}
			sawKey = true
			k, err := parsePrivateKeyDER(b.Type, b.Bytes)
			if err != nil {
				return nil, withFormat(err, FormatPEM)
			}
			cf.Key = k
		case "ENCRYPTED PRIVATE KEY":
			return nil, &FormatError{Kind: ErrUnsupportedKey, Format: FormatPEM,
				Detail: "the PEM private key is password-encrypted (ENCRYPTED PRIVATE KEY); decrypt it with `openssl pkey -in FILE -out key.pem`, or bring a PKCS#12 file with its password"}
		case "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return nil, &FormatError{Kind: ErrUnsupportedKey, Format: FormatPEM,
				Detail: fmt.Sprintf("%s blocks are not supported; use an ECDSA P-256 (Ward's default), P-384, Ed25519 or RSA ≥2048 key in PKCS#8", b.Type)}
		default:
			others = append(others, b.Type)
		}
	}
	if len(cf.Certs) == 0 {
		what := "no CERTIFICATE block"
		if cf.Key != nil {
			what = "a private key but no CERTIFICATE block"
		}
		if len(others) > 0 {
			what += " (it has: " + strings.Join(others, ", ") + ")"
		}
		return nil, &FormatError{Kind: ErrNoCertificate, Format: FormatPEM, Detail: fmt.Sprintf("the PEM data (%d bytes) holds %s", len(data), what)}
	}
	if err := leafFirst(cf); err != nil {
		return nil, err
	}
	return cf, nil
}

// parseDERFile tells PKCS#12 from an X.509 certificate by the first element
// inside the outer SEQUENCE: a PFX starts with INTEGER 3 (its version), a
// certificate with the SEQUENCE of its TBSCertificate.
func parseDERFile(data []byte, password string) (*CertFile, error) {
	if data[0] != 0x30 {
		return nil, &FormatError{Kind: ErrUnknownFormat, Detail: fmt.Sprintf(
			"it starts with byte 0x%02x (%d bytes in all); PEM starts with -----BEGIN, DER and PKCS#12 with 0x30 (an ASN.1 SEQUENCE)", data[0], len(data))}
	}
	var outer asn1.RawValue
	rest, err := asn1.Unmarshal(data, &outer)
	if err != nil {
		if want, ok := derDeclaredLength(data); ok && want > len(data) {
			return nil, &FormatError{Kind: ErrTruncated, Format: FormatDER, Cause: err, Detail: fmt.Sprintf(
				"it is %d bytes but its DER header announces %d; the file was cut short (copy it again, in binary mode)", len(data), want)}
		}
		return nil, &FormatError{Kind: ErrCorrupt, Format: FormatDER, Cause: err, Detail: fmt.Sprintf("%d bytes of DER do not parse: %v", len(data), err)}
	}
	if len(bytes.TrimRight(rest, "\x00\r\n")) != 0 {
		return nil, &FormatError{Kind: ErrCorrupt, Format: FormatDER, Detail: fmt.Sprintf(
			"%d bytes follow the end of the DER structure (which is %d bytes); expected one certificate or one PKCS#12 file", len(rest), len(data)-len(rest))}
	}
	var first asn1.RawValue
	if _, err := asn1.Unmarshal(outer.Bytes, &first); err != nil {
		return nil, &FormatError{Kind: ErrCorrupt, Format: FormatDER, Cause: err, Detail: fmt.Sprintf("the DER SEQUENCE's first element does not parse: %v", err)}
	}
	der := data[:len(data)-len(rest)]
	if first.Class == asn1.ClassUniversal && first.Tag == asn1.TagInteger {
		var version int
		if _, err := asn1.Unmarshal(first.FullBytes, &version); err == nil && version == 3 {
			return parsePKCS12(der, password)
		}
		return nil, &FormatError{Kind: ErrNoCertificate, Format: FormatDER, Detail: fmt.Sprintf(
			"the %d bytes of DER look like a private key (version %d), not a certificate; pass the certificate file, or a PKCS#12 file holding both", len(data), version)}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, &FormatError{Kind: ErrCorrupt, Format: FormatDER, Cause: err, Detail: fmt.Sprintf("%d bytes of DER are not an X.509 certificate: %v", len(data), err)}
	}
	return &CertFile{Format: FormatDER, Certs: []*x509.Certificate{c}}, nil
}

// derDeclaredLength returns the total length (header plus content) that a
// DER element's header announces.
func derDeclaredLength(data []byte) (int, bool) {
	if len(data) < 2 {
		return 2, true
	}
	l := int(data[1])
	if l < 0x80 {
		return 2 + l, true
	}
	n := l & 0x7f
	if n == 0 || n > 4 {
		return 0, false
	}
	if len(data) < 2+n {
		return 2 + n, true
	}
	total := 0
	for _, b := range data[2 : 2+n] {
		total = total<<8 | int(b)
	}
	return 2 + n + total, true
}

func parsePKCS12(data []byte, password string) (*CertFile, error) {
	key, leaf, cas, err := pkcs12.DecodeChain(data, password)
	if err != nil && err.Error() == "pkcs12: private key missing" {
		// A certificates-only file: a trust store.
		certs, terr := pkcs12.DecodeTrustStore(data, password)
		if terr != nil {
			if strings.Contains(terr.Error(), "not marked as trusted") {
				return nil, &FormatError{Kind: ErrUnsupportedKey, Format: FormatPKCS12, Cause: terr, Detail: "the PKCS#12 file holds certificates without a private key and without Java's trusted-certificate mark, which this reader cannot open; convert it with `openssl pkcs12 -in FILE -nokeys -out certs.pem` and pass the PEM"}
			}
			return nil, pkcs12Error(terr, len(data))
		}
		if len(certs) == 0 {
			return nil, &FormatError{Kind: ErrNoCertificate, Format: FormatPKCS12, Detail: "the PKCS#12 trust store is empty"}
		}
		return &CertFile{Format: FormatPKCS12, Certs: certs}, nil
	}
	if err != nil {
		return nil, pkcs12Error(err, len(data))
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, unsupportedKey(keyTypeName(key), FormatPKCS12)
	}
	if _, isECDH := key.(*ecdh.PrivateKey); isECDH {
		return nil, unsupportedKey(keyTypeName(key), FormatPKCS12)
	}
	cf := &CertFile{Format: FormatPKCS12, Certs: append([]*x509.Certificate{leaf}, cas...), Key: signer}
	if err := leafFirst(cf); err != nil {
		return nil, err
	}
	return cf, nil
}

func pkcs12Error(err error, n int) error {
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword), errors.Is(err, pkcs12.ErrDecryption):
		return &FormatError{Kind: ErrWrongPassword, Format: FormatPKCS12, Cause: err,
			Detail: "check the password given for this file (an empty password is also a password)"}
	case strings.Contains(err.Error(), "unknown algorithm"), strings.Contains(err.Error(), "elliptic curve"):
		return &FormatError{Kind: ErrUnsupportedKey, Format: FormatPKCS12, Cause: err, Detail: describeKeyError(err)}
	}
	var nie pkcs12.NotImplementedError
	if errors.As(err, &nie) {
		return &FormatError{Kind: ErrUnknownFormat, Format: FormatPKCS12, Cause: err,
			Detail: fmt.Sprintf("this PKCS#12 layout is not supported (%v); re-export it with `openssl pkcs12 -export`", err)}
	}
	return &FormatError{Kind: ErrCorrupt, Format: FormatPKCS12, Cause: err, Detail: fmt.Sprintf("%d bytes of PKCS#12 do not decode: %v", n, err)}
}

// Private key algorithm OIDs that Go cannot parse, named for the message.
var keyOIDNames = map[string]string{
	"1.2.840.10040.4.1": "DSA",
	"1.3.101.110":       "X25519",
	"1.3.101.111":       "X448",
	"1.3.101.112":       "Ed25519",
	"1.3.101.113":       "Ed448",
	"1.2.840.10045.2.1": "ECDSA",
	"1.2.643.7.1.1.1.1": "GOST R 34.10-2012",
}

// parsePrivateKeyDER parses a key block and names the key type when Ward
// cannot use it.
func parsePrivateKeyDER(blockType string, der []byte) (crypto.Signer, error) {
	var key any
	var err error
	switch blockType {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	default:
		key, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		if blockType == "PRIVATE KEY" {
			if name := pkcs8AlgorithmName(der); name != "" && !strings.HasPrefix(name, "RSA") && name != "ECDSA" && name != "Ed25519" {
				return nil, unsupportedKey(name, "")
			}
		}
		if blockType == "EC PRIVATE KEY" && strings.Contains(err.Error(), "elliptic curve") {
			return nil, unsupportedKey(sec1CurveName(der), "")
		}
		if strings.Contains(err.Error(), "elliptic curve") || strings.Contains(err.Error(), "unknown algorithm") {
			return nil, &FormatError{Kind: ErrUnsupportedKey, Cause: err, Detail: describeKeyError(err)}
		}
		return nil, &FormatError{Kind: ErrCorrupt, Cause: err, Detail: fmt.Sprintf("the %s block (%d bytes of DER) does not parse: %v", blockType, len(der), err)}
	}
	if _, isECDH := key.(*ecdh.PrivateKey); isECDH {
		return nil, unsupportedKey(keyTypeName(key), "")
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, unsupportedKey(keyTypeName(key), "")
	}
	return s, nil
}

// pkcs8AlgorithmName reads the algorithm OID of a PKCS#8 structure, even
// one Go cannot parse, and names it.
func pkcs8AlgorithmName(der []byte) string {
	var p8 struct {
		Version int
		Algo    struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue `asn1:"optional"`
		}
		PrivateKey []byte
	}
	if _, err := asn1.Unmarshal(der, &p8); err != nil {
		return ""
	}
	oid := p8.Algo.Algorithm.String()
	if oid == "1.2.840.113549.1.1.1" {
		return "RSA"
	}
	if oid == "1.2.840.10045.2.1" {
		var curve asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(p8.Algo.Parameters.FullBytes, &curve); err == nil {
			switch curve.String() {
			case "1.2.840.10045.3.1.7", "1.3.132.0.34", "1.3.132.0.35":
				return "ECDSA"
			case "1.3.132.0.10":
				return "ECDSA secp256k1"
			}
			return "ECDSA on curve " + curve.String()
		}
		return "ECDSA"
	}
	if name, ok := keyOIDNames[oid]; ok {
		return name
	}
	return "algorithm OID " + oid
}

// sec1CurveName names the curve of a SEC1 "EC PRIVATE KEY" Go cannot parse.
func sec1CurveName(der []byte) string {
	var k struct {
		Version    int
		PrivateKey []byte
		Curve      asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &k); err != nil || len(k.Curve) == 0 {
		return "ECDSA on an unnamed curve"
	}
	if k.Curve.String() == "1.3.132.0.10" {
		return "ECDSA secp256k1"
	}
	return "ECDSA on curve " + k.Curve.String()
}

func describeKeyError(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "unknown algorithm: "); i >= 0 {
		oid := strings.TrimSpace(msg[i+len("unknown algorithm: "):])
		name, ok := keyOIDNames[oid]
		if !ok {
			name = "algorithm OID " + oid
		}
		return fmt.Sprintf("the key is %s (OID %s), which Go's crypto cannot use; Ward uses ECDSA P-256 (its default), P-384, P-521, Ed25519 or RSA ≥2048 keys", name, oid)
	}
	return fmt.Sprintf("%v; Ward uses ECDSA P-256 (its default), P-384, P-521, Ed25519 or RSA ≥2048 keys", err)
}

func unsupportedKey(name, format string) error {
	return &FormatError{Kind: ErrUnsupportedKey, Format: format, Detail: fmt.Sprintf(
		"the key is %s, which cannot sign TLS handshakes or certificates here; use ECDSA P-256 (Ward's default), P-384, P-521, Ed25519 or RSA ≥2048", name)}
}

func keyTypeName(key any) string {
	switch k := key.(type) {
	case *ecdh.PrivateKey:
		if k.Curve() == ecdh.X25519() {
			return "X25519 (key agreement only)"
		}
		return fmt.Sprintf("ECDH %v (key agreement only)", k.Curve())
	case crypto.Signer:
		desc, _ := KeyStrength(k.Public())
		return desc
	}
	return fmt.Sprintf("%T", key)
}

func withFormat(err error, format string) error {
	var fe *FormatError
	if errors.As(err, &fe) && fe.Format == "" {
		fe.Format = format
	}
	return err
}

// leafFirst checks that the key, if any, belongs to one of the certificates
// and moves that certificate to the front.
func leafFirst(cf *CertFile) error {
	if cf.Key == nil {
		return nil
	}
	for i, c := range cf.Certs {
		if KeyMatches(c, cf.Key) {
			if i != 0 {
				cf.Certs[0], cf.Certs[i] = cf.Certs[i], cf.Certs[0]
			}
			return nil
		}
	}
	keyDesc, _ := KeyStrength(cf.Key.Public())
	certDesc, _ := KeyStrength(cf.Certs[0].PublicKey)
	spki, err := x509.MarshalPKIXPublicKey(cf.Key.Public())
	keyPin := ""
	if err == nil {
		keyPin = " " + spkiPinOf(spki)
	}
	return &FormatError{Kind: ErrKeyMismatch, Format: cf.Format, Detail: fmt.Sprintf(
		"the key (%s%s) belongs to none of the %d certificate(s); the first is %q with a %s key (%s); pair each certificate with the key it was issued for",
		keyDesc, keyPin, len(cf.Certs), cf.Certs[0].Subject.String(), certDesc, SPKIPin(cf.Certs[0]))}
}

func spkiPinOf(spkiDER []byte) string {
	c := &x509.Certificate{RawSubjectPublicKeyInfo: spkiDER}
	return SPKIPin(c).String()
}

// EncodeCertDER returns a certificate's DER encoding: the content of a .cer
// or .der file.
func EncodeCertDER(cert *x509.Certificate) []byte {
	return bytes.Clone(cert.Raw)
}

// EncodePKCS12Truststore writes certs as a password-protected PKCS#12 trust
// store that Java's keytool and TrustManagers read (PBES2/AES-256, HMAC-SHA256:
// Java 12+, OpenSSL 1.1.1+). Each entry's alias is the certificate's common
// name plus the start of its SHA-256 fingerprint, so aliases never collide.
func EncodePKCS12Truststore(certs []*x509.Certificate, password string) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("encode PKCS#12 trust store: no certificates given")
	}
	entries := make([]pkcs12.TrustStoreEntry, 0, len(certs))
	for _, c := range certs {
		name := c.Subject.CommonName
		if name == "" {
			name = c.Subject.String()
		}
		entries = append(entries, pkcs12.TrustStoreEntry{Cert: c, FriendlyName: fmt.Sprintf("%s %s", name, hex.EncodeToString(CertSHA256(c).Sum[:6]))})
	}
	out, err := pkcs12.Modern.EncodeTrustStoreEntries(entries, password)
	if err != nil {
		return nil, fmt.Errorf("encode PKCS#12 trust store: %w", err)
	}
	return out, nil
}

// EncodePKCS12 writes a key, its certificate and the chain above it as a
// password-protected PKCS#12 file (.pfx/.p12) that OpenSSL, Java and Windows
// import. It refuses a key that does not belong to cert.
func EncodePKCS12(key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, password string) ([]byte, error) {
	if key == nil || cert == nil {
		return nil, errors.New("encode PKCS#12: a key and a certificate are both required")
	}
	if !KeyMatches(cert, key) {
		return nil, &FormatError{Kind: ErrKeyMismatch, Format: FormatPKCS12, Detail: fmt.Sprintf("the key does not belong to %q", cert.Subject.String())}
	}
	out, err := pkcs12.Modern.Encode(key, cert, chain, password)
	if err != nil {
		return nil, fmt.Errorf("encode PKCS#12 for %q: %w", cert.Subject.String(), err)
	}
	return out, nil
}
