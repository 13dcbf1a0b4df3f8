package coordinator

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
	"github.com/wardcluster/ward/internal/store/etcd"
	"github.com/wardcluster/ward/internal/storehealth"
)

// gatedStore is a real bolt store whose Txn can be made to fail, and which
// counts commits.
type gatedStore struct {
	store.Store
	mu      sync.Mutex
	failing error
	txns    int
}

func (g *gatedStore) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	g.mu.Lock()
	err := g.failing
	g.failing = nil
	g.txns++
	g.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return g.Store.Txn(ctx, conds, ops)
}

func (g *gatedStore) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.txns
}

func startJournal(t *testing.T) (*journal, *gatedStore, func() int) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedStore{Store: st}
	var fatalMu sync.Mutex
	var fatals []error
	j := newJournal(g, storehealth.New("test store", ""), func(err error) { fatalMu.Lock(); fatals = append(fatals, err); fatalMu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return j, g, func() int {
		fatalMu.Lock()
		defer fatalMu.Unlock()
		return len(fatals)
	}
}

func TestJournalCallbacksRunInOrderAfterTheirWrite(t *testing.T) {
	j, g, _ := startJournal(t)
	const n = 500
	var mu sync.Mutex
	var order []int
	var missing []string
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		key := fmt.Sprintf("k/%04d", i)
		j.Commit([]store.Op{store.Put(key, []byte("v"))}, func(err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("commit %d: %v", i, err)
			}
			if _, err := g.Get(context.Background(), key); err != nil {
				mu.Lock()
				missing = append(missing, key)
				mu.Unlock()
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(missing) > 0 {
		t.Fatalf("callbacks ran before their write was in the store: %v", missing)
	}
	for i, v := range order {
		if v != i {
			t.Fatalf("callback %d ran at position %d: callbacks must run in Commit order", v, i)
		}
	}
	if c := g.count(); c >= n {
		t.Logf("note: %d commits for %d writes (no batching happened)", c, n)
	}
}

func TestJournalNextCommitDoesNotWaitForCallbacks(t *testing.T) {
	j, g, _ := startJournal(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // before the journal stops, even when the test fails
	firstStarted, firstDone := make(chan struct{}), make(chan struct{})
	j.Commit([]store.Op{store.Put("a", []byte("1"))}, func(error) {
		close(firstStarted)
		<-release // a slow callback: sending many frames, say
		close(firstDone)
	})
	<-firstStarted
	secondRan := make(chan struct{})
	j.Commit([]store.Op{store.Put("b", []byte("2"))}, func(error) {
		select {
		case <-firstDone:
		default:
			t.Error("the second batch's callback ran before the first's finished")
		}
		close(secondRan)
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := g.Get(context.Background(), "b"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second write was not committed while the first batch's callback was blocked")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-secondRan:
		t.Fatal("the second callback ran while the first was still blocked")
	case <-time.After(20 * time.Millisecond):
	}
	unblock()
	select {
	case <-secondRan:
	case <-time.After(5 * time.Second):
		t.Fatal("the second callback never ran")
	}
}

func TestJournalFailedCommitFailsEveryLaterBatch(t *testing.T) {
	j, g, fatals := startJournal(t)
	boom := errors.New("disk full")
	g.mu.Lock()
	g.failing = boom
	g.mu.Unlock()
	if err := j.Wait([]store.Op{store.Put("x", []byte("1"))}); !errors.Is(err, boom) {
		t.Fatalf("first commit: got %v, want %v", err, boom)
	}
	err := j.Wait([]store.Op{store.Put("y", []byte("2"))})
	if !errors.Is(err, boom) {
		t.Fatalf("a batch after a failed commit: got %v, want it to fail with the first error", err)
	}
	if _, gerr := g.Get(context.Background(), "y"); !errors.Is(gerr, store.ErrNotFound) {
		t.Fatalf("a batch after a failed commit was written (get: %v)", gerr)
	}
	// fatal runs after the failed batch's callbacks.
	for deadline := time.Now().Add(5 * time.Second); fatals() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a failed commit did not call fatal")
		}
	}
}

func TestJournalStopRunsQueuedCallbacks(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	j := newJournal(st, storehealth.New("test store", ""), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.run(ctx); close(done) }()
	var mu sync.Mutex
	ran := 0
	for i := range 100 {
		j.Commit([]store.Op{store.Put(fmt.Sprintf("k%d", i), nil)}, func(error) { mu.Lock(); ran++; mu.Unlock() })
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if ran != 100 {
		t.Fatalf("run returned with %d of 100 callbacks run", ran)
	}
	var late error
	j.Commit(nil, func(err error) { late = err })
	if !errors.Is(late, store.ErrClosed) {
		t.Fatalf("Commit after stop: got %v, want ErrClosed", late)
	}
}

func TestSplitBatch(t *testing.T) {
	op := func(n int) store.Op { return store.Put(fmt.Sprintf("k%d", n), make([]byte, 8)) } // 10 bytes each
	ops := make([]store.Op, 10)
	for i := range ops {
		ops[i] = op(i)
	}
	sizes := func(parts [][]store.Op) []int {
		var out []int
		for _, p := range parts {
			out = append(out, len(p))
		}
		return out
	}
	tests := []struct {
		name string
		ends []int
		lim  store.Limits
		want []int
	}{
		{"NoLimits", []int{3, 10}, store.Limits{}, []int{10}},
		{"WithinLimits", []int{3, 10}, store.Limits{MaxOps: 10, MaxBytes: 100}, []int{10}},
		{"ByOps", []int{2, 4, 6, 8, 10}, store.Limits{MaxOps: 5}, []int{4, 4, 2}},
		{"ByBytes", []int{3, 6, 10}, store.Limits{MaxBytes: 65}, []int{6, 4}},
		{"OversizedCommitAlone", []int{1, 9, 10}, store.Limits{MaxOps: 4}, []int{1, 8, 1}},
		{"NeverInsideACommit", []int{10}, store.Limits{MaxOps: 3}, []int{10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := sizes(splitBatch(ops, tc.ends, tc.lim))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("parts = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLargestJobFitsEtcdLimits: the submission of a job of api.MaxTaskCount
// tasks (its record, every task chunk and the job sequence: one Commit, so
// one transaction) fits the largest transaction the etcd store sends and
// requires of its server.
func TestLargestJobFitsEtcdLimits(t *testing.T) {
	j := &sched.Job{ID: "999999999999", Spec: api.JobSpec{Argv: []string{strings.Repeat("a", api.MaxArgBytes)}, Count: api.MaxTaskCount},
		Tasks: make([]sched.Task, api.MaxTaskCount)}
	ops := []store.Op{putJSON(jobKey(j.ID), jobSnapshot(j)), store.Put(keyJobSeq, []byte(j.ID))}
	for c := 0; c*chunkSize < len(j.Tasks); c++ {
		ops = append(ops, store.Put(chunkKey(j.ID, c), encodeJobChunk(j, c)))
	}
	lim := etcd.DefaultLimits
	if n, b := len(ops), store.TxnBytes(ops); n > lim.MaxOps || b > lim.MaxBytes {
		t.Fatalf("a %d-task job is %d ops of %d bytes; the etcd store sends at most %d ops of %d bytes", api.MaxTaskCount, n, b, lim.MaxOps, lim.MaxBytes)
	} else {
		t.Logf("a %d-task job is %d ops of %d bytes (limits %d ops, %d bytes)", api.MaxTaskCount, n, b, lim.MaxOps, lim.MaxBytes)
	}
}
