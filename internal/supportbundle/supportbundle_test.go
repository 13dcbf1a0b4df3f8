package supportbundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestScrub(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(key)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	p8PEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
	encPEM := string(pem.EncodeToMemory(&pem.Block{Type: "WARD ENCRYPTED PRIVATE KEY", Bytes: []byte("sealed-bytes-here")}))
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("a certificate")}))
	inJSON, _ := json.Marshal(map[string]string{"key_pem": p8PEM, "cert_pem": certPEM})
	const secret = "Zx9_secretsecretsecret-42"
	tests := []struct {
		name, in  string
		gone      []string
		kept      []string
		wantKinds map[string]int
	}{
		{"ec key", "before\n" + ecPEM + "after", []string{"MHcCAQEE", "BEGIN EC PRIVATE KEY"}, []string{"before", "after", "[redacted by ward debug bundle: ec private key]"}, map[string]int{"private key": 1}},
		{"pkcs8 key in JSON", string(inJSON), []string{strings.Split(p8PEM, "\n")[1]}, []string{"BEGIN CERTIFICATE", "[redacted by ward debug bundle: private key]"}, map[string]int{"private key": 1}},
		{"encrypted CA key", encPEM, []string{"c2VhbGVk"}, []string{"ward encrypted private key"}, map[string]int{"private key": 1}},
		{"join string", "ward agent --join wardjoin://h:8443?cluster=c&pin=sha256%3Aab&token=tok1." + secret, []string{secret}, []string{"token=tok1.REDACTED", "pin=sha256%3Aab"}, map[string]int{"join token secret": 1}},
		{"url-encoded dot", "token=tok2%2E" + secret, []string{secret}, []string{"token=tok2.REDACTED"}, map[string]int{"join token secret": 1}},
		{"nothing secret", certPEM + " token=abc", nil, []string{certPEM, "token=abc"}, map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kinds := Scrub([]byte(tt.in))
			for _, g := range tt.gone {
				if g != "" && strings.Contains(string(got), g) {
					t.Errorf("%q survived: %s", g, got)
				}
			}
			for _, k := range tt.kept {
				if !strings.Contains(string(got), k) {
					t.Errorf("%q is missing: %s", k, got)
				}
			}
			if len(kinds) != len(tt.wantKinds) {
				t.Errorf("kinds = %v, want %v", kinds, tt.wantKinds)
			}
			for k, n := range tt.wantKinds {
				if kinds[k] != n {
					t.Errorf("kinds = %v, want %v", kinds, tt.wantKinds)
				}
			}
		})
	}
}

func TestWriteAndRead(t *testing.T) {
	b := New(time.Unix(1700000000, 0))
	b.Add("a.txt", []byte("hello"))
	if err := b.AddJSON("sub/b.json", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := b.Write(&buf, "ward-bundle"); err != nil {
		t.Fatal(err)
	}
	files, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || string(files["a.txt"]) != "hello" || !strings.Contains(string(files["sub/b.json"]), `"n": 1`) {
		t.Errorf("read back %q", files)
	}
	zr, _ := gzip.NewReader(bytes.NewReader(buf.Bytes()))
	tr := tar.NewReader(zr)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		if !strings.HasPrefix(h.Name, "ward-bundle/") || h.Typeflag == tar.TypeReg && h.Mode != 0o600 {
			t.Errorf("entry %s mode %o", h.Name, h.Mode)
		}
	}
}
