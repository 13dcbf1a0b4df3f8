package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/store"
)

// goodFile writes a store file of many pages (records in several batches,
// so the tree has branch pages and free pages) and returns its bytes.
func goodFile(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ward.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for batch := range 8 {
		var ops []store.Op
		for i := range 150 {
			ops = append(ops, store.Put(fmt.Sprintf("tasks/%04d/%04d", batch, i), bytes.Repeat([]byte{byte(i)}, 200)))
		}
		if batch%3 == 2 {
			ops = append(ops, store.DeletePrefix(fmt.Sprintf("tasks/%04d/00", batch-1)))
		}
		if _, err := s.Txn(context.Background(), nil, ops); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openBytes writes data as a store file and opens it; a panic or a fault
// inside would end the test binary, which is the point.
func openBytes(t testing.TB, data []byte) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ward.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{NoSync: true})
	if err == nil {
		// Reading every record must not fault either.
		err = s.Scan(context.Background(), "", func(store.Record) error { return nil })
		s.Close()
	}
	return err
}

func TestOpenRefusesDamagedFiles(t *testing.T) {
	good := goodFile(t)
	const ps = 4096
	if len(good) < 20*ps {
		t.Fatalf("the test file has only %d bytes", len(good))
	}
	tests := []struct {
		name    string
		damage  func([]byte) []byte
		problem string // in the CorruptError; "" when the file must still open
	}{
		{"intact", func(b []byte) []byte { return b }, ""},
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, "truncated"},
		{"truncated inside the meta pages", func(b []byte) []byte { return b[:ps+100] }, "truncated"},
		{"a few bytes left", func(b []byte) []byte { return b[:100] }, "too short"},
		{"both meta pages zeroed", func(b []byte) []byte { clear(b[:2*ps]); return b }, "neither meta page is valid"},
		{"one meta page zeroed", func(b []byte) []byte { clear(b[:ps]); return b }, ""},
		{"not a store file", func(b []byte) []byte { return bytes.Repeat([]byte("hello, world\n"), 1000) }, "neither meta page is valid"},
		{"a data page zeroed", func(b []byte) []byte { clear(b[5*ps : 6*ps]); return b }, "page"},
		{"a data page overwritten", func(b []byte) []byte {
			r := rand.New(rand.NewPCG(1, 2))
			for i := 7 * ps; i < 8*ps; i++ {
				b[i] = byte(r.UintN(256))
			}
			return b
		}, "page"},
		{"a page that names another", func(b []byte) []byte { b[9*ps] ^= 0x40; return b }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.damage(bytes.Clone(good))
			err := openBytes(t, data)
			var ce *CorruptError
			switch {
			case tt.problem == "" && err != nil && !errors.As(err, &ce):
				t.Fatalf("err = %v: want it to open, or a CorruptError", err)
			case tt.problem == "" && tt.name == "intact" && err != nil:
				t.Fatalf("an intact file: %v", err)
			case tt.problem != "" && (!errors.As(err, &ce) || !strings.Contains(ce.Problem, tt.problem)):
				t.Fatalf("err = %v, want a CorruptError saying %q", err, tt.problem)
			}
			if err != nil && !strings.Contains(err.Error(), "ward.db") {
				t.Fatalf("the error does not name the file: %v", err)
			}
		})
	}
}

// TestOpenNeverCrashesOnRandomDamage flips random bytes of a good store
// file, often in page headers and element tables where bbolt would follow
// them, and opens the result: it may open or be refused, but the process
// must not crash.
func TestOpenNeverCrashesOnRandomDamage(t *testing.T) {
	good := goodFile(t)
	runs := 300
	if testing.Short() {
		runs = 50
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	refused := 0
	for range runs {
		data := bytes.Clone(good)
		for range 1 + r.IntN(8) {
			page := r.IntN(len(data) / 4096)
			off := page*4096 + r.IntN(64) // headers and the first elements
			if r.IntN(4) == 0 {
				off = r.IntN(len(data))
			}
			data[off] = byte(r.UintN(256))
		}
		if openBytes(t, data) != nil {
			refused++
		}
	}
	t.Logf("%d of %d damaged files refused, the rest opened", refused, runs)
}

// FuzzVerify: Verify reads any bytes without panicking.
func FuzzVerify(f *testing.F) {
	good := goodFile(f)
	f.Add(good[:3*4096])
	f.Add(good[:16*4096])
	f.Fuzz(func(t *testing.T, data []byte) {
		verifyFile(bytes.NewReader(data), int64(len(data)))
	})
}

// TestBackupWhileWriting: a backup taken while another goroutine commits
// is a sound store file holding a consistent state: every batch whole or
// absent.
func TestBackupWhileWriting(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "ward.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	stop := make(chan struct{})
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		for b := 0; ; b++ {
			if b == 5 {
				close(started)
			}
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			var ops []store.Op
			for i := range 20 {
				ops = append(ops, store.Put(fmt.Sprintf("batch/%06d/%02d", b, i), bytes.Repeat([]byte("v"), 300)))
			}
			if _, err := s.Txn(ctx, nil, ops); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var announced int64
	n, err := s.Backup(ctx, &buf, func(size int64) { announced = size })
	close(stop)
	if werr := <-done; werr != nil {
		t.Fatal(werr)
	}
	if err != nil || n != int64(buf.Len()) || n != announced {
		t.Fatalf("backup: %d bytes written, %d in the buffer, %d announced, %v", n, buf.Len(), announced, err)
	}
	copyPath := filepath.Join(dir, "backup.db")
	os.WriteFile(copyPath, buf.Bytes(), 0o600)
	if err := Verify(copyPath); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(copyPath, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	perBatch := map[string]int{}
	err = ro.Scan(ctx, "batch/", func(r store.Record) error {
		perBatch[strings.Split(r.Key, "/")[1]]++
		return nil
	})
	if err != nil || len(perBatch) == 0 {
		t.Fatalf("the backup holds %d batches: %v", len(perBatch), err)
	}
	for b, n := range perBatch {
		if n != 20 {
			t.Fatalf("batch %s has %d of its 20 records in the backup", b, n)
		}
	}
	if _, err := ro.Txn(ctx, nil, []store.Op{store.Put("x", nil)}); err == nil {
		t.Fatal("a read-only store accepted a write")
	}
}
