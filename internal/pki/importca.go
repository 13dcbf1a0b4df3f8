package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Kinds of CA-import failure, besides the file-format kinds (ErrWrongPassword,
// ErrTruncated, ErrCorrupt, ErrUnsupportedKey, ErrNoCertificate,
// ErrKeyMismatch) that ReadCertFile reports. Every *CAError matches exactly
// one kind with errors.Is.
var (
	// ErrNotCA: the certificate lacks basicConstraints CA:TRUE or the
	// keyCertSign key usage.
	ErrNotCA = errors.New("the certificate is not a CA certificate")
	// ErrExpired: the certificate's NotAfter has passed.
	ErrExpired = errors.New("the certificate has expired")
	// ErrNotYetValid: the certificate's NotBefore is still ahead.
	ErrNotYetValid = errors.New("the certificate is not valid yet")
	// ErrNoKey: no private key came with the certificate.
	ErrNoKey = errors.New("no private key was given for the certificate")
	// ErrWeakKey: the certificate's key is of a type or size Ward refuses
	// (KeyStrength).
	ErrWeakKey = errors.New("the key is too weak or of a type Ward does not accept")
	// ErrCAConstraints: the certificate is a CA, but its constraints do not
	// fit where Ward puts it (path length, key usage, extended key usage,
	// name constraints).
	ErrCAConstraints = errors.New("the CA certificate's constraints do not allow Ward's use of it")
	// ErrNoRoot: an issuing CA came without the root that signed it.
	ErrNoRoot = errors.New("the root CA certificate is missing")
	// ErrChain: the certificate does not chain to the root given with it.
	ErrChain = errors.New("the certificate does not chain to the given root")
)

// CAError says why a certificate cannot be Ward's CA: its Kind (one of the
// Err* values), the certificate's subject, a Detail with the facts (times,
// key types, pins), and a Fix that says what to do.
type CAError struct {
	Kind    error
	Subject string
	Detail  string
	Fix     string
	Cause   error
}

// Summary is the message without the fix, for renderers that print the fix
// on its own line.
func (e *CAError) Summary() string {
	var b strings.Builder
	if e.Subject != "" {
		fmt.Fprintf(&b, "certificate %q: ", e.Subject)
	}
	b.WriteString(e.Kind.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Error is the summary followed by the fix.
func (e *CAError) Error() string {
	if e.Fix == "" {
		return e.Summary()
	}
	return e.Summary() + "; to fix: " + e.Fix
}

// Unwrap exposes the kind and the cause to errors.Is and errors.As.
func (e *CAError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

func caErr(kind error, cert *x509.Certificate, fix, format string, args ...any) *CAError {
	e := &CAError{Kind: kind, Detail: fmt.Sprintf(format, args...), Fix: fix}
	if cert != nil {
		e.Subject = cert.Subject.String()
	}
	return e
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// span renders a positive duration for messages: days when it is long.
func span(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	return d.Round(time.Second).String()
}

// ValidateCA turns a parsed certificate file into a CA that Ward can sign
// with: the first certificate must be a CA (basicConstraints CA:TRUE and
// keyUsage keyCertSign), valid at now, with a key Ward accepts, and the
// file's key must be its key. Each refusal is a *CAError of its own kind;
// the other certificates of the file (a chain) are left for the caller.
func ValidateCA(cf *CertFile, now time.Time) (*CA, error) {
	if cf == nil || len(cf.Certs) == 0 {
		return nil, &FormatError{Kind: ErrNoCertificate, Detail: "no certificate was given"}
	}
	cert := cf.Certs[0]
	if err := checkIsCA(cert); err != nil {
		return nil, err
	}
	if err := checkValidity(cert, now); err != nil {
		return nil, err
	}
	if desc, ok := KeyStrength(cert.PublicKey); !ok {
		if cert.PublicKey == nil {
			desc = cert.PublicKeyAlgorithm.String()
		}
		return nil, caErr(ErrWeakKey, cert, "use a CA with an ECDSA P-256 (Ward's default), P-384 or P-521, Ed25519 or RSA ≥2048 key",
			"its public key is %s", desc)
	}
	if cf.Key == nil {
		return nil, caErr(ErrNoKey, cert,
			"give the key with --key FILE, or a PKCS#12 file that holds both; to keep the key with your own CA, run `ward ca csr` and import the certificate it signs",
			"the file holds the certificate but not its private key")
	}
	if !KeyMatches(cert, cf.Key) {
		keyDesc, _ := KeyStrength(cf.Key.Public())
		return nil, caErr(ErrKeyMismatch, cert, "pair the certificate with the key it was issued for (`ward cert inspect FILE` shows the certificate's pin)",
			"the private key (%s, %s) is not the certificate's key (%s)", keyDesc, publicKeyPin(cf.Key.Public()), SPKIPin(cert))
	}
	return &CA{Cert: cert, Key: cf.Key}, nil
}

func checkIsCA(cert *x509.Certificate) error {
	const fix = "give the CA certificate itself, not a server or client certificate; a CA made with openssl needs " +
		`-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"`
	if !cert.BasicConstraintsValid || !cert.IsCA {
		what := "it has no basicConstraints extension"
		if cert.BasicConstraintsValid {
			what = "its basicConstraints say CA:FALSE"
		}
		what += ", so it may not sign certificates"
		if names := append(append([]string{}, cert.DNSNames...), cert.EmailAddresses...); len(names) > 0 {
			what += fmt.Sprintf("; it is a leaf certificate for %s", strings.Join(names, ", "))
		}
		return caErr(ErrNotCA, cert, fix, "%s", what)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		what := "it has no keyUsage extension (RFC 5280 requires keyCertSign on a CA certificate)"
		if cert.KeyUsage != 0 {
			what = fmt.Sprintf("its keyUsage (%s) lacks keyCertSign", strings.Join(KeyUsageNames(cert.KeyUsage), ", "))
		}
		return caErr(ErrNotCA, cert, fix, "%s", what)
	}
	return nil
}

func checkValidity(cert *x509.Certificate, now time.Time) error {
	if now.After(cert.NotAfter) {
		return caErr(ErrExpired, cert, "renew the CA certificate (or import a current one); if it should still be valid, check this host's clock",
			"it expired at %s; the clock here says %s (%s later); it was valid from %s",
			stamp(cert.NotAfter), stamp(now), span(now.Sub(cert.NotAfter)), stamp(cert.NotBefore))
	}
	if now.Before(cert.NotBefore) {
		return caErr(ErrNotYetValid, cert, "check the clock here and on the machine that made the certificate, or wait until it is valid",
			"it is valid from %s until %s; the clock here says %s (%s earlier)",
			stamp(cert.NotBefore), stamp(cert.NotAfter), stamp(now), span(cert.NotBefore.Sub(now)))
	}
	return nil
}

var keyUsageNamesList = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageContentCommitment, "contentCommitment"},
	{x509.KeyUsageKeyEncipherment, "keyEncipherment"}, {x509.KeyUsageDataEncipherment, "dataEncipherment"},
	{x509.KeyUsageKeyAgreement, "keyAgreement"}, {x509.KeyUsageCertSign, "keyCertSign"},
	{x509.KeyUsageCRLSign, "cRLSign"}, {x509.KeyUsageEncipherOnly, "encipherOnly"}, {x509.KeyUsageDecipherOnly, "decipherOnly"},
}

// KeyUsageNames lists the key usages set in ku by their RFC 5280 names, in
// the RFC's order; never nil, so it encodes as a JSON list.
func KeyUsageNames(ku x509.KeyUsage) []string {
	out := []string{}
	for _, k := range keyUsageNamesList {
		if ku&k.bit != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

func publicKeyPin(pub crypto.PublicKey) string {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unknown pin"
	}
	return spkiPinOf(spki)
}

// IsSelfSigned reports whether cert is a root: its issuer is its subject and
// its own key verifies its signature.
func IsSelfSigned(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignatureFrom(cert) == nil
}

// AttachKey pairs a key given in its own file with the certificate file: the
// certificate that belongs to the key moves to the front. It refuses with
// ErrKeyMismatch, naming the certificates, when none does.
func AttachKey(cf *CertFile, key crypto.Signer) error {
	cf.Key = key
	return leafFirst(cf)
}

// ReadKeyFile reads a private key file: PEM (PKCS#8, SEC1, PKCS#1, or a
// WARD ENCRYPTED PRIVATE KEY, which needs UnlockKeyPEM instead), DER, or a
// PKCS#12 file opened with password. Failures are *FormatError values with
// the same kinds as ReadCertFile's.
func ReadKeyFile(path, password string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	k, err := ParseKeyFile(data, password)
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Path = path
		}
		return nil, err
	}
	return k, nil
}

// ParseKeyFile is ReadKeyFile for bytes already in memory.
func ParseKeyFile(data []byte, password string) (crypto.Signer, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &FormatError{Kind: ErrTruncated, Detail: fmt.Sprintf("it is empty (%d bytes); expected a PEM, DER or PKCS#12 private key", len(data))}
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return parseKeyPEMFile(data)
	}
	if data[0] == 0x30 {
		if want, ok := derDeclaredLength(data); ok && want > len(data) {
			return nil, &FormatError{Kind: ErrTruncated, Format: FormatDER, Detail: fmt.Sprintf(
				"it is %d bytes but its DER header announces %d; the file was cut short (copy it again, in binary mode)", len(data), want)}
		}
		// A PKCS#12 file starts with INTEGER 3; a key with INTEGER 0 or 1.
		var outer asn1.RawValue
		if _, err := asn1.Unmarshal(data, &outer); err == nil {
			var version int
			if _, err := asn1.Unmarshal(outer.Bytes, &version); err == nil && version == 3 {
				cf, err := parsePKCS12(data, password)
				if err != nil {
					return nil, err
				}
				if cf.Key == nil {
					return nil, &FormatError{Kind: ErrNoKey, Format: FormatPKCS12, Detail: "the PKCS#12 file holds certificates but no private key"}
				}
				return cf.Key, nil
			}
		}
		for _, t := range []string{"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"} {
			if k, err := parsePrivateKeyDER(t, data); err == nil {
				return k, nil
			} else if errors.Is(err, ErrUnsupportedKey) {
				return nil, withFormat(err, FormatDER)
			}
		}
		return nil, &FormatError{Kind: ErrCorrupt, Format: FormatDER, Detail: fmt.Sprintf("%d bytes of DER are not a PKCS#8, SEC1 or PKCS#1 private key", len(data))}
	}
	return nil, &FormatError{Kind: ErrUnknownFormat, Detail: fmt.Sprintf(
		"it starts with byte 0x%02x (%d bytes in all); a key file is PEM (-----BEGIN), DER or PKCS#12", data[0], len(data))}
}

func parseKeyPEMFile(data []byte) (crypto.Signer, error) {
	rest := data
	offset := 0
	var key crypto.Signer
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
			return nil, &FormatError{Kind: ErrTruncated, Format: FormatPEM, Detail: fmt.Sprintf(
				"%q at byte %d of %d has no matching -----END line or its base64 is damaged; expected a complete PEM block",
				strings.TrimSpace(string(line)), offset+start, len(data))}
		}
		blockAt := offset + start
		offset += len(rest) - len(next)
		rest = next
		switch b.Type {
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			if key != nil {
				return nil, &FormatError{Kind: ErrUnsupportedKey, Format: FormatPEM,
					Detail: fmt.Sprintf("a second private key starts at byte %d; keep only the key that belongs to the certificate", blockAt)}
			}
			k, err := parsePrivateKeyDER(b.Type, b.Bytes)
			if err != nil {
				return nil, withFormat(err, FormatPEM)
			}
			key = k
		case EncryptedKeyPEMType:
			return nil, &FormatError{Kind: ErrUnsupportedKey, Format: FormatPEM,
				Detail: "the key is encrypted by Ward (" + EncryptedKeyPEMType + "); give the passphrase file it was written with"}
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
	if key == nil {
		what := "no private key block"
		if len(others) > 0 {
			what += " (it has: " + strings.Join(others, ", ") + ")"
		}
		return nil, &FormatError{Kind: ErrNoKey, Format: FormatPEM, Detail: fmt.Sprintf("the PEM data (%d bytes) holds %s", len(data), what)}
	}
	return key, nil
}

// CheckRootForIssuing checks that root may sign Ward's issuing CA: a
// pathLenConstraint of 0 allows only leaves below it.
func CheckRootForIssuing(root *x509.Certificate) error {
	if root.MaxPathLenZero || (root.BasicConstraintsValid && root.MaxPathLen == 0) {
		return caErr(ErrCAConstraints, root, "use a root without a path length limit, or with pathlen ≥ 1 (openssl: basicConstraints=critical,CA:TRUE,pathlen:1)",
			"its pathLenConstraint is 0: it may sign only leaf certificates, but Ward puts its issuing CA below the root")
	}
	return checkCAEKU(root)
}

// checkCAEKU refuses a CA whose extended key usage would make Go (and most
// verifiers) reject Ward's leaves: they need serverAuth and clientAuth.
func checkCAEKU(cert *x509.Certificate) error {
	if len(cert.ExtKeyUsage) == 0 && len(cert.UnknownExtKeyUsage) == 0 {
		return nil
	}
	if slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil
	}
	if slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil
	}
	return caErr(ErrCAConstraints, cert, "have the CA reissued without extendedKeyUsage, or with both serverAuth and clientAuth",
		"its extendedKeyUsage restricts the certificates below it, and Ward's leaves need both serverAuth and clientAuth")
}

