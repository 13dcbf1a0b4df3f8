package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
)

// Cookie names. The __Host- prefix makes the browser refuse them unless
// they are Secure, have Path=/ and no Domain, so no other host or plain
// HTTP page can set or shadow them.
const (
	sessionCookie = "__Host-ward_session"
	loginCookie   = "__Host-ward_login" // CSRF token of the sign-in form
)

// maxSessions bounds the session table; sign-ins beyond it are refused
// until sessions end.
const maxSessions = 10000

// session is one signed-in browser. The cookie holds a random ID; the
// table is keyed by its hash, so the table never holds a usable cookie.
type session struct {
	principal authz.Principal // ID, Via and CertSerial; Source is per request
	csrf      string
	created   time.Time
	seen      time.Time
	flash     string // a one-shot message for the next page
	// invite is a one-time login just made, held from the POST that made
	// it to the users page it redirects to, which shows it once.
	invite *invite
}

// invite is a one-time login for the users page to show, with the
// command the person runs.
type invite struct {
	api.UserInvite
	Command string
	made    time.Time
}

// inviteHeld bounds how long a session holds a login for the page the
// POST redirects to (which asks for it at once).
const inviteHeld = time.Minute

// sessionStore holds the live sessions, in memory: a coordinator restart
// signs everyone out.
type sessionStore struct {
	idle, lifetime time.Duration
	mu             sync.Mutex
	m              map[[32]byte]*session
}

func newSessionStore(idle, lifetime time.Duration) *sessionStore {
	return &sessionStore{idle: idle, lifetime: lifetime, m: map[[32]byte]*session{}}
}

// randomToken is 32 random bytes, URL-safe base64.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashToken(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// create starts a session for p and returns its cookie value.
func (st *sessionStore) create(p authz.Principal, now time.Time) (string, *session, error) {
	id, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.m) >= maxSessions {
		st.pruneLocked(now)
		if len(st.m) >= maxSessions {
			return "", nil, api.Errorf(api.CodeUnavailable, "sign out unused sessions, or wait until they time out", "%d console sessions are open, the most this coordinator keeps", maxSessions)
		}
	}
	p.Source = ""
	s := &session{principal: p, csrf: csrf, created: now, seen: now}
	st.m[hashToken(id)] = s
	return id, s, nil
}

// errSessionEnded says a cookie named a session that timed out; the caller
// audits it once.
var errSessionEnded = errors.New("session ended")

// get returns the live session a cookie names and marks it used. A timed
// out session is removed, and reported once with errSessionEnded.
func (st *sessionStore) get(id string, now time.Time) (*session, error) {
	if id == "" {
		return nil, nil
	}
	key := hashToken(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.m[key]
	if s == nil {
		return nil, nil
	}
	if st.expired(s, now) {
		delete(st.m, key)
		return s, errSessionEnded
	}
	s.seen = now
	return s, nil
}

func (st *sessionStore) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) >= st.idle || now.Sub(s.created) >= st.lifetime
}

// delete ends a session (sign-out).
func (st *sessionStore) delete(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.m, hashToken(id))
}

func (st *sessionStore) pruneLocked(now time.Time) {
	for k, s := range st.m {
		if st.expired(s, now) {
			delete(st.m, k)
		}
	}
}

// takeFlash returns and clears the session's one-shot message.
func (st *sessionStore) takeFlash(s *session) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

// takeInvite returns and clears the session's one-time login to show,
// unless it was made longer than inviteHeld before now.
func (st *sessionStore) takeInvite(s *session, now time.Time) *invite {
	st.mu.Lock()
	defer st.mu.Unlock()
	inv := s.invite
	s.invite = nil
	if inv == nil || now.Sub(inv.made) > inviteHeld {
		return nil
	}
	return inv
}

func (st *sessionStore) setInvite(s *session, inv *invite) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s.invite = inv
}

func (st *sessionStore) setFlash(s *session, msg string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s.flash = msg
}

// link is a one-time sign-in link. Used links stay until they expire, so a
// second use is told apart from a link that never existed.
type link struct {
	principal authz.Principal
	expires   time.Time
	used      time.Time
}

// linkStore holds sign-in links by the hash of their secret.
type linkStore struct {
	mu sync.Mutex
	m  map[[32]byte]*link
}

