package pki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/pki"
)

var testPass = []byte("correct horse battery staple")

func mustEncrypt(t testing.TB, key crypto.Signer, pass []byte) []byte {
	t.Helper()
	out, err := pki.EncryptKeyPEM(key, pass)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEncryptKeyPEMRoundTrip(t *testing.T) {
	p256, _ := pki.GenerateKey()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ECDSA P-256", p256}, {"ECDSA P-384", p384}, {"Ed25519", ed}} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustEncrypt(t, tc.key, testPass)
			if !strings.HasPrefix(string(out), "-----BEGIN WARD ENCRYPTED PRIVATE KEY-----\n") {
				t.Fatalf("does not start with the block header:\n%s", out)
			}
			if !pki.IsEncryptedKeyPEM(out) {
				t.Error("IsEncryptedKeyPEM = false")
			}
			b, _ := pem.Decode(out)
			for k, want := range map[string]string{"Version": "1", "KDF": "scrypt", "KDF-Params": "N=32768,r=8,p=1", "Cipher": "AES-256-GCM"} {
				if b.Headers[k] != want {
					t.Errorf("header %s = %q, want %q", k, b.Headers[k], want)
				}
			}
			if len(b.Headers["Salt"]) != 32 {
				t.Errorf("Salt header %q is not 16 bytes of hex", b.Headers["Salt"])
			}
			got, err := pki.DecryptKeyPEM(out, testPass)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.key.Public()) {
				t.Error("decrypted key differs")
			}
		})
	}
}

func TestEncryptKeyPEMFresh(t *testing.T) {
	key, _ := pki.GenerateKey()
	a, b := mustEncrypt(t, key, testPass), mustEncrypt(t, key, testPass)
	if bytes.Equal(a, b) {
		t.Fatal("two encryptions of one key are identical: salt or nonce is not random")
	}
	if _, err := pki.EncryptKeyPEM(key, nil); err == nil {
		t.Fatal("an empty passphrase was accepted")
	}
}

// editBlock decodes the first PEM block, lets edit change it, and encodes it.
func editBlock(t *testing.T, data []byte, edit func(b *pem.Block)) []byte {
	t.Helper()
	b, _ := pem.Decode(data)
	edit(b)
	return pem.EncodeToMemory(b)
}

