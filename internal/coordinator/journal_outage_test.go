package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
	"github.com/wardcluster/ward/internal/storehealth"
)

// outageStore is a real bolt store whose writes fail with err while it is
// down, as a full disk or an unreachable etcd makes them fail.
type outageStore struct {
	store.Store
	mu       sync.Mutex
	err      error // non-nil: down
	attempts int   // failed attempts
}

func (o *outageStore) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	o.mu.Lock()
	err := o.err
	if err != nil {
		o.attempts++
	}
	o.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return o.Store.Txn(ctx, conds, ops)
}

func (o *outageStore) set(err error) {
	o.mu.Lock()
	o.err = err
	o.mu.Unlock()
}

func (o *outageStore) failedAttempts() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.attempts
}

// outageJournal runs a journal over an outageStore; stop ends it.
func outageJournal(t *testing.T) (j *journal, o *outageStore, h *storehealth.Monitor, fatals func() int, stop func()) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	o = &outageStore{Store: st}
	h = storehealth.New("bolt store test", "/data")
	var mu sync.Mutex
	n := 0
	j = newJournal(o, h, func(error) { mu.Lock(); n++; mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done; st.Close() }) }
	t.Cleanup(stop)
	return j, o, h, func() int { mu.Lock(); defer mu.Unlock(); return n }, stop
}

func TestJournalRidesOutAnOutage(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"DiskFull", &fs.PathError{Op: "write", Path: "/data/ward.db", Err: syscall.ENOSPC}},
		// bbolt's grow wraps the errno with %s: only its text is left.
		{"DiskFullWhileGrowing", errors.New("file resize error: no space left on device")},
		{"QuotaExceeded", &fs.PathError{Op: "write", Path: "/data/ward.db", Err: syscall.EDQUOT}},
		{"EtcdUnavailable", fmt.Errorf("%w: etcd at https://127.0.0.1:2379: txn: context deadline exceeded", store.ErrUnavailable)},
		{"EtcdQuota", fmt.Errorf("%w: etcd: txn: etcdserver: mvcc: database space exceeded", store.ErrNoSpace)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, o, h, fatals, _ := outageJournal(t)
			var downs, ups int
			var mu sync.Mutex
			j.onDown = func(error) { mu.Lock(); downs++; mu.Unlock() }
			j.onUp = func(time.Duration) { mu.Lock(); ups++; mu.Unlock() }
			if err := j.Wait([]store.Op{store.Put("before", nil)}); err != nil {
				t.Fatal(err)
			}
			o.set(tc.err)
			var order []int
			var orderMu sync.Mutex
			var wg sync.WaitGroup
			const n = 50
			wg.Add(n)
			down := h.Down()
			for i := range n {
				j.Commit([]store.Op{store.Put(fmt.Sprintf("k/%02d", i), []byte("v"))}, func(err error) {
					defer wg.Done()
					if err != nil {
						t.Errorf("commit %d: %v (a write refused for now must wait, not fail)", i, err)
					}
					orderMu.Lock()
					order = append(order, i)
					orderMu.Unlock()
				})
			}
			select {
			case <-down:
			case <-time.After(10 * time.Second):
				t.Fatal("the store was not marked down after its writes failed")
			}
			if err := h.Err(); err == nil {
				t.Fatal("no refusal while the store is down")
			}
			// Wait does not hang: it says the write is queued.
			if err := j.Wait([]store.Op{store.Put("during", nil)}); !errors.Is(err, errPending) {
				t.Fatalf("Wait during the outage: %v, want errPending", err)
			}
			waitUntil(t, 20*time.Second, "two retries", func() bool { return o.failedAttempts() >= 3 })
			orderMu.Lock()
			if len(order) != 0 {
				t.Fatalf("%d callbacks ran before their write was stored", len(order))
			}
			orderMu.Unlock()

			o.set(nil)
			wg.Wait()
			for i, v := range order {
				if v != i {
					t.Fatalf("callback %d ran at position %d, want commit order", v, i)
				}
			}
			// The next write goes through at once; once it is stored, so is
			// the one queued during the outage.
			if err := j.Wait([]store.Op{store.Put("after", nil)}); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"k/00", "k/49", "during"} {
				if _, err := o.Get(context.Background(), k); err != nil {
					t.Errorf("%s after the outage: %v", k, err)
				}
			}
			st := h.State()
			if !st.Writable || st.Outages != 1 || st.Failures < 3 || h.Err() != nil {
				t.Errorf("health after the outage: %+v", st)
			}
			mu.Lock()
			if downs != 1 || ups != 1 {
				t.Errorf("onDown ran %d times, onUp %d, want once each", downs, ups)
			}
			mu.Unlock()
			if fatals() != 0 {
				t.Errorf("a write refused for now stopped the coordinator (fatal)")
			}
		})
	}
}

func TestJournalStopDuringOutage(t *testing.T) {
	j, o, _, _, stop := outageJournal(t)
	o.set(&fs.PathError{Op: "write", Path: "/data/ward.db", Err: syscall.ENOSPC})
	got := make(chan error, 1)
	j.Commit([]store.Op{store.Put("k", nil)}, func(err error) { got <- err })
	waitUntil(t, 20*time.Second, "a failed attempt", func() bool { return o.failedAttempts() >= 1 })
	stop() // must return although the store never comes back
	if err := <-got; !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("callback after a stop during the outage: %v, want the store's error", err)
	}
}

func TestStoreErrorsNotTransientStayFatal(t *testing.T) {
	j, o, h, fatals, _ := outageJournal(t)
	o.set(errors.New("bolt: put \"k\": key too large"))
	got := make(chan error, 1)
	j.Commit([]store.Op{store.Put("k", nil)}, func(err error) { got <- err })
	if err := <-got; err == nil {
		t.Fatal("a failed commit reported success")
	}
	waitUntil(t, 20*time.Second, "the fatal stop", func() bool { return fatals() == 1 })
	if !h.State().Writable {
		t.Error("an error that is not an outage marked the store down")
	}
}
