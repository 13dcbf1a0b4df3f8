package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/scrypt"
)

// PasswordHash is a parsed admin password hash in PHC string form:
//
//	$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>
//	$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. `ward ui hash-password`
// writes the argon2id form.
type PasswordHash struct {
	alg     string // argon2id or scrypt
	m, t, p uint32 // argon2id: memory KiB, passes, lanes; scrypt: N, r, p in m, t, p
	salt    []byte
	hash    []byte
}

// Default argon2id cost for new hashes: 64 MiB, 3 passes, 2 lanes (about
// 0.1 to 0.3 s on a server core).
const (
	argonMemory = 64 * 1024
	argonTime   = 3
	argonLanes  = 2
)

// Bounds a stored hash's parameters must stay within, so a hostile or
// mistyped file cannot make each sign-in attempt take gigabytes.
const (
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonTime   = 64
	maxScryptLogN  = 22
	maxScryptR     = 32
	maxScryptP     = 16
)

var b64 = base64.RawStdEncoding

// HashPassword hashes a new admin password with argon2id and a random salt.
func HashPassword(password string) (string, error) {
	if len(password) < 12 {
		return "", fmt.Errorf("the password has %d characters; use at least 12", len(password))
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonLanes, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonLanes, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// ParsePasswordHash reads a hash in PHC form. Errors say what is wrong and
// never echo the text, which may be a password pasted by mistake.
func ParsePasswordHash(s string) (*PasswordHash, error) {
	s = strings.TrimSpace(s)
	const fix = "write it with `ward ui hash-password`"
	parts := strings.Split(s, "$")
	if len(parts) < 3 || parts[0] != "" {
		return nil, fmt.Errorf("is not an argon2id or scrypt hash in PHC form ($argon2id$v=19$m=...,t=...,p=...$salt$hash); %s", fix)
	}
	h := &PasswordHash{alg: parts[1]}
	var params, salt, sum string
	switch h.alg {
	case "argon2id":
		if len(parts) != 6 || parts[2] != "v="+strconv.Itoa(argon2.Version) {
			return nil, fmt.Errorf("is an argon2id hash of another version or layout; this Ward reads v=%d; %s", argon2.Version, fix)
		}
		params, salt, sum = parts[3], parts[4], parts[5]
	case "scrypt":
		if len(parts) != 5 {
			return nil, fmt.Errorf("is a scrypt hash of an unknown layout ($scrypt$ln=..,r=..,p=..$salt$hash); %s", fix)
		}
		params, salt, sum = parts[2], parts[3], parts[4]
	default:
		return nil, fmt.Errorf("uses the hash %q; Ward reads argon2id and scrypt; %s", printableAlg(h.alg), fix)
	}
	kv := map[string]uint32{}
	for _, f := range strings.Split(params, ",") {
		k, v, ok := strings.Cut(f, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("has a malformed %s parameter %q; %s", h.alg, f, fix)
		}
		kv[k] = uint32(n)
	}
	var err error
	if h.salt, err = b64.DecodeString(salt); err != nil || len(h.salt) < 8 {
		return nil, fmt.Errorf("has a salt that is not base64 of at least 8 bytes; %s", fix)
	}
	if h.hash, err = b64.DecodeString(sum); err != nil || len(h.hash) < 16 || len(h.hash) > 64 {
		return nil, fmt.Errorf("has a hash value that is not base64 of 16 to 64 bytes; %s", fix)
	}
	switch h.alg {
	case "argon2id":
		h.m, h.t, h.p = kv["m"], kv["t"], kv["p"]
		if len(kv) != 3 || h.m < 8*h.p || h.m > maxArgonMemory || h.t < 1 || h.t > maxArgonTime || h.p < 1 || h.p > 255 {
			return nil, fmt.Errorf("has argon2id parameters out of range (m=%d KiB up to %d, t=%d up to %d, p=%d up to 255); %s", h.m, maxArgonMemory, h.t, maxArgonTime, h.p, fix)
		}
	case "scrypt":
		ln, r, p := kv["ln"], kv["r"], kv["p"]
		if len(kv) != 3 || ln < 10 || ln > maxScryptLogN || r < 1 || r > maxScryptR || p < 1 || p > maxScryptP {
			return nil, fmt.Errorf("has scrypt parameters out of range (ln=%d from 10 to %d, r=%d up to %d, p=%d up to %d); %s", ln, maxScryptLogN, r, maxScryptR, p, maxScryptP, fix)
		}
		h.m, h.t, h.p = 1<<ln, r, p
	}
	return h, nil
}

// printableAlg names a hash's algorithm only when it is a known scheme, so
// an error never echoes a password pasted into the file.
func printableAlg(s string) string {
	switch s {
	case "1", "2a", "2b", "2y", "5", "6", "7", "y", "argon2i", "argon2d", "bcrypt", "pbkdf2", "pbkdf2-sha256", "pbkdf2-sha512", "sha256", "sha512":
		return s
	}
	return "(an unknown one)"
}

// Verify reports whether password matches, comparing in constant time.
func (h *PasswordHash) Verify(password string) bool {
	var sum []byte
	switch h.alg {
	case "argon2id":
		sum = argon2.IDKey([]byte(password), h.salt, h.t, h.m, uint8(h.p), uint32(len(h.hash)))
	case "scrypt":
		var err error
		if sum, err = scrypt.Key([]byte(password), h.salt, int(h.m), int(h.t), int(h.p), len(h.hash)); err != nil {
			return false
		}
	default:
		return false
	}
	return subtle.ConstantTimeCompare(sum, h.hash) == 1
}

// Algorithm names the hash function: argon2id or scrypt.
func (h *PasswordHash) Algorithm() string { return h.alg }
