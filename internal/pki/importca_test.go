package pki_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// caSpec describes a test CA certificate; zero fields take CA defaults.
type caSpec struct {
	cn        string
	parent    *pki.CA // nil: self-signed
	key       crypto.Signer
	notBefore time.Time
	notAfter  time.Time
	isCA      *bool
	noBC      bool
	keyUsage  *x509.KeyUsage
	pathLen   *int
	eku       []x509.ExtKeyUsage
	excluded  []string // excluded URI domains
}

func ptr[T any](v T) *T { return &v }

func makeCA(t *testing.T, s caSpec) *pki.CA {
	t.Helper()
	if s.key == nil {
		k, err := pki.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		s.key = k
	}
	now := time.Now()
	if s.notBefore.IsZero() {
		s.notBefore = now.Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = now.Add(365 * 24 * time.Hour)
	}
	if s.cn == "" {
		s.cn = "Test CA"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: s.cn, Organization: []string{"Example Corp"}},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: !s.noBC,
		IsCA:                  true,
		MaxPathLen:            -1,
		ExtKeyUsage:           s.eku,
		ExcludedURIDomains:    s.excluded,
	}
	if s.isCA != nil {
		tmpl.IsCA = *s.isCA
	}
	if s.keyUsage != nil {
		tmpl.KeyUsage = *s.keyUsage
	}
	if s.pathLen != nil {
		tmpl.MaxPathLen = *s.pathLen
		tmpl.MaxPathLenZero = *s.pathLen == 0
	}
	parentCert, parentKey := tmpl, s.key
	if s.parent != nil {
		parentCert, parentKey = s.parent.Cert, s.parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, s.key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: c, Key: s.key}
}

func TestValidateCA(t *testing.T) {
	now := time.Now()
	tca := pkitest.New(t)
	leaf, leafKey := tca.Leaf(t, pki.RoleCoordinator, "c1")
	expired, err := pki.NewRootCA("old", now.Add(-11*365*24*time.Hour), 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	future, err := pki.NewRootCA("future", now.Add(48*time.Hour), pki.RootLifetime)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	weak := makeCA(t, caSpec{cn: "Weak CA", key: p224})
	other, _ := pki.GenerateKey()
	noCertSign := makeCA(t, caSpec{cn: "Signer", keyUsage: ptr(x509.KeyUsageDigitalSignature)})
	noKU := makeCA(t, caSpec{cn: "No KU", keyUsage: ptr(x509.KeyUsage(0))})
	caFalse := makeCA(t, caSpec{cn: "CA false", isCA: ptr(false), keyUsage: ptr(x509.KeyUsageDigitalSignature)})

	for _, tc := range []struct {
		name  string
		certs []*x509.Certificate
		key   crypto.Signer
		kind  error
		want  []string // in the message
	}{
		{"Ward root", []*x509.Certificate{tca.Root.Cert}, tca.Root.Key, nil, nil},
		{"Ward issuing with chain", []*x509.Certificate{tca.Issuing.Cert, tca.Root.Cert}, tca.Issuing.Key, nil, nil},
		{"leaf", []*x509.Certificate{leaf.Leaf}, leafKey, pki.ErrNotCA, []string{`"CN=c1`, "CA:FALSE", "leaf certificate for localhost", "keyCertSign"}},
		{"CA:FALSE", []*x509.Certificate{caFalse.Cert}, caFalse.Key, pki.ErrNotCA, []string{"CN=CA false", "CA:FALSE"}},
		{"no keyCertSign", []*x509.Certificate{noCertSign.Cert}, noCertSign.Key, pki.ErrNotCA, []string{"CN=Signer", "digitalSignature", "lacks keyCertSign"}},
		{"no keyUsage", []*x509.Certificate{noKU.Cert}, noKU.Key, pki.ErrNotCA, []string{"no keyUsage extension", "keyUsage=critical,keyCertSign,cRLSign"}},
		{"expired", []*x509.Certificate{expired.Cert}, expired.Key, pki.ErrExpired, []string{"CN=Ward Root CA old", "expired at " + expired.Cert.NotAfter.UTC().Format(time.RFC3339), "the clock here says " + now.UTC().Format(time.RFC3339), "renew"}},
		{"not yet valid", []*x509.Certificate{future.Cert}, future.Key, pki.ErrNotYetValid, []string{"valid from " + future.Cert.NotBefore.UTC().Format(time.RFC3339), "the clock here says", "clock"}},
		{"weak key", []*x509.Certificate{weak.Cert}, weak.Key, pki.ErrWeakKey, []string{"CN=Weak CA", "ECDSA P-224", "P-256"}},
		{"no key", []*x509.Certificate{tca.Root.Cert}, nil, pki.ErrNoKey, []string{"Ward Root CA test", "--key", "ward ca csr"}},
		{"key mismatch", []*x509.Certificate{tca.Root.Cert}, other, pki.ErrKeyMismatch, []string{"Ward Root CA test", pki.SPKIPin(tca.Root.Cert).String(), "pair the certificate"}},
		{"nothing", nil, nil, pki.ErrNoCertificate, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := pki.ValidateCA(&pki.CertFile{Certs: tc.certs, Key: tc.key}, now)
			if tc.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !ca.Cert.Equal(tc.certs[0]) || ca.Key != tc.key {
					t.Error("the CA is not the first certificate with its key")
				}
				return
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not mention %q", err, w)
				}
			}
			for _, k := range []error{pki.ErrNotCA, pki.ErrExpired, pki.ErrNotYetValid, pki.ErrNoKey, pki.ErrWeakKey, pki.ErrKeyMismatch, pki.ErrNoCertificate} {
				if k != tc.kind && errors.Is(err, k) {
					t.Errorf("err %v also matches %v", err, k)
				}
			}
			var ce *pki.CAError
			if errors.As(err, &ce) && (ce.Fix == "" || ce.Subject == "") {
				t.Errorf("CAError %+v lacks a subject or a fix", ce)
			}
		})
	}
}

