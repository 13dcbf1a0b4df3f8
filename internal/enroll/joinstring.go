// Package enroll is first contact between an agent and a cluster: the join
// string that carries where to go, whom to trust and the secret; the token
// rules the coordinator applies; and the agent's pinned bootstrap that
// verifies the cluster CA before it sends anything.
package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
)

// Scheme is the join string's URL scheme.
const Scheme = "wardjoin"

// JoinString is the parsed form of
// wardjoin://HOST:PORT?cluster=NAME&pin=sha256:HEX&token=ID.SECRET, with
// &user=NAME for a person's one-time login (`ward user add`) and one
// &also=HOST:PORT per other coordinator of the cluster.
type JoinString struct {
	Addr string // coordinator public address, host:port
	// Also are the public addresses of the cluster's other coordinators
	// (several on a shared store): the join or login goes to the first
	// that answers, so it works while any of them is up. Older agents
	// ignore them and use Addr.
	Also    []string
	Cluster string
	Pin     pki.Pin
	TokenID string
	Secret  string
	// User is set in a user join string: whose login it is.
	User string
}

// String formats the join string. It contains the secret: print it once, to
// the person who asked for it, never to a log.
func (j JoinString) String() string {
	q := url.Values{}
	q.Set("cluster", j.Cluster)
	q.Set("pin", j.Pin.String())
	q.Set("token", j.TokenID+"."+j.Secret)
	if j.User != "" {
		q.Set("user", j.User)
	}
	for _, a := range j.Also {
		q.Add("also", a)
	}
	u := url.URL{Scheme: Scheme, Host: j.Addr, RawQuery: q.Encode()}
	return u.String()
}

// MaxAddrs bounds how many coordinator addresses a join string carries.
const MaxAddrs = 16

// Addrs is every coordinator address the join string names, Addr first,
// each once.
func (j JoinString) Addrs() []string {
	out := []string{j.Addr}
	for _, a := range j.Also {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Redacted formats the join string without the secret, for logs.
func (j JoinString) Redacted() string {
	s := fmt.Sprintf("%s://%s?cluster=%s&pin=%s&token=%s.REDACTED", Scheme, j.Addr, j.Cluster, j.Pin, j.TokenID)
	if j.User != "" {
		s += "&user=" + j.User
	}
	for _, a := range j.Also {
		s += "&also=" + a
	}
	return s
}

func malformed(format string, args ...any) error {
	return api.Errorf(api.CodeJoinStringMalformed,
		"copy the whole join string printed by `ward token create` (it starts with wardjoin://); use --join-file to avoid shell quoting problems",
		"malformed join string: "+format, args...)
}

// ParseJoinString reads a join string and says exactly what is wrong with a
// bad one. The error never repeats the secret.
func ParseJoinString(s string) (JoinString, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return JoinString{}, malformed("it is empty")
	}
	if !strings.HasPrefix(s, Scheme+"://") {
		return JoinString{}, malformed("it must start with %s://", Scheme)
	}
	u, err := url.Parse(s)
	if err != nil {
		return JoinString{}, malformed("it is not a valid URL")
	}
	if !validAddr(u.Host) {
		return JoinString{}, malformed("the address %q must be HOST:PORT", u.Host)
	}
	q := u.Query()
	j := JoinString{Addr: u.Host, Cluster: q.Get("cluster")}
	for _, a := range q["also"] {
		if !validAddr(a) {
			return JoinString{}, malformed("the other coordinator address %q (also=) must be HOST:PORT", a)
		}
		j.Also = append(j.Also, a)
	}
	if len(j.Also) >= MaxAddrs {
		return JoinString{}, malformed("it names %d coordinator addresses, more than %d", len(j.Also)+1, MaxAddrs)
	}
	if err := pki.ValidName("cluster", j.Cluster); err != nil {
		return JoinString{}, malformed("cluster: %v", err)
	}
	if q.Get("pin") == "" {
		return JoinString{}, malformed("the CA pin (pin=sha256:...) is missing")
	}
	j.Pin, err = pki.ParsePin(q.Get("pin"))
	if err != nil {
		return JoinString{}, malformed("pin: %v", err)
	}
	if j.Pin.Kind != pki.PinSPKI {
		return JoinString{}, malformed("the pin must be a CA key pin (sha256:...)")
	}
	tok := q.Get("token")
	id, secret, ok := strings.Cut(tok, ".")
	if !ok || !validTokenID(id) {
		return JoinString{}, malformed("the token must be ID.SECRET with a 16-hex-digit ID")
	}
	if len(secret) != secretLen {
		return JoinString{}, malformed("the token secret has %d characters, expected %d (was it cut off?)", len(secret), secretLen)
	}
	if _, err := base64.RawURLEncoding.DecodeString(secret); err != nil {
		return JoinString{}, malformed("the token secret is not base64url")
	}
	j.TokenID, j.Secret = id, secret
	if u := q.Get("user"); u != "" || q.Has("user") {
		if err := pki.ValidName("user", u); err != nil {
			return JoinString{}, malformed("user: %v", err)
		}
		j.User = u
	}
	return j, nil
}

const secretLen = 43 // 32 random bytes, base64url without padding

func validAddr(a string) bool {
	host, port, err := net.SplitHostPort(a)
	return err == nil && host != "" && port != ""
}

func validTokenID(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// NewToken returns a fresh token ID and secret.
func NewToken() (id, secret string, err error) {
	var b [8 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	return hex.EncodeToString(b[:8]), base64.RawURLEncoding.EncodeToString(b[8:]), nil
}

// HashSecret returns what the coordinator stores instead of the secret. The
// secret is 256 random bits, so one SHA-256 is enough: there is nothing to
// brute-force.
func HashSecret(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// SecretMatches compares a presented secret with a stored hash in constant
// time.
func SecretMatches(secret, storedHash string) bool {
	got := HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(storedHash)) == 1
}

// ValidTokenID reports whether id has the form of a token ID.
func ValidTokenID(id string) bool { return validTokenID(id) }
