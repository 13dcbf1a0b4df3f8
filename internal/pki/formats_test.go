package pki_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
	"software.sslmate.com/src/go-pkcs12"
)

// formatFixture is one in-memory CA, a leaf with its key, and a stranger key.
type formatFixture struct {
	ca       *pkitest.CA
	leaf     *x509.Certificate
	key      crypto.Signer
	chain    []*x509.Certificate // issuing, root
	otherKey crypto.Signer
}

func newFormatFixture(t *testing.T) *formatFixture {
	t.Helper()
	ca := pkitest.New(t)
	tc, key := ca.Leaf(t, pki.RoleCoordinator, "c1")
	other, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &formatFixture{ca: ca, leaf: tc.Leaf, key: key, chain: []*x509.Certificate{ca.Issuing.Cert, ca.Root.Cert}, otherKey: other}
}

func keyPEM(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// rawPKCS8 builds a PKCS#8 structure for an algorithm Go cannot parse.
func rawPKCS8(t *testing.T, oid asn1.ObjectIdentifier, params []byte) []byte {
	t.Helper()
	type algo struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	a := algo{Algorithm: oid}
	if params != nil {
		a.Parameters = asn1.RawValue{FullBytes: params}
	}
	inner, _ := asn1.Marshal(make([]byte, 57))
	der, err := asn1.Marshal(struct {
		Version    int
		Algo       algo
		PrivateKey []byte
	}{0, a, inner})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestParseCertFile(t *testing.T) {
	f := newFormatFixture(t)
	leafPEM := pki.EncodeCertsPEM(f.leaf)
	chainPEM := pki.EncodeCertsPEM(f.chain...)

	sec1, err := x509.MarshalECPrivateKey(f.key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaLeaf, err := f.ca.Issuer.Issue(pki.LeafSpec{ID: pki.ID{Cluster: "test", Role: pki.RoleAgent, Name: "rsa"}, PublicKey: rsaKey.Public(), Lifetime: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})

	p12, err := pki.EncodePKCS12(f.key, f.leaf, f.chain, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.EncodePKCS12Truststore(f.chain, "changeit")
	if err != nil {
		t.Fatal(err)
	}
	pkcs8DER, err := x509.MarshalPKCS8PrivateKey(f.key)
	if err != nil {
		t.Fatal(err)
	}
	_, x25519, err := ecdhKey()
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secp256k1OID, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 132, 0, 10})
	secp256k1SEC1, err := asn1.Marshal(struct {
		Version    int
		PrivateKey []byte
		Curve      asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	}{1, make([]byte, 32), asn1.ObjectIdentifier{1, 3, 132, 0, 10}})
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, f.key)
	if err != nil {
		t.Fatal(err)
	}
	pemBlock := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	garbageDER := []byte{0x30, 0x06, 0x30, 0x04, 0x02, 0x01, 0x01, 0x05}

	tests := []struct {
		name      string
		data      []byte
		password  string
		wantKind  error
		wantInMsg []string
		format    string
		certs     int
		key       bool
		leaf      *x509.Certificate
	}{
		{name: "pem leaf", data: leafPEM, format: "pem", certs: 1, leaf: f.leaf},
		{name: "pem chain with key last, leaf in the middle", data: concat([]byte("Bag Attributes: junk\n"), chainPEM[:len(pki.EncodeCertsPEM(f.chain[0]))], leafPEM, pki.EncodeCertsPEM(f.chain[1]), keyPEM(t, f.key)), format: "pem", certs: 3, key: true, leaf: f.leaf},
		{name: "pem SEC1 key", data: concat(leafPEM, sec1PEM), format: "pem", certs: 1, key: true, leaf: f.leaf},
		{name: "pem PKCS#1 RSA key", data: concat(pki.EncodeCertsPEM(rsaLeaf), pkcs1PEM), format: "pem", certs: 1, key: true, leaf: rsaLeaf},
		{name: "der certificate", data: f.leaf.Raw, format: "der", certs: 1, leaf: f.leaf},
		{name: "der certificate with trailing newline", data: concat(f.leaf.Raw, []byte("\r\n")), format: "der", certs: 1, leaf: f.leaf},
		{name: "pkcs12 key and chain", data: p12, password: "s3cret", format: "pkcs12", certs: 3, key: true, leaf: f.leaf},
		{name: "pkcs12 trust store", data: trust, password: "changeit", format: "pkcs12", certs: 2, leaf: f.chain[0]},

		{name: "pkcs12 wrong password", data: p12, password: "wrong", wantKind: pki.ErrWrongPassword, wantInMsg: []string{"the PKCS#12 password is wrong"}},
		{name: "pkcs12 trust store wrong password", data: trust, password: "wrong", wantKind: pki.ErrWrongPassword},
		{name: "pkcs12 truncated", data: p12[:len(p12)/2], password: "s3cret", wantKind: pki.ErrTruncated, wantInMsg: []string{"announces"}},
		{name: "der truncated", data: f.leaf.Raw[:100], wantKind: pki.ErrTruncated, wantInMsg: []string{"it is 100 bytes but its DER header announces"}},
		{name: "der header only", data: f.leaf.Raw[:3], wantKind: pki.ErrTruncated},
		{name: "pem truncated", data: leafPEM[:len(leafPEM)/2], wantKind: pki.ErrTruncated, wantInMsg: []string{"-----BEGIN CERTIFICATE-----", "no matching -----END"}},
		{name: "empty", data: nil, wantKind: pki.ErrTruncated, wantInMsg: []string{"empty (0 bytes)"}},
		{name: "whitespace", data: []byte("\n"), wantKind: pki.ErrTruncated, wantInMsg: []string{"only whitespace"}},
		{name: "der garbage in a sequence", data: garbageDER, wantKind: pki.ErrCorrupt},
		{name: "der bad certificate body", data: concat([]byte{0x30, 0x03, 0x30, 0x01, 0x00}), wantKind: pki.ErrCorrupt},
		{name: "pem bad certificate body", data: pemBlock("CERTIFICATE", []byte{0x30, 0x00}), wantKind: pki.ErrCorrupt, wantInMsg: []string{"certificate 1"}},
		{name: "unknown format", data: []byte("hello, world\n"), wantKind: pki.ErrUnknownFormat, wantInMsg: []string{"0x68"}},
		{name: "pem key only", data: keyPEM(t, f.key), wantKind: pki.ErrNoCertificate, wantInMsg: []string{"a private key but no CERTIFICATE"}},
		{name: "pem CSR only", data: pemBlock("CERTIFICATE REQUEST", csrDER), wantKind: pki.ErrNoCertificate, wantInMsg: []string{"CERTIFICATE REQUEST"}},
		{name: "der key only", data: pkcs8DER, wantKind: pki.ErrNoCertificate, wantInMsg: []string{"private key"}},
		{name: "x25519 key", data: concat(leafPEM, keyPEM(t, x25519)), wantKind: pki.ErrUnsupportedKey, wantInMsg: []string{"X25519"}},
		{name: "ed448 key", data: concat(leafPEM, pemBlock("PRIVATE KEY", rawPKCS8(t, asn1.ObjectIdentifier{1, 3, 101, 113}, nil))), wantKind: pki.ErrUnsupportedKey, wantInMsg: []string{"Ed448"}},
		{name: "dsa key", data: concat(leafPEM, pemBlock("PRIVATE KEY", rawPKCS8(t, asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}, nil))), wantKind: pki.ErrUnsupportedKey, wantInMsg: []string{"DSA"}},
		{name: "secp256k1 pkcs8 key", data: concat(leafPEM, pemBlock("PRIVATE KEY", rawPKCS8(t, asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}, secp256k1OID))), wantKind: pki.ErrUnsupportedKey, wantInMsg: []string{"secp256k1"}},
		{name: "secp256k1 sec1 key", data: concat(leafPEM, pemBlock("EC PRIVATE KEY", secp256k1SEC1)), wantKind: pki.ErrUnsupportedKey, wantInMsg: []string{"secp256k1"}},
		{name: "encrypted pem key", data: concat(leafPEM, pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3})), wantKind: pki.ErrUnsupportedKey, wantInMsg: []string{"openssl pkey"}},
		{name: "pem key mismatch", data: concat(leafPEM, keyPEM(t, f.otherKey)), wantKind: pki.ErrKeyMismatch, wantInMsg: []string{"belongs to none of the 1 certificate"}},
		{name: "pem ed25519 key mismatch", data: concat(leafPEM, keyPEM(t, edKey)), wantKind: pki.ErrKeyMismatch, wantInMsg: []string{"Ed25519"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cf, err := pki.ParseCertFile(tc.data, tc.password)
			if tc.wantKind != nil {
				if err == nil {
					t.Fatalf("got %s file with %d certs, want error %v", cf.Format, len(cf.Certs), tc.wantKind)
				}
				if !errors.Is(err, tc.wantKind) {
					t.Fatalf("error %q is not %v", err, tc.wantKind)
				}
				t.Log(err)
				var fe *pki.FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("error %T is not a *pki.FormatError", err)
				}
				for _, s := range tc.wantInMsg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cf.Format != tc.format || len(cf.Certs) != tc.certs || (cf.Key != nil) != tc.key {
				t.Fatalf("got format %s, %d certs, key %v; want %s, %d, %v", cf.Format, len(cf.Certs), cf.Key != nil, tc.format, tc.certs, tc.key)
			}
			if !cf.Certs[0].Equal(tc.leaf) {
				t.Errorf("first certificate is %q, want %q", cf.Certs[0].Subject, tc.leaf.Subject)
			}
			if cf.Key != nil && !pki.KeyMatches(cf.Certs[0], cf.Key) {
				t.Error("key does not match the first certificate")
			}
		})
	}
}

