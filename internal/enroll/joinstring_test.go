package enroll_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

func TestJoinStringRoundTripAndErrors(t *testing.T) {
	ca := pkitest.New(t)
	id, secret, err := enroll.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	good := enroll.JoinString{Addr: "10.0.0.1:8443", Cluster: "prod", Pin: pki.SPKIPin(ca.Root.Cert), TokenID: id, Secret: secret}
	s := good.String()
	got, err := enroll.ParseJoinString("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != good.Addr || got.Cluster != good.Cluster || got.TokenID != id || got.Secret != secret || got.Pin.String() != good.Pin.String() {
		t.Fatalf("round trip: %+v", got)
	}
	if strings.Contains(good.Redacted(), secret) {
		t.Fatal("Redacted shows the secret")
	}
	login := good
	login.User = "alice"
	if got, err := enroll.ParseJoinString(login.String()); err != nil || got.User != "alice" || got.Secret != secret {
		t.Fatalf("user join string round trip: %+v, %v", got, err)
	}
	if got.User != "" {
		t.Fatal("an agent join string names a user")
	}
	several := good
	several.Also = []string{"10.0.0.2:8443", "[fd00::3]:8443", "10.0.0.1:8443"}
	got, err = enroll.ParseJoinString(several.String())
	if err != nil || !slices.Equal(got.Addrs(), []string{"10.0.0.1:8443", "10.0.0.2:8443", "[fd00::3]:8443"}) {
		t.Fatalf("join string with other coordinators: %v, %v", got.Addrs(), err)
	}
	if r := several.Redacted(); strings.Contains(r, secret) || !strings.Contains(r, "also=[fd00::3]:8443") {
		t.Fatalf("Redacted: %s", r)
	}
	tooMany := good
	for i := range enroll.MaxAddrs {
		tooMany.Also = append(tooMany.Also, fmt.Sprintf("10.0.1.%d:8443", i))
	}
	tests := []struct{ name, in, want string }{
		{"other address without port", s + "&also=10.0.0.2", "(also=) must be HOST:PORT"},
		{"empty other address", s + "&also=", "(also=) must be HOST:PORT"},
		{"too many addresses", tooMany.String(), "more than 16"},
		{"empty", "", "it is empty"},
		{"wrong scheme", strings.Replace(s, "wardjoin", "https", 1), "must start with wardjoin://"},
		{"no port", strings.Replace(s, "10.0.0.1:8443", "10.0.0.1", 1), "must be HOST:PORT"},
		{"no pin", strings.Replace(s, "pin=", "pinx=", 1), "pin"},
		{"bad pin", strings.Replace(s, "pin=sha256%3A", "pin=sha256%3Azz", 1), "pin"},
		{"cut secret", s[:len(s)-5], "was it cut off"},
		{"bad cluster", strings.Replace(s, "cluster=prod", "cluster=Prod!", 1), "cluster"},
		{"bad token id", strings.Replace(s, "token="+id, "token=xyz", 1), "16-hex-digit ID"},
		{"bad user", s + "&user=Alice!", "user"},
		{"empty user", s + "&user=", "user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := enroll.ParseJoinString(tt.in)
			if api.CodeOf(err) != api.CodeJoinStringMalformed || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want JOIN_STRING_MALFORMED containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatal("the error repeats the secret")
			}
		})
	}
}

func TestSecretHashing(t *testing.T) {
	_, secret, _ := enroll.NewToken()
	_, other, _ := enroll.NewToken()
	h := enroll.HashSecret(secret)
	if strings.Contains(h, secret) || !enroll.SecretMatches(secret, h) || enroll.SecretMatches(other, h) {
		t.Fatal("secret hashing is wrong")
	}
}

func FuzzParseJoinString(f *testing.F) {
	f.Add("wardjoin://127.0.0.1:8443?cluster=ward&pin=sha256%3A00&token=0011223344556677.abc")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		js, err := enroll.ParseJoinString(s)
		if err != nil {
			if api.CodeOf(err) != api.CodeJoinStringMalformed {
				t.Fatalf("error without the stable code: %v", err)
			}
			return
		}
		if _, err := enroll.ParseJoinString(js.String()); err != nil {
			t.Fatalf("a parsed join string does not round-trip: %v", err)
		}
	})
}
