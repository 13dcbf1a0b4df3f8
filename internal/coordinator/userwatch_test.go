package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
)

// flakyReads is a real bolt store whose next reads of users fail, as an
// etcd that is briefly unreachable makes them fail.
type flakyReads struct {
	store.Store
	mu          sync.Mutex
	gets, scans int // reads of users still to fail
}

var errReadFailed = errors.New("etcdserver: request timed out")

func (f *flakyReads) fail(n *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *n > 0 {
		*n--
		return true
	}
	return false
}

func (f *flakyReads) Get(ctx context.Context, key string) (store.Record, error) {
	if strings.HasPrefix(key, prefixUsers) && f.fail(&f.gets) {
		return store.Record{}, errReadFailed
	}
	return f.Store.Get(ctx, key)
}

func (f *flakyReads) Scan(ctx context.Context, prefix string, fn func(store.Record) error) error {
	if prefix == prefixUsers && f.fail(&f.scans) {
		return errReadFailed
	}
	return f.Store.Scan(ctx, prefix, fn)
}

func (f *flakyReads) failNext(gets, scans int) {
	f.mu.Lock()
	f.gets, f.scans = gets, scans
	f.mu.Unlock()
}

func putUser(t *testing.T, st store.Store, u userRecord) {
	t.Helper()
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Txn(context.Background(), nil, []store.Op{store.Put(userKey(u.Name), b)}); err != nil {
		t.Fatal(err)
	}
}

func (c *Coordinator) userRole(name string) string {
	c.userMu.Lock()
	defer c.userMu.Unlock()
	if u := c.users[name]; u != nil {
		return u.Role
	}
	return ""
}

// TestFollowUsersRetriesFailedReads: the users watch reads each changed
// record (and, when it starts, every record) from the store. A read that
// fails is tried again until it succeeds, so a brief store outage does not
// leave a user stale until the watch happens to restart (which may be
// never); a user whose record is gone from the store is dropped.
func TestFollowUsersRetriesFailedReads(t *testing.T) {
	bst, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bst.Close()
	st := &flakyReads{Store: bst}
	now := time.Unix(1e9, 0)
	c := &Coordinator{st: st, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now },
		users: map[string]*userRecord{"ghost": {Name: "ghost", Role: "viewer"}}} // in memory, not in the store
	putUser(t, st, userRecord{Name: "ann", Role: "viewer"})

	// The catch-up read of every record fails twice.
	st.failNext(0, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.followUsers(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, 20*time.Second, "ann read after two failed catch-up reads", func() bool { return c.userRole("ann") == "viewer" })
	waitUntil(t, 20*time.Second, "ghost, gone from the store, dropped", func() bool { return c.userRole("ghost") == "" })

	// A change made on another coordinator whose read fails three times.
	st.failNext(3, 0)
	putUser(t, st, userRecord{Name: "ann", Role: "admin"})
	waitUntil(t, 20*time.Second, "ann's new role read after three failed reads", func() bool { return c.userRole("ann") == "admin" })
	st.mu.Lock()
	left := st.gets
	st.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d failing reads left: the change was not read through the store", left)
	}
}
