package leader_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wardcluster/ward/internal/leader"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
	"github.com/wardcluster/ward/internal/store/etcd"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// server is the etcd member the etcd tests share, each under a prefix.
var server *etcdtest.Server

func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m, &server)) }

// etcdPair opens two clients (two coordinators) on one fresh prefix.
func etcdPair(t *testing.T) (a, b *etcd.Store, o etcd.Options) {
	t.Helper()
	tl, err := server.TLS()
	if err != nil {
		t.Fatal(err)
	}
	o = etcd.Options{Endpoints: []string{server.Endpoint}, TLS: tl, CompactEvery: -1,
		Prefix: etcdtest.Prefix("leader-test")}
	open := func() *etcd.Store {
		s, err := etcd.Open(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(), open(), o
}

// revoke ends a term's lease behind its holder's back, as etcd does when a
// leader that died stops renewing it.
func revoke(t *testing.T, o etcd.Options, l store.Lease) {
	t.Helper()
	id, ok := etcd.LeaseID(l)
	if !ok {
		t.Fatal("not an etcd lease")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: o.Endpoints, TLS: o.TLS.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Revoke(t.Context(), id); err != nil {
		t.Fatal(err)
	}
}

// TestTwoCandidatesEtcd: two coordinators on one etcd. The first leads;
// the second waits. When the first's lease ends, the second leads, and
// every fenced write the first keeps trying fails and writes nothing, even
// before the first has noticed.
func TestTwoCandidatesEtcd(t *testing.T) {
	a, b, o := etcdPair(t)
	ctx := t.Context()
	ta, err := leader.Campaign(ctx, a, leader.Info{ID: "a", ClusterAddr: "a:7443"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	in, ok, err := leader.Current(ctx, b)
	if err != nil || !ok || in.ID != "a" {
		t.Fatalf("Current = %+v, %v, %v; want a leading", in, ok, err)
	}
	won := make(chan *leader.Term, 1)
	go func() {
		tb, err := leader.Campaign(ctx, b, leader.Info{ID: "b", ClusterAddr: "b:7443"}, 2*time.Second)
		if err != nil {
			t.Error(err)
			close(won)
			return
		}
		won <- tb
	}()

	// a writes under its fence, as fast as it can, until told to stop; b
	// must not win while a's lease holds.
	var (
		mu        sync.Mutex
		aRevs     []int64
		aFenced   int
		aOtherErr error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rev, err := a.Txn(ctx, ta.Conds(nil), []store.Op{store.Put("jobs/x", []byte(fmt.Sprint("a", i)))})
			mu.Lock()
			switch {
			case err == nil:
				aRevs = append(aRevs, rev)
			case ta.Fenced(err):
				aFenced++
			default:
				aOtherErr = err
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	select {
	case <-won:
		t.Fatal("b won while a's lease held")
	case <-time.After(3 * time.Second):
	}
	revoke(t, o, ta.Lease())
	var tb *leader.Term
	select {
	case tb = <-won:
	case <-time.After(10 * time.Second):
		t.Fatal("b did not win within 10 s of a's lease ending")
	}
	if tb == nil {
		t.FailNow()
	}
	bRev, err := b.Txn(ctx, tb.Conds(nil), []store.Op{store.Put("jobs/x", []byte("b"))})
	if err != nil {
		t.Fatalf("b's fenced write: %v", err)
	}
	// Let a keep trying for a while after b took over.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if aOtherErr != nil {
		t.Errorf("a's write failed other than by the fence: %v", aOtherErr)
	}
	if aFenced == 0 {
		t.Error("a never saw its fence fail")
	}
	if len(aRevs) == 0 {
		t.Fatal("a never wrote while leading")
	}
	bStart := mustRev(t, b, leader.KeyLeader)
	for _, r := range aRevs {
		if r >= bStart {
			t.Errorf("a committed a fenced write at revision %d, after b's term began at %d", r, bStart)
		}
	}
	if rec, err := b.Get(ctx, "jobs/x"); err != nil || string(rec.Value) != "b" || rec.ModRev != bRev {
		t.Errorf("jobs/x = %q at %d (%v), want b's write at %d", rec.Value, rec.ModRev, err, bRev)
	}
	select {
	case <-ta.Done():
		if !errors.Is(ta.Err(), leader.ErrLost) {
			t.Errorf("a's term ended with %v, want ErrLost", ta.Err())
		}
	case <-time.After(5 * time.Second):
		t.Error("a's term Done not closed 5 s after its lease was revoked")
	}
	if in, ok, err := leader.Current(ctx, a); err != nil || !ok || in.ID != "b" {
		t.Errorf("Current after the handover = %+v, %v, %v; want b", in, ok, err)
	}
	// Resigning hands over at once: a campaigns again and wins without
	// waiting out b's TTL.
	start := time.Now()
	go func() { tb.Resign(context.Background()) }()
	ta2, err := leader.Campaign(ctx, a, leader.Info{ID: "a"}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a took %v to win after b resigned (TTL 30 s): resigning must hand over at once", d)
	}
	if _, err := b.Txn(ctx, tb.Conds(nil), []store.Op{store.Put("jobs/x", []byte("late"))}); !tb.Fenced(err) {
		t.Errorf("b's write after resigning: %v, want the fence to fail", err)
	}
	ta2.Resign(ctx)
}

func mustRev(t *testing.T, s store.Store, key string) int64 {
	t.Helper()
	rec, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return rec.ModRev
}

// TestBoltAlwaysLeads: with bolt there is one coordinator; it leads at
// once, and its fence holds until it resigns.
func TestBoltAlwaysLeads(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	ctxShort, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	term, err := leader.Campaign(ctxShort, s, leader.Info{ID: "only"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Txn(ctx, term.Conds([]store.Cond{store.Absent("jobs/1")}), []store.Op{store.Put("jobs/1", []byte("x"))}); err != nil {
		t.Fatalf("fenced write while leading: %v", err)
	}
	if in, ok, err := leader.Current(ctx, s); err != nil || !ok || in.ID != "only" {
		t.Errorf("Current = %+v %v %v", in, ok, err)
	}
	term.Resign(ctx)
	<-term.Done()
	if _, err := s.Txn(ctx, term.Conds(nil), []store.Op{store.Put("jobs/1", []byte("y"))}); !term.Fenced(err) {
		t.Errorf("write after resigning: %v, want fenced", err)
	}
	if _, ok, _ := leader.Current(ctx, s); ok {
		t.Error("Current reports a leader after the only one resigned")
	}
}

// TestMembers: members are listed with their liveness and who leads; a
// second coordinator with the same ID is refused with a clear error.
func TestMembers(t *testing.T) {
	a, b, _ := etcdPair(t)
	ctx := t.Context()
	ma, err := leader.Join(ctx, a, leader.Info{ID: "a", ClusterAddr: "a:1"}, 2*time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := leader.Join(ctx, b, leader.Info{ID: "b", ClusterAddr: "b:1"}, 2*time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Join(ctx, b, leader.Info{ID: "a"}, 2*time.Second, time.Second); err == nil {
		t.Error("a second coordinator with ID a joined")
	} else if want := "another coordinator with ID a"; !strings.Contains(err.Error(), want) {
		t.Errorf("duplicate ID error %q does not say %q", err, want)
	}
	term, err := leader.Campaign(ctx, b, leader.Info{ID: "b"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := mb.Update(ctx, func(in *leader.Info) { in.StoreRev = 42 }); err != nil {
		t.Fatal(err)
	}
	ms, err := leader.Members(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]leader.Member{}
	for _, m := range ms {
		got[m.ID] = m
	}
	if !got["a"].Alive || got["a"].Leader || !got["b"].Alive || !got["b"].Leader || got["b"].StoreRev != 42 {
		t.Errorf("members = %+v", ms)
	}
	ma.Leave(ctx)
	ms, _ = leader.Members(ctx, a)
	for _, m := range ms {
		if m.ID == "a" {
			t.Errorf("a still listed after leaving: %+v", m)
		}
	}
	term.Resign(ctx)
	mb.Leave(ctx)
}

// TestTrackerFollowsHandover: a follower's tracker sees the new leader
// after the old one's lease ends, and Wait skips the dead one.
func TestTrackerFollowsHandover(t *testing.T) {
	a, b, _ := etcdPair(t)
	ctx := t.Context()
	tr := leader.Track(ctx, b)
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := tr.Wait(wctx, ""); !errors.Is(err, leader.ErrNoLeader) {
		t.Errorf("Wait with no leader: %v, want ErrNoLeader", err)
	}
	cancel()
	ta, err := leader.Campaign(ctx, a, leader.Info{ID: "a"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	in, err := tr.Wait(wctx, "")
	if err != nil || in.ID != "a" {
		t.Fatalf("Wait = %+v, %v; want a", in, err)
	}
	ta.Resign(ctx)
	won := make(chan error, 1)
	go func() {
		_, err := leader.Campaign(ctx, b, leader.Info{ID: "b"}, 2*time.Second)
		won <- err
	}()
	in2, err := tr.Wait(wctx, in.Fence)
	if err != nil || in2.ID != "b" {
		t.Fatalf("Wait skipping a = %+v, %v; want b", in2, err)
	}
	if err := <-won; err != nil {
		t.Fatal(err)
	}
}
