package pki

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/scrypt"
)

// EncryptedKeyPEMType is the PEM block type of a private key encrypted at
// rest by EncryptKeyPEM. It is Ward's own format (not PKCS#8's "ENCRYPTED
// PRIVATE KEY"), so no tool mistakes it for a key it can open without Ward.
//
// The block's headers carry everything needed to decrypt it but the
// passphrase:
//
//	Version:    1
//	KDF:        scrypt
//	KDF-Params: N=32768,r=8,p=1
//	Salt:       16 random bytes, hex
//	Cipher:     AES-256-GCM
//
// The body is a 12-byte random nonce followed by the AES-256-GCM sealing of
// the key's PKCS#8 DER. The AES key is scrypt(passphrase, salt, N, r, p, 32).
// The GCM additional data binds the version, KDF, parameters, salt and
// cipher, so a header edited on disk fails like a wrong passphrase instead
// of decrypting with weaker parameters.
const EncryptedKeyPEMType = "WARD ENCRYPTED PRIVATE KEY"

// The scrypt cost EncryptKeyPEM writes: N=2^15, r=8, p=1 takes about 32 MiB
// and a tenth of a second per attempt, the interactive-login cost the scrypt
// paper recommends and the floor DecryptKeyPEM accepts. A file may carry
// stronger parameters, within the bounds below, which keep a hostile file
// from making the reader allocate or compute without limit.
const (
	scryptN = 1 << 15
	scryptR = 8
	scryptP = 1

	minScryptN      = 1 << 15
	maxScryptN      = 1 << 20
	maxScryptMemory = 256 << 20 // bytes: 128 * N * r
	maxScryptWork   = 1 << 23   // N * r * p
	keyCryptSaltLen = 16
	keyCryptVersion = "1"
	keyCryptCipher  = "AES-256-GCM"
	keyCryptKDF     = "scrypt"
	minPassphrase   = 8
)

// Kinds of failure when opening an encrypted key. Callers react to them with
// errors.Is: ask for the passphrase, or say it was wrong.
var (
	// ErrWrongPassphrase: the passphrase does not open the key (or the file
	// was altered, which authenticated encryption cannot tell apart).
	ErrWrongPassphrase = errors.New("the passphrase does not decrypt the key")
	// ErrPassphraseRequired: the key is encrypted and no passphrase was given.
	ErrPassphraseRequired = errors.New("the key is encrypted and needs a passphrase")
)

// KeyCryptError says why an encrypted key file could not be opened: its
// Kind (ErrWrongPassphrase, ErrPassphraseRequired, ErrCorrupt, ErrTruncated,
// ErrNoKey) and a detail with what to do.
type KeyCryptError struct {
	Kind   error
	Detail string
	Cause  error
}

