package web

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

// cheapHash is an argon2id hash of password with a small cost, so tests
// (and the race detector) need not spend 64 MiB per check.
func cheapHash(password string) string {
	salt := []byte("0123456789abcdef")
	sum := argon2.IDKey([]byte(password), salt, 1, 8*1024, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=8192,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(sum))
}

func TestPasswordHashes(t *testing.T) {
	for _, tc := range []struct {
		name, hash, password string
	}{
		// The reference implementation (through argon2-cffi):
		// hash_password_raw(time_cost=16, memory_cost=2**15, parallelism=2,
		// hash_len=32, password=b'password', salt=b'some salt', type=ID).
		{"argon2id from the reference implementation", "$argon2id$v=19$m=32768,t=16,p=2$c29tZSBzYWx0$FX8h3T/fe6+3bSkjzK/6C3vny645RwlHTSvGbuewnT4", "password"},
		// From Python's hashlib.scrypt, an independent implementation.
		{"scrypt from Python", "$scrypt$ln=10,r=8,p=1$d2FyZC10ZXN0LXNhbHQxNg$GLJotnuG0my2eoUBbUEY47Rd1A1ehWF7+XDAZWvdtzo", "correct horse battery"},
		{"argon2id, cheap", cheapHash("a long enough one"), "a long enough one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParsePasswordHash("  " + tc.hash + "\n")
			if err != nil {
				t.Fatal(err)
			}
			if !h.Verify(tc.password) {
				t.Fatal("the right password does not verify")
			}
			for _, wrong := range []string{"", tc.password + " ", strings.ToUpper(tc.password)} {
				if h.Verify(wrong) {
					t.Fatalf("%q verifies", wrong)
				}
			}
		})
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	s, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q", s)
	}
	h, err := ParsePasswordHash(s)
	if err != nil || !h.Verify("correct horse battery staple") || h.Verify("correct horse battery stapler") {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := HashPassword("short"); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Fatalf("a short password: %v", err)
	}
}

func TestParsePasswordHashRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a plain password", "hunter2hunter2", "not an argon2id or scrypt hash"},
		{"bcrypt", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW", "Ward reads argon2id and scrypt"},
		{"argon2i", "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", `uses the hash "argon2i"`},
		{"old argon2 version", "$argon2id$v=16$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "another version"},
		{"huge memory", "$argon2id$v=19$m=4194304,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "out of range"},
		{"no lanes", "$argon2id$v=19$m=65536,t=2$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "out of range"},
		{"bad number", "$argon2id$v=19$m=lots,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "malformed"},
		{"short salt", "$argon2id$v=19$m=65536,t=2,p=4$c2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "salt"},
		{"bad hash", "$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$!!", "hash value"},
		{"scrypt N too big", "$scrypt$ln=30,r=8,p=1$d2FyZC10ZXN0LXNhbHQxNg$GLJotnuG0my2eoUBbUEY47Rd1A1ehWF7+XDAZWvdtzo", "out of range"},
		{"empty", "", "not an argon2id"},
		{"sha-crypt", "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/", `uses the hash "6"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePasswordHash(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if tc.in != "" && strings.Contains(err.Error(), tc.in) {
				t.Fatal("the error echoes the file's content")
			}
			if !strings.Contains(err.Error(), "ward ui hash-password") {
				t.Fatal("the error does not give the fix")
			}
		})
	}
}
