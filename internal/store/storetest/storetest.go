// Package storetest is the conformance suite every store.Store backend must
// pass. Backends call Run (and RunPersistence when they are durable) from
// their own tests, so the coordinator can rely on the semantics checked here
// rather than on any one backend's behaviour.
//
// Semantics the suite pins down beyond the store.Store comments:
//   - the store revision rises by exactly one per committed Txn that changes
//     something, and every op of that Txn carries it as ModRev;
//   - a Txn with no ops, or whose ops change nothing (deleting absent keys),
//     commits nothing and returns the current revision unchanged; its
//     conditions are still checked;
//   - a Txn carrying a Put with an empty key is rejected and writes nothing;
//   - events of one Txn are delivered in op order, DeletePrefix deletions in
//     key order;
//   - after Close, watches end with an Err matching store.ErrClosed, held
//     leases report Done, and blocked Lock calls return store.ErrClosed;
//   - a lease's Fence holds while it is held and fails (a *ConflictError on
//     the fence key, nothing written) once it is released or handed over;
//     backends that can lose a lease by themselves (etcd) check that with
//     CheckLostLease.
//
// The suite never relies on two ops touching the same key inside one Txn,
// which some backends (etcd) reject.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/wardcluster/ward/internal/store"
)

// waitTimeout bounds every wait for something that must happen; it is long
// so slow CI machines (and -race) do not flake.
const waitTimeout = 10 * time.Second

// blockedFor is how long the suite watches for something that must NOT
// happen (a second Lock returning, an extra event arriving).
const blockedFor = 150 * time.Millisecond

// Run runs the conformance suite. open must return a new, empty store (no
// keys visible; its revision may start anywhere) that no one else writes to,
// and should register a t.Cleanup that closes it, tolerating the
// store.ErrClosed it gets when the test already closed the store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetAbsent", testGetAbsent},
		{"PutGetRevisions", testPutGetRevisions},
		{"ListOrderAndPrefix", testListOrderAndPrefix},
		{"ScanOrderAndPrefix", testScanOrderAndPrefix},
		{"ScanStopsOnError", testScanStopsOnError},
		{"ScanCallbackMayWrite", testScanCallbackMayWrite},
		{"TxnConflictWritesNothing", testTxnConflictWritesNothing},
		{"Conditions", testConditions},
		{"DeleteAbsent", testDeleteAbsent},
		{"DeletePrefix", testDeletePrefix},
		{"EmptyTxn", testEmptyTxn},
		{"EmptyKeyRejected", testEmptyKeyRejected},
		{"ValuesAreCopied", testValuesAreCopied},
		{"ConcurrentCAS", testConcurrentCAS},
		{"WatchEvents", testWatchEvents},
		{"WatchOnlyAfterReturn", testWatchOnlyAfterReturn},
		{"WatchMultiple", testWatchMultiple},
		{"WatchCancel", testWatchCancel},
		{"WatchStoreClose", testWatchStoreClose},
		{"LockExclusive", testLockExclusive},
		{"LockCtxCancel", testLockCtxCancel},
		{"LockIndependentNames", testLockIndependentNames},
		{"LockClose", testLockClose},
		{"LockNameChecked", testLockNameChecked},
		{"FenceWhileHeld", testFenceWhileHeld},
		{"FenceAfterRelease", testFenceAfterRelease},
		{"FenceStaleAfterHandover", testFenceStaleAfterHandover},
		{"FenceCombinesWithConds", testFenceCombinesWithConds},
		{"CanceledContext", testCanceledContext},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// RunPersistence checks that records and the revision survive Close and a
// reopen on the same directory. open is called twice with the same dir and
// must return a store backed by it.
func RunPersistence(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Run("ReopenKeepsRecordsAndRevision", func(t *testing.T) {
		ctx := t.Context()
		dir := t.TempDir()
		s := open(t, dir)
		r1 := mustTxn(t, s, nil, store.Put("a", []byte("1")), store.Put("b", []byte("2")), store.Put("c", []byte("3")))
		r2 := mustTxn(t, s, nil, store.Put("a", []byte("1b")))
		r3 := mustTxn(t, s, nil, store.Delete("b"))
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		s = open(t, dir)
		if rev := mustRev(t, s); rev != r3 {
			t.Fatalf("Rev after reopen = %d, want %d", rev, r3)
		}
		wantRecords(t, s, "", []store.Record{
			{Key: "a", Value: []byte("1b"), CreateRev: r1, ModRev: r2},
			{Key: "c", Value: []byte("3"), CreateRev: r1, ModRev: r1},
		})
		if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get(b) after reopen: err = %v, want ErrNotFound", err)
		}
		// The revision continues where it stopped and CreateRev survives.
		r4 := mustTxn(t, s, []store.Cond{store.Unchanged("a", r2)}, store.Put("a", []byte("1c")))
		if r4 != r3+1 {
			t.Fatalf("first Txn after reopen returned %d, want %d", r4, r3+1)
		}
		wantRecord(t, s, store.Record{Key: "a", Value: []byte("1c"), CreateRev: r1, ModRev: r4})
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// --- helpers ---

func mustTxn(t *testing.T, s store.Store, conds []store.Cond, ops ...store.Op) int64 {
	t.Helper()
	rev, err := s.Txn(t.Context(), conds, ops)
	if err != nil {
		t.Fatalf("Txn(%v, %d ops): %v", conds, len(ops), err)
	}
	return rev
}

func mustRev(t *testing.T, s store.Store) int64 {
	t.Helper()
	rev, err := s.Rev(t.Context())
	if err != nil {
		t.Fatalf("Rev: %v", err)
	}
	return rev
}

func mustGet(t *testing.T, s store.Store, key string) store.Record {
	t.Helper()
	rec, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return rec
}

// recordCmp compares values by content so nil and empty values are equal.
var recordCmp = cmp.Options{cmpopts.EquateEmpty()}

func wantRecord(t *testing.T, s store.Store, want store.Record) {
	t.Helper()
	got := mustGet(t, s, want.Key)
	if diff := cmp.Diff(want, got, recordCmp); diff != "" {
		t.Fatalf("Get(%q) mismatch (-want +got):\n%s", want.Key, diff)
	}
}

func wantRecords(t *testing.T, s store.Store, prefix string, want []store.Record) {
	t.Helper()
	got, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	if diff := cmp.Diff(want, got, recordCmp); diff != "" {
		t.Fatalf("List(%q) mismatch (-want +got):\n%s", prefix, diff)
	}
}

func keysOf(recs []store.Record) []string {
	keys := make([]string, len(recs))
	for i, r := range recs {
		keys[i] = r.Key
	}
	return keys
}

func wantConflict(t *testing.T, err error, key string, wantRev, haveRev int64) {
	t.Helper()
	if !store.IsConflict(err) {
		t.Fatalf("err = %v, want *store.ConflictError", err)
	}
	var c *store.ConflictError
	errors.As(err, &c)
	want := store.ConflictError{Key: key, WantRev: wantRev, HaveRev: haveRev}
	if *c != want {
		t.Fatalf("conflict = %+v, want %+v", *c, want)
	}
}

func recvEvent(t *testing.T, w store.Watcher) store.Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("watch closed early: Err = %v", w.Err())
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatalf("no event within %v", waitTimeout)
	}
	panic("unreachable")
}