func TestIssuingRoot(t *testing.T) {
	now := time.Now()
	tca := pkitest.New(t)
	stranger := pkitest.NewCluster(t, "other")
	root := makeCA(t, caSpec{cn: "Corp Root"})
	// Same name as root, another key: a renewed root.
	namesake := makeCA(t, caSpec{cn: "Corp Root"})
	inter := makeCA(t, caSpec{cn: "Corp Intermediate", parent: root, pathLen: ptr(1)})
	underInter := makeCA(t, caSpec{cn: "Ward under intermediate", parent: inter, pathLen: ptr(0)})
	rootPL0 := makeCA(t, caSpec{cn: "Root pathlen 0", pathLen: ptr(0)})
	underPL0 := makeCA(t, caSpec{cn: "Ward under pathlen 0", parent: rootPL0, pathLen: ptr(0)})
	noCRLSign := makeCA(t, caSpec{cn: "Ward no cRLSign", parent: root, keyUsage: ptr(x509.KeyUsageCertSign)})
	serverOnly := makeCA(t, caSpec{cn: "Ward server only", parent: root, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	bothEKU := makeCA(t, caSpec{cn: "Ward both EKU", parent: root, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	oldRoot := makeCA(t, caSpec{cn: "Old Root", notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)})
	underOld := makeCA(t, caSpec{cn: "Ward under old", parent: oldRoot, notBefore: now.Add(-47 * time.Hour), notAfter: now.Add(-2 * time.Hour)})
	good := makeCA(t, caSpec{cn: "Ward Issuing", parent: root, pathLen: ptr(0)})

	for _, tc := range []struct {
		name  string
		iss   *x509.Certificate
		chain []*x509.Certificate
		root  *x509.Certificate
		kind  error
		want  string
	}{
		{"Ward issuing", tca.Issuing.Cert, []*x509.Certificate{tca.Issuing.Cert, tca.Root.Cert}, tca.Root.Cert, nil, ""},
		{"enterprise root", good.Cert, []*x509.Certificate{stranger.Root.Cert, root.Cert}, root.Cert, nil, ""},
		{"EKU server and client", bothEKU.Cert, []*x509.Certificate{root.Cert}, root.Cert, nil, ""},
		{"no chain", good.Cert, nil, nil, pki.ErrNoRoot, "--chain"},
		{"only itself", good.Cert, []*x509.Certificate{good.Cert}, nil, pki.ErrNoRoot, `"CN=Corp Root,O=Example Corp"`},
		{"other root", good.Cert, []*x509.Certificate{stranger.Root.Cert}, nil, pki.ErrChain, "none of the 1"},
		{"namesake root", good.Cert, []*x509.Certificate{namesake.Cert}, nil, pki.ErrChain, "did not sign it"},
		{"intermediate", underInter.Cert, []*x509.Certificate{inter.Cert, root.Cert}, nil, pki.ErrChain, "intermediate"},
		{"root pathlen 0", underPL0.Cert, []*x509.Certificate{rootPL0.Cert}, nil, pki.ErrCAConstraints, "pathLenConstraint is 0"},
		{"no cRLSign", noCRLSign.Cert, []*x509.Certificate{root.Cert}, nil, pki.ErrCAConstraints, "lacks cRLSign"},
		{"server-only EKU", serverOnly.Cert, []*x509.Certificate{root.Cert}, nil, pki.ErrCAConstraints, "clientAuth"},
		{"expired root", underOld.Cert, []*x509.Certificate{oldRoot.Cert}, nil, pki.ErrExpired, "CN=Old Root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pki.IssuingRoot(tc.iss, tc.chain, now)
			if tc.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !got.Equal(tc.root) {
					t.Errorf("root = %s, want %s", got.Subject, tc.root.Subject)
				}
				return
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("message %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestCheckIssuance(t *testing.T) {
	now := time.Now()
	tca := pkitest.NewCluster(t, "prod")
	if err := pki.CheckIssuance(tca.Issuing, tca.Root.Cert, "prod", now); err != nil {
		t.Fatal(err)
	}
	root := makeCA(t, caSpec{cn: "Constrained Root", excluded: []string{"prod"}})
	iss := makeCA(t, caSpec{cn: "Ward Issuing", parent: root, pathLen: ptr(0)})
	err := pki.CheckIssuance(iss, root.Cert, "prod", now)
	if !errors.Is(err, pki.ErrCAConstraints) || !strings.Contains(err.Error(), "spiffe://prod/coordinator/") {
		t.Fatalf("err = %v, want ErrCAConstraints naming the identity", err)
	}
	if err := pki.CheckIssuance(iss, root.Cert, "staging", now); err != nil {
		t.Fatalf("cluster outside the excluded name: %v", err)
	}
}

func TestCheckRootForIssuing(t *testing.T) {
	root, _ := pki.NewRootCA("x", time.Now(), time.Hour)
	if err := pki.CheckRootForIssuing(root.Cert); err != nil {
		t.Fatal(err)
	}
	pl0 := makeCA(t, caSpec{cn: "PL0", pathLen: ptr(0)})
	if err := pki.CheckRootForIssuing(pl0.Cert); !errors.Is(err, pki.ErrCAConstraints) {
		t.Fatalf("err = %v", err)
	}
	unlimited := makeCA(t, caSpec{cn: "Unlimited"})
	if err := pki.CheckRootForIssuing(unlimited.Cert); err != nil {
		t.Fatal(err)
	}
}

// signCSRAsCA signs a CSR the way an enterprise CA following it would.
func signCSRAsCA(t *testing.T, csr *x509.CertificateRequest, parent *pki.CA, now time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: csr.Subject,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(365 * 24 * time.Hour),
		ExtraExtensions: csr.Extensions,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, csr.PublicKey, parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssuingCSR(t *testing.T) {
	now := time.Now()
	key, _ := pki.GenerateKey()
	out, err := pki.IssuingCSR(key, "prod")
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(out)
	if b == nil || b.Type != "CERTIFICATE REQUEST" || len(rest) != 0 {
		t.Fatalf("not one CERTIFICATE REQUEST block:\n%s", out)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "Ward Issuing CA prod 1" || csr.Subject.Organization[0] != "Ward cluster prod" {
		t.Errorf("subject %s", csr.Subject)
	}
	// Leaves may not ask for this; the issuing CA request must.
	if _, err := pki.CheckCSR(b.Bytes, pki.CSRPolicy{ID: pki.ID{Cluster: "prod", Role: pki.RoleAgent, Name: "n1"}}); err == nil {
		t.Error("CheckCSR accepted the CA request as a leaf")
	}
	root := makeCA(t, caSpec{cn: "Corp Root"})
	signed := signCSRAsCA(t, csr, root, now)
	if !signed.IsCA || !signed.MaxPathLenZero || signed.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("signed as requested: CA %v pathlen0 %v usage %b", signed.IsCA, signed.MaxPathLenZero, signed.KeyUsage)
	}
	if err := pki.ValidateSignedIssuing(signed, key, []*x509.Certificate{root.Cert}, now); err != nil {
		t.Fatal(err)
	}
	if err := pki.CheckIssuance(&pki.CA{Cert: signed, Key: key}, root.Cert, "prod", now); err != nil {
		t.Fatal(err)
	}

	other, _ := pki.GenerateKey()
	for _, tc := range []struct {
		name  string
		key   crypto.Signer
		chain []*x509.Certificate
		kind  error
	}{
		{"another CSR's key", other, []*x509.Certificate{root.Cert}, pki.ErrKeyMismatch},
		{"no pending key", nil, []*x509.Certificate{root.Cert}, pki.ErrNoKey},
		{"no root", key, nil, pki.ErrNoRoot},
		{"wrong root", key, []*x509.Certificate{makeCA(t, caSpec{cn: "Other Root"}).Cert}, pki.ErrChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := pki.ValidateSignedIssuing(signed, tc.key, tc.chain, now); !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
		})
	}
	if _, err := pki.IssuingCSR(key, "Bad Name!"); err == nil {
		t.Error("an invalid cluster name was accepted")
	}
}

// TestIssuingCSROpenSSL has openssl sign the request as the README tells
// operators to, and imports the result.
func TestIssuingCSROpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	key, _ := pki.GenerateKey()
	csrPEM, err := pki.IssuingCSR(key, "prod")
	if err != nil {
		t.Fatal(err)
	}
	root := makeCA(t, caSpec{cn: "Corp Root"})
	rootKey, _ := pki.MarshalKeyPEM(root.Key)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{"x509", "-req", "-in", write("ward.csr", csrPEM), "-CA", write("root.pem", pki.EncodeCertsPEM(root.Cert)),
		"-CAkey", write("root.key", rootKey), "-CAcreateserial", "-days", "30", "-out", filepath.Join(dir, "signed.pem"),
		"-extfile", write("ext.cnf", []byte("basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"))}
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	cf, err := pki.ReadCertFile(filepath.Join(dir, "signed.pem"), "")
	if err != nil {
		t.Fatal(err)
	}
	// The import happens after openssl signed: its notBefore is the second
	// it signed in, which may be later than any time read before it ran.
	if err := pki.ValidateSignedIssuing(cf.Certs[0], key, []*x509.Certificate{root.Cert}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestParseKeyFile(t *testing.T) {
	f := newFormatFixture(t)
	pemKey := keyPEM(t, f.key)
	der, _ := x509.MarshalPKCS8PrivateKey(f.key)
	p12, err := pki.EncodePKCS12(f.key, f.leaf, f.chain, "pw")
	if err != nil {
		t.Fatal(err)
	}
	enc := mustEncrypt(t, f.key, testPass)
	for _, tc := range []struct {
		name string
		data []byte
		pass string
		kind error
	}{
		{"PEM", pemKey, "", nil},
		{"PEM after a certificate", append(pki.EncodeCertsPEM(f.leaf), pemKey...), "", nil},
		{"DER", der, "", nil},
		{"PKCS#12", p12, "pw", nil},
		{"PKCS#12 wrong password", p12, "nope", pki.ErrWrongPassword},
		{"PEM truncated", pemKey[:len(pemKey)-30], "", pki.ErrTruncated},
		{"DER truncated", der[:len(der)/2], "", pki.ErrTruncated},
		{"empty", nil, "", pki.ErrTruncated},
		{"certificate only", pki.EncodeCertsPEM(f.leaf), "", pki.ErrNoKey},
		{"Ward-encrypted", enc, "", pki.ErrUnsupportedKey},
		{"Ed448", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rawPKCS8(t, []int{1, 3, 101, 113}, nil)}), "", pki.ErrUnsupportedKey},
		{"text", []byte("hello"), "", pki.ErrUnknownFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := pki.ParseKeyFile(tc.data, tc.pass)
			if tc.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !pki.KeyMatches(f.leaf, k) {
					t.Error("wrong key")
				}
				return
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
		})
	}
}

func TestAttachKey(t *testing.T) {
	f := newFormatFixture(t)
	cf := &pki.CertFile{Certs: []*x509.Certificate{f.ca.Root.Cert, f.ca.Issuing.Cert}}
	if err := pki.AttachKey(cf, f.ca.Issuing.Key); err != nil {
		t.Fatal(err)
	}
	if !cf.Certs[0].Equal(f.ca.Issuing.Cert) {
		t.Error("the key's certificate did not move to the front")
	}
	err := pki.AttachKey(&pki.CertFile{Certs: []*x509.Certificate{f.ca.Root.Cert}}, f.otherKey)
	if !errors.Is(err, pki.ErrKeyMismatch) || !strings.Contains(err.Error(), "Ward Root CA test") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzParseKeyFile feeds damaged key files (PEM, DER, PKCS#12) to the
// parser behind `ward ca import --key`: a key or a typed error, never a
// panic.
func FuzzParseKeyFile(f *testing.F) {
	key, _ := pki.GenerateKey()
	pemKey, _ := pki.MarshalKeyPEM(key)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sec1, _ := x509.MarshalECPrivateKey(key)
	f.Add(pemKey, "")
	f.Add(der, "")
	f.Add(sec1, "")
	f.Add(pemKey[:len(pemKey)/2], "")
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\n-----END ENCRYPTED PRIVATE KEY-----\n"), "")
	f.Add([]byte{0x30, 0x82, 0x01}, "pw")
	f.Fuzz(func(t *testing.T, data []byte, password string) {
		k, err := pki.ParseKeyFile(data, password)
		if err == nil && k == nil {
			t.Fatal("nil key without an error")
		}
		var fe *pki.FormatError
		if err != nil && !errors.As(err, &fe) {
			t.Fatalf("error %T %v is not a *FormatError", err, err)
		}
	})
}
