package storehealth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/store"
)

func TestTransient(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"Nil", nil, false},
		{"DiskFull", &fs.PathError{Op: "write", Path: "/d/ward.db", Err: syscall.ENOSPC}, true},
		{"DiskFullAsText", errors.New("file resize error: no space left on device"), true},
		{"Quota", fmt.Errorf("commit: %w", syscall.EDQUOT), true},
		{"ReadOnly", &fs.PathError{Op: "write", Path: "/d/ward.db", Err: syscall.EROFS}, true},
		{"IO", &fs.PathError{Op: "fdatasync", Path: "/d/ward.db", Err: syscall.EIO}, true},
		{"EtcdDown", fmt.Errorf("%w: etcd at x: txn: deadline", store.ErrUnavailable), true},
		{"EtcdQuota", fmt.Errorf("%w: etcd: database space exceeded", store.ErrNoSpace), true},
		{"Conflict", &store.ConflictError{Key: "k"}, false},
		{"TooLarge", fmt.Errorf("%w: 20000 ops", store.ErrTxnTooLarge), false},
		{"Closed", store.ErrClosed, false},
		{"Canceled", context.Canceled, false},
		{"Other", errors.New("bolt: put: key required"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Transient(tc.err); got != tc.want {
				t.Fatalf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestMonitor(t *testing.T) {
	m := New("bolt store /data/ward.db", "/data")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m.now = func() time.Time { return now }
	if m.Err() != nil || !m.State().Writable {
		t.Fatal("a new monitor is down")
	}
	down := m.Down()
	if ended, _ := m.Succeeded(); ended {
		t.Fatal("Succeeded ended an outage that never began")
	}
	full := &fs.PathError{Op: "write", Path: "/data/ward.db", Err: syscall.ENOSPC}
	if !m.Failed(full) || m.Failed(full) {
		t.Fatal("Failed must report the start of an outage once")
	}
	select {
	case <-down:
	default:
		t.Fatal("Down was not closed when writes failed")
	}
	now = now.Add(90 * time.Second)
	err := m.Err()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeStoreUnavailable || ae.RetryAfter.D() != RetryAfter {
		t.Fatalf("refusal: %#v", err)
	}
	for _, want := range []string{"bolt store /data/ward.db", "no space left on device", "1m30s", "new work is refused"} {
		if !strings.Contains(ae.Message, want) {
			t.Errorf("refusal message %q lacks %q", ae.Message, want)
		}
	}
	if !strings.Contains(ae.Fix, "df -h /data") || !strings.Contains(ae.Fix, "resumes") {
		t.Errorf("refusal fix %q does not say how to free space and that it resumes", ae.Fix)
	}
	if p := m.Pending("job 7").Error(); !strings.Contains(p, "job 7 was accepted") || !strings.Contains(p, string(api.CodeStoreUnavailable)) {
		t.Errorf("pending: %s", p)
	}
	st := m.State()
	if st.Writable || st.Outages != 1 || st.Failures != 2 || st.Fix == "" || !strings.Contains(st.Error, "no space") {
		t.Errorf("state during the outage: %+v", st)
	}
	now = now.Add(30 * time.Second)
	if ended, d := m.Succeeded(); !ended || d != 2*time.Minute {
		t.Fatalf("Succeeded = %v, %s; want the end of a 2m outage", ended, d)
	}
	if m.Err() != nil || !m.State().Writable {
		t.Fatal("still down after a successful write")
	}
	select {
	case <-m.Down():
		t.Fatal("Down is closed while the store writes")
	default:
	}
}

func TestFixes(t *testing.T) {
	tests := []struct {
		err       error
		dir, want string
	}{
		{syscall.ENOSPC, "/d", "df -h /d"},
		{syscall.EDQUOT, "/d", "quota"},
		{syscall.EROFS, "/d", "remount"},
		{syscall.EIO, "/d", "dmesg"},
		{store.ErrUnavailable, "", "etcdctl endpoint health"},
		{store.ErrNoSpace, "", "alarm disarm"},
	}
	for _, tc := range tests {
		if got := fixFor(tc.err, tc.dir); !strings.Contains(got, tc.want) {
			t.Errorf("fix for %v: %q, want it to mention %q", tc.err, got, tc.want)
		}
	}
}