func wantEvents(t *testing.T, w store.Watcher, want []store.Event) {
	t.Helper()
	var got []store.Event
	for range want {
		got = append(got, recvEvent(t, w))
	}
	if diff := cmp.Diff(want, got, recordCmp); diff != "" {
		t.Fatalf("events mismatch (-want +got):\n%s", diff)
	}
}

func wantNoEvent(t *testing.T, w store.Watcher) {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if ok {
			t.Fatalf("unexpected event %+v", ev)
		}
		t.Fatalf("watch closed unexpectedly: Err = %v", w.Err())
	case <-time.After(blockedFor):
	}
}

// waitClosed drains w until Events closes and returns w.Err().
func waitClosed(t *testing.T, w store.Watcher) error {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-w.Events():
			if !ok {
				return w.Err()
			}
		case <-deadline:
			t.Fatalf("watch not closed within %v", waitTimeout)
		}
	}
}

func put(key, value string, createRev, modRev int64) store.Event {
	return store.Event{Type: store.EventPut, Record: store.Record{Key: key, Value: []byte(value), CreateRev: createRev, ModRev: modRev}}
}

func del(key string, modRev int64) store.Event {
	return store.Event{Type: store.EventDelete, Record: store.Record{Key: key, ModRev: modRev}}
}

// --- tests ---

func testGetAbsent(t *testing.T, s store.Store) {
	mustTxn(t, s, nil, store.Put("present", []byte("x")))
	for _, key := range []string{"absent", "presen", "present/", "p"} {
		_, err := s.Get(t.Context(), key)
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q): err = %v, want ErrNotFound", key, err)
		}
	}
}

func testPutGetRevisions(t *testing.T, s store.Store) {
	r0 := mustRev(t, s)
	r1 := mustTxn(t, s, nil, store.Put("a", []byte("1")), store.Put("b", []byte("2")))
	if r1 != r0+1 {
		t.Fatalf("first Txn returned rev %d, want %d (one increment per Txn)", r1, r0+1)
	}
	if rev := mustRev(t, s); rev != r1 {
		t.Fatalf("Rev = %d, want %d", rev, r1)
	}
	wantRecord(t, s, store.Record{Key: "a", Value: []byte("1"), CreateRev: r1, ModRev: r1})
	wantRecord(t, s, store.Record{Key: "b", Value: []byte("2"), CreateRev: r1, ModRev: r1})

	// Update keeps CreateRev and leaves other keys alone.
	r2 := mustTxn(t, s, nil, store.Put("a", []byte("1b")))
	if r2 != r1+1 {
		t.Fatalf("update returned rev %d, want %d", r2, r1+1)
	}
	wantRecord(t, s, store.Record{Key: "a", Value: []byte("1b"), CreateRev: r1, ModRev: r2})
	wantRecord(t, s, store.Record{Key: "b", Value: []byte("2"), CreateRev: r1, ModRev: r1})

	// Delete then re-create gets a fresh CreateRev.
	r3 := mustTxn(t, s, nil, store.Delete("a"))
	if r3 != r2+1 {
		t.Fatalf("delete returned rev %d, want %d", r3, r2+1)
	}
	if _, err := s.Get(t.Context(), "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(a) after delete: err = %v, want ErrNotFound", err)
	}
	r4 := mustTxn(t, s, nil, store.Put("a", []byte("again")))
	wantRecord(t, s, store.Record{Key: "a", Value: []byte("again"), CreateRev: r4, ModRev: r4})
	if rev := mustRev(t, s); rev != r3+1 || r4 != rev {
		t.Fatalf("Rev = %d, Txn returned %d, want both %d", rev, r4, r3+1)
	}

	// An empty value round-trips as empty.
	r5 := mustTxn(t, s, nil, store.Put("empty", nil))
	wantRecord(t, s, store.Record{Key: "empty", Value: nil, CreateRev: r5, ModRev: r5})
}