func TestWrongPasswordWrapsLibraryError(t *testing.T) {
	f := newFormatFixture(t)
	p12, err := pki.EncodePKCS12(f.key, f.leaf, f.chain, "right")
	if err != nil {
		t.Fatal(err)
	}
	_, err = pki.ParseCertFile(p12, "wrong")
	if !errors.Is(err, pkcs12.ErrIncorrectPassword) {
		t.Fatalf("error %v does not wrap pkcs12.ErrIncorrectPassword", err)
	}
}

func TestReadCertFileNamesPath(t *testing.T) {
	f := newFormatFixture(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.cer")
	bad := filepath.Join(dir, "cut.cer")
	if err := os.WriteFile(good, pki.EncodeCertDER(f.leaf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, f.leaf.Raw[:50], 0o600); err != nil {
		t.Fatal(err)
	}
	cf, err := pki.ReadCertFile(good, "")
	if err != nil || cf.Format != pki.FormatDER || !cf.Certs[0].Equal(f.leaf) {
		t.Fatalf("ReadCertFile(%s) = %v, %v", good, cf, err)
	}
	_, err = pki.ReadCertFile(bad, "")
	if !errors.Is(err, pki.ErrTruncated) || !strings.HasPrefix(err.Error(), bad+": ") {
		t.Fatalf("error %q: want ErrTruncated naming %s", err, bad)
	}
	if _, err := pki.ReadCertFile(filepath.Join(dir, "missing.pem"), ""); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestEncodePKCS12RefusesMismatchedKey(t *testing.T) {
	f := newFormatFixture(t)
	_, err := pki.EncodePKCS12(f.otherKey, f.leaf, nil, "p")
	if !errors.Is(err, pki.ErrKeyMismatch) {
		t.Fatalf("got %v, want ErrKeyMismatch", err)
	}
	if _, err := pki.EncodePKCS12Truststore(nil, "p"); err == nil {
		t.Fatal("empty trust store encoded without error")
	}
}

// TestPKCS12ReadByKeytool proves the trust store and key store are readable
// by Java, the consumer the design names.
func TestPKCS12ReadByKeytool(t *testing.T) {
	keytool, err := exec.LookPath("keytool")
	if err != nil {
		t.Skip("keytool not on PATH")
	}
	f := newFormatFixture(t)
	dir := t.TempDir()
	trust, err := pki.EncodePKCS12Truststore(f.chain, "changeit")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := pki.EncodePKCS12(f.key, f.leaf, f.chain, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, pass string
		data       []byte
		want       []string
	}{
		{"trust.p12", "changeit", trust, []string{"Your keystore contains 2 entries", "trustedCertEntry"}},
		{"key.p12", "s3cret", ks, []string{"Your keystore contains 1 entry", "PrivateKeyEntry"}},
	} {
		path := filepath.Join(dir, tc.file)
		if err := os.WriteFile(path, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(keytool, "-list", "-storetype", "PKCS12", "-keystore", path, "-storepass", tc.pass).CombinedOutput()
		if err != nil {
			t.Fatalf("keytool -list %s: %v\n%s", tc.file, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("keytool -list %s output lacks %q:\n%s", tc.file, w, out)
			}
		}
	}
}

// TestPKCS12OpenSSLInterop reads PKCS#12 files that openssl wrote (modern
// and legacy-3DES), and has openssl read ours.
func TestPKCS12OpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH")
	}
	f := newFormatFixture(t)
	dir := t.TempDir()
	certPath := filepath.Join(dir, "leaf.pem")
	keyPath := filepath.Join(dir, "leaf.key")
	chainPath := filepath.Join(dir, "chain.pem")
	mustWrite(t, certPath, pki.EncodeCertsPEM(f.leaf))
	mustWrite(t, keyPath, keyPEM(t, f.key))
	mustWrite(t, chainPath, pki.EncodeCertsPEM(f.chain...))
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"modern", nil},
		{"3des", []string{"-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1"}},
	} {
		t.Run("read openssl "+tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".p12")
			run(append([]string{"pkcs12", "-export", "-in", certPath, "-inkey", keyPath, "-certfile", chainPath, "-out", out, "-passout", "pass:pw"}, tc.extra...)...)
			cf, err := pki.ReadCertFile(out, "pw")
			if err != nil {
				t.Fatal(err)
			}
			if cf.Format != pki.FormatPKCS12 || len(cf.Certs) != 3 || cf.Key == nil || !cf.Certs[0].Equal(f.leaf) {
				t.Fatalf("got %s, %d certs, key %v", cf.Format, len(cf.Certs), cf.Key != nil)
			}
			if _, err := pki.ReadCertFile(out, "nope"); !errors.Is(err, pki.ErrWrongPassword) {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
	t.Run("read openssl ed448 key", func(t *testing.T) {
		ed448Key := filepath.Join(dir, "ed448.key")
		ed448Cert := filepath.Join(dir, "ed448.pem")
		run("genpkey", "-algorithm", "ED448", "-out", ed448Key)
		run("req", "-new", "-x509", "-key", ed448Key, "-subj", "/CN=ed448", "-days", "1", "-out", ed448Cert)
		out := filepath.Join(dir, "ed448.p12")
		run("pkcs12", "-export", "-in", ed448Cert, "-inkey", ed448Key, "-out", out, "-passout", "pass:pw")
		_, err := pki.ReadCertFile(out, "pw")
		if !errors.Is(err, pki.ErrUnsupportedKey) {
			t.Fatalf("got %v, want ErrUnsupportedKey", err)
		}
		t.Log(err)
	})
	t.Run("openssl reads ours", func(t *testing.T) {
		ks, err := pki.EncodePKCS12(f.key, f.leaf, f.chain, "pw")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "ours.p12")
		mustWrite(t, path, ks)
		out := run("pkcs12", "-in", path, "-passin", "pass:pw", "-nodes")
		if n := strings.Count(string(out), "BEGIN CERTIFICATE"); n != 3 {
			t.Errorf("openssl found %d certificates, want 3", n)
		}
		if !strings.Contains(string(out), "BEGIN PRIVATE KEY") {
			t.Error("openssl found no private key")
		}
		derPath := filepath.Join(dir, "ours.cer")
		mustWrite(t, derPath, pki.EncodeCertDER(f.leaf))
		run("x509", "-inform", "DER", "-in", derPath, "-noout")
	})
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func ecdhKey() (*ecdh.PublicKey, *ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return k.PublicKey(), k, nil
}

func FuzzParseCertFile(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMII\n"), "")
	f.Add([]byte{0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03}, "pw")
	f.Add([]byte{0x30, 0x03, 0x30, 0x01, 0x00}, "")
	f.Fuzz(func(t *testing.T, data []byte, password string) {
		cf, err := pki.ParseCertFile(data, password)
		if err == nil && len(cf.Certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		if err != nil {
			var fe *pki.FormatError
			if !errors.As(err, &fe) || fe.Kind == nil {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
	})
}
