package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// TestUsersAcrossCoordinators: three coordinators on one etcd. Users are
// added, removed, re-roled and logged in on the leader B while A and C
// run; then B dies. The coordinator that leads next knows every change:
// a pending login made on B works, while a login that B's removal or role
// change voided, or that was already used, stays refused.
func TestUsersAcrossCoordinators(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	a, b, c := peerCluster(t, srv, "coord-a"), peerCluster(t, srv, "coord-b"), peerCluster(t, srv, "coord-c")
	startPeers(b) // B leads
	// Known to A and C from their start: each of these changes below.
	joinBob, joinCarolOld, joinDave := filepath.Join(b.dir, "join-bob"), filepath.Join(b.dir, "join-carol-old"), filepath.Join(b.dir, "join-dave")
	b.mustWard("user", "add", "bob", "--role", "submitter", "--out", joinBob)
	b.mustWard("user", "add", "carol", "--role", "admin", "--out", joinCarolOld)
	b.mustWard("user", "add", "dave", "--role", "submitter", "--out", joinDave)
	startPeers(a, c)

	// Changed on B while A and C run.
	b.mustWard("user", "remove", "bob")
	joinCarol := filepath.Join(b.dir, "join-carol")
	b.mustWard("user", "role", "carol", "viewer", "--out", joinCarol)
	home := func(name string) *person {
		dir := filepath.Join(b.dir, "home-"+name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return &person{c: b, name: name, ctxPath: filepath.Join(dir, "context")}
	}
	home("dave").login(joinDave)
	joinAlice := filepath.Join(b.dir, "join-alice")
	b.mustWard("user", "add", "alice", "--role", "submitter", "--out", joinAlice)
	for _, f := range []*cluster{a, c} {
		waitFor(t, 10*time.Second, "the users' changes to reach "+f.cluster+" by watch", func() bool {
			log := f.coord.stderrText()
			return strings.Contains(log, `msg="user changed on another coordinator" user=alice role=submitter state=invited`) &&
				strings.Contains(log, `msg="user changed on another coordinator" user=bob role=submitter state=removed`) &&
				strings.Contains(log, `msg="user changed on another coordinator" user=carol role=viewer state=invited`) &&
				strings.Contains(log, `msg="user changed on another coordinator" user=dave role=submitter state=active`)
		})
	}

	b.coord.kill9()
	awaitNewLeader(t, a, b)
	// A forwards to the new leader (its own view of the leadership can lag
	// the status it relays by a moment; until then it answers UNAVAILABLE,
	// "retry in a few seconds").
	waitFor(t, 20*time.Second, "A to forward to the new leader", func() bool {
		_, _, code := a.ward("job", "ls")
		return code == 0
	})
	// The join strings name B's public port, which is gone: the person
	// is given A's address instead (the pin and the secret are the same).
	through := func(join string) string {
		data, err := os.ReadFile(join)
		if err != nil {
			t.Fatal(err)
		}
		path := join + ".via-a"
		if err := os.WriteFile(path, []byte(strings.Replace(string(data), b.public, a.public, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	alice := home("alice").login(through(joinAlice))
	alice.must("job", "ls")
	home("bob").refused(api.CodeTokenRevoked, []string{"login", "--join-file", through(joinBob)}, "was removed")
	home("carol-old").refused(api.CodeTokenInvalid, []string{"login", "--join-file", through(joinCarolOld)})
	home("dave-again").refused(api.CodeTokenUsed, []string{"login", "--join-file", through(joinDave)}, "already used")
	carol := home("carol").login(through(joinCarol))
	carol.refused(api.CodePermissionDenied, []string{"submit", "--", "true"}, "has role viewer")

	var users []api.User
	a.wardJSON(&users, "user", "ls")
	state := map[string]string{}
	for _, u := range users {
		state[u.Name] = u.Role + "/" + u.State
	}
	for name, want := range map[string]string{"alice": "submitter/active", "bob": "submitter/removed", "carol": "viewer/active", "dave": "submitter/active"} {
		if state[name] != want {
			t.Errorf("user %s after the failover: %q, want %q (all: %v)", name, state[name], want, state)
		}
	}
}