// orderFixture writes keys in scrambled order, including near-miss keys
// that share a byte prefix with "a/" but are not under it.
func orderFixture(t *testing.T, s store.Store) int64 {
	return mustTxn(t, s, nil,
		store.Put("b/1", []byte("b1")),
		store.Put("a/2", []byte("a2")),
		store.Put("ab", []byte("ab")),
		store.Put("a/10", []byte("a10")),
		store.Put("a", []byte("a")),
		store.Put("a/sub/x", []byte("x")),
		store.Put("a/1", []byte("a1")),
		store.Put("a.", []byte("dot")),
		store.Put("a0", []byte("zero")),
	)
}

func testListOrderAndPrefix(t *testing.T, s store.Store) {
	r := orderFixture(t, s)
	wantRecords(t, s, "a/", []store.Record{
		{Key: "a/1", Value: []byte("a1"), CreateRev: r, ModRev: r},
		{Key: "a/10", Value: []byte("a10"), CreateRev: r, ModRev: r},
		{Key: "a/2", Value: []byte("a2"), CreateRev: r, ModRev: r},
		{Key: "a/sub/x", Value: []byte("x"), CreateRev: r, ModRev: r},
	})
	all, err := s.List(t.Context(), "")
	if err != nil {
		t.Fatalf("List(\"\"): %v", err)
	}
	wantKeys := []string{"a", "a.", "a/1", "a/10", "a/2", "a/sub/x", "a0", "ab", "b/1"}
	if diff := cmp.Diff(wantKeys, keysOf(all)); diff != "" {
		t.Fatalf("List(\"\") keys (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"a/sub/", []string{"a/sub/x"}},
		{"a/1", []string{"a/1", "a/10"}},
		{"b", []string{"b/1"}},
		{"a/sub/x", []string{"a/sub/x"}},
		{"zzz", nil},
		{"a/3", nil},
	} {
		got, err := s.List(t.Context(), tc.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.prefix, err)
		}
		if diff := cmp.Diff(tc.want, keysOf(got), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("List(%q) keys (-want +got):\n%s", tc.prefix, diff)
		}
	}
}

