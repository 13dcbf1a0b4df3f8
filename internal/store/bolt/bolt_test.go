package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/storetest"
)

// openAt opens path and closes it at test end, tolerating the ErrClosed a
// test that closed the store itself gets.
func openAt(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// The suite runs with fsync on: it is the production setting and the suite
// commits few enough transactions for it to stay fast.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "ward.db"), Options{})
	})
}

func TestPersistence(t *testing.T) {
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		return openAt(t, filepath.Join(dir, "ward.db"), Options{})
	})
}

func TestCreatesFile0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ward.db")
	openAt(t, path, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("new store file has permissions %04o, want 0600", perm)
	}
}

func TestRefusesGroupOrWorldPermissions(t *testing.T) {
	for _, perm := range []os.FileMode{0o644, 0o640, 0o606, 0o660} {
		t.Run(fmt.Sprintf("%04o", perm), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ward.db")
			s := openAt(t, path, Options{})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, perm); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, Options{})
			if err == nil {
				t.Fatalf("Open succeeded on a %04o file", perm)
			}
			want := fmt.Sprintf("store file %s has permissions %04o; it must be 0600: run chmod 600 %s", path, perm, path)
			if err.Error() != want {
				t.Fatalf("error = %q\nwant    %q", err, want)
			}
			// Following the hint works.
			if err := os.Chmod(path, 0o600); err != nil {
				t.Fatal(err)
			}
			openAt(t, path, Options{})
		})
	}
}

func TestLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ward.db")
	openAt(t, path, Options{})
	start := time.Now()
	// flock locks belong to the open file description, so a second Open in
	// this process conflicts exactly like another process would.
	s2, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("second Open waited %v despite OpenTimeout 100ms", waited)
	}
	for _, want := range []string{"in use by another Ward process", dir, path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestTenThousandPutsOneRevision(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "ward.db"), Options{})
	ctx := t.Context()
	before, err := s.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	ops := make([]store.Op, n)
	for i := range ops {
		ops[i] = store.Put(fmt.Sprintf("tasks/%06d", i), taskValue(i))
	}
	rev, err := s.Txn(ctx, nil, ops)
	if err != nil {
		t.Fatalf("Txn of %d puts: %v", n, err)
	}
	if rev != before+1 {
		t.Fatalf("Txn of %d puts returned rev %d, want %d", n, rev, before+1)
	}
	i := 0
	err = s.Scan(ctx, "tasks/", func(r store.Record) error {
		if r.CreateRev != rev || r.ModRev != rev || r.Key != fmt.Sprintf("tasks/%06d", i) || string(r.Value) != string(taskValue(i)) {
			return fmt.Errorf("record %d = %s create %d mod %d, want rev %d", i, r.Key, r.CreateRev, r.ModRev, rev)
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("scanned %d records, want %d", i, n)
	}
}

func TestWatchFallsBehind(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "ward.db"), Options{WatchBuffer: 10, NoSync: true})
	ctx := t.Context()
	slow, err := s.Watch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	fast, err := s.Watch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// fast keeps up; slow reads nothing. Commits must not block on slow.
	got := make(chan int, 1)
	go func() {
		n := 0
		for range fast.Events() {
			n++
			if n == 30 {
				break
			}
		}
		got <- n
	}()
	for i := range 30 {
		if _, err := s.Txn(ctx, nil, []store.Op{store.Put(fmt.Sprintf("k/%02d", i), nil)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // let fast drain so only slow overflows
	}
	select {
	case n := <-got:
		if n != 30 {
			t.Fatalf("keeping-up watcher got %d events, want 30", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("keeping-up watcher did not get its events")
	}
	// slow may drain what was delivered before it overflowed, then closes.
	deadline := time.After(10 * time.Second)
	delivered := 0
	for open := true; open; {
		select {
		case _, open = <-slow.Events():
			if open {
				delivered++
			}
		case <-deadline:
			t.Fatal("overflowed watcher not closed")
		}
	}
	if delivered > 11 {
		t.Errorf("overflowed watcher delivered %d events, more than its buffer allows", delivered)
	}
	if err := slow.Err(); err == nil || !strings.Contains(err.Error(), "fell behind") || !strings.Contains(err.Error(), "re-list") {
		t.Fatalf("overflowed watcher Err = %v, want a fell-behind/re-list error", err)
	}
}

func TestRejectsUnknownOp(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "ward.db"), Options{NoSync: true})
	if _, err := s.Txn(t.Context(), nil, []store.Op{{Type: 99, Key: "k"}}); err == nil || !strings.Contains(err.Error(), "unknown op type") {
		t.Fatalf("unknown op type: err = %v", err)
	}
}

// taskValue is a ~200-byte value shaped like a serialized task.
func taskValue(i int) []byte {
	v := fmt.Sprintf(`{"id":"task-%08d","job":"job-0042","state":"queued","attempt":0,"cmd":["/usr/bin/ward-run","--input","s3://bucket/shard-%08d"],"cpu":2,"mem":4096}`, i, i)
	for len(v) < 200 {
		v += " "
	}
	return []byte(v)
}

// TestStaleLockDroppedAtOpen: a lock record left by a process that stopped
// holding it is gone at the next Open, so its fence can never hold again.
func TestStaleLockDroppedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ward.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Lock(t.Context(), "leader", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fence := l.Fence()
	if err := s.Close(); err != nil { // as a crash would, Close leaves the record
		t.Fatal(err)
	}
	s = openAt(t, path, Options{})
	recs, err := s.List(t.Context(), store.LockPrefix)
	if err != nil || len(recs) != 0 {
		t.Fatalf("lock records after reopen = %v, %v; want none", recs, err)
	}
	if _, err := s.Txn(t.Context(), []store.Cond{fence}, []store.Op{store.Put("k", nil)}); !store.IsConflict(err) {
		t.Fatalf("Txn fenced by the old process's lease: err = %v, want conflict", err)
	}
}