// Error names the kind of failure and the detail.
func (e *KeyCryptError) Error() string {
	if e.Detail == "" {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Detail
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *KeyCryptError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

type scryptParams struct{ n, r, p int }

func (s scryptParams) String() string { return fmt.Sprintf("N=%d,r=%d,p=%d", s.n, s.r, s.p) }

// EncryptKeyPEM encrypts key with passphrase into a WARD ENCRYPTED PRIVATE
// KEY PEM block (see EncryptedKeyPEMType), for CA keys kept at rest.
func EncryptKeyPEM(key crypto.Signer, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("encrypt private key: the passphrase is empty")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	defer clear(der)
	salt := make([]byte, keyCryptSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	params := scryptParams{scryptN, scryptR, scryptP}
	aead, err := keyCryptAEAD(passphrase, salt, params)
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	body := aead.Seal(nonce, nonce, der, keyCryptAAD(params, salt))
	return pem.EncodeToMemory(&pem.Block{
		Type: EncryptedKeyPEMType,
		Headers: map[string]string{
			"Version":    keyCryptVersion,
			"KDF":        keyCryptKDF,
			"KDF-Params": params.String(),
			"Salt":       hex.EncodeToString(salt),
			"Cipher":     keyCryptCipher,
		},
		Bytes: body,
	}), nil
}

// IsEncryptedKeyPEM reports whether data holds a WARD ENCRYPTED PRIVATE KEY
// block, so a loader knows to ask for the passphrase.
func IsEncryptedKeyPEM(data []byte) bool {
	return bytes.Contains(data, []byte("-----BEGIN "+EncryptedKeyPEMType+"-----"))
}

// DecryptKeyPEM opens a key written by EncryptKeyPEM. A wrong passphrase is
// ErrWrongPassphrase; a damaged file is ErrCorrupt or ErrTruncated.
func DecryptKeyPEM(pemBytes, passphrase []byte) (crypto.Signer, error) {
	block, err := findEncryptedKeyBlock(pemBytes)
	if err != nil {
		return nil, err
	}
	if len(passphrase) == 0 {
		return nil, &KeyCryptError{Kind: ErrPassphraseRequired, Detail: "give the passphrase file the key was encrypted with"}
	}
	params, salt, err := parseKeyCryptHeaders(block.Headers)
	if err != nil {
		return nil, err
	}
	aead, err := keyCryptAEAD(passphrase, salt, params)
	if err != nil {
		return nil, &KeyCryptError{Kind: ErrCorrupt, Detail: err.Error(), Cause: err}
	}
	if len(block.Bytes) < aead.NonceSize()+aead.Overhead() {
		return nil, &KeyCryptError{Kind: ErrTruncated, Detail: fmt.Sprintf(
			"the encrypted body is %d bytes, shorter than its nonce and tag (%d); restore the key file from backup", len(block.Bytes), aead.NonceSize()+aead.Overhead())}
	}
	nonce, sealed := block.Bytes[:aead.NonceSize()], block.Bytes[aead.NonceSize():]
	der, err := aead.Open(nil, nonce, sealed, keyCryptAAD(params, salt))
	if err != nil {
		return nil, &KeyCryptError{Kind: ErrWrongPassphrase, Cause: err, Detail: "check that the passphrase file is the one the key was encrypted with " +
			"(the whole file counts, except trailing line breaks); if it is, the key file was altered: restore it from backup"}
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, &KeyCryptError{Kind: ErrCorrupt, Cause: err, Detail: fmt.Sprintf("the decrypted key does not parse as PKCS#8: %v", err)}
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, &KeyCryptError{Kind: ErrUnsupportedKey, Detail: fmt.Sprintf("the decrypted key is a %T, which cannot sign", k)}
	}
	return s, nil
}

// UnlockKeyPEM reads a private key PEM that may or may not be encrypted:
// a WARD ENCRYPTED PRIVATE KEY is decrypted with passphrase (and refused
// with ErrPassphraseRequired when passphrase is empty); a plain PRIVATE KEY,
// EC PRIVATE KEY or RSA PRIVATE KEY is parsed as is, whatever passphrase.
// Loaders of CA keys call it so that both layouts load; they may warn with
// IsEncryptedKeyPEM when a passphrase is configured but the key is plain.
func UnlockKeyPEM(data, passphrase []byte) (crypto.Signer, error) {
	if IsEncryptedKeyPEM(data) {
		return DecryptKeyPEM(data, passphrase)
	}
	return ParseKeyPEM(data)
}

// PassphraseFromFile turns a passphrase file's content into the passphrase:
// the whole content with trailing line breaks (\n, \r\n) removed, so that
// `echo` and editors that end files with a newline do not change it. It
// refuses passphrases shorter than 8 bytes. Every writer and reader of
// encrypted CA keys uses it, so they agree on the bytes.
func PassphraseFromFile(content []byte) ([]byte, error) {
	p := bytes.TrimRight(content, "\r\n")
	if len(p) < minPassphrase {
		return nil, fmt.Errorf("the passphrase file holds %d byte(s) besides line breaks; at least %d are required (make one with `openssl rand -base64 32 > FILE && chmod 600 FILE`)", len(p), minPassphrase)
	}
	return bytes.Clone(p), nil
}

func findEncryptedKeyBlock(data []byte) (*pem.Block, error) {
	rest := data
	var seen []string
	for {
		start := bytes.Index(rest, []byte("-----BEGIN"))
		if start < 0 {
			break
		}
		b, next := pem.Decode(rest[start:])
		if b == nil {
			if bytes.HasPrefix(rest[start:], []byte("-----BEGIN "+EncryptedKeyPEMType+"-----")) {
				return nil, &KeyCryptError{Kind: ErrTruncated, Detail: "the " + EncryptedKeyPEMType + " block has no matching -----END line, or its headers or base64 are damaged; restore the key file from backup"}
			}
			// Skip past this unparseable BEGIN line and look further.
			rest = rest[start+len("-----BEGIN"):]
			continue
		}
		if b.Type == EncryptedKeyPEMType {
			return b, nil
		}
		seen = append(seen, b.Type)
		rest = next
	}
	what := "no PEM block"
	if len(seen) > 0 {
		what = "only " + strings.Join(seen, ", ")
	}
	return nil, &KeyCryptError{Kind: ErrNoKey, Detail: fmt.Sprintf("expected a %s block, found %s", EncryptedKeyPEMType, what)}
}

func parseKeyCryptHeaders(h map[string]string) (scryptParams, []byte, error) {
	bad := func(format string, args ...any) (scryptParams, []byte, error) {
		return scryptParams{}, nil, &KeyCryptError{Kind: ErrCorrupt, Detail: fmt.Sprintf(format, args...) + "; restore the key file from backup"}
	}
	if v := h["Version"]; v != keyCryptVersion {
		return bad("Version header is %q; this Ward reads version %s (a newer Ward may have written it)", v, keyCryptVersion)
	}
	if v := h["KDF"]; v != keyCryptKDF {
		return bad("KDF header is %q; expected %q", v, keyCryptKDF)
	}
	if v := h["Cipher"]; v != keyCryptCipher {
		return bad("Cipher header is %q; expected %q", v, keyCryptCipher)
	}
	salt, err := hex.DecodeString(h["Salt"])
	if err != nil || len(salt) != keyCryptSaltLen {
		return bad("Salt header %q is not %d bytes of hex", h["Salt"], keyCryptSaltLen)
	}
	p, err := parseScryptParams(h["KDF-Params"])
	if err != nil {
		return bad("KDF-Params header %q: %v", h["KDF-Params"], err)
	}
	return p, salt, nil
}

// parseScryptParams reads "N=32768,r=8,p=1" (those three, in that order)
// and checks the bounds.
func parseScryptParams(s string) (scryptParams, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return scryptParams{}, errors.New("expected N=…,r=…,p=…")
	}
	var vals [3]int
	for i, name := range []string{"N", "r", "p"} {
		v, ok := strings.CutPrefix(parts[i], name+"=")
		if !ok {
			return scryptParams{}, fmt.Errorf("expected %s= in position %d", name, i+1)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return scryptParams{}, fmt.Errorf("%s is not a positive integer", name)
		}
		vals[i] = n
	}
	p := scryptParams{vals[0], vals[1], vals[2]}
	switch {
	case p.n&(p.n-1) != 0:
		return p, errors.New("N is not a power of two")
	case p.n < minScryptN:
		return p, fmt.Errorf("N is below %d, weaker than Ward writes", minScryptN)
	case p.n > maxScryptN || p.r > 64 || p.p > 64:
		return p, fmt.Errorf("the cost is above the bounds (N ≤ %d, r ≤ 64, p ≤ 64)", maxScryptN)
	case 128*p.n*p.r > maxScryptMemory:
		return p, fmt.Errorf("the parameters need %d MiB, above the %d MiB bound", 128*p.n*p.r>>20, maxScryptMemory>>20)
	case p.n*p.r*p.p > maxScryptWork:
		return p, fmt.Errorf("N·r·p is %d, above the bound %d", p.n*p.r*p.p, maxScryptWork)
	}
	return p, nil
}

func keyCryptAEAD(passphrase, salt []byte, p scryptParams) (cipher.AEAD, error) {
	k, err := scrypt.Key(passphrase, salt, p.n, p.r, p.p, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key with scrypt: %w", err)
	}
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// keyCryptAAD is the additional data every sealing is bound to: the format
// version and every parameter that shaped the key.
func keyCryptAAD(p scryptParams, salt []byte) []byte {
	return []byte(strings.Join([]string{EncryptedKeyPEMType, keyCryptVersion, keyCryptKDF, p.String(), hex.EncodeToString(salt), keyCryptCipher}, "\n"))
}