// maxLinks bounds outstanding sign-in links.
const maxLinks = 1000

func newLinkStore() *linkStore { return &linkStore{m: map[[32]byte]*link{}} }

func (ls *linkStore) add(p authz.Principal, now time.Time, ttl time.Duration) (string, time.Time, error) {
	secret, err := randomToken()
	if err != nil {
		return "", time.Time{}, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for k, l := range ls.m {
		if !now.Before(l.expires) {
			delete(ls.m, k)
		}
	}
	if len(ls.m) >= maxLinks {
		return "", time.Time{}, api.Errorf(api.CodeUnavailable, "wait for unused links to expire", "%d sign-in links are outstanding, the most this coordinator keeps", maxLinks)
	}
	p.Source = ""
	exp := now.Add(ttl)
	ls.m[hashToken(secret)] = &link{principal: p, expires: exp}
	return secret, exp, nil
}

// Refusal codes of sign-in, as the audit log records them.
const (
	codeLinkInvalid   = "LINK_INVALID"
	codeLinkUsed      = "LINK_USED"
	codeLinkExpired   = "LINK_EXPIRED"
	codeWrongPassword = "PASSWORD_WRONG"
	codeNoPassword    = "PASSWORD_NOT_SET"
	codeThrottled     = "RATE_LIMITED"
)

// signInError is a refused sign-in: a stable code for the audit log and a
// message for the person.
type signInError struct {
	code, message string
}

func (e *signInError) Error() string { return e.message }

// consume uses a link once.
func (ls *linkStore) consume(secret string, now time.Time) (authz.Principal, error) {
	key := hashToken(secret)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[key]
	switch {
	case l == nil:
		return authz.Principal{}, &signInError{codeLinkInvalid, "This sign-in link is not valid. Run `ward ui` for a new one, and copy the whole link."}
	case !l.used.IsZero():
		return authz.Principal{}, &signInError{codeLinkUsed, "This sign-in link was already used, at " + l.used.UTC().Format("15:04:05 MST") + ". Each link works once: run `ward ui` for a new one."}
	case !now.Before(l.expires):
		return authz.Principal{}, &signInError{codeLinkExpired, "This sign-in link expired at " + l.expires.UTC().Format("15:04:05 MST") + ". Run `ward ui` for a new one (`--ttl` makes it last longer)."}
	}
	l.used = now
	return l.principal, nil
}

// throttle limits failed sign-ins per source address: after
// throttleFailures failures within throttleWindow, that address is refused
// until the window has passed since its last failure. Successful sign-ins
// cost nothing.
type throttle struct {
	mu sync.Mutex
	m  map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

const (
	throttleFailures = 10
	throttleWindow   = 15 * time.Minute
	maxThrottled     = 100000
)

func newThrottle() *throttle { return &throttle{m: map[string]*failures{}} }

// hostOf is the address part of a remote address: the unit throttled.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// blocked reports whether src may not try now, and until when.
func (t *throttle) blocked(src string, now time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[src]
	if f == nil {
		return time.Time{}, false
	}
	if now.Sub(f.last) >= throttleWindow {
		delete(t.m, src)
		return time.Time{}, false
	}
	return f.last.Add(throttleWindow), f.n >= throttleFailures
}

// fail counts one failure from src.
func (t *throttle) fail(src string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxThrottled {
		for k, f := range t.m {
			if now.Sub(f.last) >= throttleWindow {
				delete(t.m, k)
			}
		}
	}
	f := t.m[src]
	if f == nil || now.Sub(f.last) >= throttleWindow {
		f = &failures{}
		t.m[src] = f
	}
	f.n++
	f.last = now
}

// tokenEqual compares secrets in constant time.
func tokenEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// sameOrigin refuses requests a browser marks as coming from another site:
// an Origin that is not this host, or a Sec-Fetch-Site other than
// same-origin. It backs up the CSRF token and SameSite=Strict cookies. An
// Origin of "null" is what browsers send for the console's own forms under
// Referrer-Policy: no-referrer, so it counts as no Origin.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && o != "https://"+r.Host {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}

// setCookie sets a console cookie: Secure, HttpOnly, SameSite=Strict, for
// the browser session only (the server enforces the timeouts).
func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: maxAge})
}