func TestDecryptKeyPEMFailures(t *testing.T) {
	key, _ := pki.GenerateKey()
	good := mustEncrypt(t, key, testPass)
	plain, _ := pki.MarshalKeyPEM(key)
	for _, tc := range []struct {
		name string
		data []byte
		pass []byte
		kind error
		msg  string
	}{
		{"wrong passphrase", good, []byte("wrong horse battery staple"), pki.ErrWrongPassphrase, "passphrase file"},
		{"passphrase with a trailing newline", good, append(bytes.Clone(testPass), '\n'), pki.ErrWrongPassphrase, "does not decrypt"},
		{"no passphrase", good, nil, pki.ErrPassphraseRequired, "passphrase file"},
		{"body altered", editBlock(t, good, func(b *pem.Block) { b.Bytes[len(b.Bytes)-1] ^= 1 }), testPass, pki.ErrWrongPassphrase, ""},
		{"stronger N written over", editBlock(t, good, func(b *pem.Block) { b.Headers["KDF-Params"] = "N=65536,r=8,p=1" }), testPass, pki.ErrWrongPassphrase, ""},
		{"salt altered", editBlock(t, good, func(b *pem.Block) { b.Headers["Salt"] = strings.Repeat("00", 16) }), testPass, pki.ErrWrongPassphrase, ""},
		{"weaker N", editBlock(t, good, func(b *pem.Block) { b.Headers["KDF-Params"] = "N=1024,r=8,p=1" }), testPass, pki.ErrCorrupt, "weaker"},
		{"N not a power of two", editBlock(t, good, func(b *pem.Block) { b.Headers["KDF-Params"] = "N=40000,r=8,p=1" }), testPass, pki.ErrCorrupt, "power of two"},
		{"memory bomb", editBlock(t, good, func(b *pem.Block) { b.Headers["KDF-Params"] = "N=1048576,r=64,p=1" }), testPass, pki.ErrCorrupt, "bound"},
		{"params garbled", editBlock(t, good, func(b *pem.Block) { b.Headers["KDF-Params"] = "r=8,N=32768,p=1" }), testPass, pki.ErrCorrupt, "KDF-Params"},
		{"unknown version", editBlock(t, good, func(b *pem.Block) { b.Headers["Version"] = "2" }), testPass, pki.ErrCorrupt, "newer Ward"},
		{"unknown cipher", editBlock(t, good, func(b *pem.Block) { b.Headers["Cipher"] = "AES-128-CBC" }), testPass, pki.ErrCorrupt, "Cipher"},
		{"unknown KDF", editBlock(t, good, func(b *pem.Block) { delete(b.Headers, "KDF") }), testPass, pki.ErrCorrupt, "KDF"},
		{"bad salt", editBlock(t, good, func(b *pem.Block) { b.Headers["Salt"] = "xyz" }), testPass, pki.ErrCorrupt, "Salt"},
		{"body cut short", editBlock(t, good, func(b *pem.Block) { b.Bytes = b.Bytes[:20] }), testPass, pki.ErrTruncated, "shorter"},
		{"file cut short", good[:len(good)/2], testPass, pki.ErrTruncated, "-----END"},
		{"plain key", plain, testPass, pki.ErrNoKey, "PRIVATE KEY"},
		{"empty", nil, testPass, pki.ErrNoKey, "no PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := pki.DecryptKeyPEM(tc.data, tc.pass)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v (key %v), want kind %v", err, k != nil, tc.kind)
			}
			var ke *pki.KeyCryptError
			if !errors.As(err, &ke) {
				t.Errorf("err %T is not a *KeyCryptError", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestUnlockKeyPEM(t *testing.T) {
	key, _ := pki.GenerateKey()
	enc := mustEncrypt(t, key, testPass)
	plain, _ := pki.MarshalKeyPEM(key)
	if pki.IsEncryptedKeyPEM(plain) {
		t.Error("a plain key reads as encrypted")
	}
	for _, tc := range []struct {
		name string
		data []byte
		pass []byte
		kind error
	}{
		{"encrypted with passphrase", enc, testPass, nil},
		{"plain without passphrase", plain, nil, nil},
		{"plain with passphrase", plain, testPass, nil},
		{"encrypted without passphrase", enc, nil, pki.ErrPassphraseRequired},
		{"encrypted with wrong passphrase", enc, []byte("not the passphrase"), pki.ErrWrongPassphrase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pki.UnlockKeyPEM(tc.data, tc.pass)
			if tc.kind != nil {
				if !errors.Is(err, tc.kind) {
					t.Fatalf("err = %v, want %v", err, tc.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !key.PublicKey.Equal(got.Public()) {
				t.Error("key differs")
			}
		})
	}
}

func TestPassphraseFromFile(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"s3cret-passphrase\n", "s3cret-passphrase", true},
		{"s3cret-passphrase\r\n\n", "s3cret-passphrase", true},
		{"  spaced passphrase  ", "  spaced passphrase  ", true},
		{"short\n", "", false},
		{"\n\n", "", false},
		{"", "", false},
	} {
		got, err := pki.PassphraseFromFile([]byte(tc.in))
		if (err == nil) != tc.ok || string(got) != tc.want {
			t.Errorf("PassphraseFromFile(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// FuzzDecryptKeyPEM feeds damaged and hostile files to the decryptor: it
// must return a key or a *KeyCryptError, never panic or run away.
func FuzzDecryptKeyPEM(f *testing.F) {
	key, _ := pki.GenerateKey()
	good := mustEncrypt(f, key, testPass)
	f.Add(good, testPass)
	f.Add(good[:len(good)-40], testPass)
	f.Add([]byte("-----BEGIN WARD ENCRYPTED PRIVATE KEY-----\nVersion: 1\nKDF: scrypt\nKDF-Params: N=32768,r=8,p=1\nSalt: 00112233445566778899aabbccddeeff\nCipher: AES-256-GCM\n\n"+
		base64.StdEncoding.EncodeToString(make([]byte, 40))+"\n-----END WARD ENCRYPTED PRIVATE KEY-----\n"), []byte("x"))
	f.Add([]byte("-----BEGIN WARD ENCRYPTED PRIVATE KEY-----\n-----END WARD ENCRYPTED PRIVATE KEY-----\n"), []byte(nil))
	f.Add([]byte("garbage"), []byte("p"))
	f.Fuzz(func(t *testing.T, data, pass []byte) {
		k, err := pki.DecryptKeyPEM(data, pass)
		if err == nil {
			if k == nil {
				t.Fatal("nil key without an error")
			}
			return
		}
		var ke *pki.KeyCryptError
		if !errors.As(err, &ke) {
			t.Fatalf("error %T %v is not a *KeyCryptError", err, err)
		}
	})
}