// checkIssuingUsage checks what Ward's issuing CA must be able to do besides
// signing certificates: sign CRLs.
func checkIssuingUsage(cert *x509.Certificate) error {
	if cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return caErr(ErrCAConstraints, cert, "have the CA reissued with keyUsage keyCertSign and cRLSign (openssl: keyUsage=critical,keyCertSign,cRLSign)",
			"its keyUsage (%s) lacks cRLSign, and Ward's issuing CA signs the cluster's CRLs", strings.Join(KeyUsageNames(cert.KeyUsage), ", "))
	}
	return checkCAEKU(cert)
}

// IssuingRoot finds, among chain, the root that signed the issuing CA
// certificate issuing, and checks the two-level hierarchy Ward's coordinator
// serves (root → issuing CA → leaves): the root is self-signed, valid at
// now, and may sign a CA; issuing verifies against it and may sign CRLs.
// Other certificates in chain are ignored.
func IssuingRoot(issuing *x509.Certificate, chain []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	var others []*x509.Certificate
	for _, c := range chain {
		if !c.Equal(issuing) {
			others = append(others, c)
		}
	}
	if len(others) == 0 {
		return nil, caErr(ErrNoRoot, issuing, "give the root's certificate with --chain FILE (PEM, DER or PKCS#12), or put it in the same file after the issuing CA",
			"it was issued by %q, and Ward needs that root to build the trust bundle", issuing.Issuer.String())
	}
	var parent, namesake *x509.Certificate
	var sigErr error
	for _, c := range others {
		if !bytes.Equal(issuing.RawIssuer, c.RawSubject) {
			continue
		}
		if sigErr = issuing.CheckSignatureFrom(c); sigErr == nil {
			parent = c
			break
		}
		namesake = c
	}
	if parent == nil && namesake != nil {
		e := caErr(ErrChain, issuing, "give the certificate of the CA that really signed it: the one given has the right name but another key (an older or renewed root?)",
			"the given %q has its issuer's name but did not sign it (%v); that root's pin is %s", namesake.Subject.String(), sigErr, SPKIPin(namesake))
		e.Cause = sigErr
		return nil, e
	}
	if parent == nil {
		names := make([]string, 0, len(others))
		for _, c := range others {
			names = append(names, fmt.Sprintf("%q", c.Subject.String()))
		}
		return nil, caErr(ErrChain, issuing, "give the certificate of the CA that signed it (its issuer) with --chain",
			"it was issued by %q, but none of the %d other certificate(s) given signed it (%s)", issuing.Issuer.String(), len(others), strings.Join(names, ", "))
	}
	if !IsSelfSigned(parent) {
		return nil, caErr(ErrChain, issuing, "have the root sign Ward's issuing CA directly (`ward ca csr`), or import the root itself with its key",
			"it was signed by the intermediate %q, not by a root; Ward's coordinator trusts one root and serves root → issuing CA → leaf", parent.Subject.String())
	}
	if err := checkValidity(parent, now); err != nil {
		return nil, err
	}
	if desc, ok := KeyStrength(parent.PublicKey); !ok {
		return nil, caErr(ErrWeakKey, parent, "use a root with an ECDSA P-256, P-384 or P-521, Ed25519 or RSA ≥2048 key", "its public key is %s", desc)
	}
	if err := CheckRootForIssuing(parent); err != nil {
		return nil, err
	}
	if err := checkIssuingUsage(issuing); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(parent)
	if _, err := issuing.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		e := caErr(ErrChain, issuing, "check the root given with --chain", "it does not verify against root %q: %v", parent.Subject.String(), err)
		e.Cause = err
		return nil, e
	}
	return parent, nil
}