func testScanOrderAndPrefix(t *testing.T, s store.Store) {
	r := orderFixture(t, s)
	var got []store.Record
	err := s.Scan(t.Context(), "a/", func(rec store.Record) error {
		got = append(got, rec)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	want := []store.Record{
		{Key: "a/1", Value: []byte("a1"), CreateRev: r, ModRev: r},
		{Key: "a/10", Value: []byte("a10"), CreateRev: r, ModRev: r},
		{Key: "a/2", Value: []byte("a2"), CreateRev: r, ModRev: r},
		{Key: "a/sub/x", Value: []byte("x"), CreateRev: r, ModRev: r},
	}
	if diff := cmp.Diff(want, got, recordCmp); diff != "" {
		t.Fatalf("Scan(a/) (-want +got):\n%s", diff)
	}

	// Many keys, written over several Txns, come back complete and ordered
	// (backends that scan in chunks must not drop or repeat chunk edges).
	const n = 1500
	for start := 0; start < n; start += 500 {
		var ops []store.Op
		for i := start; i < start+500; i++ {
			// Reverse write order so key order differs from insertion order.
			ops = append(ops, store.Put(fmt.Sprintf("many/%05d", n-1-i), []byte(fmt.Sprint(n-1-i))))
		}
		mustTxn(t, s, nil, ops...)
	}
	i := 0
	err = s.Scan(t.Context(), "many/", func(rec store.Record) error {
		if want := fmt.Sprintf("many/%05d", i); rec.Key != want || string(rec.Value) != fmt.Sprint(i) {
			return fmt.Errorf("record %d = %q=%q, want %q=%q", i, rec.Key, rec.Value, want, fmt.Sprint(i))
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(many/): %v", err)
	}
	if i != n {
		t.Fatalf("Scan(many/) visited %d records, want %d", i, n)
	}
}

func testScanStopsOnError(t *testing.T, s store.Store) {
	var ops []store.Op
	for i := range 10 {
		ops = append(ops, store.Put(fmt.Sprintf("k/%02d", i), []byte("v")))
	}
	mustTxn(t, s, nil, ops...)
	errStop := errors.New("stop here")
	var seen []string
	err := s.Scan(t.Context(), "k/", func(rec store.Record) error {
		seen = append(seen, rec.Key)
		if len(seen) == 3 {
			return fmt.Errorf("wrapped: %w", errStop)
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("Scan err = %v, want the callback's error", err)
	}
	if diff := cmp.Diff([]string{"k/00", "k/01", "k/02"}, seen); diff != "" {
		t.Fatalf("Scan visited (-want +got):\n%s", diff)
	}
}

// testScanCallbackMayWrite checks that fn can commit transactions (the
// coordinator requeues tasks while scanning) without deadlocking.
func testScanCallbackMayWrite(t *testing.T, s store.Store) {
	var ops []store.Op
	for i := range 300 {
		ops = append(ops, store.Put(fmt.Sprintf("scan/%03d", i), bytes.Repeat([]byte("v"), 200)))
	}
	mustTxn(t, s, nil, ops...)
	done := make(chan error, 1)
	go func() {
		n := 0
		done <- s.Scan(t.Context(), "scan/", func(rec store.Record) error {
			n++
			_, err := s.Txn(t.Context(), nil, []store.Op{store.Put("copy/"+rec.Key, bytes.Repeat(rec.Value, 4))})
			return err
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Scan with writing callback: %v", err)
		}
	case <-time.After(3 * waitTimeout):
		t.Fatalf("Scan whose callback writes did not finish within %v (deadlock?)", 3*waitTimeout)
	}
	copies, err := s.List(t.Context(), "copy/")
	if err != nil {
		t.Fatalf("List(copy/): %v", err)
	}
	if len(copies) != 300 {
		t.Fatalf("callback wrote %d copies, want 300", len(copies))
	}
}

func testTxnConflictWritesNothing(t *testing.T, s store.Store) {
	r1 := mustTxn(t, s, nil, store.Put("x", []byte("1")), store.Put("del", []byte("d")))
	_, err := s.Txn(t.Context(),
		[]store.Cond{store.Absent("x")},
		[]store.Op{store.Put("y", []byte("2")), store.Put("x", []byte("changed")), store.Delete("del")})
	wantConflict(t, err, "x", 0, r1)
	if rev := mustRev(t, s); rev != r1 {
		t.Fatalf("Rev after failed Txn = %d, want %d", rev, r1)
	}
	wantRecords(t, s, "", []store.Record{
		{Key: "del", Value: []byte("d"), CreateRev: r1, ModRev: r1},
		{Key: "x", Value: []byte("1"), CreateRev: r1, ModRev: r1},
	})
	// A failed Txn does not consume a revision: the next one is r1+1.
	if r2 := mustTxn(t, s, nil, store.Put("z", nil)); r2 != r1+1 {
		t.Fatalf("Txn after conflict returned %d, want %d", r2, r1+1)
	}
}

func testConditions(t *testing.T, s store.Store) {
	ctx := t.Context()
	r1 := mustTxn(t, s, []store.Cond{store.Absent("k")}, store.Put("k", []byte("v1")))
	r2 := mustTxn(t, s, []store.Cond{store.Unchanged("k", r1)}, store.Put("k", []byte("v2")))
	wantRecord(t, s, store.Record{Key: "k", Value: []byte("v2"), CreateRev: r1, ModRev: r2})

	// Stale revision.
	_, err := s.Txn(ctx, []store.Cond{store.Unchanged("k", r1)}, []store.Op{store.Put("k", []byte("stale"))})
	wantConflict(t, err, "k", r1, r2)
	// Absent on an existing key.
	_, err = s.Txn(ctx, []store.Cond{store.Absent("k")}, []store.Op{store.Put("k", []byte("dup"))})
	wantConflict(t, err, "k", 0, r2)
	// Unchanged on an absent key.
	_, err = s.Txn(ctx, []store.Cond{store.Unchanged("missing", r2)}, []store.Op{store.Put("missing", []byte("m"))})
	wantConflict(t, err, "missing", r2, 0)
	// The error names the failing condition, not the first one.
	_, err = s.Txn(ctx,
		[]store.Cond{store.Unchanged("k", r2), store.Absent("other"), store.Absent("k")},
		[]store.Op{store.Put("other", []byte("o"))})
	wantConflict(t, err, "k", 0, r2)
	if _, err := s.Get(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(other) after failed multi-cond Txn: err = %v, want ErrNotFound", err)
	}
	// The error message names the key.
	if !strings.Contains(err.Error(), `"k"`) {
		t.Errorf("conflict message %q does not name the key", err.Error())
	}
	// Conditions on keys the Txn does not write.
	r3 := mustTxn(t, s, []store.Cond{store.Unchanged("k", r2), store.Absent("other")}, store.Put("other", []byte("o")))
	if r3 != r2+1 {
		t.Fatalf("multi-cond Txn returned %d, want %d", r3, r2+1)
	}
	// A deleted key satisfies Absent again.
	r4 := mustTxn(t, s, []store.Cond{store.Unchanged("k", r2)}, store.Delete("k"))
	r5 := mustTxn(t, s, []store.Cond{store.Absent("k")}, store.Put("k", []byte("v3")))
	if r5 != r4+1 {
		t.Fatalf("re-create returned %d, want %d", r5, r4+1)
	}
	wantRecord(t, s, store.Record{Key: "k", Value: []byte("v3"), CreateRev: r5, ModRev: r5})
}

func testDeleteAbsent(t *testing.T, s store.Store) {
	r1 := mustTxn(t, s, nil, store.Put("keep", []byte("k")))
	rev, err := s.Txn(t.Context(), nil, []store.Op{store.Delete("never-existed"), store.DeletePrefix("nothing/")})
	if err != nil {
		t.Fatalf("deleting absent keys: %v", err)
	}
	if rev != r1 {
		t.Fatalf("Txn that changed nothing returned %d, want unchanged %d", rev, r1)
	}
	if got := mustRev(t, s); got != r1 {
		t.Fatalf("Rev after no-op delete = %d, want %d", got, r1)
	}
	wantRecord(t, s, store.Record{Key: "keep", Value: []byte("k"), CreateRev: r1, ModRev: r1})
}

func testDeletePrefix(t *testing.T, s store.Store) {
	r1 := orderFixture(t, s)
	r2 := mustTxn(t, s, nil, store.DeletePrefix("a/"))
	if r2 != r1+1 {
		t.Fatalf("DeletePrefix returned %d, want %d", r2, r1+1)
	}
	all, err := s.List(t.Context(), "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff([]string{"a", "a.", "a0", "ab", "b/1"}, keysOf(all)); diff != "" {
		t.Fatalf("keys after DeletePrefix(a/) (-want +got):\n%s", diff)
	}
	for _, r := range all {
		if r.ModRev != r1 {
			t.Errorf("%s ModRev = %d, want untouched %d", r.Key, r.ModRev, r1)
		}
	}
	// Combined with a put elsewhere, still one revision.
	r3 := mustTxn(t, s, nil, store.DeletePrefix("a"), store.Put("c", []byte("c")))
	if r3 != r2+1 {
		t.Fatalf("DeletePrefix+Put returned %d, want %d", r3, r2+1)
	}
	wantRecords(t, s, "", []store.Record{
		{Key: "b/1", Value: []byte("b1"), CreateRev: r1, ModRev: r1},
		{Key: "c", Value: []byte("c"), CreateRev: r3, ModRev: r3},
	})
}

func testEmptyTxn(t *testing.T, s store.Store) {
	r1 := mustTxn(t, s, nil, store.Put("k", []byte("v")))
	for _, conds := range [][]store.Cond{nil, {store.Unchanged("k", r1), store.Absent("none")}} {
		rev, err := s.Txn(t.Context(), conds, nil)
		if err != nil {
			t.Fatalf("empty Txn with conds %v: %v", conds, err)
		}
		if rev != r1 {
			t.Fatalf("empty Txn returned %d, want current revision %d", rev, r1)
		}
	}
	// Conditions are still checked.
	_, err := s.Txn(t.Context(), []store.Cond{store.Absent("k")}, nil)
	wantConflict(t, err, "k", 0, r1)
	if rev := mustRev(t, s); rev != r1 {
		t.Fatalf("Rev after empty Txns = %d, want %d", rev, r1)
	}
}

func testEmptyKeyRejected(t *testing.T, s store.Store) {
	r1 := mustTxn(t, s, nil, store.Put("k", []byte("v")))
	_, err := s.Txn(t.Context(), nil, []store.Op{store.Put("ok", []byte("x")), store.Put("", []byte("x"))})
	if err == nil {
		t.Fatal("Txn with an empty key succeeded, want an error")
	}
	if store.IsConflict(err) {
		t.Fatalf("empty key reported as conflict: %v", err)
	}
	if rev := mustRev(t, s); rev != r1 {
		t.Fatalf("Rev after rejected Txn = %d, want %d", rev, r1)
	}
	if _, err := s.Get(t.Context(), "ok"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rejected Txn wrote a key: Get(ok) err = %v", err)
	}
}

func testValuesAreCopied(t *testing.T, s store.Store) {
	v := []byte("hello")
	r1 := mustTxn(t, s, nil, store.Put("k", v))
	v[0] = 'X'
	wantRecord(t, s, store.Record{Key: "k", Value: []byte("hello"), CreateRev: r1, ModRev: r1})

	got := mustGet(t, s, "k")
	got.Value[0] = 'Y'
	wantRecord(t, s, store.Record{Key: "k", Value: []byte("hello"), CreateRev: r1, ModRev: r1})

	list, err := s.List(t.Context(), "k")
	if err != nil || len(list) != 1 {
		t.Fatalf("List(k) = %v, %v", list, err)
	}
	list[0].Value[0] = 'Z'
	err = s.Scan(t.Context(), "k", func(rec store.Record) error {
		rec.Value[1] = 'Z'
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	wantRecord(t, s, store.Record{Key: "k", Value: []byte("hello"), CreateRev: r1, ModRev: r1})
}

func testConcurrentCAS(t *testing.T, s store.Store) {
	const workers, perWorker = 8, 25
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWorker; {
				var n int
				cond := store.Absent("counter")
				rec, err := s.Get(ctx, "counter")
				switch {
				case errors.Is(err, store.ErrNotFound):
				case err != nil:
					errs <- err
					return
				default:
					if _, err := fmt.Sscan(string(rec.Value), &n); err != nil {
						errs <- fmt.Errorf("counter value %q: %v", rec.Value, err)
						return
					}
					cond = store.Unchanged("counter", rec.ModRev)
				}
				_, err = s.Txn(ctx, []store.Cond{cond}, []store.Op{store.Put("counter", []byte(fmt.Sprint(n+1)))})
				if store.IsConflict(err) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				done++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rec := mustGet(t, s, "counter")
	if want := fmt.Sprint(workers * perWorker); string(rec.Value) != want {
		t.Fatalf("counter = %s, want %s (lost updates)", rec.Value, want)
	}
	if rec.ModRev-rec.CreateRev != workers*perWorker-1 {
		t.Fatalf("counter CreateRev %d ModRev %d: want %d commits", rec.CreateRev, rec.ModRev, workers*perWorker)
	}
}

func testWatchEvents(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustTxn(t, s, nil, store.Put("a/old", []byte("old")))
	w, err := s.Watch(ctx, "a/")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	r1 := mustTxn(t, s, nil,
		store.Put("a/1", []byte("one")),
		store.Put("b/1", []byte("other prefix")),
		store.Put("ab", []byte("near miss")),
		store.Put("a/2", []byte("two")))
	mustTxn(t, s, nil, store.Put("b/2", []byte("not watched")))
	r3 := mustTxn(t, s, nil, store.Put("a/1", []byte("one-b")))
	r4 := mustTxn(t, s, nil, store.Delete("a/1"))
	mustTxn(t, s, nil, store.Delete("a/never")) // changes nothing: no event
	r5 := mustTxn(t, s, nil, store.DeletePrefix("a/"), store.Put("c", []byte("c")))
	r6 := mustTxn(t, s, nil, store.Put("a/end", []byte("end")))
	// Failed transactions produce no events.
	if _, err := s.Txn(ctx, []store.Cond{store.Absent("a/end")}, []store.Op{store.Put("a/fail", nil)}); !store.IsConflict(err) {
		t.Fatalf("conflicting Txn: err = %v, want conflict", err)
	}

	wantEvents(t, w, []store.Event{
		put("a/1", "one", r1, r1),
		put("a/2", "two", r1, r1),
		put("a/1", "one-b", r1, r3),
		del("a/1", r4),
		del("a/2", r5),
		del("a/old", r5),
		put("a/end", "end", r6, r6),
	})
	wantNoEvent(t, w)
}

// testWatchOnlyAfterReturn races a writer against Watch. The writer commits
// one event per revision, so the watcher must see a gap-free run of
// revisions that starts after the revision read before Watch was called and
// no later than one past the revision read after it returned.
func testWatchOnlyAfterReturn(t *testing.T, s store.Store) {
	ctx := t.Context()
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Txn(ctx, nil, []store.Op{store.Put("w/busy", []byte(fmt.Sprint(i)))}); err != nil {
				t.Errorf("background Txn: %v", err)
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	before := mustRev(t, s)
	w, err := s.Watch(ctx, "w/")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	after := mustRev(t, s)
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-writerDone
	last := mustTxn(t, s, nil, store.Put("w/last", []byte("last")))

	first := recvEvent(t, w)
	if first.Record.ModRev <= before {
		t.Fatalf("first event at rev %d was committed before Watch was called (rev %d)", first.Record.ModRev, before)
	}
	if first.Record.ModRev > after+1 {
		t.Fatalf("first event at rev %d, but rev %d was committed after Watch returned and was missed", first.Record.ModRev, after+1)
	}
	prev := first.Record.ModRev
	for prev != last {
		ev := recvEvent(t, w)
		if ev.Record.ModRev != prev+1 {
			t.Fatalf("event at rev %d follows rev %d: events missing or out of order", ev.Record.ModRev, prev)
		}
		prev = ev.Record.ModRev
	}
	wantNoEvent(t, w)
}

func testWatchMultiple(t *testing.T, s store.Store) {
	ctx := t.Context()
	w1, err := s.Watch(ctx, "")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	w2, err := s.Watch(ctx, "x/")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	w3, err := s.Watch(cctx, "x/")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	cancel()
	if err := waitClosed(t, w3); err != nil {
		t.Fatalf("canceled watch Err = %v, want nil", err)
	}
	r1 := mustTxn(t, s, nil, store.Put("x/1", []byte("1")), store.Put("y/1", []byte("2")))
	ev := recvEvent(t, w2)
	wantEv := put("x/1", "1", r1, r1)
	if diff := cmp.Diff(wantEv, ev, recordCmp); diff != "" {
		t.Fatalf("w2 event (-want +got):\n%s", diff)
	}
	// Each watcher gets its own copy of the value: mutating w2's changes
	// neither w1's event nor the store.
	ev.Record.Value[0] = 'Q'
	wantEvents(t, w1, []store.Event{put("x/1", "1", r1, r1), put("y/1", "2", r1, r1)})
	wantRecord(t, s, store.Record{Key: "x/1", Value: []byte("1"), CreateRev: r1, ModRev: r1})
	wantNoEvent(t, w2)
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	w, err := s.Watch(ctx, "")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	r1 := mustTxn(t, s, nil, store.Put("k", []byte("v")))
	wantEvents(t, w, []store.Event{put("k", "v", r1, r1)})
	cancel()
	if err := waitClosed(t, w); err != nil {
		t.Fatalf("Err after cancel = %v, want nil", err)
	}
	// Writes after the cancel still work.
	mustTxn(t, s, nil, store.Put("k", []byte("v2")))
	if _, err := s.Watch(ctx, ""); err == nil {
		t.Fatal("Watch with a canceled context succeeded")
	}
}

func testWatchStoreClose(t *testing.T, s store.Store) {
	w, err := s.Watch(t.Context(), "")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err = waitClosed(t, w)
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Err after store Close = %v, want ErrClosed", err)
	}
}

func lockAsync(ctx context.Context, s store.Store, name string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		l, err := s.Lock(ctx, name, 10*time.Second)
		ch <- lockResult{l, err}
	}()
	return ch
}

type lockResult struct {
	lease store.Lease
	err   error
}

func testLockExclusive(t *testing.T, s store.Store) {
	ctx := t.Context()
	l1, err := s.Lock(ctx, "leader", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	select {
	case <-l1.Done():
		t.Fatal("Done closed while the lease is held")
	default:
	}
	second := lockAsync(ctx, s, "leader")
	select {
	case r := <-second:
		t.Fatalf("second Lock returned (%v, %v) while the first is held", r.lease, r.err)
	case <-time.After(blockedFor):
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	select {
	case <-l1.Done():
	case <-time.After(waitTimeout):
		t.Fatal("Done not closed after Release")
	}
	var l2 store.Lease
	select {
	case r := <-second:
		if r.err != nil {
			t.Fatalf("second Lock after Release: %v", r.err)
		}
		l2 = r.lease
	case <-time.After(waitTimeout):
		t.Fatal("second Lock still blocked after Release")
	}
	select {
	case <-l2.Done():
		t.Fatal("second lease Done closed while held")
	default:
	}
	// A third contender blocks on the second holder too.
	third := lockAsync(ctx, s, "leader")
	select {
	case r := <-third:
		t.Fatalf("third Lock returned (%v, %v) while the second is held", r.lease, r.err)
	case <-time.After(blockedFor):
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	select {
	case r := <-third:
		if r.err != nil {
			t.Fatalf("third Lock: %v", r.err)
		}
		if err := r.lease.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("third Lock still blocked after Release")
	}
}

func testLockCtxCancel(t *testing.T, s store.Store) {
	ctx := t.Context()
	l1, err := s.Lock(ctx, "leader", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	l2, err := s.Lock(tctx, "leader", 10*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with expiring ctx = (%v, %v), want DeadlineExceeded", l2, err)
	}
	if waited := time.Since(start); waited < 90*time.Millisecond {
		t.Fatalf("Lock gave up after %v, before its context ended", waited)
	}
	// The abandoned attempt must not have taken the lock: after Release a
	// new Lock succeeds promptly.
	if err := l1.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	select {
	case r := <-lockAsync(ctx, s, "leader"):
		if r.err != nil {
			t.Fatalf("Lock after Release: %v", r.err)
		}
		if err := r.lease.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Lock after Release still blocked: the canceled attempt kept the lock?")
	}
}

func testLockIndependentNames(t *testing.T, s store.Store) {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	la, err := s.Lock(ctx, "a", time.Second)
	if err != nil {
		t.Fatalf("Lock(a): %v", err)
	}
	lb, err := s.Lock(ctx, "b", time.Second)
	if err != nil {
		t.Fatalf("Lock(b) while a is held: %v", err)
	}
	for _, l := range []store.Lease{la, lb} {
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
}

func testLockClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	l1, err := s.Lock(ctx, "leader", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	blocked := lockAsync(ctx, s, "leader")
	time.Sleep(blockedFor)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-l1.Done():
	case <-time.After(waitTimeout):
		t.Fatal("held lease's Done not closed by store Close")
	}
	select {
	case r := <-blocked:
		if !errors.Is(r.err, store.ErrClosed) {
			t.Fatalf("blocked Lock after Close = (%v, %v), want ErrClosed", r.lease, r.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("blocked Lock did not return after Close")
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	r1 := mustTxn(t, s, nil, store.Put("k", []byte("v")))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: err = %v, want context.Canceled", err)
	}
	if _, err := s.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("List: err = %v, want context.Canceled", err)
	}
	if err := s.Scan(ctx, "", func(store.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Scan: err = %v, want context.Canceled", err)
	}
	if _, err := s.Txn(ctx, nil, []store.Op{store.Put("k", []byte("canceled"))}); !errors.Is(err, context.Canceled) {
		t.Errorf("Txn: err = %v, want context.Canceled", err)
	}
	if _, err := s.Rev(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Rev: err = %v, want context.Canceled", err)
	}
	if _, err := s.Watch(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch: err = %v, want context.Canceled", err)
	}
	if _, err := s.Lock(ctx, "l", time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock: err = %v, want context.Canceled", err)
	}
	wantRecord(t, s, store.Record{Key: "k", Value: []byte("v"), CreateRev: r1, ModRev: r1})
}

func testClosed(t *testing.T, s store.Store) {
	mustTxn(t, s, nil, store.Put("k", []byte("v")))
	l, err := s.Lock(t.Context(), "held", time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	checks := map[string]error{}
	_, checks["Get"] = s.Get(ctx, "k")
	_, checks["List"] = s.List(ctx, "")
	checks["Scan"] = s.Scan(ctx, "", func(store.Record) error { return nil })
	_, checks["Txn"] = s.Txn(ctx, nil, []store.Op{store.Put("k", []byte("v2"))})
	_, checks["EmptyTxn"] = s.Txn(ctx, nil, nil)
	_, checks["Rev"] = s.Rev(ctx)
	_, checks["Watch"] = s.Watch(ctx, "")
	_, checks["Lock"] = s.Lock(ctx, "other", time.Second)
	checks["Release"] = l.Release(ctx)
	checks["Close"] = s.Close()
	for name, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
	select {
	case <-l.Done():
	default:
		t.Error("lease Done not closed after store Close")
	}
}

func testLockNameChecked(t *testing.T, s store.Store) {
	for _, name := range []string{"", "a/b"} {
		if l, err := s.Lock(t.Context(), name, time.Second); err == nil {
			l.Release(t.Context())
			t.Errorf("Lock(%q) succeeded, want an error", name)
		}
	}
}

func testFenceWhileHeld(t *testing.T, s store.Store) {
	ctx := t.Context()
	l, err := s.Lock(ctx, "leader", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer l.Release(ctx)
	f := l.Fence()
	if !strings.HasPrefix(f.Key, store.LockPrefix) || f.ModRev == 0 {
		t.Fatalf("Fence() = %+v, want a key under %q with a revision", f, store.LockPrefix)
	}
	if f2 := l.Fence(); f2 != f {
		t.Fatalf("Fence changed while held: %+v then %+v", f, f2)
	}
	// The fence names a real record, at the revision it compares.
	if rec := mustGet(t, s, f.Key); rec.ModRev != f.ModRev {
		t.Fatalf("lock record %q ModRev = %d, fence wants %d", f.Key, rec.ModRev, f.ModRev)
	}
	for i := range 3 {
		r := mustTxn(t, s, []store.Cond{f}, store.Put("fenced", []byte(fmt.Sprint(i))))
		wantRecord(t, s, store.Record{Key: "fenced", Value: []byte(fmt.Sprint(i)), CreateRev: mustGet(t, s, "fenced").CreateRev, ModRev: r})
	}
	// Empty fenced Txns check it too.
	if _, err := s.Txn(ctx, []store.Cond{f}, nil); err != nil {
		t.Fatalf("empty fenced Txn: %v", err)
	}
}

// wantFenceFails checks that a Txn fenced by f conflicts on the fence key
// and writes nothing.
func wantFenceFails(t *testing.T, s store.Store, f store.Cond) {
	t.Helper()
	before := mustRev(t, s)
	_, err := s.Txn(t.Context(), []store.Cond{f}, []store.Op{store.Put("fenced/late", []byte("x")), store.Delete("fenced/keep")})
	if !store.IsConflict(err) {
		t.Fatalf("Txn fenced by a lost lease: err = %v, want *store.ConflictError", err)
	}
	var c *store.ConflictError
	errors.As(err, &c)
	if c.Key != f.Key || c.WantRev != f.ModRev {
		t.Fatalf("conflict = %+v, want it on the fence %+v", *c, f)
	}
	if _, err := s.Get(t.Context(), "fenced/late"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("fenced Txn of a lost lease wrote: Get(fenced/late) err = %v", err)
	}
	if _, err := s.Get(t.Context(), "fenced/keep"); err != nil {
		t.Fatalf("fenced Txn of a lost lease deleted: Get(fenced/keep) err = %v", err)
	}
	if rev := mustRev(t, s); rev != before {
		t.Fatalf("Rev after a failed fenced Txn = %d, want %d", rev, before)
	}
}

func testFenceAfterRelease(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustTxn(t, s, nil, store.Put("fenced/keep", []byte("k")))
	l, err := s.Lock(ctx, "leader", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	f := l.Fence()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantFenceFails(t, s, f)
	if f2 := l.Fence(); f2 != f {
		t.Fatalf("Fence changed by Release: %+v then %+v", f, f2)
	}
}

func testFenceStaleAfterHandover(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustTxn(t, s, nil, store.Put("fenced/keep", []byte("k")))
	l1, err := s.Lock(ctx, "leader", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	f1 := l1.Fence()
	second := lockAsync(ctx, s, "leader")
	time.Sleep(blockedFor) // let the second contender queue up
	if err := l1.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	var l2 store.Lease
	select {
	case r := <-second:
		if r.err != nil {
			t.Fatalf("second Lock: %v", r.err)
		}
		l2 = r.lease
	case <-time.After(waitTimeout):
		t.Fatal("second Lock still blocked after Release")
	}
	defer l2.Release(ctx)
	f2 := l2.Fence()
	if f2 == f1 {
		t.Fatalf("the new holder's fence equals the old one: %+v", f1)
	}
	// The old holder's writes fail, the new holder's succeed.
	wantFenceFails(t, s, f1)
	mustTxn(t, s, []store.Cond{f2}, store.Put("fenced/new", []byte("n")))
	// Another lock name has a fence of its own.
	other, err := s.Lock(ctx, "other", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock(other): %v", err)
	}
	if other.Fence().Key == f2.Key {
		t.Fatalf("locks leader and other share the fence key %q", f2.Key)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatalf("Release(other): %v", err)
	}
	mustTxn(t, s, []store.Cond{f2}, store.Put("fenced/new", []byte("n2")))
}

func testFenceCombinesWithConds(t *testing.T, s store.Store) {
	ctx := t.Context()
	r1 := mustTxn(t, s, nil, store.Put("k", []byte("v")))
	l, err := s.Lock(ctx, "leader", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer l.Release(ctx)
	// With the fence holding, another failing condition is the one reported.
	_, err = s.Txn(ctx, []store.Cond{l.Fence(), store.Absent("k")}, []store.Op{store.Put("k", []byte("w"))})
	wantConflict(t, err, "k", 0, r1)
	r2 := mustTxn(t, s, []store.Cond{l.Fence(), store.Unchanged("k", r1)}, store.Put("k", []byte("w")))
	wantRecord(t, s, store.Record{Key: "k", Value: []byte("w"), CreateRev: r1, ModRev: r2})
}

// CheckLostLease checks what must follow once a backend lost l by itself
// (its etcd lease expired or was revoked): Done closes within the suite's
// wait bound, and every Txn fenced by l fails with a *ConflictError on the
// fence key and writes nothing. The caller makes the loss happen.
func CheckLostLease(t *testing.T, s store.Store, l store.Lease) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("lease Done not closed within %v of losing it", waitTimeout)
	}
	if _, err := s.Get(t.Context(), "fenced/keep"); errors.Is(err, store.ErrNotFound) {
		mustTxn(t, s, nil, store.Put("fenced/keep", []byte("k")))
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		// Done may close before the server has deleted the lock record
		// (the holder gives up first); the fence must fail soon after.
		_, err := s.Txn(t.Context(), []store.Cond{l.Fence()}, nil)
		if store.IsConflict(err) {
			break
		}
		if err != nil {
			t.Fatalf("fenced empty Txn: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fence of a lost lease still holds %v after Done", waitTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantFenceFails(t, s, l.Fence())
}
