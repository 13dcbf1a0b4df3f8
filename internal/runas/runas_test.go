package runas

import (
	"errors"
	"os/user"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/api"
)

func TestParseMap(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{"comments and blanks", "# who\n\nalice  al\nbob bobby\n", map[string]string{"alice": "al", "bob": "bobby"}, ""},
		{"three fields", "alice al x\n", nil, "line 1: want"},
		{"bad Ward name", "ok ok\nAlice al\n", nil, "line 2:"},
		{"twice", "alice a\nalice b\n", nil, "line 2: Ward user alice is mapped twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMap([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("%v, %v", got, err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("%s → %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestResolve(t *testing.T) {
	accounts := map[string]*user.User{
		"alice": {Username: "alice", Uid: "1001", Gid: "1001", HomeDir: "/home/alice"},
		"bobby": {Username: "bobby", Uid: "1002", Gid: "1002"},
		"root":  {Username: "root", Uid: "0", Gid: "0"},
	}
	m := &Mapper{node: "n1", mapFile: "/etc/ward/users.map", mapping: map[string]string{"bob": "bobby", "boss": "root", "gone": "nobody-here"},
		lookup: func(n string) (*user.User, error) {
			if u, ok := accounts[n]; ok {
				return u, nil
			}
			return nil, user.UnknownUserError(n)
		},
		groups: func(u *user.User) ([]string, error) {
			switch u.Username {
			case "alice":
				return []string{"1001", "27", "100"}, nil
			case "root":
				return []string{"0"}, nil
			}
			return nil, errors.New("no groups")
		}}
	acct, err := m.Resolve("alice")
	if err != nil || acct.UID != 1001 || acct.GID != 1001 || len(acct.Groups) != 2 || acct.Groups[0] != 27 || acct.Home != "/home/alice" {
		t.Fatalf("alice: %+v, %v", acct, err)
	}
	for _, tc := range []struct{ user, want string }{
		{"carol", `node n1 has no local account for Ward user "carol": no local account of the same name`},
		{"gone", `maps it to "nobody-here", which does not exist here`},
		{"boss", "node n1: Ward user boss maps to root"},
		{"bob", "its groups cannot be read"},
		{"", "names no user"},
	} {
		_, err := m.Resolve(tc.user)
		if api.CodeOf(err) != api.CodeUserUnknownOnNode || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%q: %v, want USER_UNKNOWN_ON_NODE with %q", tc.user, err, tc.want)
		}
	}
	m.allowRoot = true
	if acct, err := m.Resolve("boss"); err != nil || acct.UID != 0 {
		t.Fatalf("root allowed by the site: %+v, %v", acct, err)
	}
}