// CheckIssuance proves that the hierarchy works end to end: it issues a
// throw-away coordinator certificate for cluster with iss, as the
// coordinator will, and verifies it against root for both server and client
// authentication. It catches constraints the other checks do not name (name
// constraints, policy, algorithms).
func CheckIssuance(iss *CA, root *x509.Certificate, cluster string, now time.Time) error {
	key, err := GenerateKey()
	if err != nil {
		return err
	}
	id := ID{Cluster: cluster, Role: RoleCoordinator, Name: "import-check"}
	is := &Issuer{CA: iss, Chain: []*x509.Certificate{iss.Cert, root}}
	leaf, err := is.Issue(LeafSpec{ID: id, PublicKey: key.Public(), Lifetime: time.Hour, DNSNames: []string{"localhost"}}, now)
	if err != nil {
		e := caErr(ErrCAConstraints, iss.Cert, "check the CA's key and algorithms", "a test certificate could not be signed with it: %v", err)
		e.Cause = err
		return e
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	inter.AddCert(iss.Cert)
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			e := caErr(ErrCAConstraints, iss.Cert, "have the CA reissued without the constraint the message names",
				"a certificate it signs for %s does not verify against root %q: %v", id, root.Subject.String(), err)
			e.Cause = err
			return e
		}
	}
	return nil
}

// IssuingCSRGeneration is the generation IssuingCSR names in its subject,
// as NewIssuingCA does for the first issuing CA of a cluster.
const IssuingCSRGeneration = 1

// IssuingCSR makes a PEM certificate request for Ward's issuing CA, signed
// by key, for an enterprise CA to sign: subject "Ward Issuing CA <cluster>
// 1", basicConstraints critical CA:TRUE pathlen 0, keyUsage critical
// keyCertSign and cRLSign. (CheckCSR refuses exactly these requests from
// leaves; this one goes to another CA, not to Ward.)
func IssuingCSR(key crypto.Signer, cluster string) ([]byte, error) {
	if err := ValidName("cluster", cluster); err != nil {
		return nil, err
	}
	if desc, ok := KeyStrength(key.Public()); !ok {
		return nil, fmt.Errorf("issuing CA request: key %s is too weak", desc)
	}
	bc, err := asn1.Marshal(struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}{IsCA: true, MaxPathLen: 0})
	if err != nil {
		return nil, err
	}
	// keyCertSign is bit 5 and cRLSign bit 6 of the KeyUsage BIT STRING.
	ku, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7})
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: fmt.Sprintf("Ward Issuing CA %s %d", cluster, IssuingCSRGeneration), Organization: []string{"Ward cluster " + cluster}},
		ExtraExtensions: []pkix.Extension{
			{Id: oidBasicConstraints, Critical: true, Value: bc},
			{Id: oidKeyUsage, Critical: true, Value: ku},
		},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create issuing CA request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ValidateSignedIssuing checks a certificate an external CA signed for
// Ward's pending issuing key (after IssuingCSR): it belongs to key, is a CA
// valid at now that may sign certificates and CRLs, and chains to a root in
// chain (see IssuingRoot).
func ValidateSignedIssuing(cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate, now time.Time) error {
	if key == nil {
		return caErr(ErrNoKey, cert, "run `ward ca csr` first, then import the certificate the CA signs for it", "there is no pending issuing CA key")
	}
	if !KeyMatches(cert, key) {
		return caErr(ErrKeyMismatch, cert, "import the certificate signed for the latest `ward ca csr` request (or run `ward ca csr` again and have that one signed)",
			"it was signed for another request: its key %s is not the pending key %s", SPKIPin(cert), publicKeyPin(key.Public()))
	}
	if _, err := ValidateCA(&CertFile{Certs: []*x509.Certificate{cert}, Key: key}, now); err != nil {
		return err
	}
	_, err := IssuingRoot(cert, chain, now)
	return err
}
